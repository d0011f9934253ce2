package virtual

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// streamLines sends cmds as numbered lines 1..n, one at a time, following
// resend requests like a stop-and-wait host, and returns every line it
// received.
func streamLines(t *testing.T, h *host, cmds []string) []string {
	t.Helper()
	var received []string
	next := 1
	for next <= len(cmds) {
		h.sendNumbered(next, cmds[next-1])
		resend := 0
		for {
			line := h.next()
			received = append(received, line)
			if strings.HasPrefix(line, msgResend) {
				resend, _ = strconv.Atoi(strings.TrimPrefix(line, msgResend))
			}
			if isOK(line) {
				break
			}
		}
		if resend > 0 {
			next = resend
		} else {
			next++
		}
	}
	return received
}

func TestResendStyles(t *testing.T) {
	for _, style := range []string{ResendStyle11, ResendStyle20, ResendStyle21} {
		t.Run(style, func(t *testing.T) {
			cfg := fastConfig()
			cfg.ResendStyle = style
			p := startPrinter(t, cfg)
			h := connect(t, p)
			h.send("N1 G90*0")
			h.untilLine("Resend: 1")
			h.send("M105")
			after := h.next()
			if style == ResendStyle20 {
				if !strings.HasPrefix(after, "ok T:") {
					t.Errorf("line after Resend = %q, want the M105 reply (no ok after Resend)", after)
				}
				return
			}
			if after != "ok" {
				t.Errorf("line after Resend = %q, want ok", after)
			}
		})
	}
}

func TestAdvancedOK(t *testing.T) {
	cfg := fastConfig()
	cfg.AdvancedOK = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.sendNumbered(1, "G90")
	if got := h.next(); got != "ok N1 P15 B3" {
		t.Errorf("numbered ok = %q, want ok N1 P15 B3", got)
	}
	if got := h.command("G91"); !slices.Equal(got, []string{"ok P15 B3"}) {
		t.Errorf("unnumbered ok = %q, want ok P15 B3", got)
	}
	if got := h.command("M105"); !strings.HasPrefix(got[0], "ok T:") {
		t.Errorf("M105 = %q, want the temperature ok", got)
	}
}

func TestOKBeforeOutput(t *testing.T) {
	cfg := fastConfig()
	cfg.OKBeforeOutput = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.send("M115")
	if got := h.next(); got != "ok" {
		t.Errorf("first line after M115 = %q, want ok", got)
	}
	if got := h.next(); !strings.HasPrefix(got, "FIRMWARE_NAME:") {
		t.Errorf("second line after M115 = %q, want the firmware line", got)
	}
	h.untilLine("Cap:CONFIG_EXPORT:0")
	h.send("M105")
	if got := h.next(); got != "ok" {
		t.Errorf("first line after M105 = %q, want ok", got)
	}
	if got := h.next(); !strings.HasPrefix(got, "T:22.00 /0.00 B:") {
		t.Errorf("second line after M105 = %q, want the temperatures", got)
	}
}

func TestResendRatio(t *testing.T) {
	cfg := fastConfig()
	cfg.ResendRatio = 50
	p := startPrinter(t, cfg)
	h := connect(t, p)
	cmds := []string{"G90", "G91", "M82", "M83", "G92 E0", "G1 X1", "G1 X2", "G1 X3", "G1 X4", "G1 X5"}
	received := streamLines(t, h, cmds)
	errors := 0
	for _, line := range received {
		if strings.HasPrefix(line, "Error:checksum mismatch") {
			errors++
		}
	}
	if errors != 5 {
		t.Errorf("got %d injected checksum errors for 10 lines at 50%%, want 5", errors)
	}
	if got := p.Executed(); !slices.Equal(got, cmds) {
		t.Errorf("executed = %q, want %q", got, cmds)
	}
}

func TestResendRatioFullProgresses(t *testing.T) {
	cfg := fastConfig()
	cfg.ResendRatio = 100
	p := startPrinter(t, cfg)
	h := connect(t, p)
	cmds := []string{"G90", "G91", "M82"}
	streamLines(t, h, cmds)
	if got := p.Executed(); !slices.Equal(got, cmds) {
		t.Errorf("executed = %q, want %q", got, cmds)
	}
}

func TestBusyKeepaliveOff(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NoBusyKeepalive = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.command("M113 S1")
	if lines := h.command("G4 S1.5"); !slices.Equal(lines, []string{"ok"}) {
		t.Errorf("G4 output with busy keep-alive off = %q, want only ok", lines)
	}
}

func TestGarbageOnOpen(t *testing.T) {
	cfg := fastConfig()
	cfg.GarbageOnOpen = true
	p := startPrinter(t, cfg)
	h := openHost(t, p.Path())
	h.waitBanner()
	if got := h.next(); got != "\x80" {
		t.Errorf("line after banner = %q, want one 0x80 byte", got)
	}
	if got := h.command("M105"); !strings.HasPrefix(got[0], "ok T:") {
		t.Errorf("M105 after garbage = %q", got)
	}
}

