package natsbus_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// publishUntilTaken publishes events from..to, retrying each until the
// stream takes it.
func publishUntilTaken(t *testing.T, b bridge.Bus, printer string, from, to uint64) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		env, data := event(t, printer, seq)
		pollUntil(t, "publish event", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return b.PublishEvent(ctx, env, data)
		})
	}
}

// edgeAndWorker connects an edge's bus and a worker's bus with cfg. The
// worker consumes the events of printer p1 in group "workers" into got.
func edgeAndWorker(t *testing.T, cfg natsbus.Config) (edge *natsbus.Bus, got *brokertest.Collector[bridge.EventMessage]) {
	t.Helper()
	edge = newBus(t, cfg)
	worker := newBus(t, cfg)
	got = brokertest.NewCollector[bridge.EventMessage]()
	if err := worker.SubscribeEvents(context.Background(), "p1", "workers", got.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	return edge, got
}

// checkBucketValue polls the state bucket until key holds want.
func checkBucketValue(t *testing.T, b *natsbus.Bus, key, want string) {
	t.Helper()
	kv, err := b.KeyValue()
	if err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "state bucket key "+key, func() error {
		entry, err := kv.Get(context.Background(), key)
		if err != nil {
			return err
		}
		if string(entry.Value()) != want {
			t.Fatalf("%s[%q] = %s, want %s", natsbus.StateBucket, key, entry.Value(), want)
		}
		return nil
	})
}

// A server that restarts without its store (a container without a volume)
// has lost the stream, the state bucket and the consumers. The edge's
// publishes failed with "no response from stream" until it restarted, and
// the worker waited on a consumer that no longer existed.
func TestJetStreamRestoredAfterServerLostStore(t *testing.T) {
	port := freePort(t)
	srv := startServer(t, natsbus.EmbeddedOptions{Port: port, StoreDir: t.TempDir()})
	cfg := natsbus.Config{URL: srv.NATSURL(), JetStream: true}
	edge, got := edgeAndWorker(t, cfg)
	ctx := context.Background()
	publishEvents(t, edge, "p1", 1, 3)
	got.WaitFor(t, "events before the restart", atLeast[bridge.EventMessage](3))

	srv.Shutdown()
	startServer(t, natsbus.EmbeddedOptions{Port: port, StoreDir: t.TempDir()})
	publishUntilTaken(t, edge, "p1", 4, 6)
	got.WaitFor(t, "events after the restart", atLeast[bridge.EventMessage](6))
	ackedUpTo(t, edge, "workers_p1", 3)
	if got := seqs(t, got.Snapshot()); !slices.Equal(got, seqRange(1, 6)) {
		t.Errorf("worker got seqs %v, want 1..6 once each", got)
	}

	if err := edge.PublishAvailability(ctx, "p1", true); err != nil {
		t.Fatalf("PublishAvailability after the restart: %v", err)
	}
	checkBucketValue(t, edge, "p1.availability", "online")
}

// A stream deleted while the connection stays up (`nats stream rm`) is
// created again after the first publish that no stream took. No worker
// runs here, because a worker's consumer error would restore the stream
// before the edge's publish.
func TestJetStreamStreamDeletedWhileConnected(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL(), JetStream: true})
	ctx := context.Background()
	publishEvents(t, edge, "p1", 1, 2)

	js := brokertest.JetStreamClient(t, srv.NATSURL())
	if err := js.DeleteStream(ctx, natsbus.DefaultStream); err != nil {
		t.Fatalf("delete stream: %v", err)
	}
	if err := js.DeleteKeyValue(ctx, natsbus.StateBucket); err != nil {
		t.Fatalf("delete bucket: %v", err)
	}

	env, data := event(t, "p1", 3)
	if err := edge.PublishEvent(ctx, env, data); err == nil {
		t.Fatal("PublishEvent to a deleted stream succeeded, want an error")
	}
	publishUntilTaken(t, edge, "p1", 3, 4)
	stream, err := js.Stream(ctx, natsbus.DefaultStream)
	if err != nil {
		t.Fatalf("stream after the restore: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("restored stream holds %d events, want 2 (seq 3 and 4)", info.State.Msgs)
	}
	pollUntil(t, "state after the delete", func() error {
		return edge.PublishState(ctx, "p1", []byte(`{"state":"PRINTING"}`))
	})
	checkBucketValue(t, edge, "p1", `{"state":"PRINTING"}`)
}

// A consumer deleted on its own (`nats consumer rm`) is created again
// after the last event that the worker got, so the worker does not run
// the stream's earlier events again.
func TestJetStreamConsumerDeletedResumes(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	cfg := natsbus.Config{URL: srv.NATSURL(), JetStream: true}
	edge, got := edgeAndWorker(t, cfg)
	ctx := context.Background()
	publishEvents(t, edge, "p1", 1, 3)
	got.WaitFor(t, "events before the delete", atLeast[bridge.EventMessage](3))
	ackedUpTo(t, edge, "workers_p1", 3)

	stream, err := edge.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteConsumer(ctx, "workers_p1"); err != nil {
		t.Fatalf("delete consumer: %v", err)
	}
	publishEvents(t, edge, "p1", 4, 5)
	got.WaitFor(t, "events after the delete", atLeast[bridge.EventMessage](5))
	ackedUpTo(t, edge, "workers_p1", 5)

	// Deletes that follow each other within the restore's pauses are
	// each restored too.
	for range 2 {
		if err := stream.DeleteConsumer(ctx, "workers_p1"); err != nil {
			t.Fatalf("delete consumer again: %v", err)
		}
		pollUntil(t, "consumer restored", func() error {
			_, err := stream.Consumer(ctx, "workers_p1")
			return err
		})
	}
	publishEvents(t, edge, "p1", 6, 7)
	got.WaitFor(t, "events after the deletes", atLeast[bridge.EventMessage](7))
	ackedUpTo(t, edge, "workers_p1", 7)
	time.Sleep(200 * time.Millisecond)
	if got := seqs(t, got.Snapshot()); !slices.Equal(got, seqRange(1, 7)) {
		t.Errorf("worker got seqs %v, want 1..7 once each", got)
	}
}

// TestJetStreamBucketMadeAgainByOther deletes the state bucket and makes
// it again from another client while the edge's bus is idle. The bus's
// periodic check finds the new bucket and calls OnRestored, so the edge
// publishes its keys into it.
func TestJetStreamBucketMadeAgainByOther(t *testing.T) {
	natsbus.SetJetStreamCheckEvery(t, 200*time.Millisecond)
	srv := startServer(t, natsbus.EmbeddedOptions{})
	restored := make(chan struct{}, 10)
	newBus(t, natsbus.Config{URL: srv.NATSURL(), JetStream: true, OnRestored: func() { restored <- struct{}{} }})

	js := brokertest.JetStreamClient(t, srv.NATSURL())
	ctx := context.Background()
	// Deleted and made again at once, between two of the bus's checks,
	// as `printbridge publish --jetstream` or a worker would.
	if err := js.DeleteKeyValue(ctx, natsbus.StateBucket); err != nil {
		t.Fatalf("delete the state bucket: %v", err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: natsbus.StateBucket, History: 1}); err != nil {
		t.Fatalf("make the state bucket again: %v", err)
	}
	select {
	case <-restored:
	case <-time.After(waitTimeout):
		t.Fatal("OnRestored was not called for the bucket that another client made again")
	}
}
