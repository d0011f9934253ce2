package natsbus_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

func batchOf(t *testing.T, printer string, from, to uint64) []bridge.OutgoingEvent {
	t.Helper()
	var out []bridge.OutgoingEvent
	for seq := from; seq <= to; seq++ {
		env, data := event(t, printer, seq)
		out = append(out, bridge.OutgoingEvent{Env: env, Data: data})
	}
	return out
}

func TestCoreBatchArrivesInOrder(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{NoJetStream: true})
	worker := newBus(t, natsbus.Config{URL: srv.NATSURL()})
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL()})

	got := brokertest.NewCollector[bridge.EventMessage]()
	if err := worker.SubscribeEvents(context.Background(), "", "", got.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	const n = 1000
	for from := uint64(1); from <= n; from += 250 {
		taken, err := edge.PublishEvents(context.Background(), batchOf(t, "p1", from, from+249))
		if err != nil {
			t.Fatalf("PublishEvents from seq %d: %v", from, err)
		}
		if taken != 250 {
			t.Fatalf("PublishEvents from seq %d took %d events, want 250", from, taken)
		}
	}
	msgs := got.WaitFor(t, "all events", atLeast[bridge.EventMessage](n))
	if !slices.Equal(seqs(t, msgs), seqRange(1, n)) {
		t.Errorf("events arrived out of order or twice")
	}
}

func TestJetStreamBatchStoresEveryEvent(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL(), JetStream: true})
	ctx := context.Background()

	batch := batchOf(t, "p1", 1, 300)
	// The first event again at the end: the stream's duplicate window
	// drops it, and it still counts as taken.
	batch = append(batch, batch[0])
	taken, err := edge.PublishEvents(ctx, batch)
	if err != nil {
		t.Fatalf("PublishEvents: %v", err)
	}
	if taken != len(batch) {
		t.Errorf("PublishEvents took %d events, want %d", taken, len(batch))
	}
	stream, err := edge.Stream(ctx)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if info.State.Msgs != 300 {
		t.Errorf("stream holds %d messages, want 300", info.State.Msgs)
	}
	for i, seq := range []uint64{1, 150, 300} {
		msg, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get stream message %d: %v", seq, err)
		}
		env, err := bridge.DecodeEnvelope(msg.Data)
		if err != nil {
			t.Fatalf("decode stream message %d: %v", seq, err)
		}
		if want := []uint64{1, 150, 300}[i]; env.Seq != want {
			t.Errorf("stream message %d has event seq %d, want %d", seq, env.Seq, want)
		}
	}
}

func TestBatchAfterCloseTakesNothing(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{NoJetStream: true})
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL()})
	if err := edge.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	taken, err := edge.PublishEvents(context.Background(), batchOf(t, "p1", 1, 3))
	if !errors.Is(err, natsbus.ErrClosed) {
		t.Errorf("PublishEvents after Close: error %v, want ErrClosed", err)
	}
	if taken != 0 {
		t.Errorf("PublishEvents after Close took %d events, want 0", taken)
	}
}
