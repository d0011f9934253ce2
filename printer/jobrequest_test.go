package printer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

func recordDone(results chan<- error) printer.DoneFunc {
	return func(_ []string, err error) { results <- err }
}

func TestPauseOvertakenByCancelFails(t *testing.T) {
	// The G4 dwell of afterPrintPaused holds the pause in PAUSING after
	// PrintPaused fired, so the cancel arrives before the pause's last
	// marker.
	dir := writeScripts(t, map[string]string{printer.ScriptAfterPrintPaused: "G4 S5\n"})
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 1
	r := startRig(t, vcfg, printer.Config{Settings: printer.Settings{ScriptsDir: dir}})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, testFile)
	r.waitState("PRINTING", 10*time.Second)

	paused := make(chan error, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.p.Job(ctx, bridge.ActionPause, "", recordDone(paused)); err != nil {
		t.Fatalf("pause: %v", err)
	}
	waitFor(t, "PrintPaused", 60*time.Second, func() bool { return r.rec.count(bridge.EventPrintPaused) == 1 })
	if state := r.p.Snapshot().State; state != "PAUSING" {
		t.Fatalf("state after PrintPaused = %s, want PAUSING while afterPrintPaused runs", state)
	}
	cancelled := make(chan error, 2)
	cancelCtx, cancelCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelCancel()
	if err := r.p.Job(cancelCtx, bridge.ActionCancel, "", recordDone(cancelled)); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	r.waitState("OPERATIONAL", 60*time.Second)

	select {
	case err := <-paused:
		if err == nil {
			t.Error("the pause overtaken by the cancel finished as done, want failed")
		} else if !strings.Contains(err.Error(), "print cancelled before the pause completed") {
			t.Errorf("pause failed with %q, want it to name the cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pause overtaken by the cancel got no final result")
	}
	select {
	case err := <-cancelled:
		if err != nil {
			t.Errorf("cancel failed with %v, want done", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancel got no final result")
	}
	// Each request ends once: no second result is waiting.
	if n := len(paused); n != 0 {
		t.Errorf("the pause got %d more final results", n)
	}
	if n := len(cancelled); n != 0 {
		t.Errorf("the cancel got %d more final results", n)
	}
}
