package edge

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/printbridge/printbridge/bridge"
)

// commandQueueSize bounds commands waiting for the printer; a full queue
// rejects new ones instead of blocking the broker client.
const commandQueueSize = 256

// maxQueuedReplies bounds the replies waiting for the run goroutine.
// Rejections of a full command queue may take only half of it, so a
// flood of commands cannot crowd out the done and failed replies of the
// commands already accepted.
const maxQueuedReplies = 8192

// dropLogInterval is the minimum time between two logs of dropped replies.
const dropLogInterval = 10 * time.Second

// recentCommandIDs is how many command ids are remembered, so a
// redelivered command is answered again instead of executed twice.
const recentCommandIDs = 1024

type commandRunner struct {
	e     *Edge
	queue chan bridge.CommandMessage
	// replies is written by printer callbacks and the bus handler and
	// read by run, so reply publishing never blocks either.
	replies replyQueue
	drops   dropLog
	// seen maps command id to its last reply; only run touches it.
	seen      map[string]*list.Element
	seenOrder *list.List
	// persist keeps seen across restarts, nil without a data folder.
	persist *commandLog
	// uploads are the file adds in parts by path; only run touches them.
	uploads map[string]*upload
}

type replyOut struct {
	replyTo replyAddr
	reply   bridge.Reply
}

// replyAddr is the destination of a reply: the topic or inbox in to (the
// printer's reply topic when to is ""), on the bus named bus (every bus
// when bus is "").
type replyAddr struct {
	bus string
	to  string
}

type seenEntry struct {
	id    string
	last  bridge.Reply
	reply replyAddr
	// digest identifies the message, so a reused id with a different
	// command is told apart from a redelivery.
	digest [sha256.Size]byte
}

func newCommandRunner(e *Edge) *commandRunner {
	c := &commandRunner{
		e:         e,
		queue:     make(chan bridge.CommandMessage, commandQueueSize),
		replies:   replyQueue{wake: make(chan struct{}, 1)},
		seen:      map[string]*list.Element{},
		seenOrder: list.New(),
		uploads:   map[string]*upload{},
	}
	if e.cfg.DataDir != "" {
		removeStaleUploads(e.cfg.DataDir, e.cfg.PrinterID, e.log)
		var entries []*seenEntry
		c.persist, entries = openCommandLog(e.cfg.DataDir, e.cfg.PrinterID, e.log)
		for _, entry := range entries {
			c.seen[entry.id] = c.seenOrder.PushBack(entry)
		}
	}
	return c
}

// entries returns the remembered commands, oldest first.
func (c *commandRunner) entries() []*seenEntry {
	out := make([]*seenEntry, 0, c.seenOrder.Len())
	for el := c.seenOrder.Front(); el != nil; el = el.Next() {
		out = append(out, el.Value.(*seenEntry))
	}
	return out
}

// receive is the bus handler; it must not block.
func (c *commandRunner) receive(m bridge.CommandMessage) {
	select {
	case c.queue <- m:
	default:
		c.e.metrics.Commands.WithLabelValues(kindLabel(m.Kind), "dropped").Inc()
		id := bridge.PeekCommandID(m.Data)
		c.e.log.Warn("command queue full, command rejected", "kind", m.Kind, "command_id", logText(id))
		c.sendReply(replyAddr{bus: m.Bus, to: m.Reply}, bridge.Reply{ID: id, Kind: m.Kind, Status: bridge.ReplyRejected,
			Reason: "edge command queue is full; retry later"}, maxQueuedReplies/2)
	}
}

func (c *commandRunner) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			c.flushReplies()
			c.dropUploads()
			return
		case m := <-c.queue:
			c.handle(ctx, m)
		case <-c.replies.wake:
			for _, r := range c.replies.take() {
				c.publish(ctx, r)
			}
		}
	}
}

func (c *commandRunner) flushReplies() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, r := range c.replies.take() {
		c.publish(ctx, r)
	}
}

