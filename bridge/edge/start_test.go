package edge

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	dto "github.com/prometheus/client_model/go"
)

func TestStartFiresStartupBeforeHeldEvents(t *testing.T) {
	envelopes := &envelopeLog{}
	e, err := New(Config{PrinterID: "start1", DataDir: t.TempDir(), OnEnvelope: envelopes.add, WaitForStart: true},
		nil, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Emit(bridge.EventHome, nil, bridge.Context{})
	if names := envelopes.names(); len(names) != 0 {
		t.Errorf("envelopes built before Start: %v, want none", names)
	}
	e.Start()
	e.Start()
	if names, want := envelopes.names(), []string{bridge.EventStartup, bridge.EventHome}; !slices.Equal(names, want) {
		t.Errorf("envelopes after Start: %v, want %v", names, want)
	}
	for i, env := range envelopes.events {
		if want := uint64(i + 1); env.Seq != want {
			t.Errorf("%s has seq %d, want %d", env.Event, env.Seq, want)
		}
	}
	if err := e.close(); err != nil {
		t.Fatal(err)
	}
}

func TestRunWithoutStartLeavesNoEvents(t *testing.T) {
	dir := t.TempDir()
	m := NewMetrics(nil)
	envelopes := &envelopeLog{}
	e, err := New(Config{PrinterID: "start2", DataDir: dir, OnEnvelope: envelopes.add, WaitForStart: true},
		nil, slog.New(slog.DiscardHandler), m)
	if err != nil {
		t.Fatal(err)
	}
	e.Attach(printer.New(printer.Config{Port: "/nonexistent/start2"}, slog.New(slog.DiscardHandler), e.Emit, printer.Metrics{}))
	e.Emit(bridge.EventHome, nil, bridge.Context{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if names := envelopes.names(); len(names) != 0 {
		t.Errorf("envelopes built by a run that never started: %v, want none", names)
	}
	var dropped dto.Metric
	if err := m.EventsDropped.WithLabelValues("not_started").Write(&dropped); err != nil {
		t.Fatal(err)
	}
	if got := dropped.GetCounter().GetValue(); got != 1 {
		t.Errorf("%v events counted as dropped before the start, want 1", got)
	}

	restarted := &envelopeLog{}
	next, err := New(Config{PrinterID: "start2", DataDir: dir, OnEnvelope: restarted.add}, nil, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer next.close()
	if got := next.outbox.Len(); got != 1 {
		t.Errorf("outbox holds %d events after the next start, want 1 (its Startup)", got)
	}
	if got := restarted.events[0].Seq; got != 1 {
		t.Errorf("Startup of the next start has seq %d, want 1", got)
	}
}
