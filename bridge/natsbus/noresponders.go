package natsbus

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/printbridge/printbridge/bridge"
)

// nats-server sends the publisher of a message that reached no subscriber
// a status message, "503" (no responders), on the message's reply
// subject, when the publisher's own connection subscribes to that
// subject. The status goes to that connection alone. From nats-server
// 2.12 on, it names the subject the message was published to in its
// Nats-Subject header, and before that it names none, so there the
// publishes of all subjects take turns. PublishCommand sets the
// printer's reply subject as the reply subject of a command, so a worker
// that follows the printer's replies learns at once that no edge of the
// printer is connected. An edge that gets the command replies on that
// subject, as it does without one.
const (
	statusHeader     = "Status"
	noRespondersCode = "503"
	subjectHeader    = "Nats-Subject"
)

// commandWatch finds out whether a command publish reached a subscriber.
type commandWatch struct {
	mu sync.Mutex
	// replySubs counts the reply subscriptions of this connection by
	// printer, "*" for the one of every printer.
	replySubs map[string]int
	// watched has an entry for each command subject being published,
	// true once a no-responders status came for it.
	watched map[string]bool
	// locks serialize the publishes of one subject, so that a status for
	// the subject belongs to the publish being watched.
	locks [16]sync.Mutex
	// noSubjectHeader is set once a status came without the subject
	// header. From then on all publishes take turns on locks[0], so that
	// only one subject is watched at a time, as they do on a server
	// that is known to leave the header out.
	noSubjectHeader atomic.Bool
}

func (w *commandWatch) addReplySub(printer string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.replySubs == nil {
		w.replySubs = map[string]int{}
	}
	w.replySubs[printer]++
}

// hasReplySub reports whether a reply subscription of this connection
// covers printer, without which the server sends no status.
func (w *commandWatch) hasReplySub(printer string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.replySubs[printer] > 0 || w.replySubs["*"] > 0
}

// lock returns the mutex that the publishes of subject take turns on,
// when connected to a server of serverVersion.
func (w *commandWatch) lock(subject, serverVersion string) *sync.Mutex {
	if w.noSubjectHeader.Load() || !statusNamesSubject(serverVersion) {
		return &w.locks[0]
	}
	h := fnv.New32a()
	h.Write([]byte(subject))
	return &w.locks[h.Sum32()%uint32(len(w.locks))]
}

func (w *commandWatch) watch(subject string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watched == nil {
		w.watched = map[string]bool{}
	}
	w.watched[subject] = false
}

// statusNamesSubject reports whether a nats-server of version puts the
// Nats-Subject header into its no-responders status, which it does from
// 2.12 on (nats-server pull request 5250). An unknown version counts as
// one that does not.
func statusNamesSubject(version string) bool {
	majorText, rest, _ := strings.Cut(version, ".")
	minorText, _, _ := strings.Cut(rest, ".")
	major, err := strconv.Atoi(majorText)
	if err != nil {
		return false
	}
	minor, err := strconv.Atoi(minorText)
	if err != nil {
		return false
	}
	return major > 2 || (major == 2 && minor >= 12)
}

// end stops watching subject and reports whether a status came for it.
func (w *commandWatch) end(subject string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := w.watched[subject]
	delete(w.watched, subject)
	return seen
}

// statusMessage reports whether msg is a no-responders status rather
// than a reply, and records it for the watched subject it names. A status
// without the subject header counts only while a single subject is
// watched, because it could belong to any, and makes the publishes of all
// subjects take turns from then on.
func (w *commandWatch) statusMessage(msg *nats.Msg) bool {
	if len(msg.Data) != 0 || msg.Header == nil || msg.Header.Get(statusHeader) != noRespondersCode {
		return false
	}
	subject := msg.Header.Get(subjectHeader)
	if subject == "" {
		w.noSubjectHeader.Store(true)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if subject == "" && len(w.watched) == 1 {
		for s := range w.watched {
			subject = s
		}
	}
	if _, ok := w.watched[subject]; ok {
		w.watched[subject] = true
	}
	return true
}

// PublishCommand publishes a command of the given kind with the printer's
// reply subject as its reply subject, on which the edge replies. When
// this connection subscribes to the printer's replies (SubscribeReplies),
// it also waits until those subscriptions have handled what the server
// sent before the flush's PONG, and returns an error that wraps
// bridge.ErrNoSubscriber when the server reported that no client subscribes
// to the command subject. Publishes to one subject take turns for that.
// It must not be called from a handler of this bus's subscriptions, whose
// queue would then wait for the handler until ctx ends.
func (b *Bus) PublishCommand(ctx context.Context, printer, kind string, data []byte) error {
	subject := b.cfg.Topics.NATSCommand(printer, kind)
	msg := &nats.Msg{Subject: subject, Reply: b.cfg.Topics.NATSReply(printer), Data: data}
	if !b.commands.hasReplySub(printer) {
		return b.publishCoreMsg(ctx, msg)
	}
	lock := b.commands.lock(subject, b.nc.ConnectedServerVersion())
	lock.Lock()
	defer lock.Unlock()
	b.commands.watch(subject)
	// The server queues the status before the flush's PONG, so once the
	// flush returns nats.go has it in the reply subscription's queue, and
	// the barrier runs after the subscriptions handled their queues.
	if err := b.publishCoreMsg(ctx, msg); err != nil {
		b.commands.end(subject)
		return err
	}
	if err := b.barrier(ctx); err != nil {
		// The command was published, and only whether it reached an
		// edge is unknown.
		b.commands.end(subject)
		b.log.Debug("could not learn whether the command reached an edge", "subject", subject, "error", err)
		return nil
	}
	if b.commands.end(subject) {
		return fmt.Errorf("publish to NATS subject %q: %w: the NATS server reports no responders, so no edge of printer %s is connected to it",
			subject, bridge.ErrNoSubscriber, printer)
	}
	return nil
}

// barrier waits until every asynchronous subscription of the connection
// has handled the messages it had when barrier was called, bounded by
// ctx, or by flushTimeout when ctx has no deadline.
func (b *Bus) barrier(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, flushTimeout)
		defer cancel()
	}
	done := make(chan struct{})
	if err := b.nc.Barrier(func() { close(done) }); err != nil {
		return fmt.Errorf("wait for the NATS subscriptions: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the NATS subscriptions: %w", ctx.Err())
	}
}