func (c *commandRunner) handle(ctx context.Context, m bridge.CommandMessage) {
	log := c.e.log.With("kind", m.Kind)
	if m.Retained {
		// A retained command would run again on every reconnect. The
		// broker delivers it with the retain flag only to subscribers that
		// connect later, so the edge sees it here after its own restart.
		c.e.metrics.Commands.WithLabelValues(kindLabel(m.Kind), "retained").Inc()
		log.Warn("retained command ignored; publish commands without the retain flag, and clear this one with an empty retained message on its topic",
			"command_id", logText(bridge.PeekCommandID(m.Data)), "size", len(m.Data))
		return
	}
	if len(m.Data) == 0 {
		// An empty retained publish clears a retained command, and the
		// broker hands it to the connected subscribers as an empty,
		// unretained message. It carries no id to reply to.
		c.e.metrics.Commands.WithLabelValues(kindLabel(m.Kind), "empty").Inc()
		log.Info("empty message on a command topic ignored; it clears a retained command", "topic", m.Topic)
		return
	}
	if err := c.e.cfg.Topics.CheckCommandTopic(c.e.cfg.PrinterID, m.Topic, m.Kind); err != nil {
		id := bridge.PeekCommandID(m.Data)
		c.e.metrics.Commands.WithLabelValues(kindLabel(m.Kind), "rejected").Inc()
		log.Warn("command on an invalid topic rejected", "topic", m.Topic, "command_id", logText(id), "error", err)
		c.reply(replyAddr{bus: m.Bus, to: m.Reply}, bridge.Reply{ID: id, Kind: m.Kind, Status: bridge.ReplyRejected, Reason: err.Error()})
		return
	}
	if pol := c.e.currentPolicy(); pol != nil {
		if err := pol.CheckMessageSize(len(m.Data)); err != nil {
			c.e.metrics.Commands.WithLabelValues(kindLabel(m.Kind), "rejected").Inc()
			log.Warn("command rejected by policy", "command_id", logText(bridge.PeekCommandID(m.Data)), "error", err)
			c.reply(replyAddr{bus: m.Bus, to: m.Reply}, bridge.Reply{ID: bridge.PeekCommandID(m.Data), Kind: m.Kind, Status: bridge.ReplyRejected, Reason: err.Error()})
			return
		}
	}
	cmd, err := bridge.DecodeCommand(m.Kind, m.Data)
	if err != nil {
		var cerr *bridge.CommandError
		id := ""
		if errors.As(err, &cerr) {
			id = cerr.ID
		}
		c.e.metrics.Commands.WithLabelValues(kindLabel(m.Kind), "rejected").Inc()
		log.Warn("command rejected", "command_id", logText(id), "error", err)
		c.reply(replyAddr{bus: m.Bus, to: m.Reply}, bridge.Reply{ID: id, Kind: m.Kind, Status: bridge.ReplyRejected, Reason: err.Error()})
		return
	}
	if cmd.ReplyTo != "" {
		if err := c.e.cfg.Topics.CheckReplyTarget(c.e.cfg.PrinterID, cmd.ReplyTo, c.e.cfg.ProtectedTopics...); err != nil {
			// Sent to the default reply topic, because the requested one
			// is not safe to publish to.
			c.e.metrics.Commands.WithLabelValues(kindLabel(m.Kind), "rejected").Inc()
			log.Warn("command rejected", "command_id", logText(cmd.ID), "error", err)
			c.reply(replyAddr{bus: m.Bus, to: m.Reply}, bridge.Reply{ID: cmd.ID, Kind: m.Kind, Status: bridge.ReplyRejected, Reason: err.Error()})
			return
		}
	}
	replyTo := replyAddr{bus: m.Bus, to: cmd.ReplyTo}
	if replyTo.to == "" {
		replyTo.to = m.Reply
	}
	log = log.With("command_id", logText(cmd.ID), "source", logText(cmd.Source))
	if err := c.e.cfg.Presence.CommandsStopped(); err != nil {
		// The other edge runs the commands that reach it, so this one
		// only reports why it does not run them.
		c.e.metrics.Commands.WithLabelValues(kindLabel(m.Kind), "rejected").Inc()
		log.Warn("command rejected, because another edge of this printer id takes the commands", "error", err)
		c.reply(replyTo, bridge.Reply{ID: cmd.ID, Kind: m.Kind, Status: bridge.ReplyRejected, Reason: err.Error()})
		return
	}
	// The digest is of the decoded command, so a client that serialises
	// the same command with other whitespace or key order is still a
	// redelivery.
	canonical, _ := json.Marshal(cmd)
	digest := sha256.Sum256(append([]byte(m.Kind+"\x00"), canonical...))
	if el, ok := c.seen[cmd.ID]; ok {
		prev := el.Value.(*seenEntry)
		switch {
		case prev.digest != digest && prev.last.Status == bridge.ReplyRejected:
			// A rejected command never ran, so a corrected command may
			// take its id. Its entry goes, so remember adds the new one.
			log.Info("command id of a rejected command reused for a different command, running it", "rejection", prev.last.Reason)
			c.seenOrder.Remove(el)
			delete(c.seen, cmd.ID)
		case prev.digest != digest:
			c.e.metrics.Commands.WithLabelValues(kindLabel(m.Kind), "rejected").Inc()
			log.Warn("command id reused for a different command, rejected")
			// Published without touching the remembered reply, so a later
			// redelivery of the first command still gets its own reply.
			c.publishUnremembered(ctx, replyOut{replyTo: replyTo, reply: bridge.Reply{ID: cmd.ID, Kind: m.Kind, Status: bridge.ReplyRejected,
				Reason: fmt.Sprintf("id %q was already used for a different command; give every command a new id", cmd.ID)}})
			return
		default:
			// A worker publishes a command again while it waits long for
			// the final reply, so a duplicate of a running command is
			// routine. A duplicate of a finished one means a reply was
			// lost.
			level := slog.LevelInfo
			if !prev.last.Final() {
				level = slog.LevelDebug
			}
			log.Log(ctx, level, "duplicate command id, repeating its last reply without executing", "status", prev.last.Status)
			c.publish(ctx, replyOut{replyTo: replyTo, reply: prev.last})
			return
		}
	}
	if cmd.Expires != nil && time.Now().After(*cmd.Expires) {
		c.e.metrics.Commands.WithLabelValues(kindLabel(m.Kind), "expired").Inc()
		log.Warn("expired command rejected", "expires", cmd.Expires.Format(time.RFC3339))
		c.reply(replyTo, bridge.Reply{ID: cmd.ID, Kind: m.Kind, Status: bridge.ReplyRejected,
			Reason: fmt.Sprintf("%s %s", bridge.ReasonExpired, cmd.Expires.Format(time.RFC3339))})
		return
	}
	c.remember(cmd.ID, replyTo, digest)

	done := func(replies []string, err error) {
		r := bridge.Reply{ID: cmd.ID, Kind: m.Kind, Status: bridge.ReplyDone, Lines: replies}
		if err != nil {
			r.Status = bridge.ReplyFailed
			r.Reason = err.Error()
		}
		c.sendReply(replyTo, r, maxQueuedReplies)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p := c.e.printer
	switch m.Kind {
	case bridge.CommandGcode:
		if pol := c.e.currentPolicy(); pol != nil {
			err = pol.CheckCommand(cmd.Source, cmd.Commands, p.Snapshot().Flags.Printing, cmd.Force)
		}
		if err == nil {
			err = p.SendGcode(pctx, cmd.Commands, cmd.Source, done)
		}
	case bridge.CommandJob:
		if cmd.Origin == bridge.OriginSDCard {
			err = p.SDJob(pctx, cmd.Action, cmd.Path, done)
		} else {
			err = p.Job(pctx, cmd.Action, cmd.Path, done)
		}
	case bridge.CommandConnection:
		err = p.Connection(pctx, cmd.Action, done)
	case bridge.CommandEvent:
		if err = p.FireEvent(pctx, cmd.Event, cmd.Payload); err == nil {
			done(nil, nil)
		}
	case bridge.CommandFile:
		if cmd.Origin == bridge.OriginSDCard {
			err = c.handleSDFile(pctx, cmd, done)
			break
		}
		var lines []string
		lines, err = c.handleFile(pctx, cmd)
		var added *fileAddedError
		if errors.As(err, &added) {
			done(nil, err)
			err = nil
		} else if err == nil {
			done(lines, nil)
		}
	}
	if err != nil {
		c.e.metrics.Commands.WithLabelValues(kindLabel(m.Kind), "rejected").Inc()
		log.Warn("command rejected", "action", cmd.Action, "error", err)
		c.reply(replyTo, bridge.Reply{ID: cmd.ID, Kind: m.Kind, Status: bridge.ReplyRejected, Reason: err.Error()})
		return
	}
	c.e.metrics.Commands.WithLabelValues(kindLabel(m.Kind), "accepted").Inc()
	log.Info("command accepted", "action", cmd.Action, "lines", len(cmd.Commands))
	// accepted goes out before done: done is queued on c.replies, which
	// only this goroutine drains after handle returns.
	c.publish(ctx, replyOut{replyTo: replyTo, reply: bridge.Reply{ID: cmd.ID, Kind: m.Kind, Status: bridge.ReplyAccepted}})
}

func (c *commandRunner) remember(id string, replyTo replyAddr, digest [sha256.Size]byte) {
	entry := &seenEntry{id: id, reply: replyTo, digest: digest}
	el := c.seenOrder.PushBack(entry)
	c.seen[id] = el
	// Recorded before the command runs: an edge that dies before its
	// first reply finds it and does not run it again.
	c.persist.append(entry, c.entries)
	if c.seenOrder.Len() > recentCommandIDs {
		oldest := c.seenOrder.Front()
		c.seenOrder.Remove(oldest)
		delete(c.seen, oldest.Value.(*seenEntry).id)
	}
}

// reply publishes from the run goroutine.
func (c *commandRunner) reply(replyTo replyAddr, r bridge.Reply) {
	c.publish(context.Background(), replyOut{replyTo: replyTo, reply: r})
}

// sendReply queues a reply from another goroutine while fewer than limit
// replies wait, and otherwise drops it, counted and logged.
func (c *commandRunner) sendReply(replyTo replyAddr, r bridge.Reply, limit int) {
	if c.replies.push(replyOut{replyTo: replyTo, reply: r}, limit) {
		return
	}
	c.dropped("reply_queue_full", r, nil)
}

// dropped counts a reply that is never published and logs it, at most
// once per dropLogInterval with the number dropped since the last log.
func (c *commandRunner) dropped(reason string, r bridge.Reply, err error) {
	c.e.metrics.RepliesDropped.WithLabelValues(reason).Inc()
	if n, ok := c.drops.due(time.Now()); ok {
		c.e.log.Warn("command reply dropped", "reason", reason, "command_id", logText(r.ID), "status", r.Status, "error", err,
			"dropped_since_last_log", n)
	}
}

// replyQueue is the bounded list of replies waiting for the run goroutine.
type replyQueue struct {
	mu    sync.Mutex
	items []replyOut
	// wake gets a token after each push, at most one waiting, so run
	// may wake once to an empty list.
	wake chan struct{}
}

// push appends r unless limit replies already wait.
func (q *replyQueue) push(r replyOut, limit int) bool {
	q.mu.Lock()
	if len(q.items) >= limit {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, r)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// take removes and returns every waiting reply, oldest first.
func (q *replyQueue) take() []replyOut {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

// dropLog rate-limits the log of dropped replies.
type dropLog struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

// due counts one drop and reports whether to log it now, with the drops
// since the last log.
func (d *dropLog) due(now time.Time) (int, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropped++
	if now.Sub(d.last) < dropLogInterval {
		return 0, false
	}
	n := d.dropped
	d.last = now
	d.dropped = 0
	return n, true
}

func (c *commandRunner) publish(ctx context.Context, r replyOut) {
	if el, ok := c.seen[r.reply.ID]; ok {
		reply := r.reply
		reply.Printer = c.e.cfg.PrinterID
		if reply.Time.IsZero() {
			// Set here, so a repeat of this reply carries its own time.
			reply.Time = time.Now().UTC()
			r.reply.Time = reply.Time
		}
		entry := el.Value.(*seenEntry)
		changed := entry.last.Status != reply.Status
		entry.last = reply
		if changed {
			c.persist.append(entry, c.entries)
		}
	}
	c.publishUnremembered(ctx, r)
}

// publishUnremembered publishes a reply without recording it as the
// command's last reply.
func (c *commandRunner) publishUnremembered(ctx context.Context, r replyOut) {
	r.reply.Printer = c.e.cfg.PrinterID
	if r.reply.Time.IsZero() {
		r.reply.Time = time.Now().UTC()
	}
	if r.reply.Final() {
		c.e.metrics.CommandResults.WithLabelValues(kindLabel(r.reply.Kind), r.reply.Status).Inc()
	}
	data, err := json.Marshal(r.reply)
	if err != nil {
		c.e.log.Error("encoding reply failed", "command_id", logText(r.reply.ID), "error", err)
		c.e.metrics.RepliesDropped.WithLabelValues("encode").Inc()
		return
	}
	pctx, cancel := context.WithTimeout(ctx, c.e.cfg.PublishTimeout)
	defer cancel()
	if err := bridge.PublishReplyOn(pctx, c.e.bus, r.replyTo.bus, c.e.cfg.PrinterID, r.replyTo.to, data); err != nil {
		c.e.metrics.RepliesDropped.WithLabelValues("publish_failed").Inc()
		c.e.log.Warn("publishing reply failed", "command_id", logText(r.reply.ID), "status", r.reply.Status, "bus", r.replyTo.bus,
			"error", err)
	}
}

// kindLabel is the metrics label of a command kind. The kind comes from
// the topic, which any publisher chooses, so kinds the edge does not know
// share one label instead of adding a time series each.
func kindLabel(kind string) string {
	if slices.Contains(bridge.CommandKinds, kind) {
		return kind
	}
	return "unknown"
}

// maxLogText is the longest client-supplied string written whole into a
// log line. Command messages may be up to bridge.MaxCommandSize, and each
// log line of a command repeats its id and source.
const maxLogText = 100

// logText shortens a client-supplied string for a log line, naming its
// full length. Replies carry the whole string.
func logText(s string) string {
	if len(s) <= maxLogText {
		return s
	}
	cut := maxLogText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:cut], len(s))
}
