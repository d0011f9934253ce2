package mqtt_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// TestOutOfOrderHandlersKeepOrder acknowledges events in another order
// than they arrived, as the worker does: an event without hooks at once,
// one with hooks after they ran. Mosquitto 2.0.11 then sent newly
// published events before older queued ones, unless the client sends its
// PUBACKs in arrival order as MQTT 3.1.1 requires.
func TestOutOfOrderHandlersKeepOrder(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	worker := newBus(t, mqtt.Config{URL: url})
	edge := newBus(t, mqtt.Config{URL: url})
	ctx := context.Background()

	var wg sync.WaitGroup
	later := make(chan bridge.AckFunc, 4096)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ack := range later {
			time.Sleep(time.Millisecond)
			ack(true)
		}
	}()
	t.Cleanup(func() {
		close(later)
		wg.Wait()
	})
	got := brokertest.NewCollector[bridge.EventMessage]()
	arrived := 0
	if err := worker.SubscribeEvents(ctx, "p1", "", func(m bridge.EventMessage) {
		got.Add(m)
		ack := m.Defer()
		arrived++
		if arrived%3 == 0 {
			ack(true)
			return
		}
		later <- ack
	}); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}

	const n = 600
	for first := uint64(1); first <= n; first += 50 {
		batch := make([]bridge.OutgoingEvent, 0, 50)
		for seq := first; seq < first+50; seq++ {
			env, data := event(t, "p1", seq)
			batch = append(batch, bridge.OutgoingEvent{Env: env, Data: data})
		}
		if done, err := edge.PublishEvents(ctx, batch); err != nil {
			t.Fatalf("PublishEvents from seq %d: %d published: %v", first, done, err)
		}
	}
	msgs := got.WaitFor(t, "all events", atLeast[bridge.EventMessage](n))
	seqs := decodeSeqs(t, msgs)
	var late []uint64
	var highest uint64
	for _, seq := range seqs {
		if seq < highest {
			late = append(late, seq)
		}
		highest = max(highest, seq)
	}
	if len(late) > 0 || len(seqs) != n {
		t.Errorf("%d events arrived, want %d; these arrived after a later one: %v", len(seqs), n, late)
	}
}

// TestReplyPassesHeldEvents holds the PUBACK of the first event until a
// reply arrives, as a G-code hook does, while more events than the
// broker's in-flight window follow it. The reply still arrives, because
// replies come on a connection of their own.
func TestReplyPassesHeldEvents(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	worker := newBus(t, mqtt.Config{URL: url})
	edge := newBus(t, mqtt.Config{URL: url})
	ctx := context.Background()

	firstAck := make(chan bridge.AckFunc, 1)
	events := brokertest.NewCollector[bridge.EventMessage]()
	if err := worker.SubscribeEvents(ctx, "p1", "", func(m bridge.EventMessage) {
		ack := m.Defer()
		if len(events.Snapshot()) == 0 {
			firstAck <- ack
		} else {
			ack(true)
		}
		events.Add(m)
	}); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	replies := brokertest.NewCollector[string]()
	if err := worker.SubscribeReplies(ctx, "p1", func(data []byte) { replies.Add(string(data)) }); err != nil {
		t.Fatalf("SubscribeReplies: %v", err)
	}

	// Mosquitto's default max_inflight_messages is 20.
	const n = 40
	for seq := uint64(1); seq <= n; seq++ {
		env, data := event(t, "p1", seq)
		if err := edge.PublishEvent(ctx, env, data); err != nil {
			t.Fatalf("PublishEvent seq %d: %v", seq, err)
		}
	}
	if err := edge.PublishReply(ctx, "p1", "", []byte(`{"id":"g1","status":"ok"}`)); err != nil {
		t.Fatalf("PublishReply: %v", err)
	}
	replies.WaitFor(t, "the reply while the first event is unacknowledged", atLeast[string](1))

	(<-firstAck)(true)
	msgs := events.WaitFor(t, "every event after the first PUBACK", atLeast[bridge.EventMessage](n))
	if len(msgs) != n {
		t.Errorf("received %d events, want %d", len(msgs), n)
	}
}
