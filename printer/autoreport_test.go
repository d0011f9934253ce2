package printer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

// movesJob returns a job of n moves that take about 0.1 s each in real
// time, so a pause lands while it runs.
func movesJob(n int) []string {
	job := []string{"G90", "G1 X0 Y0 F6000"}
	for i := 1; i <= n; i++ {
		job = append(job, fmt.Sprintf("G1 X%d Y%d", 10*(i%2), i))
	}
	return job
}

// positionUpdates returns the reason of every PositionUpdate so far.
func positionUpdates(r *rig) []any {
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	var reasons []any
	for _, e := range r.rec.events {
		if e.name == bridge.EventPositionUpdate {
			reason, _ := e.payload.Get("reason")
			reasons = append(reasons, reason)
		}
	}
	return reasons
}

func countCode(cmds []string, code string) int {
	n := 0
	for _, c := range cmds {
		if c == code || strings.HasPrefix(c, code+" ") {
			n++
		}
	}
	return n
}

// pauseAndCancel pauses a running print of movesJob, then cancels it,
// and returns the PrintPaused and PrintCancelled positions.
func pauseAndCancel(t *testing.T, r *rig) (paused, cancelled bridge.Payload) {
	t.Helper()
	writeJobFile(t, r, "moves.gcode", movesJob(60))
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, "moves.gcode")
	r.waitState("PRINTING", 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	r.job(bridge.ActionPause, "")
	waitFor(t, "PrintPaused", 15*time.Second, func() bool { return r.rec.count(bridge.EventPrintPaused) == 1 })
	r.job(bridge.ActionCancel, "")
	waitFor(t, "PrintCancelled", 15*time.Second, func() bool { return r.rec.count(bridge.EventPrintCancelled) == 1 })
	p, _ := r.rec.last(bridge.EventPrintPaused)
	c, _ := r.rec.last(bridge.EventPrintCancelled)
	pausedPos, _ := p.payload.Get("position")
	cancelledPos, _ := c.payload.Get("position")
	return pausedPos.(bridge.Payload), cancelledPos.(bridge.Payload)
}

func assertPositionKnown(t *testing.T, event string, pos bridge.Payload) {
	t.Helper()
	for _, axis := range []string{"x", "y", "z", "e"} {
		if v, _ := pos.Get(axis); v == nil {
			t.Errorf("%s position has no %s: %v", event, axis, pos)
		}
	}
}

func TestPositionAutoReportOffAroundM114(t *testing.T) {
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 1
	r := startRig(t, vcfg, printer.Config{PositionReportInterval: time.Second})
	r.waitState("OPERATIONAL", 10*time.Second)
	waitFor(t, "auto-reported positions", 10*time.Second, func() bool { return len(positionUpdates(r)) >= 2 })
	if got := countCode(r.vp.Executed(), "M154"); got != 1 {
		t.Errorf("M154 executed %d times before the print, want once", got)
	}
	if !slices.Contains(r.vp.Executed(), "M154 S1") {
		t.Errorf("no M154 S1 among %q", r.vp.Executed())
	}
	if snap := r.p.Snapshot(); snap.Position == nil {
		t.Error("snapshot has no position after auto-reports")
	}

	paused, cancelled := pauseAndCancel(t, r)
	assertPositionKnown(t, "PrintPaused", paused)
	assertPositionKnown(t, "PrintCancelled", cancelled)
	reasons := positionUpdates(r)
	for _, want := range []string{"pause", "cancel"} {
		if !slices.Contains(reasons, any(want)) {
			t.Errorf("no PositionUpdate with reason %s among %v", want, reasons)
		}
	}
	// Each of the pause and the cancel switches the report off for its
	// M114 and back on after it.
	executed := r.vp.Executed()
	around := 0
	for i := 0; i+2 < len(executed); i++ {
		if executed[i] == "M154 S0" && executed[i+1] == "M114" && executed[i+2] == "M154 S1" {
			around++
		}
	}
	if around != 2 {
		t.Errorf("M154 S0, M114, M154 S1 executed %d times, want twice (pause and cancel): %q", around, executed)
	}
	// Both wait for the moves already sent with M400 before they ask.
	waited := 0
	for i := 0; i+1 < len(executed); i++ {
		if executed[i] == "M400" && executed[i+1] == "M154 S0" {
			waited++
		}
	}
	if waited != 2 {
		t.Errorf("M400 right before M154 S0 executed %d times, want twice (pause and cancel): %q", waited, executed)
	}
	if got := countCode(executed, "M114"); got != 2 {
		t.Errorf("M114 executed %d times, want one for the pause and one for the cancel", got)
	}
}

func TestPositionPolledWithoutAutoReport(t *testing.T) {
	cases := []struct {
		name string
		knob func(*virtual.Config)
	}{
		// A Marlin build without AUTO_REPORT_POSITION.
		{"cap-off", func(c *virtual.Config) { c.NoAutoreportPos = true }},
		// Prusa reports Cap:AUTOREPORT_POSITION, which is not Marlin's cap.
		{"prusa", func(c *virtual.Config) { c.Dialect = virtual.DialectPrusa }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vcfg := virtual.DefaultConfig()
			vcfg.Speed = 1
			c.knob(&vcfg)
			r := startRig(t, vcfg, printer.Config{PositionReportInterval: time.Second})
			paused, cancelled := pauseAndCancel(t, r)
			assertPositionKnown(t, "PrintPaused", paused)
			assertPositionKnown(t, "PrintCancelled", cancelled)
			executed := r.vp.Executed()
			if got := countCode(executed, "M154"); got != 0 {
				t.Errorf("M154 executed %d times without Cap:AUTOREPORT_POS:1", got)
			}
			if got := countCode(executed, "M114"); got != 2 {
				t.Errorf("M114 executed %d times, want one for the pause and one for the cancel", got)
			}
		})
	}
}

// TestAutoReportsLeftOutOfReplies sends a dwell longer than the
// temperature and position auto-report intervals: its reply carries none
// of those reports, while the replies of M105 and M114 carry theirs.
func TestAutoReportsLeftOutOfReplies(t *testing.T) {
	r := startRig(t, virtual.DefaultConfig(), printer.Config{PositionReportInterval: time.Second})
	r.waitState("OPERATIONAL", 10*time.Second)
	reply := func(line string) []string {
		t.Helper()
		res := make(chan []string, 1)
		err := r.p.SendGcode(context.Background(), []string{line}, "test", func(replies []string, err error) {
			if err != nil {
				t.Errorf("%s failed: %v", line, err)
			}
			res <- replies
		})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-res:
			return got
		case <-time.After(20 * time.Second):
			t.Fatalf("no reply to %s", line)
			return nil
		}
	}
	for _, line := range reply("G4 S3") {
		if strings.Contains(line, "T:") || strings.Contains(line, "X:") {
			t.Errorf("reply of the dwell carries the auto-report %q", line)
		}
	}
	if got := strings.Join(reply("M105"), "\n"); !strings.Contains(got, "T:") {
		t.Errorf("reply of M105 = %q, want the temperatures", got)
	}
	if got := strings.Join(reply("M114"), "\n"); !strings.Contains(got, "X:") {
		t.Errorf("reply of M114 = %q, want the position", got)
	}
}
