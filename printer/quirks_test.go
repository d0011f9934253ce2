package printer_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

// quirkSeed makes the random quirks of the virtual printer repeat from
// run to run.
const quirkSeed = 7

// quirkPrintTimeout bounds a print of the test file at Speed 0. Without
// quirks it takes a few seconds, so a print that needs one communication
// timeout of the default 30 s to get past a lost ok does not make it.
const quirkPrintTimeout = 45 * time.Second

// printEnded reports the outcome of a print started on r: PrintDone or
// PrintFailed, or neither within timeout, which fails the test with the
// events and the commands executed so far.
func printEnded(t *testing.T, r *rig, timeout time.Duration) (done bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if r.rec.count(bridge.EventPrintDone) > 0 {
			return true
		}
		if r.rec.count(bridge.EventPrintFailed) > 0 {
			return false
		}
		if time.Now().After(deadline) {
			executed := r.vp.Executed()
			t.Fatalf("print neither done nor failed within %s (state %s); events %v; %d commands executed, last %q",
				timeout, r.p.Snapshot().State, r.rec.names(), len(executed), executed[max(0, len(executed)-3):])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// printFile starts a print of path on r and requires it to finish with
// PrintDone. It returns the commands executed once the edge's closing
// M400 has run, because firmwares that acknowledge on receipt (Repetier)
// report done before their queue has run.
func printFile(t *testing.T, r *rig, path string) []string {
	t.Helper()
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, path)
	if !printEnded(t, r, quirkPrintTimeout) {
		failed, _ := r.rec.last(bridge.EventPrintFailed)
		errEv, _ := r.rec.last(bridge.EventError)
		t.Fatalf("print failed: %v; last Error event %v; events %v", failed.payload, errEv.payload, r.rec.names())
	}
	waitFor(t, "the closing M400 to run", 10*time.Second, func() bool {
		executed := r.vp.Executed()
		return len(executed) > 0 && executed[len(executed)-1] == "M400"
	})
	return r.vp.Executed()
}

// assertNoErrorEvents fails on Error events, which a print that recovered
// from every quirk must not have fired.
func assertNoErrorEvents(t *testing.T, r *rig) {
	t.Helper()
	if n := r.rec.count(bridge.EventError); n != 0 {
		errEv, _ := r.rec.last(bridge.EventError)
		t.Errorf("%d Error events during a print that recovered, last %v", n, errEv.payload)
	}
}

// benchStreaming sets the virtual printer up as the streaming benchmark
// does: paced at 250000 baud, BUFSIZE 4, a 128-byte receive buffer and
// 500 µs per command.
func benchStreaming(c *virtual.Config) {
	c.Baud = 250000
	c.BufSize = 4
	c.RXBufferSize = 128
	c.ProcessingTime = 500 * time.Microsecond
}

func TestQuirksLoseNothing(t *testing.T) {
	cases := []struct {
		name string
		flow string
		// commTimeout is the edge's CommTimeout. Zero keeps the 30 s
		// default, which a print that waits for a timeout cannot afford.
		commTimeout time.Duration
		knob        func(*virtual.Config)
	}{
		{"glued-oks", printer.FlowAuto, 0, func(c *virtual.Config) { c.GluedOKs = 100 }},
		{"glued-oks-ping-pong", printer.FlowPingPong, 0, func(c *virtual.Config) { c.GluedOKs = 100 }},
		{"duplicate-resend-window", printer.FlowAuto, 0, func(c *virtual.Config) { c.DuplicateResend = true; c.ResendRatio = 10 }},
		{"duplicate-resend-ping-pong", printer.FlowPingPong, 0, func(c *virtual.Config) { c.DuplicateResend = true; c.ResendRatio = 10 }},
		{"dropped-oks-window", printer.FlowAuto, 300 * time.Millisecond, func(c *virtual.Config) { c.DroppedOKs = 5 }},
		{"dropped-oks-ping-pong", printer.FlowPingPong, 300 * time.Millisecond, func(c *virtual.Config) { c.DroppedOKs = 5 }},
		{"dropped-oks-advanced-ok", printer.FlowAuto, 300 * time.Millisecond, func(c *virtual.Config) { c.DroppedOKs = 5; c.AdvancedOK = true }},
		{"repetier", printer.FlowAuto, 0, func(c *virtual.Config) { c.Dialect = virtual.DialectRepetier }},
		{"repetier-resends", printer.FlowAuto, 0, func(c *virtual.Config) { c.Dialect = virtual.DialectRepetier; c.ResendRatio = 10 }},
		{"prusa", printer.FlowAuto, 0, func(c *virtual.Config) { c.Dialect = virtual.DialectPrusa }},
		{"prusa-resends", printer.FlowAuto, 0, func(c *virtual.Config) { c.Dialect = virtual.DialectPrusa; c.ResendRatio = 10 }},
		{"autoreport-midline", printer.FlowAuto, 0, func(c *virtual.Config) { c.AutoreportMidline = 30 }},
		{"autoreport-midline-resends", printer.FlowAuto, 0, func(c *virtual.Config) { c.AutoreportMidline = 30; c.ResendRatio = 10 }},
		{"colon-splits", printer.FlowAuto, 0, func(c *virtual.Config) { c.ColonSplits = true }},
		{"first-star-checksum", printer.FlowAuto, 0, func(c *virtual.Config) { c.FirstStarChecksum = true }},
		{"rx-byte-errors", printer.FlowAuto, 300 * time.Millisecond, func(c *virtual.Config) { c.RXByteErrors = 0.002 }},
		{"tx-byte-errors", printer.FlowAuto, 300 * time.Millisecond, func(c *virtual.Config) { c.TXByteErrors = 0.001 }},
		{"byte-errors-ping-pong", printer.FlowPingPong, 300 * time.Millisecond, func(c *virtual.Config) { c.RXByteErrors = 0.002; c.TXByteErrors = 0.001 }},
		{"baud-processing-time", printer.FlowAuto, 0, func(c *virtual.Config) { c.Baud = 115200; c.ProcessingTime = 300 * time.Microsecond }},
		// The settings of the streaming benchmark (docs/benchmarks.md).
		{"bench-window", printer.FlowWindow, 0, benchStreaming},
		{"bench-ping-pong", printer.FlowPingPong, 0, benchStreaming},
		{"bench-ping-pong-resends", printer.FlowPingPong, 0, func(c *virtual.Config) { benchStreaming(c); c.ResendRatio = 10 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vcfg := fastConfig()
			vcfg.Seed = quirkSeed
			c.knob(&vcfg)
			r := startRig(t, vcfg, printer.Config{Flow: c.flow, CommTimeout: c.commTimeout})
			executed := printFile(t, r, testFile)
			assertRecordEqualsFile(t, executed)
			assertNoErrorEvents(t, r)
		})
	}
}

// withoutRewinds removes from executed the commands that each rewind of
// the virtual printer ran again, after checking that each such block
// repeats the commands right before it.
func withoutRewinds(t *testing.T, executed []string, faults []virtual.Fault) []string {
	t.Helper()
	out := slices.Clone(executed)
	for i := len(faults) - 1; i >= 0; i-- {
		f := faults[i]
		if f.Kind != virtual.FaultRewind {
			continue
		}
		if f.At < f.Lines || f.At+f.Lines > len(out) {
			t.Fatalf("rewind %+v does not fit the %d executed commands", f, len(out))
		}
		if again, before := out[f.At:f.At+f.Lines], out[f.At-f.Lines:f.At]; !slices.Equal(again, before) {
			t.Fatalf("after rewind %+v the printer ran %q, want the %q before it again", f, again, before)
		}
		out = slices.Delete(out, f.At, f.At+f.Lines)
	}
	return out
}

func TestQuirkRewindRepeatsLines(t *testing.T) {
	for _, flow := range []string{printer.FlowPingPong, printer.FlowAuto} {
		t.Run(flow, func(t *testing.T) {
			vcfg := fastConfig()
			vcfg.RewindEvery = 40
			vcfg.RewindLines = 8
			r := startRig(t, vcfg, printer.Config{Flow: flow})
			executed := printFile(t, r, testFile)
			faults := r.vp.Faults()
			if len(faults) < 5 {
				t.Fatalf("%d rewinds during the print, want one every 40 lines: %+v", len(faults), faults)
			}
			assertRecordEqualsFile(t, withoutRewinds(t, executed, faults))
			assertNoErrorEvents(t, r)
		})
	}
}

// assertResetFailedJob checks what a user must see when the firmware
// resets in the middle of a print. PrinterReset fires while printing, the
// job fails once and is never reported done, and a new handshake
// follows. No move of the job reaches the restarted firmware.
func assertResetFailedJob(t *testing.T, r *rig) {
	t.Helper()
	if printEnded(t, r, quirkPrintTimeout) {
		t.Fatalf("PrintDone after a firmware reset mid-print; events %v", r.rec.names())
	}
	r.waitState("OPERATIONAL", 20*time.Second)
	if got := r.rec.count(bridge.EventPrinterReset); got != 1 {
		t.Errorf("PrinterReset fired %d times, want 1; events %v", got, r.rec.names())
	}
	if reset, ok := r.rec.last(bridge.EventPrinterReset); ok {
		if idle, _ := reset.payload.Get("idle"); idle != false {
			t.Errorf("PrinterReset idle = %v, want false", idle)
		}
	}
	if got := r.rec.count(bridge.EventPrintFailed); got != 1 {
		t.Errorf("PrintFailed fired %d times, want 1", got)
	}
	if got := r.rec.count(bridge.EventConnected); got != 2 {
		t.Errorf("Connected fired %d times, want 2 (after the new handshake)", got)
	}
	faults := r.vp.Faults()
	if len(faults) != 1 || faults[0].Kind != virtual.FaultReset {
		t.Fatalf("virtual printer faults = %+v, want one reset", faults)
	}
	after := r.vp.Executed()[faults[0].At:]
	if i := slices.IndexFunc(after, func(c string) bool { return strings.HasPrefix(c, "G") }); i >= 0 {
		t.Errorf("the restarted firmware ran job command %q (%d of %q); a reset must end the job", after[i], i, after)
	}
}

func TestQuirkResetFailsJob(t *testing.T) {
	cases := []struct {
		name         string
		nul, midLine bool
	}{
		{"nul-prefix", true, false},
		{"mid-line-nul", true, true},
		{"mid-line", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vcfg := fastConfig()
			vcfg.Seed = quirkSeed
			vcfg.ResetAfterLines = 60
			vcfg.ResetNUL = c.nul
			vcfg.ResetMidLine = c.midLine
			r := startRig(t, vcfg, printer.Config{})
			r.waitState("OPERATIONAL", 10*time.Second)
			r.job(bridge.ActionStart, testFile)
			assertResetFailedJob(t, r)
		})
	}
}

