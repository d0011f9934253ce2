package virtual

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"
)

// quirkSeed makes the random quirks repeat from run to run.
const quirkSeed = 42

// TestGluedOKAfterOutput sends commands whose output ends in a digit and
// in a quote: the ok follows each without a line feed.
func TestGluedOKAfterOutput(t *testing.T) {
	for _, c := range []struct{ command, want string }{
		{"M114", "X:0.00 Y:0.00 Z:0.00 E:0.00 Count X:0 Y:0 Z:0ok"},
		{"M486 S0", `echo:Unknown command: "M486 S0"ok`},
	} {
		cfg := fastConfig()
		cfg.GluedOKs = 100
		p := startPrinter(t, cfg)
		h := connect(t, p)
		h.send(c.command)
		line := h.until("glued ok", func(l string) bool { return strings.HasSuffix(l, "ok") })
		if line[len(line)-1] != c.want {
			t.Errorf("%s reply = %q, want %q", c.command, line, c.want)
		}
	}
}

func TestGluedOKAfterAutoreport(t *testing.T) {
	cfg := DefaultConfig() // real time, so the dwell outlasts a report interval
	cfg.GluedOKs = 100
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.command("M155 S1")
	h.send("G4 S1.5")
	got := h.until("ok after the dwell", func(l string) bool { return strings.Contains(l, "ok") })
	last := got[len(got)-1]
	if !strings.HasPrefix(last, " T:") || !strings.HasSuffix(last, " B@:0ok") {
		t.Errorf("line with the dwell's ok = %q, want an auto-report ending in B@:0ok", last)
	}
}

// TestGluedOKNeverAfterLetter lists the SD card with every ok glued where
// it may be: "End file list" ends in a letter, so its ok stays on a line
// of its own.
func TestGluedOKNeverAfterLetter(t *testing.T) {
	cfg := fastConfig()
	cfg.GluedOKs = 100
	p := startPrinter(t, cfg)
	h := connect(t, p)
	got := h.command("M20")
	if len(got) < 2 || got[len(got)-2] != "End file list" || got[len(got)-1] != "ok" {
		t.Errorf("M20 reply = %q, want it to end with \"End file list\" and \"ok\" on two lines", got)
	}
}

func TestGluedOKsOffByDefault(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	if got := h.command("M114"); len(got) != 2 || got[1] != "ok" {
		t.Errorf("M114 reply = %q, want the position and a separate ok", got)
	}
}

func TestDuplicateResend(t *testing.T) {
	cfg := fastConfig()
	cfg.DuplicateResend = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.send("N1 G90*0")
	h.untilLine("Resend: 1")
	h.untilLine("ok")
	got := h.until("second resend", func(l string) bool { return l == "ok" })
	want := []string{"Error:Line Number is not Last Line Number+1, Last Line: 0", "Resend: 1", "ok"}
	if !slices.Equal(got, want) {
		t.Errorf("second reply = %q, want %q", got, want)
	}
	h.sendNumbered(1, "G90")
	if got := h.next(); got != "ok" {
		t.Errorf("reply to the resent line = %q, want ok", got)
	}
}

func TestDuplicateResendAfterLineNumberError(t *testing.T) {
	cfg := fastConfig()
	cfg.DuplicateResend = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.sendNumbered(2, "G90")
	want := []string{"Error:Line Number is not Last Line Number+1, Last Line: 0", "Resend: 1", "ok"}
	for i := range 2 {
		if got := h.until("resend request", func(l string) bool { return l == "ok" }); !slices.Equal(got, want) {
			t.Errorf("reply %d = %q, want %q", i+1, got, want)
		}
	}
	if got := p.LineStats().DuplicateRequests; got != 1 {
		t.Errorf("DuplicateRequests = %d, want 1", got)
	}
}

