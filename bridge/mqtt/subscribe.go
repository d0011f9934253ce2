package mqtt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/printbridge/printbridge/bridge"
)

// queueSize is the number of messages one subscription buffers between
// paho's router and the handler.
const queueSize = 1024

// queueFullLogInterval rate-limits the warning about a full queue.
const queueFullLogInterval = 10 * time.Second

// subackFailure is the SUBACK return code of a rejected subscription.
const subackFailure = 0x80

// errSubscriptionRejected is the error of a SUBACK with subackFailure.
var errSubscriptionRejected = errors.New("the broker rejected the subscription (SUBACK return code 0x80); check the broker's access control and that it supports this filter")

// subscription is one topic filter with its queue and delivery goroutine.
//
// paho's router calls onMessage for every message in arrival order.
// onMessage only queues, and one goroutine per subscription hands the
// queue to the handler, so the order within a subscription is kept. The
// bus sends the PUBACK of a QoS 1 message itself (paho's auto-ack is
// off): when the handler returns, or, for an event whose handler called
// EventMessage.Defer, when the handler calls the AckFunc; and never before
// the PUBACKs of the messages that arrived earlier on the connection (see
// ackOrder). When the queue is
// full, onMessage blocks paho's router until there is room: no message is
// dropped, and the broker holds back further messages for the client.
// A router held for longer than the keepalive also holds back the
// PINGRESP, and paho then drops the connection and reconnects.
type subscription struct {
	filter string // as sent in SUBSCRIBE, with $share/<group>/ when shared
	route  string // as paho's router matches it, without $share/<group>/
	queue  chan paho.Message
	stop   chan struct{}
	// deliver hands a message to the handler and reports whether the
	// handler deferred its acknowledgement.
	deliver   func(paho.Message) (deferred bool)
	onMessage paho.MessageHandler
	lastWarn  atomic.Int64 // unix nanoseconds of the last full-queue warning
	// connection is the connect count when the subscription was last
	// made, guarded by Bus.mu.
	connection int
}

// SubscribeCommands delivers the messages on every topic at and below the
// command level of printer, also those without a kind or with levels
// after it, so that the caller can reject them (see
// bridge.Topics.CheckCommandTopic) instead of letting them vanish.
// Retained messages come with CommandMessage.Retained set, so the caller
// can skip them.
//
// A broker whose access control grants only <base>/<printer>/command/+
// may reject the whole tree, and the bus then takes that narrower filter
// and logs a warning.
// NOTE: Mosquitto 2.0.11 accepts the tree under such an ACL and checks
// each message instead (TestCommandsUnderNarrowACL), so no test here
// reaches the fallback.
func (b *Bus) SubscribeCommands(ctx context.Context, printer string, h func(bridge.CommandMessage)) error {
	topics := b.cfg.Topics
	deliver := func(msg paho.Message) bool {
		p, section, kind, ok := topics.ParseMQTT(msg.Topic())
		if !ok || section != "command" {
			return false
		}
		h(bridge.CommandMessage{Printer: p, Kind: kind, Topic: msg.Topic(), Data: msg.Payload(), Retained: msg.Retained()})
		return false
	}
	tree := topics.MQTTCommandTree(printer)
	err := b.subscribe(ctx, tree, deliver)
	if !errors.Is(err, errSubscriptionRejected) {
		return err
	}
	narrow := topics.MQTTCommand(printer, "+")
	b.log.Warn("the broker rejected the command subscription; subscribing to the command kinds only, so commands on other topics below it get no rejected reply. Allow read on the whole tree in the broker's access control to reject them with a reply",
		"printer", printer, "rejected_filter", tree, "topic_filter", narrow)
	return b.subscribe(ctx, narrow, deliver)
}

