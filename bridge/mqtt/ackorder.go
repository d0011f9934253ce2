package mqtt

import (
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// ackOrder sends the PUBACKs of one connection in the order its QoS 1
// PUBLISH packets arrived, as MQTT 3.1.1 requires (section 4.6,
// MQTT-4.6.0-2). Handlers finish out of order: the worker acknowledges an
// event without hooks at once and an event with hooks after they ran.
// Mosquitto 2.0.11 (Debian 12) miscounts its in-flight window when
// PUBACKs come out of order. It then sends a newly published message
// before older ones that it still queues for the client, so a subscriber
// receives a printer's events out of order
// (TestOutOfOrderHandlersKeepOrder shows it).
//
// A PUBACK whose message came on an earlier connection is not sent: paho
// drops it anyway, and the broker sends that message again, with DUP set,
// on the new connection of a persistent session.
type ackOrder struct {
	mu sync.Mutex
	// conn numbers the connection attempts. A slot of an earlier attempt
	// is stale.
	conn  uint64
	slots []*ackSlot // in arrival order, oldest first
	// flushing is set while one goroutine sends the PUBACKs at the head
	// of slots, so that two releases cannot interleave theirs.
	flushing bool
}

type ackState uint8

const (
	ackPending ackState = iota
	ackSend
	ackSkip
)

type ackSlot struct {
	conn  uint64
	state ackState
	msg   paho.Message
}

// newConnection starts the slots of the next connection attempt. paho
// calls the attempt handler after the previous connection's router has
// delivered its last message, so every message taken later belongs to the
// new connection.
func (o *ackOrder) newConnection() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.conn++
	clear(o.slots)
	o.slots = o.slots[:0]
}

// take gives msg its place in the PUBACK order. It runs on paho's router
// goroutine, which delivers the messages in arrival order.
func (o *ackOrder) take(msg paho.Message) *orderedMessage {
	o.mu.Lock()
	defer o.mu.Unlock()
	slot := &ackSlot{conn: o.conn, msg: msg}
	o.slots = append(o.slots, slot)
	return &orderedMessage{Message: msg, order: o, slot: slot}
}

// release marks a slot acknowledged (send) or given up (not send), and
// sends the PUBACKs that are due. A message given up keeps the broker's
// copy: MQTT 3.1.1 has no negative acknowledgement, and the broker sends
// the message again on the next connection of a persistent session. Its
// slot still stops holding back the PUBACKs after it, or the broker's
// in-flight window would fill and stop all delivery.
func (o *ackOrder) release(slot *ackSlot, send bool) {
	o.mu.Lock()
	if slot.conn != o.conn || slot.state != ackPending {
		o.mu.Unlock()
		return
	}
	slot.state = ackSkip
	if send {
		slot.state = ackSend
	}
	if o.flushing {
		// The flushing goroutine sends this PUBACK when it reaches the slot.
		o.mu.Unlock()
		return
	}
	o.flushing = true
	for {
		var due []paho.Message
		for len(o.slots) > 0 && o.slots[0].state != ackPending {
			if o.slots[0].state == ackSend {
				due = append(due, o.slots[0].msg)
			}
			o.slots[0] = nil
			o.slots = o.slots[1:]
		}
		if len(due) == 0 {
			o.flushing = false
			o.mu.Unlock()
			return
		}
		// paho's Ack may wait for its sender goroutine, which must not
		// hold up take on the router goroutine.
		o.mu.Unlock()
		for _, msg := range due {
			msg.Ack()
		}
		o.mu.Lock()
	}
}

// waiting returns the number of messages whose PUBACK is not sent yet.
func (o *ackOrder) waiting() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.slots)
}

// orderedMessage is a paho message whose Ack goes through ackOrder.
type orderedMessage struct {
	paho.Message
	order *ackOrder
	slot  *ackSlot
}

// Ack sends the PUBACK once every message that arrived before this one
// on the same connection is acknowledged or given up.
func (m *orderedMessage) Ack() { m.order.release(m.slot, true) }

// giveUp lets the PUBACKs after this message go without sending its own.
func (m *orderedMessage) giveUp() { m.order.release(m.slot, false) }

// giveUp releases msg's place in the PUBACK order without acknowledging it.
func giveUp(msg paho.Message) {
	if m, ok := msg.(*orderedMessage); ok {
		m.giveUp()
	}
}