func TestLineStatsCountRepeats(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	h.sendNumbered(0, "M110 N0")
	h.untilLine("ok")
	h.sendNumbered(1, "G90")
	h.untilLine("ok")
	// The same line again fails the sequence check, but it arrived
	// intact, so the host sent it twice.
	h.sendNumbered(1, "G90")
	h.untilLine("Resend: 2")
	h.untilLine("ok")
	h.sendNumbered(2, "G91")
	h.untilLine("ok")
	st := p.LineStats()
	if st.Received[1] != 2 || st.Received[2] != 1 {
		t.Errorf("Received = %v, want line 1 twice and line 2 once", st.Received)
	}
	if st.Accepted[1] != 1 || st.Accepted[2] != 1 {
		t.Errorf("Accepted = %v, want lines 1 and 2 once", st.Accepted)
	}
	if st.Repeated != 1 {
		t.Errorf("Repeated = %d, want 1", st.Repeated)
	}
	h.sendNumbered(0, "M110 N0")
	h.untilLine("ok")
	if st := p.LineStats(); len(st.Received) != 0 || st.Repeated != 0 {
		t.Errorf("line stats after M110 = %+v, want them cleared", st)
	}
}

func TestRejectM110(t *testing.T) {
	for _, dialect := range []string{DialectMarlin, DialectRepetier} {
		t.Run(dialect, func(t *testing.T) {
			cfg := fastConfig()
			cfg.Dialect = dialect
			cfg.RejectM110 = 1
			p := startPrinter(t, cfg)
			h := openHost(t, p.Path())
			h.until("banner", func(l string) bool { return strings.HasSuffix(l, "SD card ok") })
			// The handshake's M110 N0 leaves the number at 0 and passes.
			h.sendNumbered(0, "M110 N0")
			h.until("ok for the handshake", isOK)
			h.sendNumbered(1, "G90")
			h.until("ok for line 1", isOK)
			h.sendNumbered(0, "M110 N0")
			got := h.until("resend request", func(l string) bool { return strings.HasPrefix(l, "Resend") })
			wantError := "Error:checksum mismatch, Last Line: 1"
			wantResend := "Resend: 2"
			if dialect == DialectRepetier {
				wantError, wantResend = "Error:Wrong checksum", "Resend:2"
			}
			if !slices.Contains(got, wantError) || got[len(got)-1] != wantResend {
				t.Errorf("reply to the M110 = %q, want %q and %q", got, wantError, wantResend)
			}
			h.until("ok after the resend request", isOK)
			// The rejection is used up: the same M110 passes now and
			// resets the number.
			h.sendNumbered(0, "M110 N0")
			h.until("ok for the second M110", isOK)
			h.sendNumbered(1, "G91")
			if got := h.until("ok for line 1 after the reset", isOK); len(got) != 1 {
				t.Errorf("reply to line 1 after the reset = %q, want only its ok", got)
			}
			faults := p.Faults()
			if len(faults) != 1 || faults[0].Kind != FaultM110Rejected {
				t.Errorf("faults = %+v, want one M110 rejection", faults)
			}
		})
	}
}

func TestDroppedOKs(t *testing.T) {
	cfg := fastConfig()
	cfg.DroppedOKs = 50
	p := startPrinter(t, cfg)
	h := connect(t, p)
	for range 10 {
		h.send("G91")
	}
	h.send("M105")
	got := h.until("M105 reply", func(l string) bool { return strings.HasPrefix(l, "ok T:") })
	if n := countLines(got, "ok"); n != 5 {
		t.Errorf("got %d oks for 10 commands at 50%% dropped, want 5: %q", n, got)
	}
	if n := len(waitExecuted(t, p, 11)); n != 11 {
		t.Errorf("executed %d commands, want all 11", n)
	}
}

// withoutRewinds removes the commands that each rewind ran again from an
// executed list, after checking that each block repeats the commands
// before it.
func withoutRewinds(t *testing.T, executed []string, faults []Fault) []string {
	t.Helper()
	out := slices.Clone(executed)
	for i := len(faults) - 1; i >= 0; i-- {
		f := faults[i]
		if f.Kind != FaultRewind {
			continue
		}
		if f.At < f.Lines || f.At+f.Lines > len(out) {
			t.Fatalf("rewind %+v does not fit %d executed commands", f, len(out))
		}
		if again, before := out[f.At:f.At+f.Lines], out[f.At-f.Lines:f.At]; !slices.Equal(again, before) {
			t.Fatalf("rewind %+v ran %q again, want the %q before it", f, again, before)
		}
		out = slices.Delete(out, f.At, f.At+f.Lines)
	}
	return out
}

