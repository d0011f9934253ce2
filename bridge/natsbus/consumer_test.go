package natsbus_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// consumerConfig returns the stored config of the durable consumer.
func consumerConfig(t *testing.T, b *natsbus.Bus, durable string) jetstream.ConsumerConfig {
	t.Helper()
	ctx := context.Background()
	stream, err := b.Stream(ctx)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	consumer, err := stream.Consumer(ctx, durable)
	if err != nil {
		t.Fatalf("consumer %s: %v", durable, err)
	}
	return consumer.CachedInfo().Config
}

func printersOf(msgs []bridge.EventMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Printer
	}
	return out
}

func TestConsumerNameCollisionRejected(t *testing.T) {
	cases := []struct {
		name                       string
		firstGroup, firstPrinter   string
		secondGroup, secondPrinter string
		durable                    string
	}{
		{name: "underscore in printer", firstGroup: "a", firstPrinter: "b_c", secondGroup: "a_b", secondPrinter: "c", durable: "a_b_c"},
		{name: "dot in group", firstGroup: "a.b", firstPrinter: "p1", secondGroup: "a_b", secondPrinter: "p1", durable: "a_b_p1"},
		{name: "all printers", firstGroup: "a.b", secondGroup: "a_b", durable: "a_b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, natsbus.EmbeddedOptions{})
			cfg := natsbus.Config{URL: srv.NATSURL(), JetStream: true}
			edge := newBus(t, cfg)
			first := newBus(t, cfg)
			second := newBus(t, cfg)
			ctx := context.Background()

			got := brokertest.NewCollector[bridge.EventMessage]()
			if err := first.SubscribeEvents(ctx, tc.firstPrinter, tc.firstGroup, got.Add); err != nil {
				t.Fatalf("first SubscribeEvents: %v", err)
			}
			err := second.SubscribeEvents(ctx, tc.secondPrinter, tc.secondGroup, func(bridge.EventMessage) {
				t.Error("the rejected worker got an event")
			})
			if !errors.Is(err, natsbus.ErrConsumerTaken) {
				t.Fatalf("second SubscribeEvents error = %v, want ErrConsumerTaken", err)
			}
			msg := err.Error()
			for _, want := range []string{
				"consumer " + tc.durable + " ",
				`group "` + tc.firstGroup + `"`,
				`group "` + tc.secondGroup + `"`,
				"--group",
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}

			firstToken := tc.firstPrinter
			if firstToken == "" {
				firstToken = "*"
			}
			stored := consumerConfig(t, edge, tc.durable)
			if want := topics.NATSEvent(firstToken, ">"); stored.FilterSubject != want {
				t.Errorf("consumer filter = %q after the rejected worker, want %q", stored.FilterSubject, want)
			}
			if g := stored.Metadata["printbridge.group"]; g != tc.firstGroup {
				t.Errorf("consumer metadata group = %q, want %q", g, tc.firstGroup)
			}

			// The first worker still gets its printer's events, and the
			// events of another printer, sent before them, do not reach
			// it unless it serves all printers.
			own := tc.firstPrinter
			if own == "" {
				own = "p1"
			}
			other := "other-printer"
			publishEvents(t, edge, other, 1, 2)
			publishEvents(t, edge, own, 1, 3)
			want := 3
			if tc.firstPrinter == "" {
				want = 5
			}
			events := got.WaitFor(t, "first worker's events", atLeast[bridge.EventMessage](want))
			ownEvents := 0
			for _, m := range events {
				if m.Printer == own {
					ownEvents++
				}
			}
			if ownEvents != 3 {
				t.Errorf("first worker got %d events of %s, want 3 (printers %v)", ownEvents, own, printersOf(events))
			}
			if tc.firstPrinter != "" && len(events) != 3 {
				t.Errorf("first worker got events of printers %v, want only %s", printersOf(events), own)
			}
		})
	}
}

func TestConsumerSharedBySameGroup(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	cfg := natsbus.Config{URL: srv.NATSURL(), JetStream: true}
	edge := newBus(t, cfg)
	ctx := context.Background()

	got := brokertest.NewCollector[bridge.EventMessage]()
	for i := range 2 {
		worker := newBus(t, cfg)
		if err := worker.SubscribeEvents(ctx, "p1", "farm", got.Add); err != nil {
			t.Fatalf("worker %d SubscribeEvents: %v", i, err)
		}
	}
	publishEvents(t, edge, "p1", 1, 6)
	got.WaitFor(t, "events of both workers", atLeast[bridge.EventMessage](6))
	ackedUpTo(t, edge, "farm_p1", 6)

	sorted := seqs(t, got.Snapshot())
	slices.Sort(sorted)
	if !slices.Equal(sorted, seqRange(1, 6)) {
		t.Errorf("workers got seqs %v, want 1..6 once each", sorted)
	}
	stream, err := edge.Stream(ctx)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if info.State.Consumers != 1 {
		t.Errorf("stream has %d consumers, want the one shared farm_p1", info.State.Consumers)
	}
	stored := consumerConfig(t, edge, "farm_p1")
	if g, p := stored.Metadata["printbridge.group"], stored.Metadata["printbridge.printer"]; g != "farm" || p != "p1" {
		t.Errorf("consumer metadata group, printer = %q, %q, want farm, p1", g, p)
	}
}

