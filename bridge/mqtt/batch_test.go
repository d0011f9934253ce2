package mqtt_test

import (
	"context"
	"testing"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

func TestBatchArrivesInOrder(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	worker := newBus(t, mqtt.Config{URL: url})
	edge := newBus(t, mqtt.Config{URL: url})
	ctx := context.Background()

	got := brokertest.NewCollector[bridge.EventMessage]()
	if err := worker.SubscribeEvents(ctx, "", "", got.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	// 250 is not a multiple of the in-flight window, so the last window
	// is partial.
	const n, batchSize = 500, 250
	for from := uint64(1); from <= n; from += batchSize {
		var batch []bridge.OutgoingEvent
		for seq := from; seq < from+batchSize; seq++ {
			env, data := event(t, "p1", seq)
			batch = append(batch, bridge.OutgoingEvent{Env: env, Data: data})
		}
		taken, err := edge.PublishEvents(ctx, batch)
		if err != nil {
			t.Fatalf("PublishEvents from seq %d: %v", from, err)
		}
		if taken != batchSize {
			t.Fatalf("PublishEvents from seq %d took %d events, want %d", from, taken, batchSize)
		}
	}
	msgs := got.WaitFor(t, "all events", atLeast[bridge.EventMessage](n))
	if len(msgs) != n {
		t.Errorf("received %d events, want %d", len(msgs), n)
	}
	for i, seq := range decodeSeqs(t, msgs) {
		if seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d, want %d: order not kept", i, seq, i+1)
		}
	}
}