// SubscribeEvents delivers the events of printer, or of every printer when
// printer is "". A non-empty group subscribes to $share/<group>/<filter>,
// so the broker hands each event to one subscriber of the group. Mosquitto
// 2 (tested with 2.0.11) accepts shared subscriptions from MQTT 3.1.1
// clients too.
//
// nats-server's MQTT listener (tested with 2.15.3) has no shared
// subscriptions. It accepts $share/... as a plain topic filter that matches
// nothing printbridge publishes, so the subscriber receives no events and
// gets no error. Use a NATS queue group there instead.
//
// A handler that calls EventMessage.Defer acknowledges the event when it
// calls the AckFunc. Its PUBACK goes out once every message that arrived
// before it on the connection is acknowledged too, as MQTT 3.1.1 requires.
// The events after it keep coming until the broker's limit of
// unacknowledged messages per client (max_inflight_messages, 20 by default
// in Mosquitto 2.0.11) is reached, so one event whose hooks run long holds
// up this client's delivery after 20 more. AckFunc(false) sends no PUBACK
// and lets the later ones go. An AckFunc called after the connection
// dropped sends nothing. Either way, the broker sends the message again on
// the next connection of a persistent session.
func (b *Bus) SubscribeEvents(ctx context.Context, printer, group string, h func(bridge.EventMessage)) error {
	if printer == "" {
		printer = "+"
	}
	filter := b.cfg.Topics.MQTTAllEvents(printer)
	if group != "" {
		if strings.ContainsAny(group, "/+#") {
			return fmt.Errorf("invalid MQTT shared subscription group %q: it must not contain '/', '+' or '#'", group)
		}
		filter = "$share/" + group + "/" + filter
	}
	return b.subscribe(ctx, filter, func(msg paho.Message) bool {
		deferred := false
		topicPrinter, topicEvent, _ := b.cfg.Topics.EventOfMQTT(msg.Topic())
		h(bridge.EventMessage{Data: msg.Payload(), Source: "mqtt:" + msg.Topic(), Printer: topicPrinter, Event: topicEvent, Defer: func() bridge.AckFunc {
			deferred = true
			return func(handled bool) {
				// Ack and giveUp act once however often they are called.
				if handled {
					msg.Ack()
				} else {
					giveUp(msg)
				}
			}
		}})
		return deferred
	})
}

// SubscribeReplies delivers the messages on the reply topic of printer, or
// of every printer when printer is "". They come on a second connection
// of the bus (see replyBus).
func (b *Bus) SubscribeReplies(ctx context.Context, printer string, h func(data []byte)) error {
	if printer == "" {
		printer = "+"
	}
	replies, err := b.replyBus(ctx)
	if err != nil {
		return err
	}
	return replies.subscribe(ctx, b.cfg.Topics.MQTTReply(printer), func(msg paho.Message) bool {
		h(msg.Payload())
		return false
	})
}

// SubscribeAvailability delivers the retained availability marker of
// printer, or of every printer when printer is "", and each change. The
// edge publishes "online" at each connect, and "offline" at a clean stop
// or, as its last will, through the broker when its connection is lost.
//
// It subscribes on the connection of SubscribeReplies. On the bus's own
// connection, a persistent session's backlog of events would come first,
// and with 20 or more of them (Mosquitto's default in-flight window) the
// retained markers waited until hooks had given up on them.
func (b *Bus) SubscribeAvailability(ctx context.Context, printer string, h func(printer string, online, known bool)) error {
	if printer == "" {
		printer = "+"
	}
	replies, err := b.replyBus(ctx)
	if err != nil {
		return err
	}
	return replies.subscribe(ctx, b.cfg.Topics.MQTTAvailability(printer), func(msg paho.Message) bool {
		p, section, _, ok := b.cfg.Topics.ParseMQTT(msg.Topic())
		if !ok || section != "availability" {
			return false
		}
		switch string(msg.Payload()) {
		case availabilityOnline:
			h(p, true, true)
		case availabilityOffline:
			h(p, false, true)
		default:
			h(p, false, false)
		}
		return false
	})
}

// SubscribePresence delivers the messages on the presence topic of
// printer, this client's own included. A retained message is dropped with
// a warning, because it may be left from an edge that stopped long ago.
func (b *Bus) SubscribePresence(ctx context.Context, printer string, h func(data []byte)) error {
	return b.subscribe(ctx, b.cfg.Topics.MQTTPresence(printer), func(msg paho.Message) bool {
		if msg.Retained() {
			b.log.Warn("retained message on the presence topic ignored; clear it with an empty retained message",
				"topic", msg.Topic(), "size", len(msg.Payload()))
			return false
		}
		h(msg.Payload())
		return false
	})
}

// replyClientIDSuffix is appended to the bus's client id for the
// connection of its reply subscriptions.
const replyClientIDSuffix = "-replies"

