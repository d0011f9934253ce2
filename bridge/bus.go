package bridge

import (
	"context"
	"errors"
	"fmt"
)

// CommandMessage is one message received on a command topic.
type CommandMessage struct {
	Printer string
	// Kind is the part of the topic after command/, "" when there is
	// none. It may be unknown or span several levels, because the edge
	// receives every topic below command so that it can reject those.
	Kind string
	// Topic is the MQTT topic or NATS subject the message arrived on.
	Topic string
	Data  []byte
	// Retained is set for MQTT retained messages, which are never executed.
	Retained bool
	// Reply is the NATS reply inbox of a request, or "".
	Reply string
	// Bus is the Name of the bus the message arrived on. The fan-out of
	// NewMulti sets it, so that PublishReplyOn sends the reply on that bus only.
	Bus string
}

// EventMessage is one event envelope received from the bus.
type EventMessage struct {
	Data []byte
	// Source names the bus and topic it arrived on, for logs.
	Source string
	// Printer and Event are the printer id and event name taken from the
	// MQTT topic or NATS subject, with the adapter's base removed. Both
	// are "" when the topic does not have the form <base>/<printer>/event/<name>.
	// The broker's ACL checks the topic and not the payload, so a consumer
	// must reject an envelope whose printer or event differs from these.
	Printer string
	Event   string
	// Defer, when not nil, takes the acknowledgement of the message over
	// from the bus. Without a call, the bus acknowledges the message when
	// the handler returns. After a call, it does not, and the handler must
	// call the returned AckFunc exactly once, from any goroutine, once it
	// is finished with the event. Defer must be called before the handler
	// returns. It is nil where the broker has no acknowledgements (core
	// NATS).
	Defer func() AckFunc
}

// AckFunc ends a deferred event message. handled true acknowledges it,
// so the broker does not deliver it again. handled false means the event
// was not handled and is to be delivered again: JetStream gets a Nak, and
// an MQTT message stays unacknowledged, so the broker sends it again on
// the next connection of a persistent session. An AckFunc may block while
// the broker does not respond, for at most a few seconds.
type AckFunc func(handled bool)

// Bus is one broker connection. MQTT and NATS implement it; Multi fans out
// to several. Publish methods block until the broker has taken the message
// (MQTT PUBACK, NATS flush or JetStream ack) or ctx ends, except
// PublishHook on NATS, which returns once the message is buffered.
//
// Handlers run on the adapter's delivery goroutine and must not block:
// hand work off to a queue.
type Bus interface {
	// Name is "mqtt" or "nats", for logs and metrics.
	Name() string
	PublishEvent(ctx context.Context, env *Envelope, data []byte) error
	// PublishState publishes the retained state snapshot.
	PublishState(ctx context.Context, printer string, data []byte) error
	// PublishAvailability publishes the retained online or offline marker.
	PublishAvailability(ctx context.Context, printer string, online bool) error
	// PublishReply sends a command reply to replyTo, or to the printer's
	// reply topic when replyTo is "".
	PublishReply(ctx context.Context, printer, replyTo string, data []byte) error
	PublishHook(ctx context.Context, printer string, data []byte) error
	PublishCommand(ctx context.Context, printer, kind string, data []byte) error
	// SubscribeCommands delivers every command message for printer.
	SubscribeCommands(ctx context.Context, printer string, h func(CommandMessage)) error
	// SubscribeEvents delivers events of printer ("" for all printers).
	// A non-empty group shares the load between subscribers of that group.
	SubscribeEvents(ctx context.Context, printer, group string, h func(EventMessage)) error
	// SubscribeReplies delivers replies on the printer's reply topic
	// ("" for all printers).
	SubscribeReplies(ctx context.Context, printer string, h func(data []byte)) error
	Close() error
}

// AvailabilityOwner is a Bus that publishes a printer's availability
// marker itself, such as the MQTT bus with a last will, which publishes
// "online" after every connect and "offline" at Close.
type AvailabilityOwner interface {
	OwnsAvailability(printer string) bool
}

// PublishUnownedAvailability publishes the availability marker on each bus
// of b that does not own printer's availability. An edge publishes its
// start and stop markers with it, so that they do not repeat the markers
// of an AvailabilityOwner.
func PublishUnownedAvailability(ctx context.Context, b Bus, printer string, online bool) error {
	if m, ok := b.(*multi); ok {
		return m.eachConnected(func(b Bus) error { return PublishUnownedAvailability(ctx, b, printer, online) })
	}
	if owner, ok := b.(AvailabilityOwner); ok && owner.OwnsAvailability(printer) {
		return nil
	}
	return b.PublishAvailability(ctx, printer, online)
}

// PublishReplyOn publishes a command reply like b.PublishReply, but when b
// is a fan-out from NewMulti and busName is not "", only on the bus called
// busName: a NATS reply inbox or an MQTT reply_to topic exists on the bus
// that the command came from only.
func PublishReplyOn(ctx context.Context, b Bus, busName, printer, replyTo string, data []byte) error {
	m, ok := b.(*multi)
	if !ok || busName == "" {
		return b.PublishReply(ctx, printer, replyTo, data)
	}
	target := m.bus(busName)
	if target == nil {
		return fmt.Errorf("publish reply: no bus named %q among %s", busName, m.Name())
	}
	return target.PublishReply(ctx, printer, replyTo, data)
}

