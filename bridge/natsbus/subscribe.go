package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/printbridge/printbridge/bridge"
)

// SubscribeCommands delivers every command kind of printer. For a NATS
// request, CommandMessage.Reply is the inbox to pass to PublishReply.
//
// It also delivers the messages on the command subject without a kind and
// on subjects with tokens after the kind, so that the caller can reject
// them (see bridge.Topics.CheckCommandTopic) instead of letting them
// vanish. Those come on subscriptions of their own, so a server whose
// authorization allows only <base>.<printer>.command.* rejects just them:
// nats.go reports that as an asynchronous permissions violation, which
// the bus logs, and the commands on valid subjects still arrive.
//
// Handlers of core subscriptions run on one nats.go goroutine per
// subscription, in arrival order. A handler that falls behind makes
// nats.go drop messages beyond its pending limit (512Ki messages or
// 64 MiB in nats.go 1.56), which is logged as a slow consumer error.
func (b *Bus) SubscribeCommands(ctx context.Context, printer string, h func(bridge.CommandMessage)) error {
	topics := b.cfg.Topics
	deliver := func(msg *nats.Msg) {
		p, section, kind, ok := topics.ParseNATS(msg.Subject)
		if !ok || section != "command" {
			return
		}
		h(bridge.CommandMessage{Printer: p, Kind: kind, Topic: msg.Subject, Data: msg.Data, Reply: msg.Reply})
	}
	if err := b.subscribeCore(ctx, topics.NATSCommand(printer, "*"), "", deliver); err != nil {
		return err
	}
	for _, subject := range topics.NATSCommandMisplaced(printer) {
		if err := b.subscribeCore(ctx, subject, "", deliver); err != nil {
			return err
		}
	}
	return nil
}

// SubscribeEvents delivers the events of printer, or of every printer when
// printer is "".
//
// Without JetStream a non-empty group is a NATS queue group, and events
// sent while no subscriber was connected are lost.
//
// With JetStream it consumes from a durable pull consumer named after
// group (DefaultDurable when group is ""), with "_<printer>" appended
// when printer is set, so that workers of one group share the consumer and
// it resumes where it stopped. The consumer's metadata records the group
// and printer, and a worker whose group and printer map to the name of a
// consumer that serves others gets an error wrapping ErrConsumerTaken
// (see ensureConsumer). The handler runs synchronously, one message
// at a time. The message is acked when the handler returns, unless the
// handler called EventMessage.Defer: then it is acked or nakked when the
// handler calls the AckFunc, and until then the bus tells JetStream every
// 10s that the message is in progress, so it is not delivered again while
// its hooks run. The consumer hands out up to Config.MaxAckPending
// messages before it waits for an ack. A message whose ack is lost is
// delivered again after the ack wait of 30s, and several workers on one
// consumer see one printer's events interleaved, so workers must
// deduplicate by event id.
func (b *Bus) SubscribeEvents(ctx context.Context, printer, group string, h func(bridge.EventMessage)) error {
	token := printer
	if token == "" {
		token = "*"
	}
	subject := b.cfg.Topics.NATSEvent(token, ">")
	if b.js == nil {
		return b.subscribeCoreEvents(ctx, subject, group, h)
	}
	return b.consumeEvents(ctx, subject, group, printer, h)
}

