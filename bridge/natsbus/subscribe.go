package natsbus

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/printbridge/printbridge/bridge"
)

// SubscribeCommands delivers every command kind of printer. For a NATS
// request, CommandMessage.Reply is the inbox to pass to PublishReply.
//
// Handlers of core subscriptions run on one nats.go goroutine per
// subscription, in arrival order. A handler that falls behind makes
// nats.go drop messages beyond its pending limit (500,000 messages or
// 64 MiB in nats.go 1.56), which is logged as a slow consumer error.
func (b *Bus) SubscribeCommands(ctx context.Context, printer string, h func(bridge.CommandMessage)) error {
	topics := b.cfg.Topics
	return b.subscribeCore(ctx, topics.NATSCommand(printer, "*"), "", func(msg *nats.Msg) {
		p, section, kind, ok := topics.ParseNATS(msg.Subject)
		if !ok || section != "command" {
			return
		}
		h(bridge.CommandMessage{Printer: p, Kind: kind, Data: msg.Data, Reply: msg.Reply})
	})
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
// it resumes where it stopped. The handler runs synchronously and the
// message is acked when it returns, so a handler that only enqueues keeps
// the consumer fast. A message whose ack is lost is delivered again after
// the ack wait of 30s, and several workers on one consumer see one
// printer's events interleaved, so workers must deduplicate by event id.
func (b *Bus) SubscribeEvents(ctx context.Context, printer, group string, h func(bridge.EventMessage)) error {
	token := printer
	if token == "" {
		token = "*"
	}
	subject := b.cfg.Topics.NATSEvent(token, ">")
	if b.js == nil {
		return b.subscribeCore(ctx, subject, group, func(msg *nats.Msg) {
			h(bridge.EventMessage{Data: msg.Data, Source: "nats:" + msg.Subject})
		})
	}
	return b.consumeEvents(ctx, subject, durableName(group, printer), h)
}

// SubscribeReplies delivers the messages on the reply subject of printer,
// or of every printer when printer is "".
func (b *Bus) SubscribeReplies(ctx context.Context, printer string, h func(data []byte)) error {
	if printer == "" {
		printer = "*"
	}
	return b.subscribeCore(ctx, b.cfg.Topics.NATSReply(printer), "", func(msg *nats.Msg) {
		h(msg.Data)
	})
}

// subscribeCore subscribes, or joins queue when it is not "", and flushes
// so that the server has the interest before it returns. ctx bounds only
// the flush, and the subscription lasts until Close.
func (b *Bus) subscribeCore(ctx context.Context, subject, queue string, h nats.MsgHandler) error {
	if b.isClosed() {
		return fmt.Errorf("subscribe to NATS subject %q: %w", subject, ErrClosed)
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
		return fmt.Errorf("subscribe to NATS subject %q: %w", subject, err)
	}
	if err := b.flush(ctx); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("subscribe to NATS subject %q: flush: %w", subject, err)
	}
	return nil
}

func (b *Bus) consumeEvents(ctx context.Context, subject, durable string, h func(bridge.EventMessage)) error {
	if b.isClosed() {
		return fmt.Errorf("consume NATS subject %q: %w", subject, ErrClosed)
	}
	consumer, err := b.js.CreateOrUpdateConsumer(ctx, b.stream, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "printbridge worker",
		FilterSubject: subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		// One unacknowledged event at a time keeps the order of a
		// redelivery: without it, events after one whose ack was lost
		// (a killed worker) run first and the lost one comes back after
		// AckWait. NOTE: this serialises every worker sharing the
		// consumer; a consumer per printer keeps printers apart.
		MaxAckPending: 1,
	})
	if err != nil {
		return fmt.Errorf("create or update JetStream consumer %s on stream %s failed: %w", durable, b.stream, err)
	}
	log := b.log.With("consumer", durable)
	cc, err := consumer.Consume(func(msg jetstream.Msg) {
		h(bridge.EventMessage{Data: msg.Data(), Source: "nats:" + msg.Subject()})
		ackCtx, cancel := context.WithTimeout(context.Background(), ackTimeout)
		defer cancel()
		// DoubleAck waits for the server's confirmation, so that an event
		// handled just before Close is not delivered again.
		if err := msg.DoubleAck(ackCtx); err != nil {
			log.Warn("acking a JetStream event failed; it is delivered again after the ack wait",
				"subject", msg.Subject(), "error", err)
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		log.Warn("JetStream consumer error", "error", err)
	}))
	if err != nil {
		return fmt.Errorf("consume from JetStream consumer %s: %w", durable, err)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		cc.Stop()
		return fmt.Errorf("consume NATS subject %q: %w", subject, ErrClosed)
	}
	b.consumers = append(b.consumers, cc)
	log.Info("consuming events", "subject", subject)
	return nil
}

// durableName derives the consumer name from group and printer. Durable
// names must not contain '.', '*', '>' or whitespace, so those become '_'.
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
