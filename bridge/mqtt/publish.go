package mqtt

import (
	"context"
	"fmt"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/printbridge/printbridge/bridge"
)

// PublishEvent publishes one envelope on the printer's event topic, not
// retained.
func (b *Bus) PublishEvent(ctx context.Context, env *bridge.Envelope, data []byte) error {
	return b.publish(ctx, b.cfg.Topics.MQTTEvent(env.Printer, env.Event), false, data)
}

// maxEventsInFlight bounds the QoS 1 events that PublishEvents has sent
// without their PUBACK. Mosquitto's default max_inflight_messages is 20.
//
// NOTE: without TCP_QUICKACK (on systems other than Linux, see
// quickAckConn), against mosquitto with Nagle's algorithm on (its
// default, no set_tcp_nodelay), the last PUBACKs of each batch wait for
// this side's delayed ACK, about 40 ms per batch. package bench measured
// that case on Linux with DisableTCPQuickAck: 4.6k events/s, against 26k
// with TCP_QUICKACK and 38k with set_tcp_nodelay true in the same run.
const maxEventsInFlight = 16

// PublishEvents publishes the envelopes in order with a sliding window of
// maxEventsInFlight QoS 1 messages, and returns how many, counted from the
// first, the broker acknowledged. Each PUBACK lets the next event out at
// once: a broker that leaves Nagle's algorithm on (mosquitto's default)
// holds its later PUBACKs until the client sends again, so waiting for a
// whole window would stall for a delayed ACK each time.
//
// Events still unacknowledged when a call gives up stay in paho's store,
// and paho sends them again after the next connect. The edge's outbox
// publishes the same events again from its oldest unacknowledged one, so
// the broker may get an event twice. The store's gate holds back new
// publishes until the resent ones are acknowledged, which keeps their
// first arrivals in order (see resumeStore).
func (b *Bus) PublishEvents(ctx context.Context, events []bridge.OutgoingEvent) (int, error) {
	if b.isClosed() {
		return 0, fmt.Errorf("publish %d events to MQTT: %w", len(events), ErrClosed)
	}
	select {
	case <-b.store.wait():
	case <-ctx.Done():
		return 0, fmt.Errorf("publish %d events to MQTT: not connected to %s: %w", len(events), b.brokerURL, ctx.Err())
	case <-b.done:
		return 0, fmt.Errorf("publish %d events to MQTT: %w", len(events), ErrClosed)
	}
	tokens := make([]paho.Token, 0, min(len(events), maxEventsInFlight))
	sent := 0
	for taken := 0; taken < len(events); taken++ {
		for sent < len(events) && sent-taken < maxEventsInFlight {
			ev := events[sent]
			tokens = append(tokens, b.client.Publish(b.cfg.Topics.MQTTEvent(ev.Env.Printer, ev.Env.Event), qos, false, ev.Data))
			sent++
		}
		if err := b.wait(ctx, tokens[0]); err != nil {
			ev := events[taken]
			return taken, fmt.Errorf("publish event %s to MQTT topic %q on %s: %w", ev.Env.ID,
				b.cfg.Topics.MQTTEvent(ev.Env.Printer, ev.Env.Event), b.brokerURL, err)
		}
		tokens = tokens[1:]
	}
	return len(events), nil
}

// PublishState publishes the retained state snapshot.
func (b *Bus) PublishState(ctx context.Context, printer string, data []byte) error {
	return b.publish(ctx, b.cfg.Topics.MQTTState(printer), true, data)
}

// OwnsAvailability reports whether the bus publishes the availability
// marker of printer itself: it does for Config.Printer, after every
// connect and at Close.
func (b *Bus) OwnsAvailability(printer string) bool {
	return b.cfg.Printer != "" && printer == b.cfg.Printer
}

// PublishAvailability publishes the retained "online" or "offline" marker.
func (b *Bus) PublishAvailability(ctx context.Context, printer string, online bool) error {
	payload := availabilityOffline
	if online {
		payload = availabilityOnline
	}
	return b.publish(ctx, b.cfg.Topics.MQTTAvailability(printer), true, []byte(payload))
}

// PublishReply publishes a command reply on replyTo, or on the printer's
// reply topic when replyTo is "".
func (b *Bus) PublishReply(ctx context.Context, printer, replyTo string, data []byte) error {
	topic := replyTo
	if topic == "" {
		topic = b.cfg.Topics.MQTTReply(printer)
	}
	return b.publish(ctx, topic, false, data)
}

// PublishPresence publishes an edge's presence message on the printer's
// presence topic, not retained.
func (b *Bus) PublishPresence(ctx context.Context, printer string, data []byte) error {
	return b.publish(ctx, b.cfg.Topics.MQTTPresence(printer), false, data)
}

// PublishHook publishes a hook result on the printer's hook topic.
func (b *Bus) PublishHook(ctx context.Context, printer string, data []byte) error {
	return b.publish(ctx, b.cfg.Topics.MQTTHook(printer), false, data)
}

// PublishCommand publishes a command of the given kind, not retained.
func (b *Bus) PublishCommand(ctx context.Context, printer, kind string, data []byte) error {
	return b.publish(ctx, b.cfg.Topics.MQTTCommand(printer, kind), false, data)
}

// PublishBridgeInfo publishes the retained description of the edge of
// printer on the printer's info topic and on the shared bridge info topic.
func (b *Bus) PublishBridgeInfo(ctx context.Context, printer string, data []byte) error {
	if err := b.publish(ctx, b.cfg.Topics.MQTTInfo(printer), true, data); err != nil {
		return err
	}
	return b.publish(ctx, b.cfg.Topics.MQTTBridgeInfo(), true, data)
}

// publish sends at QoS 1 and waits for the PUBACK. While paho reconnects,
// it waits for the connection, bounded by ctx. A message that was in
// flight when the connection dropped stays in paho's memory store, and
// paho sends it again after the reconnect even when ctx has ended by then.
// A caller that retries after an error may so deliver the message twice.
func (b *Bus) publish(ctx context.Context, topic string, retained bool, data []byte) error {
	if b.isClosed() {
		return fmt.Errorf("publish to MQTT topic %q: %w", topic, ErrClosed)
	}
	return b.send(ctx, topic, retained, data)
}

// send is publish without the closed check, for the offline marker of Close.
func (b *Bus) send(ctx context.Context, topic string, retained bool, data []byte) error {
	// Checked before paho stores the message: paho would send a rejected
	// message again after every reconnect, and the broker would close
	// every connection that carries it.
	if err := validatePublishTopic(topic); err != nil {
		return fmt.Errorf("publish to MQTT topic %q: %w", topic, err)
	}
	select {
	case <-b.store.wait():
	case <-ctx.Done():
		return fmt.Errorf("publish to MQTT topic %q: not connected to %s: %w", topic, b.brokerURL, ctx.Err())
	case <-b.done:
		return fmt.Errorf("publish to MQTT topic %q: %w", topic, ErrClosed)
	}
	tok := b.client.Publish(topic, qos, retained, data)
	if err := b.wait(ctx, tok); err != nil {
		return fmt.Errorf("publish to MQTT topic %q on %s: %w", topic, b.brokerURL, err)
	}
	return nil
}