// subscribeCoreEvents subscribes to events without JetStream, with the
// pending limits of the Config, and reports the events nats.go drops.
func (b *Bus) subscribeCoreEvents(ctx context.Context, subject, group string, h func(bridge.EventMessage)) error {
	r := &dropReporter{subject: subject, log: b.log, onDropped: b.cfg.OnEventsDropped, logEvery: dropLogInterval}
	_, err := b.subscribeCoreSub(ctx, subject, group, func(msg *nats.Msg) {
		// Events are dropped only while nats.go holds a full pending
		// list, so the handler always has later events to see the count
		// with.
		r.check()
		printer, event, _ := b.cfg.Topics.EventOfNATS(msg.Subject)
		h(bridge.EventMessage{Data: msg.Data, Source: "nats:" + msg.Subject, Printer: printer, Event: event})
	}, func(sub *nats.Subscription) error {
		r.limitMessages, r.limitBytes = b.cfg.EventPendingMessages, b.cfg.EventPendingBytes
		if r.limitMessages == 0 {
			r.limitMessages = nats.DefaultSubPendingMsgsLimit
		}
		if r.limitBytes == 0 {
			r.limitBytes = nats.DefaultSubPendingBytesLimit
		}
		// The handler reads the limits once it has loaded the
		// subscription.
		defer r.sub.Store(sub)
		if b.cfg.EventPendingMessages == 0 && b.cfg.EventPendingBytes == 0 {
			return nil
		}
		return sub.SetPendingLimits(r.limitMessages, r.limitBytes)
	})
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.eventSubs = append(b.eventSubs, r)
	b.mu.Unlock()
	return nil
}

// SubscribeReplies delivers the messages on the reply subject of printer,
// or of every printer when printer is "". The server's no-responders
// status for a command that PublishCommand sent (see commandWatch) is
// kept from h.
func (b *Bus) SubscribeReplies(ctx context.Context, printer string, h func(data []byte)) error {
	if printer == "" {
		printer = "*"
	}
	err := b.subscribeCore(ctx, b.cfg.Topics.NATSReply(printer), "", func(msg *nats.Msg) {
		if b.commands.statusMessage(msg) {
			return
		}
		h(msg.Data)
	})
	if err == nil {
		b.commands.addReplySub(printer)
	}
	return err
}

// SubscribePresence delivers the messages on the presence subject of
// printer, this connection's own included.
func (b *Bus) SubscribePresence(ctx context.Context, printer string, h func(data []byte)) error {
	return b.subscribeCore(ctx, b.cfg.Topics.NATSPresence(printer), "", func(msg *nats.Msg) {
		h(msg.Data)
	})
}

// subscribeCore subscribes, or joins queue when it is not "", and flushes
// so that the server has the interest before it returns. When the
// connection is down, or drops before the flush completes, it returns nil
// and the server gets the subscription after the reconnect. ctx bounds
// only the flush, and the subscription lasts until Close.
func (b *Bus) subscribeCore(ctx context.Context, subject, queue string, h nats.MsgHandler) error {
	_, err := b.subscribeCoreSub(ctx, subject, queue, h, nil)
	return err
}

// subscribeCoreSub is subscribeCore that calls setup, when not nil, with
// the subscription before the flush, and returns the subscription.
func (b *Bus) subscribeCoreSub(ctx context.Context, subject, queue string, h nats.MsgHandler, setup func(*nats.Subscription) error) (*nats.Subscription, error) {
	if b.isClosed() {
		return nil, fmt.Errorf("subscribe to NATS subject %q: %w", subject, ErrClosed)
	}
	var (
		sub *nats.Subscription
		err error
	)
	if queue != "" {
		sub, err = b.nc.QueueSubscribe(subject, queue, h)
	} else {
		sub, err = b.nc.Subscribe(subject, h)
	}
	if err != nil {
		return nil, fmt.Errorf("subscribe to NATS subject %q: %w", subject, err)
	}
	if setup != nil {
		if err := setup(sub); err != nil {
			_ = sub.Unsubscribe()
			return nil, fmt.Errorf("subscribe to NATS subject %q: %w", subject, err)
		}
	}
	if b.nc.IsReconnecting() {
		// A flush would only wait for its timeout.
		b.log.Warn("not connected to the NATS server; subscribing after the reconnect", "subject", subject)
		return sub, nil
	}
	if err := b.flush(ctx); err != nil {
		if ctx.Err() == nil && b.disconnected(err) {
			// nats.go keeps the subscription and sends it to the server
			// after the reconnect, as it does with every subscription.
			b.log.Warn("the connection to the NATS server was lost before the server confirmed the subscription; subscribing after the reconnect",
				"subject", subject, "error", err)
			return sub, nil
		}
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to NATS subject %q: flush: %w", subject, err)
	}
	return sub, nil
}

