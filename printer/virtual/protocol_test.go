package virtual

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestBannerOnOpen(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := openHost(t, p.Path())
	banner := h.waitBanner()
	if banner[0] != "start" {
		t.Errorf("first line = %q, want start", banner[0])
	}
	if !slices.Contains(banner, "echo:Marlin 2.1.2.1") {
		t.Errorf("banner has no echo:Marlin 2.1.2.1 line: %q", banner)
	}
}

func TestHelloWithoutBanner(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := openHost(t, p.Path())
	// The hello goes out before the banner was read; it must still get
	// its ok after the banner.
	h.sendNumbered(0, "M110 N0")
	lines := h.until("ok", isOK)
	if lines[0] != "start" {
		t.Errorf("first line = %q, want start", lines[0])
	}
}

func TestChecksumErrorResend(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	h.sendNumbered(0, "M110 N0")
	h.untilLine("ok")
	h.send("N1 G28*99")
	got := h.until("ok", isOK)
	want := []string{"Error:checksum mismatch, Last Line: 0", "Resend: 1", "ok"}
	if !slices.Equal(got, want) {
		t.Errorf("reply = %q, want %q", got, want)
	}
	h.sendNumbered(1, "G28")
	if got := h.next(); got != "ok" {
		t.Errorf("reply to resent line = %q, want ok", got)
	}
	if got := p.Executed(); !slices.Equal(got, []string{"M110 N0", "G28"}) {
		t.Errorf("executed = %q", got)
	}
}

func TestLineNumberErrorResend(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	h.sendNumbered(0, "M110 N0")
	h.untilLine("ok")
	h.sendNumbered(1, "M105")
	h.until("ok", isOK)
	h.sendNumbered(3, "G90")
	got := h.until("ok", isOK)
	want := []string{"Error:Line Number is not Last Line Number+1, Last Line: 1", "Resend: 2", "ok"}
	if !slices.Equal(got, want) {
		t.Errorf("reply = %q, want %q", got, want)
	}
}

func TestNoChecksumResend(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	h.send("N1 G90")
	got := h.until("ok", isOK)
	want := []string{"Error:No Checksum with line number, Last Line: 0", "Resend: 1", "ok"}
	if !slices.Equal(got, want) {
		t.Errorf("reply = %q, want %q", got, want)
	}
}

func TestErrorDrainsPipelinedLines(t *testing.T) {
	cfg := DefaultConfig()
	p := startPrinter(t, cfg)
	h := connect(t, p)
	// While the dwell runs the firmware reads nothing, so all three lines
	// wait in the receive buffer; the bad second one discards the third.
	h.send("G4 P300")
	h.send(numbered(1, "G90") + "\nN2 G91*0\n" + numbered(3, "M83"))
	got := h.until("resend", func(l string) bool { return strings.HasPrefix(l, "Resend:") })
	if got[len(got)-1] != "Resend: 2" {
		t.Errorf("resend = %q, want Resend: 2", got[len(got)-1])
	}
	h.sendNumbered(2, "G91")
	h.sendNumbered(3, "M83")
	waitExecuted(t, p, 4)
	if got := p.Executed(); !slices.Equal(got, []string{"G4 P300", "G90", "G91", "M83"}) {
		t.Errorf("executed = %q", got)
	}
	h.send("M400")
	for _, line := range h.until("ok of M400", func(l string) bool { return l == "ok" && len(p.Executed()) == 5 }) {
		if strings.Contains(line, "Line Number") {
			t.Errorf("line 3 was not discarded: %q", line)
		}
	}
}

func TestM110Variants(t *testing.T) {
	cases := []struct {
		name  string
		reset string
		next  int
	}{
		{"octoprint", numbered(0, "M110 N0"), 1},
		{"printcore", numbered(-1, "M110"), 0},
		{"unnumbered", "M110 N-1", 0},
		{"parameter wins", numbered(7, "M110 N41"), 42},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startPrinter(t, fastConfig())
			h := connect(t, p)
			h.sendNumbered(5, "G90") // any number is wrong before the reset
			h.untilLine("Resend: 1")
			h.untilLine("ok")
			h.send(tc.reset)
			h.untilLine("ok")
			h.sendNumbered(tc.next, "G91")
			if got := h.next(); got != "ok" {
				t.Fatalf("reply to N%d after %q = %q, want ok", tc.next, tc.reset, got)
			}
			executed := p.Executed()
			if executed[len(executed)-1] != "G91" {
				t.Errorf("last executed = %q, want G91", executed[len(executed)-1])
			}
		})
	}
}