func TestRewindAsksForEarlierLines(t *testing.T) {
	cfg := fastConfig()
	cfg.RewindEvery = 5
	cfg.RewindLines = 3
	p := startPrinter(t, cfg)
	h := connect(t, p)
	var cmds []string
	for i := 1; i <= 20; i++ {
		cmds = append(cmds, fmt.Sprintf("G1 X%d", i))
	}
	received := streamLines(t, h, cmds)
	if !slices.Contains(received, "Resend: 3") {
		t.Errorf("no Resend: 3 after five accepted lines; received %q", received)
	}
	faults := p.Faults()
	if len(faults) == 0 || faults[0] != (Fault{Kind: FaultRewind, At: 5, Lines: 3}) {
		t.Fatalf("faults = %+v, want a first rewind of 3 commands after 5", faults)
	}
	if got := withoutRewinds(t, p.Executed(), faults); !slices.Equal(got, cmds) {
		t.Errorf("executed without the rewound commands = %q, want %q", got, cmds)
	}
}

func TestRewindValidation(t *testing.T) {
	cfg := fastConfig()
	cfg.RewindEvery = 8
	if err := cfg.Validate(); err == nil {
		t.Error("a rewind of 8 lines every 8 lines validated; it would never progress")
	}
	cfg.RewindLines = 3
	if err := cfg.Validate(); err != nil {
		t.Errorf("rewind of 3 every 8: %v", err)
	}
}

// skipWait drops the `wait` lines that Repetier sends while idle.
func skipWait(lines []string) []string {
	return slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return l == msgWait })
}

func TestRepetierDialect(t *testing.T) {
	cfg := fastConfig()
	cfg.Dialect = DialectRepetier
	p := startPrinter(t, cfg)
	h := openHost(t, p.Path())
	banner := h.untilLine("SD card ok")
	if banner[0] != "start" || !slices.Contains(banner, "Info:External Reset") {
		t.Errorf("banner = %q, want Repetier's start and Info lines", banner)
	}

	h.sendNumbered(0, "M110 N0")
	if got := skipWait(h.until("M110 ok", isOK)); !slices.Equal(got, []string{"ok"}) {
		t.Errorf("M110 reply = %q, want a plain ok", got)
	}
	h.sendNumbered(1, "M105")
	if got := h.until("ok 1", func(l string) bool { return l == "ok 1" }); len(skipWait(got)) != 1 {
		t.Errorf("lines before ok 1 = %q, want none: Repetier acknowledges on receipt", got)
	}
	report := h.until("temperatures", func(l string) bool { return strings.HasPrefix(l, "T:") })
	if want := "T:22.00 /0 B:22.00 /0 B@:0 @:0"; report[len(report)-1] != want {
		t.Errorf("M105 report = %q, want %q", report[len(report)-1], want)
	}

	h.send("N2 G90*0")
	got := skipWait(h.until("resend", func(l string) bool { return l == "ok" }))
	if want := []string{"Error:Wrong checksum", "", "Resend:2", "ok"}; !slices.Equal(got, want) {
		t.Errorf("reply to a bad checksum = %q, want %q", got, want)
	}
	h.sendNumbered(3, "G91") // pipelined behind the rejected line
	h.untilLine("skip 3")
	h.sendNumbered(2, "G90")
	h.untilLine("ok 2")
	h.sendNumbered(3, "M104 S200")
	h.untilLine("ok 3")
	h.untilLine("TargetExtr0:200")
	h.send("M115")
	h.untilLine("ok 3")
	fw := h.until("firmware line", func(l string) bool { return strings.HasPrefix(l, "FIRMWARE_NAME:") })
	if !strings.HasPrefix(fw[len(fw)-1], "FIRMWARE_NAME:Repetier_0.92.9 FIRMWARE_URL:") {
		t.Errorf("M115 = %q, want Repetier's firmware line", fw[len(fw)-1])
	}
	h.untilLine("Cap:AUTOREPORT_TEMP:1")
	h.untilLine(msgWait)
	if got, want := p.Executed(), []string{"M105", "G90", "M104 S200", "M115"}; !slices.Equal(got, want) {
		t.Errorf("executed = %q, want %q (M110 is not queued)", got, want)
	}
}