// legacyConsumer creates a durable consumer as a printbridge without
// consumer metadata did.
func legacyConsumer(t *testing.T, b *natsbus.Bus, durable, filter string) jetstream.Consumer {
	t.Helper()
	ctx := context.Background()
	stream, err := b.Stream(ctx)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	consumer, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       durable,
		FilterSubject: filter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatalf("create consumer %s: %v", durable, err)
	}
	return consumer
}

func TestConsumerWithoutMetadataAdopted(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	cfg := natsbus.Config{URL: srv.NATSURL(), JetStream: true}
	edge := newBus(t, cfg)
	ctx := context.Background()

	publishEvents(t, edge, "p1", 1, 3)
	legacy := legacyConsumer(t, edge, "workers_p1", topics.NATSEvent("p1", ">"))
	batch, err := legacy.FetchNoWait(2)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	fetched := 0
	for msg := range batch.Messages() {
		if err := msg.DoubleAck(ctx); err != nil {
			t.Fatalf("ack: %v", err)
		}
		fetched++
	}
	if fetched != 2 {
		t.Fatalf("fetched %d events from the old consumer, want 2", fetched)
	}

	got := brokertest.NewCollector[bridge.EventMessage]()
	worker := newBus(t, cfg)
	if err := worker.SubscribeEvents(ctx, "p1", "workers", got.Add); err != nil {
		t.Fatalf("SubscribeEvents on a consumer without metadata: %v", err)
	}
	stored := consumerConfig(t, edge, "workers_p1")
	if g := stored.Metadata["printbridge.group"]; g != "workers" {
		t.Errorf("consumer metadata group = %q, want workers", g)
	}
	if p, ok := stored.Metadata["printbridge.printer"]; !ok || p != "p1" {
		t.Errorf("consumer metadata printer = %q (set: %t), want p1", p, ok)
	}

	got.WaitFor(t, "the event the old consumer left", atLeast[bridge.EventMessage](1))
	ackedUpTo(t, edge, "workers_p1", 3)
	if s := seqs(t, got.Snapshot()); !slices.Equal(s, []uint64{3}) {
		t.Errorf("worker got seqs %v, want 3 after the old consumer acked 1..2", s)
	}
}

func TestConsumerWithoutMetadataOtherFilterRejected(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	cfg := natsbus.Config{URL: srv.NATSURL(), JetStream: true}
	edge := newBus(t, cfg)
	ctx := context.Background()

	otherFilter := topics.NATSEvent("p2", ">")
	legacyConsumer(t, edge, "workers_p1", otherFilter)
	worker := newBus(t, cfg)
	err := worker.SubscribeEvents(ctx, "p1", "workers", func(bridge.EventMessage) {})
	if !errors.Is(err, natsbus.ErrConsumerTaken) {
		t.Fatalf("SubscribeEvents error = %v, want ErrConsumerTaken", err)
	}
	if !strings.Contains(err.Error(), "nats consumer rm "+natsbus.DefaultStream+" workers_p1") {
		t.Errorf("error %q does not say how to delete the consumer", err)
	}
	stored := consumerConfig(t, edge, "workers_p1")
	if stored.FilterSubject != otherFilter {
		t.Errorf("consumer filter = %q after the rejected worker, want %q", stored.FilterSubject, otherFilter)
	}
	if _, ok := stored.Metadata["printbridge.group"]; ok {
		t.Errorf("rejected worker set the consumer metadata %v", stored.Metadata)
	}
}

// TestConsumerPerWorkerWithoutGroup runs two workers without a group,
// each with a WorkerID: each has a consumer of its own and gets every
// event, where a shared consumer would split them.
func TestConsumerPerWorkerWithoutGroup(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	cfg := natsbus.Config{URL: srv.NATSURL(), JetStream: true}
	edge := newBus(t, cfg)
	ctx := context.Background()

	var got []*brokertest.Collector[bridge.EventMessage]
	for _, id := range []string{"a", "b"} {
		c := brokertest.NewCollector[bridge.EventMessage]()
		wcfg := cfg
		wcfg.WorkerID = id
		worker := newBus(t, wcfg)
		if err := worker.SubscribeEvents(ctx, "p1", "", c.Add); err != nil {
			t.Fatalf("worker %s SubscribeEvents: %v", id, err)
		}
		got = append(got, c)
	}
	publishEvents(t, edge, "p1", 1, 4)
	for i, c := range got {
		c.WaitFor(t, "every event", atLeast[bridge.EventMessage](4))
		sorted := seqs(t, c.Snapshot())
		slices.Sort(sorted)
		if !slices.Equal(sorted, seqRange(1, 4)) {
			t.Errorf("worker %d got seqs %v, want 1..4", i, sorted)
		}
	}
	ackedUpTo(t, edge, "printbridge-worker-a_p1", 4)
	ackedUpTo(t, edge, "printbridge-worker-b_p1", 4)
}

