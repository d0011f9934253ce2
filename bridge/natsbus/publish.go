package natsbus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/printbridge/printbridge/bridge"
)

const (
	availabilityOnline  = "online"
	availabilityOffline = "offline"
	// bridgeInfoKey is the state bucket key of the bridge description.
	// bridge.ValidatePrinterID allows no '.' in a printer id, so a valid
	// id cannot collide with it.
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
		return fmt.Errorf("publish event %s to JetStream subject %q: %w", env.ID, subject, err)
	}
	if ack.Duplicate {
		b.log.Debug("JetStream dropped a duplicate event", "event_id", env.ID, "printer", env.Printer)
	}
	return nil
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

// PublishBridgeInfo publishes the bridge description and, with JetStream,
// stores it in the state bucket under bridge.info.
func (b *Bus) PublishBridgeInfo(ctx context.Context, data []byte) error {
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

// PublishHook publishes a hook result on the printer's hook subject.
func (b *Bus) PublishHook(ctx context.Context, printer string, data []byte) error {
	return b.publishCore(ctx, b.cfg.Topics.NATSHook(printer), data)
}

// PublishCommand publishes a command of the given kind. The edge replies
// on the printer's reply subject, because the message has no reply inbox.
func (b *Bus) PublishCommand(ctx context.Context, printer, kind string, data []byte) error {
	return b.publishCore(ctx, b.cfg.Topics.NATSCommand(printer, kind), data)
}

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
		return fmt.Errorf("store key %q in JetStream bucket %s: %w", key, StateBucket, err)
	}
	return nil
}

// publishCore publishes and flushes. While nats.go reconnects, it buffers
// the message and sends it after the reconnect even when the flush has
// failed by then. A caller that retries after an error may so deliver the
// message twice.
func (b *Bus) publishCore(ctx context.Context, subject string, data []byte) error {
	if b.isClosed() {
		return fmt.Errorf("publish to NATS subject %q: %w", subject, ErrClosed)
	}
	if err := b.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("publish to NATS subject %q: %w", subject, err)
	}
	if err := b.flush(ctx); err != nil {
		return fmt.Errorf("publish to NATS subject %q: flush: %w", subject, err)
	}
	return nil
}