func TestRepetierRepeatsResend(t *testing.T) {
	cfg := fastConfig()
	cfg.Dialect = DialectRepetier
	p := startPrinter(t, cfg)
	h := openHost(t, p.Path())
	h.untilLine("SD card ok")
	h.send("N1 G90*0")
	h.untilLine("Resend:1")
	// The line never comes, so Repetier requests it again after 200 ms.
	h.untilLine("Resend:1")
}

func TestRepetierColonSplitsM117(t *testing.T) {
	cfg := fastConfig()
	cfg.Dialect = DialectRepetier
	p := startPrinter(t, cfg)
	h := openHost(t, p.Path())
	h.untilLine("SD card ok")
	h.sendNumbered(1, "M117 ETA: 5 min")
	h.untilLine("ok 1")
	h.untilLine("Error:Wrong checksum")
	h.untilLine("Resend:2")
	// Repetier acknowledges a line before it executes it.
	if got := waitExecuted(t, p, 1); !slices.Equal(got, []string{"M117 ETA"}) {
		t.Errorf("executed = %q, want the text up to the colon", got)
	}
}

func TestPrusaDialect(t *testing.T) {
	cfg := fastConfig()
	cfg.Dialect = DialectPrusa
	p := startPrinter(t, cfg)
	h := connect(t, p)

	caps := h.command("M115")
	if !strings.HasPrefix(caps[0], "FIRMWARE_NAME:Prusa-Firmware 3.12.2 based on Marlin FIRMWARE_URL:") {
		t.Errorf("M115 firmware line = %q", caps[0])
	}
	if !slices.Contains(caps, "Cap:AUTOREPORT_POSITION:1") || slices.Contains(caps, "Cap:AUTOREPORT_POS:1") {
		t.Errorf("M115 capabilities = %q, want AUTOREPORT_POSITION and no AUTOREPORT_POS", caps)
	}
	if got := h.command("M105"); got[0] != "ok T:22.0 /0.0 B:22.0 /0.0 T0:22.0 /0.0 @:0 B@:0 P:22.0 A:26.0" {
		t.Errorf("M105 = %q, want Prusa's report", got)
	}
	if got := h.command("M20"); !slices.Equal(got, []string{"Begin file list", "mini-c~1.gco 85818", "End file list", "ok"}) {
		t.Errorf("M20 = %q, want the lower-case file name", got)
	}

	h.send("N1 G90*0")
	h.untilLine("Resend: 1")
	h.send("M105")
	if got := h.next(); !strings.HasPrefix(got, "ok T:") {
		t.Errorf("line after Resend = %q, want the M105 reply: Prusa 3.1 sends no ok after Resend", got)
	}
	h.send("M105*12")
	if got := h.next(); got != "Error:No Line Number with checksum, Last Line: 0" {
		t.Errorf("reply to an unnumbered line with checksum = %q", got)
	}
	h.untilLine("Resend: 1")
	h.send("G9\xff1")
	h.untilLine("ok")
	if got := p.Executed(); got[len(got)-1] != "G91" {
		t.Errorf("last executed = %q, want G91 with the 0xff byte skipped", got[len(got)-1])
	}
}

func TestPrusaFirstStarChecksum(t *testing.T) {
	cfg := fastConfig()
	cfg.Dialect = DialectPrusa
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.sendNumbered(1, "M117 *** Test ***")
	if got := h.next(); got != "Error:checksum mismatch, Last Line: 0" {
		t.Errorf("reply = %q, want a checksum error from the first star", got)
	}
}

