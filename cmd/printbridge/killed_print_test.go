package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// stateWatcher keeps the last retained state snapshot of one printer.
type stateWatcher struct {
	mu   sync.Mutex
	last map[string]any
}

func watchState(t *testing.T, url, printer string) *stateWatcher {
	t.Helper()
	w := &stateWatcher{}
	bus, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "state-watcher"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	err = bus.SubscribeRaw(context.Background(), bridge.Topics{}.MQTTState(printer), func(m mqtt.RawMessage) {
		var snap map[string]any
		if json.Unmarshal(m.Payload, &snap) != nil {
			return
		}
		w.mu.Lock()
		w.last = snap
		w.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *stateWatcher) snapshot() map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func (w *stateWatcher) stateID() string {
	id, _ := w.snapshot()["state_id"].(string)
	return id
}

// startKillRig starts the virtual printer and the edge as processes
// against a Mosquitto process and waits for Connected.
func startKillRig(t *testing.T) *faultRig {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and runs real processes")
	}
	bin := buildPrintbridge(t)
	dir := t.TempDir()
	broker := startFaultMosquitto(t, dir)
	scale := faultScale{name: "kill", printerSpeed: 4, phaseDeadline: 2 * time.Minute}
	r := newFaultRig(t, bin, broker, dir, scale, 1)
	r.vp.Start()
	r.edge.Start()
	r.waitUntil("Connected", time.Minute, func() bool { return r.col.countSince(bridge.EventConnected, 0) > 0 })
	return r
}

// TestEdgeSIGKILLMidPrintFailsJob kills the edge process with SIGKILL
// while a file prints: the restarted edge fires one PrintFailed for that
// print, after its Startup and before it connects to the printer.
func TestEdgeSIGKILLMidPrintFailsJob(t *testing.T) {
	r := startKillRig(t)
	mark := r.startJob()
	r.waitPrinting(mark)
	r.edge.Kill()
	record := filepath.Join(r.dir, "edge-data", r.printer+".job.json")
	if _, err := os.Stat(record); err != nil {
		t.Fatalf("running print record after the kill: %v", err)
	}

	before := r.col.arrivals()
	r.edge.Start()
	r.waitUntil("PrintFailed and Connected after the restart", time.Minute, func() bool {
		return r.col.countSince(bridge.EventPrintFailed, mark) > 0 && r.col.countSince(bridge.EventConnected, before) > 0
	})

	var startup, failed, connected *bridge.Envelope
	failedSeqs := map[uint64]bool{}
	for _, env := range r.col.snapshot() {
		switch env.Event {
		case bridge.EventStartup:
			if startup == nil || env.Seq > startup.Seq {
				startup = env
			}
		case bridge.EventPrintFailed:
			failed = env
			failedSeqs[env.Seq] = true
		case bridge.EventPrintDone:
			t.Errorf("PrintDone seq %d for the killed print", env.Seq)
		}
	}
	for _, env := range r.col.snapshot() {
		if env.Event == bridge.EventConnected && env.Seq > startup.Seq && (connected == nil || env.Seq < connected.Seq) {
			connected = env
		}
	}
	if len(failedSeqs) != 1 {
		t.Fatalf("PrintFailed seqs = %v, want exactly one", failedSeqs)
	}
	if failed.Seq < startup.Seq {
		t.Errorf("PrintFailed seq %d comes before the restarted edge's Startup seq %d", failed.Seq, startup.Seq)
	}
	if connected == nil || failed.Seq > connected.Seq {
		t.Errorf("PrintFailed seq %d is not before the restarted edge's Connected %+v", failed.Seq, connected)
	}
	for key, want := range map[string]any{"name": faultFile, "path": faultFile, "origin": "local", "reason": "error"} {
		if got, _ := failed.Payload.Get(key); got != want {
			t.Errorf("PrintFailed %s = %v, want %v", key, got, want)
		}
	}
	if size, _ := failed.Payload.Get("size"); size == nil {
		t.Errorf("PrintFailed has no size")
	}
	if elapsed, _ := failed.Payload.Get("time"); elapsed == nil {
		t.Errorf("PrintFailed time is null, want the time up to the last recorded progress")
	}
	if progress, _ := failed.Payload.Get("progress"); progress == nil {
		t.Errorf("PrintFailed has no progress")
	}

	r.waitUntil("the record removed", 10*time.Second, func() bool {
		_, err := os.Stat(record)
		return os.IsNotExist(err)
	})
	if log := r.edge.Log(); !strings.Contains(log, "the previous run stopped during a print") || !strings.Contains(log, "printer="+r.printer) {
		t.Errorf("edge log does not report the interrupted print with the printer id")
	}

	// The printer is usable: a new print runs to its end.
	mark = r.startJob()
	r.waitUntil("PrintDone of the next print", r.scale.phaseDeadline, func() bool { return r.done(mark) })
}
