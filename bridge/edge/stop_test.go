package edge

import (
	"log/slog"
	"testing"

	"github.com/printbridge/printbridge/bridge"
	dto "github.com/prometheus/client_model/go"
)

// droppedStopped returns the events counted as dropped because the edge
// had stopped.
func droppedStopped(t *testing.T, m *Metrics) float64 {
	t.Helper()
	var count dto.Metric
	if err := m.EventsDropped.WithLabelValues("stopped").Write(&count); err != nil {
		t.Fatal(err)
	}
	return count.GetCounter().GetValue()
}

func TestEmitAfterCloseDropsWithoutSeq(t *testing.T) {
	for _, dir := range []string{"", t.TempDir()} {
		envelopes := &envelopeLog{}
		m := NewMetrics(nil)
		e, err := New(Config{PrinterID: "stop1", DataDir: dir, OnEnvelope: envelopes.add}, nil, slog.New(slog.DiscardHandler), m)
		if err != nil {
			t.Fatal(err)
		}
		e.Emit(bridge.EventHome, nil, bridge.Context{})
		if err := e.close(); err != nil {
			t.Fatalf("data dir %q: close: %v", dir, err)
		}
		e.Emit(bridge.EventConnectivityChanged, bridge.Payload{{Key: "old", Value: true}, {Key: "new", Value: false}}, bridge.Context{})

		if got := droppedStopped(t, m); got != 1 {
			t.Errorf("data dir %q: %v events counted as dropped after the stop, want 1", dir, got)
		}
		if names := envelopes.names(); len(names) != 2 {
			t.Errorf("data dir %q: envelopes built %v, want Startup and Home only, because a dropped event gets no seq", dir, names)
		}
		if dir == "" {
			continue
		}
		restarted := &envelopeLog{}
		next, err := New(Config{PrinterID: "stop1", DataDir: dir, OnEnvelope: restarted.add}, nil, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := restarted.events[0].Seq; got != 3 {
			t.Errorf("Startup after the restart has seq %d, want 3, right after Home", got)
		}
		if err := next.close(); err != nil {
			t.Fatal(err)
		}
	}
}
