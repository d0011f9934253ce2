package natsbus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/printbridge/printbridge/bridge"
)

const (
	availabilityOnline  = "online"
	availabilityOffline = "offline"
	// bridgeInfoKey is the state bucket key of the bridge description.
	// bridge.ValidatePrinterID rejects the printer id "bridge", so no
	// printer's <printer>.info key can collide with it.
	bridgeInfoKey = "bridge.info"
)

// PublishEvent publishes one envelope on the printer's event subject. With
// JetStream it waits for the stream's ack, and the server drops a second
// message with the same event id (the Nats-Msg-Id header) within the
// duplicate window. Without JetStream it waits for a flush.
func (b *Bus) PublishEvent(ctx context.Context, env *bridge.Envelope, data []byte) error {
	subject := b.cfg.Topics.NATSEvent(env.Printer, env.Event)
	if b.isClosed() {
		return fmt.Errorf("publish to NATS subject %q: %w", subject, ErrClosed)
	}
	if b.js == nil {
		return b.publishCore(ctx, subject, data)
	}
	ack, err := b.js.Publish(ctx, subject, data, jetstream.WithMsgID(env.ID), jetstream.WithExpectStream(b.stream))
	if err != nil {
		b.restoreAfterError(err)
		return fmt.Errorf("publish event %s to JetStream subject %q: %w", env.ID, subject, err)
	}
	if ack.Duplicate {
		b.log.Debug("JetStream dropped a duplicate event", "event_id", env.ID, "printer", env.Printer)
	}
	return nil
}

// PublishEvents publishes a batch of envelopes in order and keeps them all
// in flight. Without JetStream it publishes every event and then flushes
// once: a successful flush means the server has read everything published
// before it, so the whole batch counts as taken. With JetStream each event
// is sent with PublishAsync, bounded by the batch, and the acks are taken
// in order, so the count stops at the first event the stream did not
// confirm.
func (b *Bus) PublishEvents(ctx context.Context, events []bridge.OutgoingEvent) (int, error) {
	if b.isClosed() {
		return 0, fmt.Errorf("publish %d events to NATS: %w", len(events), ErrClosed)
	}
	if b.js == nil {
		return b.publishCoreBatch(ctx, events)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(events))
	var sendErr error
	for _, ev := range events {
		subject := b.cfg.Topics.NATSEvent(ev.Env.Printer, ev.Env.Event)
		f, err := b.js.PublishAsync(subject, ev.Data, jetstream.WithMsgID(ev.Env.ID), jetstream.WithExpectStream(b.stream))
		if err != nil {
			sendErr = fmt.Errorf("publish event %s to JetStream subject %q: %w", ev.Env.ID, subject, err)
			break
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		ev := events[i]
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				b.log.Debug("JetStream dropped a duplicate event", "event_id", ev.Env.ID, "printer", ev.Env.Printer)
			}
		case err := <-f.Err():
			b.restoreAfterError(err)
			return i, fmt.Errorf("publish event %s to JetStream subject %q: %w", ev.Env.ID, f.Msg().Subject, err)
		case <-ctx.Done():
			return i, fmt.Errorf("publish event %s to JetStream: waiting for the ack: %w", ev.Env.ID, ctx.Err())
		}
	}
	return len(futures), sendErr
}

// publishCoreBatch publishes events on core NATS and flushes once. When
// a publish fails, the events before it are still flushed and counted.
func (b *Bus) publishCoreBatch(ctx context.Context, events []bridge.OutgoingEvent) (int, error) {
	sent := 0
	var sendErr error
	for _, ev := range events {
		subject := b.cfg.Topics.NATSEvent(ev.Env.Printer, ev.Env.Event)
		if err := b.nc.Publish(subject, ev.Data); err != nil {
			sendErr = fmt.Errorf("publish event %s to NATS subject %q: %w", ev.Env.ID, subject, err)
			break
		}
		sent++
	}
	if sent == 0 {
		return 0, sendErr
	}
	if err := b.flush(ctx); err != nil {
		return 0, fmt.Errorf("publish %d events to NATS: flush: %w", sent, err)
	}
	return sent, sendErr
}

// PublishState publishes the state snapshot and, with JetStream, stores
// it in the state bucket under the printer id.
func (b *Bus) PublishState(ctx context.Context, printer string, data []byte) error {
	return b.publishStored(ctx, b.cfg.Topics.NATSState(printer), printer, data)
}

