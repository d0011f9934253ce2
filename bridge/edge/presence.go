package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// Presence finds another live edge of the same printer id on the bus, so
// that two edges never both execute the printer's commands. The data
// folder lock (LockDataDir) finds a second edge only on the same host and
// with the same --data-dir.
//
// Every edge subscribes to the printer's presence topic. At start it
// publishes a probe and waits for replies (see awaitReplies), and every
// edge that receives the probe replies with its identity and state,
// starting or running. A starting edge that hears of a running one, or of a starting one that
// precedes it (see precedes), does not start. Two edges that start
// together both hear of each other: the one that subscribed first
// receives the other's probe, and the other receives its reply. So both
// compare the same two identities, and exactly one goes on.
//
// A running edge announces itself every Interval and after every
// reconnect, and replies to each announcement of another edge. When two
// running edges find each other, after a network partition heals or when
// one started with a ProbeWait of 0, the one that started later stops
// taking commands and rejects each one with an error that names both.
// It stays so until it is restarted.
type Presence struct {
	cfg     PresenceConfig
	log     *slog.Logger
	metrics *Metrics
	self    Instance
	bus     bridge.PresenceBus

	// out contains the replies and announcements for the sender goroutine,
	// because the bus handler must not block.
	out chan presenceMessage
	// lost is closed when a running edge replies to the probe, which ends
	// the wait at once.
	lost chan struct{}
	// echo is closed when the edge's own probe comes back, which shortens
	// the wait (see awaitReplies).
	echo chan struct{}
	done chan struct{}

	mu sync.Mutex
	// state is stateStarting until Start returns.
	state  string
	echoed bool
	// peers are the other edges heard from while starting.
	peers map[string]peer
	// stoppedBy is the edge that took the commands from this running one.
	stoppedBy *Instance
	logs      presenceLogLimit
}

// PresenceConfig sets up the presence check of one edge.
type PresenceConfig struct {
	Printer string
	Topics  bridge.Topics
	// DataDir is reported to other edges, so that an operator can tell
	// the two apart.
	DataDir string
	// ProbeWait is how long Start waits for other edges to reply to its
	// probe. With 0 it does not wait, and a reply that comes later stops
	// this edge's commands instead.
	ProbeWait time.Duration
	// Interval is the time between two announcements of a running edge,
	// DefaultPresenceInterval when zero.
	Interval time.Duration
	// PublishTimeout bounds one publish, 10s when zero.
	PublishTimeout time.Duration
}

const (
	// DefaultPresenceWait is the default of PresenceConfig.ProbeWait. It
	// leaves time for a round trip through a remote broker.
	DefaultPresenceWait = 2 * time.Second
	// DefaultPresenceInterval is the default of PresenceConfig.Interval.
	DefaultPresenceInterval = 30 * time.Second

	presenceProbe   = "probe"
	presencePresent = "present"
	stateStarting   = "starting"
	stateRunning    = "running"
	stateRefused    = "refused"

	// maxPresenceMessage bounds a presence message. The edge's own are a
	// few hundred bytes.
	maxPresenceMessage = 4096
	// presenceQueueSize bounds the messages waiting for the sender.
	presenceQueueSize = 64
	// presenceLogInterval is the shortest time between two log lines
	// about the same other edge, or about invalid presence messages.
	presenceLogInterval = time.Minute
	// maxLoggedPeers bounds the edges whose last log time is kept.
	maxLoggedPeers = 64
)