func TestAutoreportMidline(t *testing.T) {
	cfg := fastConfig()
	cfg.AutoreportMidline = 100
	cfg.Seed = quirkSeed
	p := startPrinter(t, cfg)
	h := connect(t, p)
	if got := h.command("M114"); len(got) != 2 {
		t.Errorf("M114 without auto-report = %q, want no report inserted", got)
	}
	h.send("M155 S60")
	h.until("M155 ok", func(l string) bool { return strings.HasSuffix(l, "ok") })
	const report = " T:22.00 /0.00 B:22.00 /0.00 @:0 B@:0"
	var own, glued int
	for range 20 {
		h.send("M114")
		for _, l := range h.until("M114 ok", func(l string) bool { return strings.HasSuffix(l, "ok") }) {
			switch {
			case l == report:
				own++
			case strings.HasPrefix(l, report) && len(l) > len(report):
				glued++
			}
		}
	}
	if own == 0 || glued == 0 {
		t.Errorf("reports inserted: %d on their own line, %d glued to the next; want both", own, glued)
	}
}

func TestColonSplitsNumberedLine(t *testing.T) {
	cfg := fastConfig()
	cfg.ColonSplits = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	for range 2 {
		h.sendNumbered(1, "M117 ETA: 5 min")
		got := h.until("ok", isOK)
		want := []string{"Error:No Checksum with line number, Last Line: 0", "Resend: 1", "ok"}
		if !slices.Equal(got, want) {
			t.Errorf("reply = %q, want %q", got, want)
		}
	}
	h.sendNumbered(1, "M105")
	h.until("M105 reply", func(l string) bool { return strings.HasPrefix(l, "ok T:") })
	if got := p.Executed(); !slices.Equal(got, []string{"M105"}) {
		t.Errorf("executed = %q, want only M105: the rest of the rejected line is dropped", got)
	}
}

func TestColonSplitsUnnumberedLine(t *testing.T) {
	cfg := fastConfig()
	cfg.ColonSplits = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.send("M117 0% L:-/463 H:0/139.55")
	h.untilLine(`echo:Unknown command: "0/139.55"`)
	if got, want := p.Executed(), []string{"M117 0% L", "-/463 H", "0/139.55"}; !slices.Equal(got, want) {
		t.Errorf("executed = %q, want %q", got, want)
	}
}

func TestFirstStarChecksumRejects(t *testing.T) {
	cfg := fastConfig()
	cfg.FirstStarChecksum = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	for range 2 {
		h.sendNumbered(1, "M117 *** Test ***")
		got := h.until("ok", isOK)
		want := []string{"Error:checksum mismatch, Last Line: 0", "Resend: 1", "ok"}
		if !slices.Equal(got, want) {
			t.Errorf("reply = %q, want %q", got, want)
		}
	}
	h.sendNumbered(1, "G90")
	if got := h.next(); got != "ok" {
		t.Errorf("reply to a line without star in its text = %q, want ok", got)
	}
}

func TestStockMarlinTakesLastStar(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	h.sendNumbered(1, "M117 *** Test ***")
	if got := h.until("ok", isOK); slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "Error:") }) {
		t.Errorf("reply = %q, want no error: Marlin 2 checks the last star", got)
	}
	if got := p.Executed(); !slices.Equal(got, []string{"M117"}) {
		t.Errorf("executed = %q, want M117 cut at its first star", got)
	}
}

func TestResetNULPrefix(t *testing.T) {
	cfg := fastConfig()
	cfg.ResetAfterLines = 2
	cfg.ResetNUL = true
	cfg.Seed = quirkSeed
	p := startPrinter(t, cfg)
	h := connect(t, p)
	streamLines(t, h, []string{"G90", "G91"})
	got := h.until("start after NUL", func(l string) bool { return strings.HasSuffix(l, "start") })
	line := got[len(got)-1]
	if nuls := strings.TrimSuffix(line, "start"); nuls == "" || strings.Trim(nuls, "\x00") != "" {
		t.Errorf("reset line = %q, want NUL bytes then start", line)
	}
	if got := p.Faults(); !slices.Equal(got, []Fault{{Kind: FaultReset, At: 2}}) {
		t.Errorf("faults = %+v, want one reset after 2 commands", got)
	}
}

