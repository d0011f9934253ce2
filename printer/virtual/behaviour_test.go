package virtual

import (
	"bufio"
	"errors"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPlannerFullDelaysOK(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PlannerSize = 4 // three blocks fit
	cfg.AdvancedOK = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	const moveTime = 500 * time.Millisecond // 10 mm at 1200 mm/min
	sent := time.Now()
	h.send("G1 X10 F1200\nG1 X20\nG1 X30\nG1 X40")
	var oks []string
	for len(oks) < 4 {
		if line := h.next(); isOK(line) {
			oks = append(oks, line)
		}
	}
	fourth := time.Since(sent)
	if !strings.HasPrefix(oks[2], "ok P0 ") {
		t.Errorf("third ok = %q, want P0: the planner is full", oks[2])
	}
	if fourth < moveTime*9/10 {
		t.Errorf("fourth ok after %v, want at least the first move's %v", fourth, moveTime)
	}
}

func TestM400WaitsForMoves(t *testing.T) {
	p := startPrinter(t, DefaultConfig())
	h := connect(t, p)
	sent := time.Now()
	h.send("G1 X5 F1200\nG1 X10\nM400") // two moves of 250 ms
	h.untilLine("ok")
	h.untilLine("ok")
	h.untilLine("ok")
	if took := time.Since(sent); took < 450*time.Millisecond {
		t.Errorf("M400 ok after %v, want at least the 500 ms of both moves", took)
	}
	if got := h.command("M114"); !strings.HasPrefix(got[0], "X:10.00 ") {
		t.Errorf("M114 after M400 = %q", got)
	}
}

func TestG4Dwell(t *testing.T) {
	p := startPrinter(t, DefaultConfig())
	h := connect(t, p)
	sent := time.Now()
	h.command("G4 P300")
	if took := time.Since(sent); took < 300*time.Millisecond {
		t.Errorf("G4 P300 ok after %v, want at least 300 ms", took)
	}
	sent = time.Now()
	h.command("G4 S0.2")
	if took := time.Since(sent); took < 200*time.Millisecond {
		t.Errorf("G4 S0.2 ok after %v, want at least 200 ms", took)
	}
}

var heatingLine = regexp.MustCompile(`^ T:[\d.]+ /200\.00 B:[\d.]+ /[\d.]+ @:\d+ B@:\d+ W:\?$`)

func TestM109BlocksWithStatusLines(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Speed = 20 // about 2 s of heating
	p := startPrinter(t, cfg)
	h := connect(t, p)
	lines := h.command("M109 S200")
	status := 0
	for _, line := range lines[:len(lines)-1] {
		switch {
		case heatingLine.MatchString(line):
			status++
		case line == msgBusy:
		default:
			t.Errorf("unexpected line during M109: %q", line)
		}
	}
	if status < 2 {
		t.Errorf("got %d status lines during M109, want several: %q", status, lines)
	}
	assertTemperature(t, h, "T", 200)
}

func TestM109RWaitsForCooling(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Speed = 20
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.command("M109 S200")
	h.command("M109 R150")
	assertTemperature(t, h, "T", 150)
	h.command("M190 S60")
	assertTemperature(t, h, "B", 60)
}

func TestM109InstantAtSpeedZero(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	lines := h.command("M109 S215")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], " W:?") {
		t.Errorf("M109 at speed 0 = %q, want one status line and ok", lines)
	}
	assertTemperature(t, h, "T", 215)
}

// assertTemperature checks the actual reading of sensor in an M105 reply.
func assertTemperature(t *testing.T, h *host, sensor string, want float64) {
	t.Helper()
	reply := h.command("M105")[0]
	m := regexp.MustCompile(` ` + sensor + `:([\d.]+) /`).FindStringSubmatch(reply)
	if m == nil {
		t.Fatalf("M105 %q has no %s reading", reply, sensor)
	}
	got, _ := strconv.ParseFloat(m[1], 64)
	if math.Abs(got-want) > tempWindow {
		t.Errorf("%s = %.2f in %q, want %.0f±%.0f", sensor, got, reply, want, tempWindow)
	}
}

func TestBusyKeepaliveDuringDwell(t *testing.T) {
	p := startPrinter(t, DefaultConfig())
	h := connect(t, p)
	h.command("M113 S1")
	lines := h.command("G4 S2.5")
	if busy := countLines(lines, msgBusy); busy < 1 {
		t.Errorf("no %q during a 2.5 s dwell with M113 S1: %q", msgBusy, lines)
	}
	if got := h.command("M113"); got[0] != "echo:M113 S1" {
		t.Errorf("M113 report = %q", got)
	}
}

func countLines(lines []string, want string) int {
	n := 0
	for _, l := range lines {
		if l == want {
			n++
		}
	}
	return n
}