// replyBus returns the connection of the reply subscriptions, and makes it
// at the first call, with the client id of the bus and
// replyClientIDSuffix, and the same session kind.
//
// Replies need a connection of their own because the PUBACKs of one
// connection go out in arrival order (see ackOrder). A worker's event
// whose G-code hook waits for its reply holds back the PUBACKs of the
// events after it. Once those fill the broker's in-flight window
// (max_inflight_messages, 20 by default in Mosquitto 2.0.11), the broker
// would hold back the reply too, and the hook would wait until its
// timeout.
func (b *Bus) replyBus(ctx context.Context) (*Bus, error) {
	b.replyMu.Lock()
	defer b.replyMu.Unlock()
	if b.isClosed() {
		return nil, fmt.Errorf("subscribe to MQTT replies: %w", ErrClosed)
	}
	if b.replies != nil {
		return b.replies, nil
	}
	cfg := b.cfg
	cfg.ClientID = b.clientID + replyClientIDSuffix
	// The bus owns the printer's availability, not its reply connection.
	cfg.Printer = ""
	cfg.OnConnect, cfg.OnConnectionLost = nil, nil
	replies, err := New(ctx, cfg, b.newLog)
	if err != nil {
		return nil, fmt.Errorf("connect for MQTT replies as client %q: %w", cfg.ClientID, err)
	}
	b.replies = replies
	return replies, nil
}

// subscribe records the filter, so that it is subscribed again after every
// reconnect, and subscribes now when connected. When the connection drops
// before the SUBACK, it returns nil and the next connect makes the
// subscription. ctx bounds only the wait for the SUBACK, and the
// subscription lasts until Close.
func (b *Bus) subscribe(ctx context.Context, filter string, deliver func(paho.Message) bool) error {
	sub := &subscription{
		filter:  filter,
		route:   routeOf(filter),
		queue:   make(chan paho.Message, queueSize),
		stop:    make(chan struct{}),
		deliver: deliver,
	}
	sub.onMessage = func(_ paho.Client, msg paho.Message) { b.enqueue(sub, b.acks.take(msg)) }

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("subscribe to MQTT topic filter %q: %w", filter, ErrClosed)
	}
	if other, ok := b.subs[sub.route]; ok {
		b.mu.Unlock()
		return fmt.Errorf("subscribe to MQTT topic filter %q: this bus already subscribes to %q, and paho routes both to one handler; use a second bus", filter, other.filter)
	}
	sub.connection = b.connection
	b.takePending(sub)
	b.subs[sub.route] = sub
	b.wg.Add(1)
	go b.drain(sub)
	b.mu.Unlock()

	if !b.client.IsConnectionOpen() {
		b.log.Info("not connected to MQTT broker; subscribing after the reconnect", "topic_filter", filter)
		return nil
	}
	if err := b.subscribeNow(ctx, sub); err != nil {
		if ctx.Err() == nil && !b.isClosed() && b.lostConnection(err) {
			// The subscription stays recorded, so the handler of the
			// next connect makes it, as after any reconnect.
			b.log.Warn("the connection to the MQTT broker was lost before the broker confirmed the subscription; subscribing after the reconnect",
				"topic_filter", filter, "error", err)
			return nil
		}
		b.remove(sub)
		return fmt.Errorf("subscribe to MQTT topic filter %q on %s: %w", filter, b.brokerURL, err)
	}
	b.log.Debug("subscribed", "topic_filter", filter)
	return nil
}

// lostConnection reports whether a failed SUBSCRIBE failed because the
// connection dropped. paho 1.5.1 marks the connection lost before it
// fails the waiting tokens, so a closed connection is the usual sign. The
// messages are checked too, because a reconnect may already have opened
// the next connection when the caller looks.
func (b *Bus) lostConnection(err error) bool {
	if errors.Is(err, errSubscriptionRejected) {
		return false
	}
	if !b.client.IsConnectionOpen() || errors.Is(err, paho.ErrNotConnected) {
		return true
	}
	// The texts of paho 1.5.1's errors for a SUBSCRIBE cut off by a
	// connection loss (messageids.go and client.go), which it does not
	// export as values.
	msg := err.Error()
	return strings.HasPrefix(msg, "connection lost before Subscribe completed") ||
		strings.HasPrefix(msg, "not currently connected") ||
		strings.HasPrefix(msg, "reconnecting state")
}

