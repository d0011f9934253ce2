package main

import (
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// lateEventLog is the warning of an event fired into an edge that has
// stopped.
const lateEventLog = "event fired after the edge stopped; dropped"

// TestEdgeCleanStopSeqContiguous stops an edge process on NATS with
// SIGTERM and starts it again. Closing the NATS connection at the stop
// must not fire ConnectivityChanged into the stopped edge, and the seq of
// the second run must continue right after the first run's Shutdown.
func TestEdgeCleanStopSeqContiguous(t *testing.T) {
	bin := buildPrintbridge(t)
	dir := t.TempDir()
	broker := startFaultNATS(t, dir)
	scale := faultScale{name: "clean-stop", printerSpeed: 4, phaseDeadline: time.Minute}
	r := newFaultRig(t, bin, broker, dir, scale, 1)
	r.vp.Start()

	for run := 1; run <= 2; run++ {
		mark := r.col.arrivals()
		r.edge.Start()
		r.waitUntil("Connected", time.Minute, func() bool { return r.col.countSince(bridge.EventConnected, mark) > 0 })
		if err := r.edge.Stop(); err != nil {
			t.Fatalf("run %d: the edge exited with %v after SIGTERM", run, err)
		}
		r.waitUntil("Shutdown", time.Minute, func() bool { return r.col.countSince(bridge.EventShutdown, mark) > 0 })
	}

	if n := strings.Count(r.edge.Log(), lateEventLog); n != 0 {
		t.Errorf("the edge logged %q %d times over two clean stops", lateEventLog, n)
	}
	events := r.col.snapshot()
	report := analyseDelivery(events)
	if len(report.missing) > 0 {
		t.Errorf("seq gaps across a clean stop and restart: missing %v", report.missing)
	}
	if len(report.reused) > 0 {
		t.Errorf("seqs used by two events: %v", report.reused)
	}
	var shutdowns, startups []uint64
	for seq := uint64(1); seq <= report.maxSeq; seq++ {
		env, ok := report.bySeq[seq]
		if !ok {
			continue
		}
		switch env.Event {
		case bridge.EventShutdown:
			shutdowns = append(shutdowns, seq)
		case bridge.EventStartup:
			startups = append(startups, seq)
		case bridge.EventConnectivityChanged:
			if up, _ := env.Payload.Get("new"); up != true {
				t.Errorf("ConnectivityChanged seq %d has new=%v; a clean stop is no connectivity change", seq, up)
			}
		}
	}
	if len(shutdowns) != 2 || len(startups) != 2 {
		t.Fatalf("Shutdown at seqs %v and Startup at seqs %v, want two of each", shutdowns, startups)
	}
	if startups[1] != shutdowns[0]+1 {
		t.Errorf("the second run's Startup has seq %d, want %d, right after the first run's Shutdown", startups[1], shutdowns[0]+1)
	}
	if shutdowns[1] != report.maxSeq {
		t.Errorf("the second run's Shutdown has seq %d, but seq %d (%s) came after it", shutdowns[1], report.maxSeq, report.bySeq[report.maxSeq].Event)
	}
}
