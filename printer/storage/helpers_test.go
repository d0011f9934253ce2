package storage

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

const realGcode = "../../testdata/gcode/prusaslicer-2.8.1_mk4s_mini-cube.gcode"

// recorder collects events and checks each payload against OctoPrint's
// catalogue as it arrives.
type recorder struct {
	t      testing.TB
	mu     sync.Mutex
	events []event
	// inEmit counts concurrent calls, which must never overlap.
	inEmit int
}

func newRecorder(t testing.TB) *recorder { return &recorder{t: t} }

func (r *recorder) emit(name string, payload bridge.Payload) {
	r.mu.Lock()
	r.inEmit++
	overlap := r.inEmit > 1
	r.mu.Unlock()
	if overlap {
		r.t.Errorf("Emit called concurrently for %s", name)
	}
	if err := bridge.ValidatePayload(name, payload); err != nil {
		r.t.Errorf("event %s: %v", name, err)
	}
	r.mu.Lock()
	r.events = append(r.events, event{name, payload.Clone()})
	r.inEmit--
	r.mu.Unlock()
}

// take returns the events so far and clears the record.
func (r *recorder) take() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func (r *recorder) snapshot() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// waitFor polls until done accepts the events so far, and fails after a
// deadline.
func (r *recorder) waitFor(t testing.TB, what string, done func([]event) bool) []event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs := r.snapshot()
		if done(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; events so far:\n%s", what, describe(evs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func count(evs []event, name string) int {
	n := 0
	for _, e := range evs {
		if e.name == name {
			n++
		}
	}
	return n
}

func describe(evs []event) string {
	var b strings.Builder
	for _, e := range evs {
		data, _ := e.payload.MarshalJSON()
		if len(data) > 200 {
			data = append(data[:200], "..."...)
		}
		b.WriteString("  " + e.name + " " + string(data) + "\n")
	}
	return b.String()
}

// ev builds an expected event from key, value pairs.
func ev(name string, kv ...any) event {
	p := bridge.Payload{}
	for i := 0; i+1 < len(kv); i += 2 {
		p = append(p, bridge.Field{Key: kv[i].(string), Value: kv[i+1]})
	}
	return event{name, p}
}

func fileEv(name, path, op string) event {
	return ev(name, "storage", "local", "path", path, "name", filepath.Base(path), "type", []any{"machinecode", "gcode"}, "operation", op)
}

func folderEv(name, path string) event {
	return ev(name, "storage", "local", "path", path, "name", filepath.Base(path))
}

func updated() event { return ev(EventUpdatedFiles, "type", "printables") }

// expectEvents compares names and payloads in order. A want payload of
// nil matches any payload of that event.
func expectEvents(t testing.TB, got, want []event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d:\ngot:\n%swant:\n%s", len(got), len(want), describe(got), describe(want))
	}
	for i := range want {
		if got[i].name != want[i].name {
			t.Errorf("event %d = %s, want %s", i, got[i].name, want[i].name)
			continue
		}
		if want[i].payload == nil {
			continue
		}
		g, _ := json.Marshal(got[i].payload)
		w, _ := json.Marshal(want[i].payload)
		if string(g) != string(w) {
			t.Errorf("event %d %s payload\n got %s\nwant %s", i, got[i].name, g, w)
		}
	}
}

// newTestStorage opens a storage on dir that scans only when the test
// calls Scan.
func newTestStorage(t testing.TB, dir string, rec *recorder, mutate ...func(*Config)) *Storage {
	t.Helper()
	cfg := Config{Dir: dir, PollInterval: -1, Emit: rec.emit}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// run starts s.Run and stops it at the end of the test; the returned
// func stops it earlier and waits.
func run(t testing.TB, s *Storage) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func readReal(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(realGcode)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// age sets a file's modification time an hour back, so that a scan
// takes it as settled at once.
func age(t testing.TB, path string) {
	t.Helper()
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, past, past); err != nil {
		t.Fatal(err)
	}
}

func scan(t testing.TB, s *Storage) {
	t.Helper()
	if err := s.Scan(); err != nil {
		t.Fatalf("Scan: %v", err)
	}
}

func paths(entries []Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Path
	}
	return out
}