// writeJobFile writes a G-code file into the rig's files folder.
func writeJobFile(t *testing.T, r *rig, name string, lines []string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(r.files, name), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// assertM117Tolerated checks the outcome that a firmware which breaks on
// M117 text calls for. Every other command of the job ran once, in order.
// Each M117 was left out or sent in a form the firmware accepts, so no
// part of its text ran as a command of its own.
func assertM117Tolerated(t *testing.T, executed, job []string, forbidden string) {
	t.Helper()
	start := slices.Index(executed, job[0])
	if start < 0 {
		t.Fatalf("first job command %q never ran; executed %q", job[0], executed)
	}
	ran := executed[start:]
	if n := len(ran); n > 0 && ran[n-1] == "M400" {
		ran = ran[:n-1]
	}
	notM117 := func(cmds []string) []string {
		return slices.DeleteFunc(slices.Clone(cmds), func(c string) bool { return strings.HasPrefix(c, "M117") })
	}
	if got, want := notM117(ran), notM117(job); !slices.Equal(got, want) {
		t.Errorf("job commands other than M117 = %q, want %q once each", got, want)
	}
	var m117 []string
	for _, c := range ran {
		if strings.HasPrefix(c, "M117") {
			m117 = append(m117, c)
		}
	}
	if len(m117) > 1 || len(m117) == 1 && strings.ContainsAny(m117[0][4:], forbidden) {
		t.Errorf("M117 commands run = %q, want at most one, without %q", m117, forbidden)
	}
}

// m117Job returns a short job with one M117 between moves.
func m117Job(m117 string) []string {
	return []string{"G90", "M83", "G1 X10 Y10 F3000", "G1 X20 Y10 E0.5", m117, "G1 X20 Y20 E0.5", "G1 X10 Y20 E0.5"}
}

// printM117Job prints m117Job(m117) through the virtual printer with vcfg
// and checks the outcome with assertM117Tolerated.
func printM117Job(t *testing.T, vcfg virtual.Config, m117, forbidden string) {
	t.Helper()
	job := m117Job(m117)
	r := startRig(t, vcfg, printer.Config{})
	writeJobFile(t, r, "m117.gcode", job)
	executed := printFile(t, r, "m117.gcode")
	want, err := virtual.CommandsOf(strings.NewReader(strings.Join(job, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	assertM117Tolerated(t, executed, want, forbidden)
	assertNoErrorEvents(t, r)
}

func TestQuirkColonInM117(t *testing.T) {
	vcfg := fastConfig()
	vcfg.ColonSplits = true
	printM117Job(t, vcfg, "M117 ETA: 5 min", ":")
}

func TestQuirkStarInM117(t *testing.T) {
	vcfg := fastConfig()
	vcfg.FirstStarChecksum = true
	printM117Job(t, vcfg, "M117 *** Test ***", "*")
}

// TestGluedOKAfterUnknownCommand sends a command the firmware does not
// know while every ok is glued to the output before it
// (`echo:Unknown command: "M486 S0"ok`). The ok must count at once, so
// each request gets its own replies well before the 30 s communication
// timeout, which would otherwise resend the line.
func TestGluedOKAfterUnknownCommand(t *testing.T) {
	vcfg := fastConfig()
	vcfg.GluedOKs = 100
	r := startRig(t, vcfg, printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)

	first := r.gcode("M486 S0", "M105")
	second := r.gcode("G29")
	if !slices.ContainsFunc(first, func(l string) bool { return strings.Contains(l, `Unknown command: "M486 S0"`) }) {
		t.Errorf("replies to M486 S0 and M105 = %q, want the Unknown command line of M486 S0", first)
	}
	if slices.ContainsFunc(first, func(l string) bool { return strings.Contains(l, "G29") }) {
		t.Errorf("replies to M486 S0 and M105 = %q, want none of G29's", first)
	}
	if !slices.ContainsFunc(second, func(l string) bool { return strings.Contains(l, `Unknown command: "G29"`) }) {
		t.Errorf("replies to G29 = %q, want its Unknown command line", second)
	}
}