// Instance identifies one run of an edge process.
type Instance struct {
	ID      string    `json:"instance"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	DataDir string    `json:"data_dir"`
	Started time.Time `json:"started"`
	Version string    `json:"version,omitempty"`
}

// String names the instance for error messages and logs.
func (i Instance) String() string {
	dataDir := i.DataDir
	if dataDir == "" {
		dataDir = "none"
	}
	return fmt.Sprintf("instance %s on host %s, pid %d, data dir %s, started %s", i.ID, i.Host, i.PID, dataDir,
		i.Started.UTC().Format(time.RFC3339Nano))
}

// presenceMessage is one message on the presence topic.
type presenceMessage struct {
	// Type is presenceProbe or presencePresent.
	Type    string `json:"type"`
	Printer string `json:"printer"`
	// State is stateStarting or stateRunning. A probe is always starting.
	State string `json:"state"`
	// CommandsStopped is set by a running edge that rejects commands
	// because another edge took them.
	CommandsStopped bool `json:"commands_stopped,omitempty"`
	// InReplyTo is the instance whose probe or announcement this message
	// replies to. No edge replies to a reply.
	InReplyTo string `json:"in_reply_to,omitempty"`
	Instance
}

// peer is another edge as one of its presence messages described it.
type peer struct {
	Instance
	running bool
}

// precedes reports whether edge a takes the printer rather than edge b: a
// running edge before a starting one, then the earlier start, then the
// smaller instance id. Every edge applies it to the same identities, so
// all agree on one winner even when their clocks differ.
func precedes(a, b peer) bool {
	if a.running != b.running {
		return a.running
	}
	if !a.Started.Equal(b.Started) {
		return a.Started.Before(b.Started)
	}
	return a.ID < b.ID
}

// DuplicateEdgeError is Start's error when another edge of the printer
// takes it.
type DuplicateEdgeError struct {
	Printer string
	Self    Instance
	Other   Instance
	// OtherRunning is false when the other edge was starting at the same
	// time and precedes this one.
	OtherRunning bool
}

func (e *DuplicateEdgeError) Error() string {
	how := "is running"
	if !e.OtherRunning {
		how = "is starting at the same time and started first"
	}
	return fmt.Sprintf("another edge of printer %s %s: %s. This edge (%s) does not start, so that no command runs twice or on the wrong printer. "+
		"Stop the other edge, or give this printer its own --printer id", e.Printer, how, e.Other, e.Self)
}

// NewPresence builds the presence check of this process's edge.
func NewPresence(cfg PresenceConfig, log *slog.Logger, metrics *Metrics) (*Presence, error) {
	if err := bridge.ValidatePrinterID(cfg.Printer); err != nil {
		return nil, err
	}
	if cfg.ProbeWait < 0 {
		return nil, fmt.Errorf("invalid presence wait %s: give 0 or a positive duration", cfg.ProbeWait)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultPresenceInterval
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("invalid presence interval %s: give a positive duration", cfg.Interval)
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	now := time.Now()
	self := Instance{ID: bridge.NewEventID(now), Host: host, PID: os.Getpid(), DataDir: cfg.DataDir, Started: now.UTC(), Version: Version}
	return &Presence{
		cfg:     cfg,
		log:     log.With("printer", cfg.Printer, "instance", self.ID),
		metrics: metrics,
		self:    self,
		out:     make(chan presenceMessage, presenceQueueSize),
		lost:    make(chan struct{}),
		echo:    make(chan struct{}),
		state:   stateStarting,
		peers:   map[string]peer{},
		logs:    presenceLogLimit{last: map[string]time.Time{}},
	}, nil
}

// Instance returns the identity this edge reports to other edges.
func (p *Presence) Instance() Instance { return p.self }

// Start subscribes to the presence topic, publishes the probe and waits
// for replies, at most ProbeWait. It returns a *DuplicateEdgeError when another
// edge takes the printer, and ctx's error when ctx ends first. Otherwise
// the edge is running: a goroutine announces it every Interval and
// replies to other edges until ctx ends. Call Close after ctx has ended.
//
// When the broker does not let the edge subscribe or publish, Start logs
// an error and returns nil: the edge then runs without the check.
func (p *Presence) Start(ctx context.Context, bus bridge.PresenceBus) error {
	p.bus = bus
	p.done = make(chan struct{})
	topic := p.cfg.Topics.MQTTPresence(p.cfg.Printer) + " (NATS " + p.cfg.Topics.NATSPresence(p.cfg.Printer) + ")"
	if err := bus.SubscribePresence(ctx, p.cfg.Printer, p.receive); err != nil {
		p.log.Error("subscribing to the presence topic failed, so this edge cannot find another edge of its printer id and starts without that check; allow the edge to publish and subscribe to the topic in the broker's access control",
			"topic", topic, "error", err)
		p.becomeRunning()
		go p.run(ctx)
		return nil
	}
	go p.run(ctx)
	probe := p.message(presenceProbe, "")
	if err := p.publish(ctx, probe); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.log.Error("publishing the presence probe failed, so this edge cannot find another edge of its printer id and starts without that check; allow the edge to publish to the topic in the broker's access control",
			"topic", topic, "error", err)
		p.becomeRunning()
		return nil
	}
	if err := p.awaitReplies(ctx, time.Now()); err != nil {
		return err
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	selfPeer := peer{Instance: p.self}
	var winner *peer
	for _, other := range p.peers {
		if precedes(other, selfPeer) && (winner == nil || precedes(other, *winner)) {
			winner = &other
		}
	}
	if winner != nil {
		p.state = stateRefused
		return &DuplicateEdgeError{Printer: p.cfg.Printer, Self: p.self, Other: winner.Instance, OtherRunning: winner.running}
	}
	if !p.echoed && p.cfg.ProbeWait > 0 {
		// NOTE: with both MQTT and NATS, the echo on one bus confirms
		// the check for both.
		p.log.Warn("this edge's own presence probe did not come back within the presence wait, so another edge of its printer id may go unnoticed; check that the broker lets the edge subscribe to the presence topic, or raise --presence-wait",
			"topic", topic, "presence_wait", p.cfg.ProbeWait)
	}
	p.state = stateRunning
	p.enqueueLocked(p.messageLocked(presencePresent, ""))
	p.log.Info("no other edge of this printer id responded to the presence probe; taking commands", "presence_wait", p.cfg.ProbeWait,
		"host", p.self.Host, "pid", p.self.PID)
	return nil
}

// presenceReplyMargin is how long Start waits for replies after its own
// probe came back through the broker, unless four times that round trip
// is longer. Another edge's reply takes the round trip of each edge, so
// on one broker it arrives well within it. A reply that comes later
// still stops one edge's commands (see Presence), so the margin trades a
// short window for a start-up that does not wait all of ProbeWait.
const presenceReplyMargin = 250 * time.Millisecond

// awaitReplies waits for the replies to the probe published at sent: until
// a running edge replies, until presenceReplyMargin (or four round
// trips) after the probe's own echo, or until ProbeWait, whichever comes
// first.
func (p *Presence) awaitReplies(ctx context.Context, sent time.Time) error {
	wait := time.NewTimer(p.cfg.ProbeWait)
	defer wait.Stop()
	echo := p.echo
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wait.C:
			return nil
		case <-p.lost:
			return nil
		case <-echo:
			echo = nil
			roundTrip := time.Since(sent)
			margin := max(presenceReplyMargin, 4*roundTrip)
			if margin < p.cfg.ProbeWait-roundTrip {
				wait.Reset(margin)
			}
		}
	}
}

// becomeRunning marks the edge running and queues its first announcement.
func (p *Presence) becomeRunning() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = stateRunning
	p.enqueueLocked(p.messageLocked(presencePresent, ""))
}

// Announce queues an announcement of a running edge, for a reconnect.
// It does nothing before Start has let the edge run.
func (p *Presence) Announce() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == stateRunning {
		p.enqueueLocked(p.messageLocked(presencePresent, ""))
	}
}

// Close waits for the goroutine that Start began; call it after the ctx
// given to Start has ended.
func (p *Presence) Close() {
	if p.done != nil {
		<-p.done
	}
}

// CommandsStopped returns the reason why this edge rejects commands, or
// nil while it takes them. It is nil-safe for an edge without a check.
func (p *Presence) CommandsStopped() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stoppedBy == nil {
		return nil
	}
	return fmt.Errorf("printer %s has another live edge that started first and takes its commands: %s. "+
		"This edge (%s) rejects every command. Stop one of the two edges and restart this one if it is to take the commands, or give one of them another --printer id",
		p.cfg.Printer, *p.stoppedBy, p.self)
}

// run publishes the queued messages and, while the edge runs, an
// announcement every Interval, until ctx ends.
func (p *Presence) run(ctx context.Context) {
	defer close(p.done)
	ticker := time.NewTicker(p.cfg.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-p.out:
			p.publishLogged(ctx, msg)
		case <-ticker.C:
			p.Announce()
		}
	}
}

func (p *Presence) publishLogged(ctx context.Context, msg presenceMessage) {
	err := p.publish(ctx, msg)
	if err == nil || ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	logNow := p.logs.allow("publish-error")
	p.mu.Unlock()
	if logNow {
		p.log.Warn("publishing a presence message failed; another edge of this printer id may not find this one until the next announcement",
			"type", msg.Type, "in_reply_to", msg.InReplyTo, "error", err)
	}
}

func (p *Presence) publish(ctx context.Context, msg presenceMessage) error {
	data, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode presence message: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
	defer cancel()
	return p.bus.PublishPresence(pctx, p.cfg.Printer, data)
}

func (p *Presence) message(kind, inReplyTo string) presenceMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.messageLocked(kind, inReplyTo)
}

// messageLocked builds a message with the current state, so a reply
// states what this edge decided with. The caller holds p.mu.
func (p *Presence) messageLocked(kind, inReplyTo string) presenceMessage {
	state := p.state
	if state != stateRunning || kind == presenceProbe {
		state = stateStarting
	}
	return presenceMessage{Type: kind, Printer: p.cfg.Printer, State: state, CommandsStopped: p.stoppedBy != nil,
		InReplyTo: inReplyTo, Instance: p.self}
}

// enqueueLocked hands msg to the sender without blocking. The caller
// holds p.mu.
func (p *Presence) enqueueLocked(msg presenceMessage) {
	select {
	case p.out <- msg:
	default:
		if p.logs.allow("queue-full") {
			p.log.Warn("presence message dropped because the send queue is full; the next announcement goes out as usual",
				"type", msg.Type, "in_reply_to", msg.InReplyTo, "queue_size", presenceQueueSize)
		}
	}
}

// receive is the bus handler of the presence topic. It must not block.
func (p *Presence) receive(data []byte) {
	msg, err := decodePresence(data, p.cfg.Printer)
	if err != nil {
		p.metrics.PresenceInvalid.Inc()
		p.mu.Lock()
		logNow := p.logs.allow("invalid")
		p.mu.Unlock()
		if logNow {
			p.log.Warn("invalid presence message ignored", "size", len(data), "error", err)
		}
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if msg.ID == p.self.ID {
		if msg.Type == presenceProbe && !p.echoed {
			p.echoed = true
			close(p.echo)
		}
		return
	}
	other := peer{Instance: msg.Instance, running: msg.Type == presencePresent && msg.State == stateRunning}
	if msg.Type == presenceProbe {
		p.receiveProbe(other)
		return
	}
	if !other.running {
		// A starting edge replying to a probe. This edge hears of it by its
		// own probe or by its reply to this edge's probe.
		if p.state == stateStarting {
			p.recordPeerLocked(other)
		}
		return
	}
	p.receiveRunning(other, msg)
}

// receiveProbe replies to the probe of a starting edge. The caller holds
// p.mu.
func (p *Presence) receiveProbe(other peer) {
	p.metrics.DuplicateEdges.WithLabelValues("probe").Inc()
	attrs := []any{"other_instance", other.ID, "other_host", other.Host, "other_pid", other.PID,
		"other_data_dir", other.DataDir, "other_started", other.Started}
	switch p.state {
	case stateStarting:
		p.recordPeerLocked(other)
		p.log.Warn("another edge of this printer id is starting at the same time; the one that started first goes on and the other does not start", attrs...)
	case stateRunning:
		if p.logs.allow("probe " + other.ID) {
			p.log.Warn("another edge of this printer id is starting; it does not start, because this edge is running. Stop it, or give it its own --printer id", attrs...)
		}
	default:
		// A refused edge is about to stop and takes part no more.
		return
	}
	p.enqueueLocked(p.messageLocked(presencePresent, other.ID))
}

// receiveRunning handles the message of another running edge. The caller
// holds p.mu.
func (p *Presence) receiveRunning(other peer, msg presenceMessage) {
	p.metrics.DuplicateEdges.WithLabelValues("running").Inc()
	attrs := []any{"other_instance", other.ID, "other_host", other.Host, "other_pid", other.PID,
		"other_data_dir", other.DataDir, "other_started", other.Started, "other_commands_stopped", msg.CommandsStopped}
	if p.state == stateStarting {
		p.recordPeerLocked(other)
		return
	}
	if p.state != stateRunning {
		return
	}
	self := peer{Instance: p.self, running: true}
	switch {
	case p.stoppedBy == nil && precedes(other, self):
		stoppedBy := other.Instance
		p.stoppedBy = &stoppedBy
		p.metrics.CommandsStopped.Set(1)
		p.logs.allow("running " + other.ID)
		p.log.Error("another edge of this printer id is running and started first; this edge stops taking commands and rejects each one until it is restarted. Stop one of the two edges", attrs...)
	case p.logs.allow("running " + other.ID):
		if p.stoppedBy != nil {
			p.log.Error("another edge of this printer id is running; this edge has stopped taking commands. Stop one of the two edges", attrs...)
		} else {
			p.log.Error("another edge of this printer id is running; this edge started first and goes on taking commands, while the other rejects them. Stop one of the two edges", attrs...)
		}
	}
	if msg.InReplyTo == "" {
		// The other edge learns of this one from the reply, without
		// waiting for this edge's next announcement.
		p.enqueueLocked(p.messageLocked(presencePresent, other.ID))
	}
}

// recordPeerLocked keeps other for Start's decision, and ends the wait
// when other is running. The caller holds p.mu.
func (p *Presence) recordPeerLocked(other peer) {
	if known, ok := p.peers[other.ID]; ok && known.running {
		return
	}
	p.peers[other.ID] = other
	if other.running {
		select {
		case <-p.lost:
		default:
			close(p.lost)
		}
	}
}

// decodePresence parses and checks one presence message of printer.
func decodePresence(data []byte, printer string) (presenceMessage, error) {
	var msg presenceMessage
	if len(data) > maxPresenceMessage {
		return msg, fmt.Errorf("presence message of %d bytes is larger than the maximum of %d", len(data), maxPresenceMessage)
	}
	if err := json.Unmarshal(data, &msg); err != nil {
		return msg, fmt.Errorf("invalid JSON in presence message: %w", err)
	}
	switch {
	case msg.Type != presenceProbe && msg.Type != presencePresent:
		return msg, fmt.Errorf("presence message has the unknown type %q: expected %q or %q", msg.Type, presenceProbe, presencePresent)
	case msg.Printer != printer:
		return msg, fmt.Errorf("presence message names printer %q on the presence topic of printer %q", msg.Printer, printer)
	case msg.State != stateStarting && msg.State != stateRunning:
		return msg, fmt.Errorf("presence message has the unknown state %q: expected %q or %q", msg.State, stateStarting, stateRunning)
	case msg.ID == "" || len(msg.ID) > 64:
		return msg, errors.New("presence message has no instance id, or one longer than 64 bytes")
	case msg.Started.IsZero():
		return msg, fmt.Errorf("presence message of instance %s has no start time", msg.ID)
	case len(msg.Host) > 255 || len(msg.DataDir) > 1024:
		return msg, fmt.Errorf("presence message of instance %s has a host name or data dir that is too long", msg.ID)
	}
	return msg, nil
}

// presenceLogLimit rate-limits repeated log lines by key: the kind of
// message and another edge's instance id, or a kind of failure.
type presenceLogLimit struct {
	last map[string]time.Time
}

// allow reports whether a line about key may be logged now, and records
// it. Keys beyond maxLoggedPeers share one limit.
func (l *presenceLogLimit) allow(key string) bool {
	if _, ok := l.last[key]; !ok && len(l.last) >= maxLoggedPeers {
		key = "other"
	}
	now := time.Now()
	if last, ok := l.last[key]; ok && now.Sub(last) < presenceLogInterval {
		return false
	}
	l.last[key] = now
	return true
}