func TestTemperatureAutoreport(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	h.command("M155 S1")
	h.until("temperature auto-report", func(l string) bool { return strings.HasPrefix(l, " T:22.00 /0.00 B:") })
}

func TestPositionAutoreport(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	h.command("G1 X3 Y4")
	h.command("M154 S1")
	h.untilLine("X:3.00 Y:4.00 Z:0.00 E:0.00 Count X:240 Y:320 Z:0")
}

func TestRecordFile(t *testing.T) {
	cfg := fastConfig()
	cfg.RecordPath = filepath.Join(t.TempDir(), "record.txt")
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.sendNumbered(0, "M110 N0")
	h.untilLine("ok")
	h.send(numbered(1, "G28") + " ; home")
	h.send("N2 G1 X1*0") // rejected, so not recorded
	h.until("resend", func(l string) bool { return l == "Resend: 2" })
	h.sendNumbered(2, "G1 X1")
	h.send("  M105   ")
	h.send("M117 Hi *not the checksum")
	want := []string{"M110 N0", "G28", "G1 X1", "M105", "M117 Hi"}
	got := waitExecuted(t, p, len(want))
	if !slices.Equal(got, want) {
		t.Errorf("Executed = %q, want %q", got, want)
	}
	f, err := os.Open(cfg.RecordPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	if !slices.Equal(lines, want) {
		t.Errorf("record file = %q, want %q", lines, want)
	}
}

func TestReopenResetsFirmware(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	h.sendNumbered(1, "M104 S200")
	h.untilLine("ok")
	h.close()

	h2 := connect(t, p)
	// Line numbers start again at 1 and the heater target is gone.
	h2.sendNumbered(1, "M105")
	reply := h2.until("M105 reply", isOK)
	if !strings.HasPrefix(reply[0], "ok T:") || !strings.Contains(reply[0], " /0.00 B:") {
		t.Errorf("M105 after reopen = %q, want target 0", reply)
	}
}

func TestCloseRemovesDevice(t *testing.T) {
	cfg := fastConfig()
	cfg.LinkPath = filepath.Join(t.TempDir(), "printer")
	p := startPrinter(t, cfg)
	h := openHost(t, cfg.LinkPath)
	h.waitBanner()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-h.done:
	case <-time.After(waitTimeout):
		t.Fatal("host read did not end after Close")
	}
	if _, err := os.Stat(p.Path()); !os.IsNotExist(err) {
		t.Errorf("stat %s after Close: %v, want not exist", p.Path(), err)
	}
	if _, err := os.Lstat(cfg.LinkPath); !os.IsNotExist(err) {
		t.Errorf("lstat link after Close: %v, want not exist", err)
	}
}

func TestLinkReplacesSymlink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "printer")
	if err := os.Symlink("/dev/null", link); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig()
	cfg.LinkPath = link
	p := startPrinter(t, cfg)
	if dest, err := os.Readlink(link); err != nil || dest != p.Path() {
		t.Errorf("link points to %q (%v), want %q", dest, err, p.Path())
	}
}

func TestLinkRejectsRegularFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "printer")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig()
	cfg.LinkPath = file
	p, err := New(cfg, testLogger(t))
	if err == nil {
		p.Close()
		t.Fatal("New succeeded over a regular file")
	}
	if data, _ := os.ReadFile(file); string(data) != "keep me" {
		t.Errorf("regular file changed to %q", data)
	}
}

func TestEmergencyStopWithoutParser(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	h.command("M104 S200")
	h.send("M112")
	h.untilLine(msgEmergency)
	h.untilLine(msgKilled)
	// Halted: commands get no reply until M999.
	h.send("M105")
	h.send("M999")
	got := h.until("ok after M999", isOK)
	if got[len(got)-2] != "Resend: 1" {
		t.Errorf("M999 reply = %q, want Resend: 1 then ok", got)
	}
	if reply := h.command("M105")[0]; !strings.Contains(reply, "T:") || !strings.Contains(reply, " /0.00 B:") {
		t.Errorf("M105 after kill = %q, want heaters off", reply)
	}
	executed := p.Executed()
	if !slices.Equal(executed, []string{"M104 S200", "M112", "M999", "M105"}) {
		t.Errorf("executed = %q", executed)
	}
}

func TestRunAfterClose(t *testing.T) {
	p, err := New(fastConfig(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Run(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{Speed: -1},
		{Extruders: 9},
		{PlannerSize: 1},
		{ResendStyle: "1.0"},
		{ResendRatio: 101},
		{Baud: -5},
		{MaxCmdSize: 4},
	}
	for _, cfg := range bad {
		if err := cfg.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", cfg)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}