func TestCommentsAndBlankLines(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	h.send("   ")
	h.send("; only a comment")
	h.send("G90 ; absolute")
	h.send("\r")
	h.send(numbered(1, "G91") + " ; trailing comment after checksum")
	h.untilLine("ok")
	h.untilLine("ok")
	if got := p.Executed(); !slices.Equal(got, []string{"G90", "G91"}) {
		t.Errorf("executed = %q, want [G90 G91]", got)
	}
}

func TestUnknownCommandEcho(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	got := h.command("M9999 X1")
	want := []string{`echo:Unknown command: "M9999 X1"`, "ok"}
	if !slices.Equal(got, want) {
		t.Errorf("reply = %q, want %q", got, want)
	}
}

var m105Pattern = regexp.MustCompile(`^ok T:\d+\.\d\d /\d+\.\d\d B:\d+\.\d\d /\d+\.\d\d @:\d+ B@:\d+$`)

func TestM105Format(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	got := h.command("M105")
	if len(got) != 1 || !m105Pattern.MatchString(got[0]) {
		t.Errorf("M105 reply = %q, want one line matching %s", got, m105Pattern)
	}
	if !strings.HasPrefix(got[0], "ok T:22.00 /0.00 B:22.00 /0.00") {
		t.Errorf("M105 reply = %q, want ambient readings without targets", got[0])
	}
}

func TestM105MultipleExtruders(t *testing.T) {
	cfg := fastConfig()
	cfg.Extruders = 2
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.command("M104 T1 S200")
	got := h.command("M105")
	want := "ok T:22.00 /0.00 B:22.00 /0.00 T0:22.00 /0.00 T1:200.00 /200.00 @:0 B@:0 @0:0 @1:"
	if !strings.HasPrefix(got[0], want) {
		t.Errorf("M105 reply = %q, want prefix %q", got[0], want)
	}
}

func TestM115CapabilityLines(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	got := h.command("M115")
	if !strings.HasPrefix(got[0], "FIRMWARE_NAME:Marlin 2.1.2.1 (virtual) SOURCE_CODE_URL:") {
		t.Errorf("firmware line = %q", got[0])
	}
	for _, field := range []string{" PROTOCOL_VERSION:1.0 ", " MACHINE_TYPE:", " EXTRUDER_COUNT:1 ", " UUID:"} {
		if !strings.Contains(got[0], field) {
			t.Errorf("firmware line %q has no %q", got[0], field)
		}
	}
	caps := map[string]string{}
	for _, line := range got[1 : len(got)-1] {
		parts := strings.Split(line, ":")
		if len(parts) != 3 || parts[0] != "Cap" || (parts[2] != "0" && parts[2] != "1") {
			t.Errorf("malformed capability line %q", line)
			continue
		}
		caps[parts[1]] = parts[2]
	}
	for name, want := range map[string]string{
		"AUTOREPORT_TEMP": "1", "AUTOREPORT_POS": "1", "AUTOREPORT_SD_STATUS": "1",
		"EMERGENCY_PARSER": "0", "EXTENDED_M20": "1", "PROMPT_SUPPORT": "0", "HOST_ACTION_COMMANDS": "0",
	} {
		if caps[name] != want {
			t.Errorf("Cap:%s = %q, want %q", name, caps[name], want)
		}
	}
	if got[len(got)-1] != "ok" {
		t.Errorf("last line = %q, want ok", got[len(got)-1])
	}
}

func TestM114AfterMoves(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	for _, cmd := range []string{"G28", "G1 X10 Y20 Z0.3 F3000", "G91", "G1 X5 E2", "G90", "M82", "G92 E0", "G1 Y-1.5"} {
		h.command(cmd)
	}
	got := h.command("M114")
	want := []string{"X:15.00 Y:-1.50 Z:0.30 E:0.00 Count X:1200 Y:-120 Z:120", "ok"}
	if !slices.Equal(got, want) {
		t.Errorf("M114 = %q, want %q", got, want)
	}
}

