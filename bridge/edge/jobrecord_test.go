package edge

import (
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	dto "github.com/prometheus/client_model/go"
)

type envelopeLog struct {
	mu     sync.Mutex
	events []*bridge.Envelope
}

func (l *envelopeLog) add(env *bridge.Envelope) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, env)
}

func (l *envelopeLog) names() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.events))
	for _, e := range l.events {
		out = append(out, e.Event)
	}
	return out
}

func newRecordEdge(t *testing.T, dir string, log *envelopeLog) (*Edge, *Metrics) {
	t.Helper()
	m := NewMetrics(nil)
	e, err := New(Config{PrinterID: "rec1", DataDir: dir, OnEnvelope: log.add}, nil, slog.New(slog.DiscardHandler), m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.close() })
	return e, m
}

func TestJobRecordClosesInterruptedPrint(t *testing.T) {
	dir := t.TempDir()
	first := &envelopeLog{}
	e, _ := newRecordEdge(t, dir, first)
	started := bridge.Payload{{Key: "name", Value: "cube.gcode"}, {Key: "path", Value: "parts/cube.gcode"},
		{Key: "origin", Value: "local"}, {Key: "size", Value: int64(85818)}}
	e.Emit(bridge.EventPrintStarted, started, bridge.Context{State: "STARTING"})
	progress := 12.5
	e.Emit(bridge.EventZChange, bridge.Payload{{Key: "new", Value: 0.4}}, bridge.Context{Progress: &progress, State: "PRINTING"})
	record := filepath.Join(dir, "rec1.job.json")
	if _, err := os.Stat(record); err != nil {
		t.Fatalf("running print record after PrintStarted: %v", err)
	}
	// The first edge is not closed, as after a kill.
	second := &envelopeLog{}
	newRecordEdge(t, dir, second)
	names := second.names()
	if len(names) < 2 || names[0] != bridge.EventStartup || names[1] != bridge.EventPrintFailed {
		t.Fatalf("events after the restart = %v, want Startup then PrintFailed", names)
	}
	failed := second.events[1]
	for key, want := range map[string]any{"name": "cube.gcode", "path": "parts/cube.gcode", "origin": "local", "size": int64(85818), "reason": "error"} {
		if got, _ := failed.Payload.Get(key); got != want {
			t.Errorf("PrintFailed %s = %v (%T), want %v", key, got, got, want)
		}
	}
	if got, _ := failed.Payload.Get("progress"); got != 0.125 {
		t.Errorf("PrintFailed progress = %v, want 0.125", got)
	}
	if got, ok := failed.Payload.Get("time"); !ok || (got != nil && got.(float64) < 0) {
		t.Errorf("PrintFailed time = %v, want null or a non-negative number", got)
	}
	if msg, _ := failed.Payload.Get("error"); msg == "" || msg == nil {
		t.Errorf("PrintFailed has no error text")
	}
	if failed.Context.File == nil || failed.Context.File.Path != "parts/cube.gcode" {
		t.Errorf("PrintFailed context file = %+v, want parts/cube.gcode", failed.Context.File)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Errorf("running print record after its PrintFailed: %v, want it removed", err)
	}

	// A third start finds nothing to close.
	third := &envelopeLog{}
	newRecordEdge(t, dir, third)
	if names := third.names(); len(names) != 1 {
		t.Errorf("events of a start without a record = %v, want Startup only", names)
	}
}

func TestJobRecordRemovedOnPrintEnd(t *testing.T) {
	for _, end := range []string{bridge.EventPrintDone, bridge.EventPrintFailed} {
		t.Run(end, func(t *testing.T) {
			dir := t.TempDir()
			e, _ := newRecordEdge(t, dir, &envelopeLog{})
			e.Emit(bridge.EventPrintStarted, bridge.Payload{{Key: "path", Value: "a.gcode"}}, bridge.Context{})
			e.Emit(end, bridge.Payload{{Key: "path", Value: "a.gcode"}, {Key: "time", Value: 1.5}}, bridge.Context{})
			if _, err := os.Stat(filepath.Join(dir, "rec1.job.json")); !os.IsNotExist(err) {
				t.Errorf("running print record after %s: %v, want it removed", end, err)
			}
		})
	}
}

func TestJobRecordCorruptIsRemoved(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "rec1.job.json")
	if err := os.WriteFile(record, []byte(`{"path": "cube.gc`), 0o600); err != nil {
		t.Fatal(err)
	}
	log := &envelopeLog{}
	_, m := newRecordEdge(t, dir, log)
	if names := log.names(); len(names) != 1 || names[0] != bridge.EventStartup {
		t.Errorf("events with a corrupt record = %v, want Startup only", names)
	}
	var count dto.Metric
	if err := m.JobRecordErrors.Write(&count); err != nil {
		t.Fatal(err)
	}
	if got := count.GetCounter().GetValue(); got != 1 {
		t.Errorf("printbridge_job_record_errors_total = %v, want 1", got)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Errorf("corrupt record after start: %v, want it removed", err)
	}
}

func TestJobRecordProgressRefresh(t *testing.T) {
	s := newJobRecordStore(t.TempDir(), "rec1")
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.observe(&bridge.Envelope{Event: bridge.EventPrintStarted, Time: start, Payload: bridge.Payload{{Key: "path", Value: "a.gcode"}}}); err != nil {
		t.Fatal(err)
	}
	p := func(v float64) *float64 { return &v }
	steps := []struct {
		after    time.Duration
		progress *float64
		lastSeen time.Duration
	}{
		{time.Second, p(0.5), time.Second},         // first progress
		{2 * time.Second, p(0.9), time.Second},     // same percent, within the interval
		{3 * time.Second, p(1.1), 3 * time.Second}, // next percent
		{4 * time.Second, nil, 3 * time.Second},    // no progress, within the interval
		{14 * time.Second, nil, 14 * time.Second},  // interval passed
	}
	for i, st := range steps {
		env := &bridge.Envelope{Event: bridge.EventZChange, Time: start.Add(st.after), Context: bridge.Context{Progress: st.progress}}
		if err := s.observe(env); err != nil {
			t.Fatal(err)
		}
		r, err := s.load()
		if err != nil {
			t.Fatal(err)
		}
		if got := r.LastSeen.Sub(start); got != st.lastSeen {
			t.Errorf("step %d: last_seen = +%s, want +%s", i, got, st.lastSeen)
		}
	}
}