// PublishAvailability publishes "online" or "offline" and, with
// JetStream, stores it in the state bucket under <printer>.availability.
// NATS has no last will: nothing publishes "offline" when the edge dies.
func (b *Bus) PublishAvailability(ctx context.Context, printer string, online bool) error {
	payload := availabilityOffline
	if online {
		payload = availabilityOnline
	}
	return b.publishStored(ctx, b.cfg.Topics.NATSAvailability(printer), printer+".availability", []byte(payload))
}

// PublishBridgeInfo publishes the description of the edge of printer on
// the printer's info subject and on the shared bridge info subject. With
// JetStream it stores them in the state bucket under <printer>.info and
// bridge.info.
func (b *Bus) PublishBridgeInfo(ctx context.Context, printer string, data []byte) error {
	if err := b.publishStored(ctx, b.cfg.Topics.NATSInfo(printer), printer+".info", data); err != nil {
		return err
	}
	return b.publishStored(ctx, b.cfg.Topics.NATSBridgeInfo(), bridgeInfoKey, data)
}

// PublishReply publishes a command reply on replyTo, which is the inbox of
// a NATS request, or on the printer's reply subject when replyTo is "".
func (b *Bus) PublishReply(ctx context.Context, printer, replyTo string, data []byte) error {
	subject := replyTo
	if subject == "" {
		subject = b.cfg.Topics.NATSReply(printer)
	}
	return b.publishCore(ctx, subject, data)
}

// PublishPresence publishes an edge's presence message on the printer's
// presence subject and flushes, so that the server has it when it returns.
func (b *Bus) PublishPresence(ctx context.Context, printer string, data []byte) error {
	return b.publishCore(ctx, b.cfg.Topics.NATSPresence(printer), data)
}

// PublishHook publishes a hook result on the printer's hook subject. It
// returns once nats.go has buffered the message, and it waits for a flush
// only when more than maxHookBuffered bytes are waiting. A result is a
// report, not an event with a delivery guarantee, and a flush per result
// would cap a worker at one result per round trip. nats.go's flusher
// goroutine sends the buffer at once, and Close drains it.
func (b *Bus) PublishHook(ctx context.Context, printer string, data []byte) error {
	subject := b.cfg.Topics.NATSHook(printer)
	if b.isClosed() {
		return fmt.Errorf("publish to NATS subject %q: %w", subject, ErrClosed)
	}
	if err := b.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("publish to NATS subject %q: %w", subject, err)
	}
	if n, err := b.nc.Buffered(); err == nil && n >= maxHookBuffered {
		// The socket does not keep up: wait for it, so the buffer, and
		// so the worker's memory, stays bounded.
		if err := b.flush(ctx); err != nil {
			return fmt.Errorf("publish to NATS subject %q: flush: %w", subject, err)
		}
	}
	return nil
}

// maxHookBuffered is the buffered output in bytes beyond which
// PublishHook waits for a flush.
const maxHookBuffered = 32 << 10

// KeyValue returns the state bucket, or an error without JetStream.
func (b *Bus) KeyValue() (jetstream.KeyValue, error) {
	if b.kv == nil {
		return nil, errors.New("JetStream is off on this NATS bus, so there is no state bucket: set JetStream in the config")
	}
	return b.kv, nil
}

func (b *Bus) publishStored(ctx context.Context, subject, key string, data []byte) error {
	if err := b.publishCore(ctx, subject, data); err != nil {
		return err
	}
	if b.kv == nil {
		return nil
	}
	if _, err := b.kv.Put(ctx, key, data); err != nil {
		b.restoreAfterError(err)
		return fmt.Errorf("store key %q in JetStream bucket %s: %w", key, StateBucket, err)
	}
	return nil
}

// publishCore publishes and flushes. While nats.go reconnects, it buffers
// the message and sends it after the reconnect even when the flush has
// failed by then. A caller that retries after an error may so deliver the
// message twice.
func (b *Bus) publishCore(ctx context.Context, subject string, data []byte) error {
	return b.publishCoreMsg(ctx, &nats.Msg{Subject: subject, Data: data})
}

// publishCoreMsg is publishCore for a message with a reply subject or
// headers.
func (b *Bus) publishCoreMsg(ctx context.Context, msg *nats.Msg) error {
	if b.isClosed() {
		return fmt.Errorf("publish to NATS subject %q: %w", msg.Subject, ErrClosed)
	}
	if err := b.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("publish to NATS subject %q: %w", msg.Subject, err)
	}
	if err := b.flush(ctx); err != nil {
		return fmt.Errorf("publish to NATS subject %q: flush: %w", msg.Subject, err)
	}
	return nil
}