func TestM114ArcEndpoint(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	h.command("G1 X10 Y0")
	h.command("G2 X20 Y0 I5 J0")
	h.command("G3 X30 Y0 R5")
	got := h.command("M114")
	if !strings.HasPrefix(got[0], "X:30.00 Y:0.00 ") {
		t.Errorf("M114 = %q, want X:30.00 Y:0.00", got[0])
	}
}

func TestToolSelect(t *testing.T) {
	cfg := fastConfig()
	cfg.Extruders = 2
	p := startPrinter(t, cfg)
	h := connect(t, p)
	if got := h.command("T1"); !slices.Equal(got, []string{"echo:Active Extruder: 1", "ok"}) {
		t.Errorf("T1 = %q", got)
	}
	if got := h.command("T2"); !slices.Equal(got, []string{"echo:T2 Invalid extruder", "ok"}) {
		t.Errorf("T2 = %q", got)
	}
	if got := h.command("M104 T5 S200"); !slices.Equal(got, []string{"echo:M104 Invalid extruder 5", "ok"}) {
		t.Errorf("M104 T5 = %q", got)
	}
}

func TestM117AndM118(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	cases := map[string]string{
		"M117 Hello World":   "echo:Hello World",
		"M118 plain text":    "plain text",
		"M118 A1 action":     "//action",
		"M118 E1 echoed":     "echo:echoed",
		"M118 E1 A1 P0 both": "echo://both",
	}
	for cmd, want := range cases {
		got := h.command(cmd)
		if !slices.Equal(got, []string{want, "ok"}) {
			t.Errorf("%s = %q, want [%q ok]", cmd, got, want)
		}
	}
}

func TestSDCardCommands(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	if got := h.command("M21"); !slices.Equal(got, []string{"echo:SD card ok", "ok"}) {
		t.Errorf("M21 = %q", got)
	}
	if got := h.command("M20"); !slices.Equal(got, []string{"Begin file list", "End file list", "ok"}) {
		t.Errorf("M20 = %q", got)
	}
}

func TestMaxCmdSizeTruncates(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxCmdSize = 20
	p := startPrinter(t, cfg)
	h := connect(t, p)
	// 19 bytes are kept, so the checksum is cut off.
	h.sendNumbered(1, "M117 a long message that does not fit")
	got := h.until("resend", func(l string) bool { return strings.HasPrefix(l, "Resend:") })
	if got[0] != "Error:No Checksum with line number, Last Line: 0" {
		t.Errorf("reply = %q, want the no-checksum error", got)
	}
	h.untilLine("ok")
	h.send("M117 0123456789ABCDEFGHIJ")
	h.untilLine("ok")
	executed := p.Executed()
	if last := executed[len(executed)-1]; last != "M117 0123456789ABCD" {
		t.Errorf("executed %q, want the first 19 bytes", last)
	}
}

func TestGarbageInputSurvives(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	garbage := []byte{0, 0xff, 0xfe, 'N', '*', '\n', 0x80, 'M', 0, '1', '\r', '\n', '*', '*', 'N', '-', '\n'}
	for i := 0; i < 200; i++ {
		garbage = append(garbage, byte(i*37), byte(i*91))
	}
	garbage = append(garbage, '\n')
	if _, err := h.port.Write(garbage); err != nil {
		t.Fatal(err)
	}
	// Some garbage lines are executed as unknown or empty commands and get
	// their own ok, so an ok alone does not say which command finished.
	// The M118 output comes after the output of every garbage line.
	// A rejected line would drop whatever else was received by then,
	// perhaps the M118 too, so this garbage has no line starting with N.
	h.send("M118 E1 garbage done")
	out := h.until("M118 output", func(l string) bool {
		return l == "echo:garbage done" || strings.HasPrefix(l, "Error:")
	})
	if last := out[len(out)-1]; last != "echo:garbage done" {
		t.Fatalf("garbage got %q, want no rejected line; output: %q", last, out)
	}
	h.untilLine("ok")
	// M110 sets the line number when it is executed, so the numbered lines
	// are sent only after its ok.
	h.send("M110 N-1")
	h.untilLine("ok")
	// The printer still replies to a clean numbered command.
	h.sendNumbered(9, "M110")
	h.sendNumbered(10, "M105")
	h.until("M105 reply", func(l string) bool { return strings.HasPrefix(l, "ok T:") })
}