// ErrNoSubscriber is wrapped by PublishCommand when the broker reported
// that no client subscribes to the command's subject: no edge of the printer
// is connected to it. NATS reports it (a "no responders" status) for a
// bus that also subscribes to the printer's reply subject; MQTT never
// does, and a NATS subscriber other than an edge, such as a `nats sub`
// on every subject, hides it.
var ErrNoSubscriber = errors.New("no subscriber")

// ErrNoAvailability is returned by SubscribeAvailability for a bus that
// keeps no availability marker for a late subscriber, or whose marker can
// stay "online" after the edge died: NATS has no last will.
var ErrNoAvailability = errors.New("the bus keeps no availability markers")

// AvailabilitySubscriber is a Bus from which a subscriber that starts
// late still learns each printer's availability marker, and whose broker
// publishes "offline" when an edge dies: MQTT, with its retained topic and
// last will.
type AvailabilitySubscriber interface {
	// SubscribeAvailability calls h with the current marker of printer
	// ("" for all printers) and with each change. A marker other than
	// "online" and "offline", or a deleted one, comes as known false.
	SubscribeAvailability(ctx context.Context, printer string, h func(printer string, online, known bool)) error
}

// SubscribeAvailability subscribes h on each bus of b that keeps
// availability markers. It returns ErrNoAvailability when none does.
func SubscribeAvailability(ctx context.Context, b Bus, printer string, h func(printer string, online, known bool)) error {
	var errs []error
	subscribed := false
	for _, member := range Buses(b) {
		if p, ok := member.(*Pending); ok {
			// The bus behind it is known once it connects. A NATS bus
			// there then subscribes to nothing.
			subscribed = true
			errs = append(errs, p.subscribe(ctx, func(ctx context.Context, b Bus) error {
				if s, ok := b.(AvailabilitySubscriber); ok {
					return s.SubscribeAvailability(ctx, printer, h)
				}
				return nil
			}))
			continue
		}
		if s, ok := member.(AvailabilitySubscriber); ok {
			subscribed = true
			errs = append(errs, s.SubscribeAvailability(ctx, printer, h))
		}
	}
	if !subscribed {
		return ErrNoAvailability
	}
	return errors.Join(errs...)
}

// ConnectionReporter is a Bus that reports whether its broker connection
// is up at the moment.
type ConnectionReporter interface {
	Connected() bool
}

// Connected reports whether b's broker connection is up. A bus that does
// not report it counts as connected.
func Connected(b Bus) bool {
	r, ok := b.(ConnectionReporter)
	return !ok || r.Connected()
}

// BridgeInfoPublisher is a Bus that publishes the description of an edge
// (version, schema, printers) on the printer's own info topic and on the
// bridge info topic that all edges share. Only the printers' topics
// together list every edge of a farm.
type BridgeInfoPublisher interface {
	PublishBridgeInfo(ctx context.Context, printer string, data []byte) error
}

// PresenceBus is a Bus that carries the presence messages of edges on the
// printer's presence topic, with which an edge finds another live edge of
// its printer id (bridge/edge/presence.go). The messages are never
// retained, and a subscriber also receives its own.
type PresenceBus interface {
	PublishPresence(ctx context.Context, printer string, data []byte) error
	// SubscribePresence delivers the messages on the presence topic of
	// printer. MQTT retained messages are dropped, because a retained
	// message may come from an edge that stopped long ago.
	SubscribePresence(ctx context.Context, printer string, h func(data []byte)) error
}

// OutgoingEvent is one stored event envelope handed to a bus.
type OutgoingEvent struct {
	Env  *Envelope
	Data []byte
}

// EventBatchPublisher is a Bus that keeps several events in flight
// instead of waiting for the broker after each one.
type EventBatchPublisher interface {
	// PublishEvents publishes events in order and returns how many of
	// them, counted from the first, the broker has taken (NATS flush,
	// JetStream ack or MQTT PUBACK). When that is fewer than all of them,
	// err is the reason. Events after the first unconfirmed one may still
	// reach the broker, so a caller that publishes them again delivers
	// them at least once.
	PublishEvents(ctx context.Context, events []OutgoingEvent) (int, error)
}

// PublishEvents publishes events through b's EventBatchPublisher, or one
// at a time with PublishEvent when b has none. It returns how many events,
// counted from the first, the broker has taken.
func PublishEvents(ctx context.Context, b Bus, events []OutgoingEvent) (int, error) {
	if bp, ok := b.(EventBatchPublisher); ok {
		return bp.PublishEvents(ctx, events)
	}
	for i, ev := range events {
		if err := b.PublishEvent(ctx, ev.Env, ev.Data); err != nil {
			return i, err
		}
	}
	return len(events), nil
}