func TestResetMidLine(t *testing.T) {
	cfg := fastConfig()
	cfg.ResetAfterLines = 2
	cfg.ResetMidLine = true
	cfg.Seed = quirkSeed
	p := startPrinter(t, cfg)
	h := connect(t, p)
	streamLines(t, h, []string{"G90", "G91"})
	got := h.until("start after a partial report", func(l string) bool { return strings.HasSuffix(l, "start") })
	partial := strings.TrimSuffix(got[len(got)-1], "start")
	const report = " T:22.00 /0.00 B:22.00 /0.00 @:0 B@:0"
	if partial == "" || len(partial) >= len(report) || !strings.HasPrefix(report, partial) {
		t.Errorf("reset line = %q, want part of %q then start", got[len(got)-1], report)
	}
	h.waitBanner()
}

func TestRXByteErrorsDetected(t *testing.T) {
	cfg := fastConfig()
	cfg.RXByteErrors = 0.03
	cfg.Seed = quirkSeed
	p := startPrinter(t, cfg)
	h := connect(t, p)
	var cmds []string
	for i := 1; i <= 40; i++ {
		cmds = append(cmds, fmt.Sprintf("G1 X%d.5 Y%d F3000", i, 100-i))
	}
	received := streamLines(t, h, cmds)
	errors := 0
	for _, l := range received {
		if strings.HasPrefix(l, "Error:") {
			errors++
		}
	}
	if errors == 0 {
		t.Error("no line was rejected at 3% byte errors")
	}
	if got := p.Executed(); !slices.Equal(got, cmds) {
		t.Errorf("executed %q, want exactly the sent commands: every corrupted line must be rejected", got)
	}
}

func TestTXByteErrorsCorruptOutput(t *testing.T) {
	cfg := fastConfig()
	cfg.TXByteErrors = 1
	p := startPrinter(t, cfg)
	port, err := serial.Open(p.Path(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Close() })
	if err := port.SetReadTimeout(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}

	clean := []byte("start\necho:Marlin 2.1.2.1\n")
	var got []byte
	deadline := time.Now().Add(waitTimeout)
	buf := make([]byte, 64)
	for len(got) < len(clean) && time.Now().Before(deadline) {
		n, err := port.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}

	if len(got) < len(clean) {
		t.Fatalf("received %d bytes of the banner within %v, want %d", len(got), waitTimeout, len(clean))
	}
	for i, c := range clean {
		if got[i] == c {
			t.Errorf("byte %d = %q, uncorrupted at a byte error rate of 1", i, c)
		}
	}
}

func TestProcessingTimePerCommand(t *testing.T) {
	cfg := fastConfig()
	cfg.ProcessingTime = 20 * time.Millisecond
	p := startPrinter(t, cfg)
	h := connect(t, p)
	start := time.Now()
	for range 10 {
		h.command("G90")
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("10 commands took %v with 20 ms processing time each, want at least 200 ms", took)
	}
}

func TestQuirkConfigValidate(t *testing.T) {
	bad := []Config{
		{GluedOKs: 101},
		{DroppedOKs: -1},
		{AutoreportMidline: 200},
		{RewindEvery: -1},
		{RewindEvery: 4, RewindLines: 4},
		{RXByteErrors: 1.5},
		{TXByteErrors: -0.1},
		{ProcessingTime: -time.Millisecond},
		{ResetNUL: true},
		{ResetMidLine: true},
		{Dialect: "smoothie"},
	}
	for _, cfg := range bad {
		if err := cfg.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", cfg)
		}
	}
	good := Config{Dialect: DialectRepetier, GluedOKs: 100, RewindEvery: 30, ResetAfterLines: 5, ResetNUL: true, RXByteErrors: 0.001}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(%+v): %v", good, err)
	}
}