// disconnected reports whether a failed flush failed because the
// connection dropped, not because the bus or the connection was closed.
// nats.go 1.56 ends the flushes that are waiting at a disconnect with
// ErrConnectionClosed, also when it goes on to reconnect.
func (b *Bus) disconnected(err error) bool {
	if b.isClosed() || b.nc.IsClosed() {
		return false
	}
	return b.nc.IsReconnecting() || errors.Is(err, nats.ErrConnectionClosed)
}

func (b *Bus) consumeEvents(ctx context.Context, subject, group, printer string, h func(bridge.EventMessage)) error {
	if b.isClosed() {
		return fmt.Errorf("consume NATS subject %q: %w", subject, ErrClosed)
	}
	maxAckPending := b.cfg.MaxAckPending
	if maxAckPending <= 0 {
		maxAckPending = 1
	}
	ownGroup := group
	if ownGroup == "" && b.cfg.WorkerID != "" {
		ownGroup = DefaultDurable + "-" + b.cfg.WorkerID
	}
	durable := durableName(ownGroup, printer)
	cfg := jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "printbridge worker",
		FilterSubject: subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		// With more than one unacknowledged event, the events after one
		// whose ack never comes (a killed worker) are delivered first, and
		// the unacknowledged one comes back after AckWait, out of order.
		// One at a time keeps the order, but serialises every worker
		// sharing the consumer; a consumer per printer keeps printers
		// apart.
		MaxAckPending: maxAckPending,
	}
	if ownGroup != group {
		cfg = b.resumeLegacy(ctx, cfg, durableName(group, printer))
	}
	consumer, err := b.ensureConsumer(ctx, cfg, ownerOf(ownGroup, printer))
	if err != nil {
		return err
	}
	log := b.log.With("consumer", durable)
	spec := &consumerSpec{cfg: cfg, owner: ownerOf(ownGroup, printer)}
	spec.consume = func(consumer jetstream.Consumer) (jetstream.ConsumeContext, error) {
		return consumer.Consume(func(msg jetstream.Msg) {
			if meta, err := msg.Metadata(); err == nil {
				spec.lastSeq.Store(meta.Sequence.Stream)
			}
			if spec.failed.CompareAndSwap(true, false) {
				log.Info("the JetStream consumer delivers events again after its error")
			}
			d := &deferredAck{msg: msg, log: log}
			printer, event, _ := b.cfg.Topics.EventOfNATS(msg.Subject())
			h(bridge.EventMessage{Data: msg.Data(), Source: "nats:" + msg.Subject(), Printer: printer, Event: event, Defer: d.take})
			if !d.taken {
				d.ack(true)
			}
		}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Warn("JetStream consumer error", "error", err)
			spec.failed.Store(true)
			b.restoreAfterConsumerError(spec, err)
		}))
	}
	cc, err := spec.consume(consumer)
	if err != nil {
		return fmt.Errorf("consume from JetStream consumer %s: %w", durable, err)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		cc.Stop()
		return fmt.Errorf("consume NATS subject %q: %w", subject, ErrClosed)
	}
	spec.index = len(b.consumers)
	b.consumers = append(b.consumers, cc)
	b.consumerSpecs = append(b.consumerSpecs, spec)
	info := consumer.CachedInfo()
	if info.Delivered.Stream == 0 && info.NumPending > 0 {
		// A new group or printer list gets the stream's past events,
		// whose hooks then run, which a user may not expect.
		log.Warn("the JetStream consumer has delivered nothing yet, so it delivers the events the stream keeps first and their hooks run now",
			"pending", info.NumPending, "stream", b.stream, "stream_max_age", streamMaxAge)
	}
	log.Info("consuming events", "subject", subject, "pending", info.NumPending)
	return nil
}