func (b *Bus) subscribeNow(ctx context.Context, sub *subscription) error {
	tok := b.client.Subscribe(sub.filter, qos, sub.onMessage)
	if err := b.wait(ctx, tok); err != nil {
		return err
	}
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil
	}
	for _, code := range st.Result() {
		if code == subackFailure {
			return errSubscriptionRejected
		}
	}
	return nil
}

// resubscribe makes the recorded subscriptions again after connect number
// connection. With a clean session the broker has forgotten them. With a
// persistent session it still has them and only sends the retained
// messages again.
// Subscriptions already made on this connection are skipped, because each
// SUBSCRIBE makes the broker send the retained messages again.
func (b *Bus) resubscribe(connection int) {
	b.mu.Lock()
	subs := make([]*subscription, 0, len(b.subs))
	for _, sub := range b.subs {
		if sub.connection < connection {
			sub.connection = connection
			subs = append(subs, sub)
		}
	}
	b.mu.Unlock()

	for _, sub := range subs {
		ctx, cancel := context.WithTimeout(context.Background(), subscribeTimeout)
		err := b.subscribeNow(ctx, sub)
		cancel()
		if err != nil {
			if b.isClosed() {
				return
			}
			b.log.Error("subscribing again after connect failed; no messages arrive on this filter until the next reconnect",
				"topic_filter", sub.filter, "error", err)
		}
	}
	if len(subs) > 0 {
		b.log.Info("subscribed again after connect", "subscriptions", len(subs))
	}
}

// takePending moves the pending messages that match sub into its queue, in
// arrival order. The queue is new and pending holds at most queueSize
// messages, so this does not block. The caller holds b.mu.
func (b *Bus) takePending(sub *subscription) {
	kept := b.pending[:0]
	for _, msg := range b.pending {
		if topicMatches(sub.route, msg.Topic()) {
			sub.queue <- msg
		} else {
			kept = append(kept, msg)
		}
	}
	clear(b.pending[len(kept):])
	b.pending = kept
}

func (b *Bus) remove(sub *subscription) {
	b.mu.Lock()
	if b.subs[sub.route] == sub {
		delete(b.subs, sub.route)
	}
	b.mu.Unlock()
	close(sub.stop)
}

// enqueue runs on paho's router goroutine.
func (b *Bus) enqueue(sub *subscription, msg paho.Message) {
	select {
	case sub.queue <- msg:
		return
	default:
	}
	now := time.Now()
	if last := sub.lastWarn.Load(); now.UnixNano()-last >= int64(queueFullLogInterval) {
		sub.lastWarn.Store(now.UnixNano())
		b.log.Warn("MQTT delivery queue is full; holding back further messages until the handler catches up",
			"topic_filter", sub.filter, "queue_size", queueSize)
	}
	select {
	case sub.queue <- msg:
	case <-sub.stop:
	case <-b.done:
	}
}

// drain hands queued messages to the handler until the subscription is
// removed or the bus is closed. At Close it first delivers what is queued.
// Their PUBACKs are not sent any more, so with a persistent session the
// broker sends them again on the next connection.
func (b *Bus) drain(sub *subscription) {
	defer b.wg.Done()
	for {
		select {
		case msg := <-sub.queue:
			b.deliver(sub, msg)
		case <-sub.stop:
			return
		case <-b.done:
			for {
				select {
				case msg := <-sub.queue:
					b.deliver(sub, msg)
				default:
					return
				}
			}
		}
	}
}

// deliver hands msg to the handler and acknowledges it unless the handler
// deferred that.
func (b *Bus) deliver(sub *subscription, msg paho.Message) {
	if !sub.deliver(msg) {
		msg.Ack()
	}
}

// topicMatches reports whether an MQTT topic filter matches a topic, with
// '+' for one level and a trailing '#' for any number of levels. Like
// brokers, it does not match topics starting with '$' against a leading
// wildcard.
func topicMatches(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	filterLevels := strings.Split(filter, "/")
	topicLevels := strings.Split(topic, "/")
	for i, level := range filterLevels {
		if level == "#" {
			return true
		}
		if i >= len(topicLevels) {
			return false
		}
		if level != "+" && level != topicLevels[i] {
			return false
		}
	}
	return len(filterLevels) == len(topicLevels)
}

// routeOf strips $share/<group>/ as paho's router does.
func routeOf(filter string) string {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if _, route, ok := strings.Cut(rest, "/"); ok {
			return route
		}
	}
	return filter
}