// TestConsumerPerWorkerResumesShared checks that the first consumer of
// a worker without a group starts after the last event that the shared
// consumer of an older printbridge acknowledged, and that a restart keeps
// that consumer.
func TestConsumerPerWorkerResumesShared(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	cfg := natsbus.Config{URL: srv.NATSURL(), JetStream: true}
	edge := newBus(t, cfg)
	ctx := context.Background()

	old := brokertest.NewCollector[bridge.EventMessage]()
	oldWorker := newBus(t, cfg)
	if err := oldWorker.SubscribeEvents(ctx, "p1", "", old.Add); err != nil {
		t.Fatalf("shared SubscribeEvents: %v", err)
	}
	publishEvents(t, edge, "p1", 1, 3)
	old.WaitFor(t, "events of the shared consumer", atLeast[bridge.EventMessage](3))
	ackedUpTo(t, edge, natsbus.DefaultDurable+"_p1", 3)
	if err := oldWorker.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	publishEvents(t, edge, "p1", 4, 5)

	wcfg := cfg
	wcfg.WorkerID = "a"
	for run := range 2 {
		c := brokertest.NewCollector[bridge.EventMessage]()
		worker := newBus(t, wcfg)
		if err := worker.SubscribeEvents(ctx, "p1", "", c.Add); err != nil {
			t.Fatalf("run %d SubscribeEvents: %v", run, err)
		}
		if run == 0 {
			c.WaitFor(t, "events after the shared ack floor", atLeast[bridge.EventMessage](2))
			ackedUpTo(t, edge, "printbridge-worker-a_p1", 5)
			if s := seqs(t, c.Snapshot()); !slices.Equal(s, seqRange(4, 5)) {
				t.Errorf("new consumer got seqs %v, want 4..5", s)
			}
		} else {
			publishEvents(t, edge, "p1", 6, 6)
			c.WaitFor(t, "the event after the restart", atLeast[bridge.EventMessage](1))
			if s := seqs(t, c.Snapshot()); !slices.Equal(s, seqRange(6, 6)) {
				t.Errorf("restarted consumer got seqs %v, want 6", s)
			}
		}
		if err := worker.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
}

// TestConsumerWithoutMetadataWarns subscribes a group on the machine's
// nats-server. Before 2.10 it drops the consumer's metadata, so the check
// that rejects two groups with one consumer name (a.b and a_b) cannot
// work, and the worker must log a warning. From 2.10 on the metadata is
// kept and nothing is logged.
func TestConsumerWithoutMetadataWarns(t *testing.T) {
	url, version := brokertest.StartNATSProcess(t)
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	worker, err := natsbus.New(ctx, natsbus.Config{URL: url, JetStream: true}, log)
	if err != nil {
		t.Fatalf("natsbus.New on nats-server %s: %v", version, err)
	}
	defer worker.Close()
	for range 2 {
		if err := worker.SubscribeEvents(ctx, "q1", "a.b", func(bridge.EventMessage) {}); err != nil {
			t.Fatalf("SubscribeEvents: %v", err)
		}
	}

	metadataKept := consumerConfig(t, worker, "a_b_q1").Metadata["printbridge.group"] == "a.b"
	warnings := strings.Count(logs.String(), "keeps no JetStream consumer metadata")
	oldServer := versionBefore(version, 2, 10)
	if metadataKept == oldServer {
		t.Errorf("nats-server %s kept the consumer metadata: %v, want %v", version, metadataKept, !oldServer)
	}
	if want := map[bool]int{true: 1, false: 0}[oldServer]; warnings != want {
		t.Errorf("nats-server %s: %d warnings about consumer metadata, want %d:\n%s", version, warnings, want, logs.String())
	}
	if oldServer && !strings.Contains(logs.String(), "server_version="+version) {
		t.Errorf("the warning does not name the server version %s:\n%s", version, logs.String())
	}
}

// versionBefore reports whether version ("2.9.10") is before
// major.minor.
func versionBefore(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	gotMajor, _ := strconv.Atoi(parts[0])
	gotMinor, _ := strconv.Atoi(parts[1])
	return gotMajor < major || gotMajor == major && gotMinor < minor
}