func TestResetAfterLines(t *testing.T) {
	cfg := fastConfig()
	cfg.ResetAfterLines = 3
	p := startPrinter(t, cfg)
	h := connect(t, p)
	streamLines(t, h, []string{"G90", "M104 S200", "G91"})
	h.untilLine("start")
	h.waitBanner()
	// The reset forgot the line number and the heater target.
	h.sendNumbered(1, "M105")
	if got := h.next(); !strings.HasPrefix(got, "ok T:") || !strings.Contains(got, " /0.00 B:") {
		t.Errorf("M105 after reset = %q, want N1 accepted and target 0", got)
	}
}

func TestFatalAfterLines(t *testing.T) {
	cfg := fastConfig()
	cfg.FatalAfterLines = 2
	p := startPrinter(t, cfg)
	h := connect(t, p)
	streamLines(t, h, []string{"G90", "G91"})
	if got := h.next(); got != msgRunaway {
		t.Errorf("line after second ok = %q, want %q", got, msgRunaway)
	}
	if got := h.next(); got != msgKilled {
		t.Errorf("line after thermal runaway = %q, want %q", got, msgKilled)
	}
	h.sendNumbered(3, "M83") // ignored while halted
	h.send("M999")
	got := h.until("ok after M999", isOK)
	if !slices.Equal(got, []string{"Resend: 3", "ok"}) {
		t.Errorf("M999 reply = %q, want [Resend: 3 ok]", got)
	}
	if got := p.Executed(); !slices.Equal(got, []string{"G90", "G91", "M999"}) {
		t.Errorf("executed = %q", got)
	}
}

func TestEmergencyParserBreaksHeating(t *testing.T) {
	cfg := DefaultConfig() // real time: the heat-up would take about 40 s
	cfg.EmergencyParser = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	caps := h.command("M115")
	if !slices.Contains(caps, "Cap:EMERGENCY_PARSER:1") {
		t.Errorf("M115 does not report Cap:EMERGENCY_PARSER:1: %q", caps)
	}
	h.send("M109 S200")
	h.until("heating status", func(l string) bool { return strings.HasSuffix(l, " W:?") })
	h.send("M108")
	h.untilLine("ok") // M109 ends
	h.untilLine("ok") // the queued M108
	if got := p.Executed(); !slices.Equal(got, []string{"M115", "M109 S200", "M108"}) {
		t.Errorf("executed = %q", got)
	}
}

func TestEmergencyParserKillsDuringWait(t *testing.T) {
	cfg := DefaultConfig()
	cfg.EmergencyParser = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.send("G4 S60")
	waitExecuted(t, p, 1)
	h.send("N7 M112*0") // the parser ignores the checksum
	h.untilLine(msgEmergency)
	h.untilLine(msgKilled)
	if got := p.Executed(); !slices.Equal(got, []string{"G4 S60", "M112"}) {
		t.Errorf("executed = %q", got)
	}
}

func TestWaitWhenIdle(t *testing.T) {
	cfg := fastConfig()
	cfg.WaitWhenIdle = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.untilLine(msgWait)
	h.untilLine(msgWait)
}

func TestBaudPacing(t *testing.T) {
	cfg := fastConfig()
	cfg.Baud = 19200 // 1920 bytes per second
	p := startPrinter(t, cfg)
	h := connect(t, p)
	start := time.Now()
	lines := h.command("M115")
	bytes := 0
	for _, l := range lines {
		bytes += len(l) + 1
	}
	want := time.Duration(bytes) * time.Second / 1920
	if took := time.Since(start); took < want*9/10 {
		t.Errorf("%d output bytes took %v at 19200 baud, want at least %v", bytes, took, want)
	}

	start = time.Now()
	h.send(strings.Repeat("; padding comment that the firmware drops\n", 24) + "M105")
	h.until("M105 reply", isOK)
	if took := time.Since(start); took < 450*time.Millisecond {
		t.Errorf("about 1 kB of input took %v at 19200 baud, want at least 500 ms", took)
	}
}

func TestM117EchoOff(t *testing.T) {
	cfg := fastConfig()
	cfg.NoM117Echo = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	if got := h.command("M117 quiet"); !slices.Equal(got, []string{"ok"}) {
		t.Errorf("M117 = %q, want only ok", got)
	}
}

func TestNoHeatedBed(t *testing.T) {
	cfg := fastConfig()
	cfg.HeatedBed = false
	p := startPrinter(t, cfg)
	h := connect(t, p)
	if got := h.command("M105"); got[0] != "ok T:22.00 /0.00 @:0" {
		t.Errorf("M105 = %q, want no bed fields", got)
	}
	if got := h.command("M140 S60"); got[0] != `echo:Unknown command: "M140 S60"` {
		t.Errorf("M140 = %q, want unknown command", got)
	}
}

func TestNoAutoreportPos(t *testing.T) {
	cfg := fastConfig()
	cfg.NoAutoreportPos = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	if got := h.command("M115"); !slices.Contains(got, "Cap:AUTOREPORT_POS:0") {
		t.Errorf("M115 = %q, want Cap:AUTOREPORT_POS:0", got)
	}
	if got := h.command("M154 S1"); got[0] != `echo:Unknown command: "M154 S1"` {
		t.Errorf("M154 = %q, want unknown command", got)
	}
	// No position report follows within two of the requested intervals.
	time.Sleep(2 * time.Second)
	if got := h.command("M105"); len(got) != 1 {
		t.Errorf("lines before the M105 reply = %q, want no position report", got)
	}
}