// resumeLegacy makes a new consumer of a worker without a group start
// after the last event that the shared consumer legacy acknowledged, when
// legacy exists. So a worker that upgraded from the shared consumer goes
// on where it stopped instead of getting the whole stream again.
// When this worker's consumer exists already, cfg is returned unchanged
// (ensureConsumer keeps its start), and so it is when legacy is missing.
func (b *Bus) resumeLegacy(ctx context.Context, cfg jetstream.ConsumerConfig, legacy string) jetstream.ConsumerConfig {
	if _, err := b.js.Consumer(ctx, b.stream, cfg.Durable); err == nil {
		return cfg
	}
	old, err := b.js.Consumer(ctx, b.stream, legacy)
	if err != nil {
		return cfg
	}
	info := old.CachedInfo()
	if info.Config.FilterSubject != cfg.FilterSubject {
		return cfg
	}
	cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	cfg.OptStartSeq = info.AckFloor.Stream + 1
	b.log.Info("new JetStream consumer of this worker starts where the shared consumer of workers without a group acknowledged",
		"consumer", cfg.Durable, "shared_consumer", legacy, "start_seq", cfg.OptStartSeq)
	return cfg
}

// durableName derives the consumer name from group and printer. Durable
// names must not contain '.', '*', '>' or whitespace, so those become '_'.
// Different pairs can map to one name, which ensureConsumer detects.
func durableName(group, printer string) string {
	name := group
	if name == "" {
		name = DefaultDurable
	}
	if printer != "" {
		name += "_" + printer
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n', '/', '\\':
			return '_'
		}
		return r
	}, name)
}

// deferredAck acks one JetStream event message, when the handler returns
// or, after take, when the handler calls the AckFunc.
type deferredAck struct {
	msg jetstream.Msg
	log *slog.Logger
	// taken is set by take on the consumer's goroutine, which reads it
	// after the handler returns.
	taken bool

	once  sync.Once
	mu    sync.Mutex // guards timer and ended
	timer *time.Timer
	ended bool
}

// take is EventMessage.Defer. It starts the in-progress timer.
func (d *deferredAck) take() bridge.AckFunc {
	d.taken = true
	d.mu.Lock()
	d.timer = time.AfterFunc(inProgressEvery, d.inProgress)
	d.mu.Unlock()
	return func(handled bool) { d.once.Do(func() { d.ack(handled) }) }
}

// inProgress restarts the message's ack wait and schedules the next call.
// An error is only logged: the next call, or the redelivery and the
// worker's event id memory, cover it.
func (d *deferredAck) inProgress() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ended {
		return
	}
	if err := d.msg.InProgress(); err != nil {
		d.log.Debug("telling JetStream that an event is in progress failed", "subject", d.msg.Subject(), "error", err)
	}
	d.timer.Reset(inProgressEvery)
}

func (d *deferredAck) ack(handled bool) {
	d.mu.Lock()
	d.ended = true
	if d.timer != nil {
		d.timer.Stop()
	}
	d.mu.Unlock()
	if !handled {
		// A Nak makes JetStream deliver the event again at once, ahead
		// of newer ones, to whichever worker pulls next.
		if err := d.msg.Nak(); err != nil {
			d.log.Warn("nakking a JetStream event failed; it is delivered again after the ack wait",
				"subject", d.msg.Subject(), "error", err)
		}
		return
	}
	// Ack only appends the ack to the connection's buffer and does not
	// wait for the server's reply. Waiting (DoubleAck) made every event
	// cost one round trip on the goroutine that runs the printer's hooks.
	// Close drains the connection, which flushes the buffer, so an event
	// handled just before Close is still not delivered again. An ack lost
	// with the connection brings the event back after the ack wait, as
	// any lost ack does.
	if err := d.msg.Ack(); err != nil {
		d.log.Warn("acking a JetStream event failed; it is delivered again after the ack wait",
			"subject", d.msg.Subject(), "error", err)
	}
}
