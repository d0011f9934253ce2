package printer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

const testFile = "bambustudio-1.9.7.52_square-ring_tiny.gcode"

type event struct {
	name    string
	payload bridge.Payload
	ctx     bridge.Context
}

type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) emit(name string, payload bridge.Payload, ctx bridge.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{name, payload, ctx})
}

func (r *recorder) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.name == name {
			n++
		}
	}
	return n
}

func (r *recorder) last(name string) (event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].name == name {
			return r.events[i], true
		}
	}
	return event{}, false
}

func (r *recorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.name)
	}
	return out
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type rig struct {
	t     *testing.T
	vp    *virtual.Printer
	p     *printer.Printer
	rec   *recorder
	files string
	link  string
}

// startRig runs a virtual printer with vcfg and a printer connected to it
// through a symlink, so a test can replace the virtual printer.
func startRig(t *testing.T, vcfg virtual.Config, pcfg printer.Config) *rig {
	t.Helper()
	return startRigMetrics(t, vcfg, pcfg, printer.Metrics{})
}

// startRigMetrics is startRig with the printer's metrics hooks.
func startRigMetrics(t *testing.T, vcfg virtual.Config, pcfg printer.Config, metrics printer.Metrics) *rig {
	t.Helper()
	return startRigLogger(t, vcfg, pcfg, metrics, nil)
}

// startRigLogger is startRigMetrics with the printer's logger, nil for
// none (or stderr with PRINTBRIDGE_TEST_DEBUG set).
func startRigLogger(t *testing.T, vcfg virtual.Config, pcfg printer.Config, metrics printer.Metrics, log *slog.Logger) *rig {
	t.Helper()
	dir := t.TempDir()
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o750); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("..", "testdata", "gcode", testFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, testFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, rec: &recorder{}, files: files, link: filepath.Join(dir, "tty")}
	r.startVirtual(vcfg)
	pcfg.Port = r.link
	pcfg.FilesDir = files
	pcfg.AutoConnect = true
	if pcfg.ReconnectMin == 0 {
		pcfg.ReconnectMin = 50 * time.Millisecond
		pcfg.ReconnectMax = 200 * time.Millisecond
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if os.Getenv("PRINTBRIDGE_TEST_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r.p = printer.New(pcfg, log, r.rec.emit, metrics)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

func (r *rig) startVirtual(vcfg virtual.Config) {
	r.t.Helper()
	vcfg.LinkPath = r.link
	vp, err := virtual.New(vcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- vp.Run(ctx) }()
	r.vp = vp
	r.t.Cleanup(func() {
		cancel()
		<-done
		// Cancelling Run leaves the pty master and its inotify instance
		// open; only Close releases them.
		_ = vp.Close()
	})
}

func (r *rig) waitState(state string, timeout time.Duration) {
	r.t.Helper()
	waitFor(r.t, "state "+state, timeout, func() bool { return r.p.Snapshot().State == state })
}

func (r *rig) job(action, path string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.p.Job(ctx, action, path, nil); err != nil {
		r.t.Fatalf("%s %s: %v", action, path, err)
	}
}

func fileCommands(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "gcode", testFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmds, err := virtual.CommandsOf(f)
	if err != nil {
		t.Fatal(err)
	}
	return cmds
}

// jobLines returns the executed lines from the first file command on,
// without the edge's closing M400.
func jobLines(t *testing.T, executed, want []string) []string {
	t.Helper()
	i := slices.Index(executed, want[0])
	if i < 0 {
		t.Fatalf("first file command %q never executed", want[0])
	}
	job := executed[i:]
	if n := len(job); n > 0 && job[n-1] == "M400" && want[len(want)-1] != "M400" {
		job = job[:n-1]
	}
	return job
}

func assertRecordEqualsFile(t *testing.T, executed []string) {
	t.Helper()
	want := fileCommands(t)
	got := jobLines(t, executed, want)
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("command %d = %q, want %q (previous: %q)", i, got[i], want[i], want[max(0, i-3):i])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("executed %d file commands, file has %d", len(got), len(want))
	}
}

func fastConfig() virtual.Config {
	c := virtual.DefaultConfig()
	c.Speed = 0
	return c
}

func TestPrintRecordEqualsFile(t *testing.T) {
	r := startRig(t, fastConfig(), printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, testFile)
	waitFor(t, "PrintDone", 60*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })
	assertRecordEqualsFile(t, r.vp.Executed())

	done, _ := r.rec.last(bridge.EventPrintDone)
	for _, key := range []string{"name", "path", "origin", "size", "time"} {
		if _, ok := done.payload.Get(key); !ok {
			t.Errorf("PrintDone lacks %q: %v", key, done.payload)
		}
	}
	if r.rec.count(bridge.EventPrintFailed) != 0 {
		t.Error("PrintFailed fired for a successful print")
	}
	names := r.rec.names()
	order := []string{bridge.EventConnecting, bridge.EventConnected, bridge.EventFileSelected, bridge.EventPrintStarted, bridge.EventPrintDone}
	pos := -1
	for _, want := range order {
		i := slices.Index(names[pos+1:], want)
		if i < 0 {
			t.Fatalf("%s missing or out of order in %v", want, names)
		}
		pos += i + 1
	}
}

func TestZChangeFollowsOctoPrintRules(t *testing.T) {
	r := startRig(t, fastConfig(), printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	ctx := context.Background()
	lines := []string{"G1 Z0.2 F300", "G1 Z0.2", "G1 Z0.3", "G1 Z0.2", "G1 X5 Y5", "G1 z5"}
	done := make(chan error, 1)
	if err := r.p.SendGcode(ctx, lines, "test", func(_ []string, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var got []string
	r.rec.mu.Lock()
	for _, e := range r.rec.events {
		if e.name == bridge.EventZChange {
			newZ, _ := e.payload.Get("new")
			oldZ, _ := e.payload.Get("old")
			got = append(got, fmt.Sprintf("%v<-%v", newZ, oldZ))
		}
	}
	r.rec.mu.Unlock()
	want := []string{"0.2<-<nil>", "0.3<-0.2", "0.2<-0.3"}
	if !slices.Equal(got, want) {
		t.Fatalf("ZChange sequence = %v, want %v", got, want)
	}
}

func TestGcodeRepliesCarryFirmwareLines(t *testing.T) {
	r := startRig(t, fastConfig(), printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	type result struct {
		replies []string
		err     error
	}
	done := make(chan result, 1)
	err := r.p.SendGcode(context.Background(), []string{"M114", "G28"}, "test", func(replies []string, err error) { done <- result{replies, err} })
	if err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if !slices.ContainsFunc(res.replies, func(l string) bool { return strings.Contains(l, "X:") && strings.Contains(l, "Count") }) {
		t.Errorf("replies %q lack the M114 report", res.replies)
	}
	if r.rec.count(bridge.EventHome) != 1 || r.rec.count(bridge.EventPositionUpdate) < 1 {
		t.Errorf("events %v lack Home or PositionUpdate", r.rec.names())
	}
}

// TestEchoOKIsNotAnAck sends `M118 E1 ok`, which prints `echo:ok` before
// its own ok. Taken for a glued ok, it acknowledged the next line too
// early, and every later command got the replies of the one before.
func TestEchoOKIsNotAnAck(t *testing.T) {
	r := startRig(t, fastConfig(), printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	echoes := r.gcode("M118 E1 ok", "M118 E1 ok", "M118 E1 ok")
	count := 0
	for _, line := range echoes {
		if line == "echo:ok" {
			count++
		}
	}
	if count != 3 {
		t.Errorf("replies of three M118 E1 ok = %q, want three echo:ok lines", echoes)
	}
	position := r.gcode("M114")
	if !slices.ContainsFunc(position, func(l string) bool { return strings.Contains(l, "X:") && strings.Contains(l, "Count") }) {
		t.Errorf("replies of M114 after the echoes = %q, want its position report", position)
	}
}

func TestGcodeRejectedWhenTooLong(t *testing.T) {
	r := startRig(t, fastConfig(), printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	long := "M117 " + strings.Repeat("x", 100)
	err := r.p.SendGcode(context.Background(), []string{long}, "test", nil)
	if err == nil || !strings.Contains(err.Error(), "maximum of 96") {
		t.Fatalf("long line error = %v, want one naming the 96-byte maximum", err)
	}
}

func TestPauseResumeCancel(t *testing.T) {
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 1
	r := startRig(t, vcfg, printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, testFile)
	r.waitState("PRINTING", 10*time.Second)
	r.job(bridge.ActionPause, "")
	r.waitState("PAUSED", 60*time.Second)
	paused, _ := r.rec.last(bridge.EventPrintPaused)
	pos, ok := paused.payload.Get("position")
	if !ok {
		t.Fatalf("PrintPaused lacks position: %v", paused.payload)
	}
	if z, _ := pos.(bridge.Payload).Get("z"); z == nil {
		t.Errorf("PrintPaused position has no z: %v", pos)
	}
	if _, ok := paused.payload.Get("fileposition"); !ok {
		t.Error("PrintPaused lacks fileposition")
	}
	r.job(bridge.ActionResume, "")
	r.waitState("PRINTING", 10*time.Second)
	r.job(bridge.ActionCancel, "")
	r.waitState("OPERATIONAL", 60*time.Second)

	for name, want := range map[string]int{bridge.EventPrintPaused: 1, bridge.EventPrintResumed: 1, bridge.EventPrintCancelling: 1,
		bridge.EventPrintCancelled: 1, bridge.EventPrintFailed: 1, bridge.EventPrintDone: 0} {
		if got := r.rec.count(name); got != want {
			t.Errorf("%s fired %d times, want %d", name, got, want)
		}
	}
	failed, _ := r.rec.last(bridge.EventPrintFailed)
	if reason, _ := failed.payload.Get("reason"); reason != "cancelled" {
		t.Errorf("PrintFailed reason = %v, want cancelled", reason)
	}
	names := r.rec.names()
	if slices.Index(names, bridge.EventPrintCancelled) > slices.Index(names, bridge.EventPrintFailed) {
		t.Error("PrintFailed came before PrintCancelled")
	}
}

func TestPauseDuringStartingPauses(t *testing.T) {
	// The G4 dwell of beforePrintStarted keeps the print in STARTING when
	// the pause arrives, where a client acting on the previous print's
	// PRINTING state can send it.
	dir := writeScripts(t, map[string]string{printer.ScriptBeforePrintStarted: "G4 S2\n"})
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 1
	r := startRig(t, vcfg, printer.Config{Settings: printer.Settings{ScriptsDir: dir}})
	r.waitState("OPERATIONAL", 10*time.Second)
	started := make(chan error, 1)
	if err := r.p.Job(context.Background(), bridge.ActionStart, testFile, func(_ []string, err error) { started <- err }); err != nil {
		t.Fatalf("start %s: %v", testFile, err)
	}
	r.job(bridge.ActionPause, "")
	r.waitState("PAUSED", 60*time.Second)
	select {
	case err := <-started:
		if err != nil {
			t.Errorf("start finished with %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("start did not finish although the print paused")
	}

	states := stateIDs(r)
	i := slices.Index(states, "STARTING")
	if i < 0 || i+2 >= len(states) || states[i+1] != "PAUSING" || states[i+2] != "PAUSED" {
		t.Fatalf("states = %q, want STARTING, PAUSING, PAUSED with no PRINTING between", states)
	}
	paused, _ := r.rec.last(bridge.EventPrintPaused)
	pos, ok := paused.payload.Get("position")
	if !ok {
		t.Fatalf("PrintPaused lacks position: %v", paused.payload)
	}
	for _, axis := range []string{"x", "y", "z", "e"} {
		if v, _ := pos.(bridge.Payload).Get(axis); v == nil {
			t.Errorf("PrintPaused position has no %s: %v", axis, pos)
		}
	}
	if executed := r.vp.Executed(); slices.Contains(executed, fileCommands(t)[0]) {
		t.Errorf("the first line of the file was sent before the resume: %q", executed)
	}

	r.job(bridge.ActionResume, "")
	r.waitState("PRINTING", 10*time.Second)
	waitFor(t, "the first file line after the resume", 30*time.Second, func() bool {
		return slices.Contains(r.vp.Executed(), fileCommands(t)[0])
	})
	r.job(bridge.ActionCancel, "")
	r.waitState("OPERATIONAL", 60*time.Second)
	if n := r.rec.count(bridge.EventPrintPaused); n != 1 {
		t.Errorf("PrintPaused fired %d times, want 1", n)
	}
}

func TestUnplugFailsJobAndReconnects(t *testing.T) {
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 1
	r := startRig(t, vcfg, printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, testFile)
	r.waitState("PRINTING", 10*time.Second)
	if err := r.vp.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Disconnected", 10*time.Second, func() bool { return r.rec.count(bridge.EventDisconnected) == 1 })
	if got := r.rec.count(bridge.EventPrintFailed); got != 1 {
		t.Fatalf("PrintFailed fired %d times, want 1", got)
	}
	errEv, ok := r.rec.last(bridge.EventError)
	if !ok {
		t.Fatal("no Error event after unplug")
	}
	if reason, _ := errEv.payload.Get("reason"); reason != "connection" {
		t.Errorf("Error reason = %v, want connection", reason)
	}

	// Plugging a printer back in at the same path reconnects.
	r.startVirtual(fastConfig())
	waitFor(t, "second Connected", 20*time.Second, func() bool { return r.rec.count(bridge.EventConnected) == 2 })
}

func TestFatalFirmwareErrorFailsOnce(t *testing.T) {
	vcfg := fastConfig()
	vcfg.FatalAfterLines = 50
	r := startRig(t, vcfg, printer.Config{AutoConnect: true})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, testFile)
	waitFor(t, "Error", 20*time.Second, func() bool { return r.rec.count(bridge.EventError) >= 1 })
	waitFor(t, "PrintFailed", 10*time.Second, func() bool { return r.rec.count(bridge.EventPrintFailed) >= 1 })
	errEv, _ := r.rec.last(bridge.EventError)
	if reason, _ := errEv.payload.Get("reason"); reason != "firmware" {
		t.Errorf("Error reason = %v, want firmware", reason)
	}
	if logs, ok := errEv.payload.Get("logs"); !ok || len(logs.([]any)) == 0 {
		t.Errorf("firmware Error lacks logs: %v", errEv.payload)
	}
	if faq, _ := errEv.payload.Get("faq"); faq != "firmware-thermal-runaway" {
		t.Errorf("faq = %v, want firmware-thermal-runaway", faq)
	}
	time.Sleep(200 * time.Millisecond)
	if got := r.rec.count(bridge.EventPrintFailed); got != 1 {
		t.Errorf("PrintFailed fired %d times, want exactly 1", got)
	}
}

func TestFirmwareResetMidJob(t *testing.T) {
	vcfg := fastConfig()
	vcfg.ResetAfterLines = 60
	r := startRig(t, vcfg, printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, testFile)
	waitFor(t, "PrinterReset", 20*time.Second, func() bool { return r.rec.count(bridge.EventPrinterReset) == 1 })
	reset, _ := r.rec.last(bridge.EventPrinterReset)
	if idle, _ := reset.payload.Get("idle"); idle != false {
		t.Errorf("PrinterReset idle = %v, want false", idle)
	}
	r.waitState("OPERATIONAL", 10*time.Second)
	if got := r.rec.count(bridge.EventPrintFailed); got != 1 {
		t.Errorf("PrintFailed fired %d times, want 1", got)
	}
	if r.rec.count(bridge.EventConnected) != 2 {
		t.Errorf("Connected fired %d times, want 2 (after the re-handshake)", r.rec.count(bridge.EventConnected))
	}
}

func TestResendsLoseNothing(t *testing.T) {
	for _, style := range []string{virtual.ResendStyle11, virtual.ResendStyle20, virtual.ResendStyle21} {
		t.Run("marlin"+style, func(t *testing.T) {
			vcfg := fastConfig()
			vcfg.ResendRatio = 10
			vcfg.ResendStyle = style
			r := startRig(t, vcfg, printer.Config{})
			r.waitState("OPERATIONAL", 10*time.Second)
			r.job(bridge.ActionStart, testFile)
			waitFor(t, "PrintDone", 60*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })
			assertRecordEqualsFile(t, r.vp.Executed())
		})
	}
}

func TestGarbageOnOpenStillConnects(t *testing.T) {
	vcfg := fastConfig()
	vcfg.GarbageOnOpen = true
	r := startRig(t, vcfg, printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	if r.rec.count(bridge.EventError) != 0 {
		t.Errorf("garbage on open caused an Error event: %v", r.rec.names())
	}
}

func TestJobPathOutsideFilesRejected(t *testing.T) {
	r := startRig(t, fastConfig(), printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	for _, path := range []string{"../secret.gcode", "a/../../x", "missing.gcode", ""} {
		err := r.p.Job(context.Background(), bridge.ActionStart, path, nil)
		if err == nil {
			t.Errorf("start %q accepted", path)
		}
	}
}

func TestKnobsLoseNothing(t *testing.T) {
	cases := []struct {
		name string
		flow string
		knob func(*virtual.Config)
	}{
		{"ping-pong", printer.FlowPingPong, func(c *virtual.Config) {}},
		{"window", printer.FlowWindow, func(c *virtual.Config) {}},
		{"advanced-ok", printer.FlowAuto, func(c *virtual.Config) { c.AdvancedOK = true }},
		{"advanced-ok-resends", printer.FlowAuto, func(c *virtual.Config) { c.AdvancedOK = true; c.ResendRatio = 10 }},
		{"ok-before-output", printer.FlowAuto, func(c *virtual.Config) { c.OKBeforeOutput = true }},
		{"wait-when-idle", printer.FlowAuto, func(c *virtual.Config) { c.WaitWhenIdle = true }},
		{"small-rx-buffer", printer.FlowAuto, func(c *virtual.Config) { c.RXBufferSize = 64 }},
		{"no-busy-keepalive", printer.FlowAuto, func(c *virtual.Config) { c.NoBusyKeepalive = true }},
		{"emergency-parser", printer.FlowAuto, func(c *virtual.Config) { c.EmergencyParser = true }},
		// The window goes on behind M190, G28 and M109, so rejected lines
		// land behind them too.
		{"emergency-parser-resends", printer.FlowWindow, func(c *virtual.Config) { c.EmergencyParser = true; c.ResendRatio = 10 }},
		{"resends-ping-pong-2.0", printer.FlowPingPong, func(c *virtual.Config) { c.ResendRatio = 10; c.ResendStyle = virtual.ResendStyle20 }},
		{"garbage-on-open", printer.FlowAuto, func(c *virtual.Config) { c.GarbageOnOpen = true }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vcfg := fastConfig()
			c.knob(&vcfg)
			r := startRig(t, vcfg, printer.Config{Flow: c.flow})
			r.waitState("OPERATIONAL", 10*time.Second)
			r.job(bridge.ActionStart, testFile)
			waitFor(t, "PrintDone", 60*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })
			assertRecordEqualsFile(t, r.vp.Executed())
			if n := r.rec.count(bridge.EventError); n != 0 {
				t.Errorf("%d Error events during a clean print", n)
			}
		})
	}
}

func TestEmergencyStopBypassesQueue(t *testing.T) {
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 1
	// The file heats the bed with M190 within its first lines. Without
	// EMERGENCY_PARSER, Marlin reads the M112 only after that wait, so
	// the test would depend on how far the print got.
	vcfg.EmergencyParser = true
	r := startRig(t, vcfg, printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, testFile)
	r.waitState("PRINTING", 10*time.Second)
	if err := r.p.SendGcode(context.Background(), []string{"M112"}, "test", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "EStop", 10*time.Second, func() bool { return r.rec.count(bridge.EventEStop) == 1 })
	waitFor(t, "Disconnected", 10*time.Second, func() bool { return r.rec.count(bridge.EventDisconnected) == 1 })
	if got := r.rec.count(bridge.EventPrintFailed); got != 1 {
		t.Errorf("PrintFailed fired %d times, want 1", got)
	}
	ev, _ := r.rec.last(bridge.EventError)
	if c, _ := ev.payload.Get("consequence"); c != "emergency" {
		t.Errorf("Error consequence = %v, want emergency", c)
	}
	if !slices.Contains(r.vp.Executed(), "M112") {
		t.Error("the virtual printer never executed M112")
	}
	// M112 halts the firmware, so the edge must not reconnect on its own.
	time.Sleep(300 * time.Millisecond)
	if n := r.rec.count(bridge.EventConnected); n != 1 {
		t.Errorf("Connected fired %d times after M112, want no reconnect", n)
	}
}

func TestBadFilesRejectedAtStart(t *testing.T) {
	r := startRig(t, fastConfig(), printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(r.files, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("long.gcode", "G28\nM117 "+strings.Repeat("A", 200)+"\nG1 X1\n")
	write("binary.gcode", "G28\nG1 X1\x01\x02\n")
	write("readme.gcode", "This is a text file\nwith words\nand no codes\n")
	write("longcomment.gcode", "G28\n;"+strings.Repeat("c", 70000)+"\nG1 X1 Y1\n")
	if err := os.Symlink("/etc/hostname", filepath.Join(r.files, "link.gcode")); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"long.gcode":        "line 2 of long.gcode",
		"binary.gcode":      "control byte 0x01",
		"readme.gcode":      "does not look like G-code",
		"link.gcode":        "outside the files directory",
		"/etc/passwd":       "absolute paths are not allowed",
		"../x.gcode":        "'..' is not allowed",
		"missing.gcode":     "not found",
		"longcomment.gcode": "",
	}
	for path, want := range cases {
		err := r.p.Job(context.Background(), bridge.ActionStart, path, nil)
		if want == "" {
			if err != nil {
				t.Errorf("start %s: %v", path, err)
				continue
			}
			waitFor(t, "PrintDone of "+path, 20*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("start %s: error %v, want one containing %q", path, err, want)
		}
	}
	if n := r.rec.count(bridge.EventPrintFailed); n != 0 {
		t.Errorf("PrintFailed fired %d times; bad files must fail before the print starts", n)
	}
}

// TestSecondRequestNamesOneInProgress sends a second pause or cancel
// while the first still waits behind a dwell: the rejection names the
// request in progress, not "no print is running".
func TestSecondRequestNamesOneInProgress(t *testing.T) {
	for _, c := range []struct {
		action, state, want string
	}{
		{bridge.ActionCancel, "CANCELLING", "a cancel is already in progress"},
		{bridge.ActionPause, "PAUSING", "the print is pausing or paused already"},
	} {
		t.Run(c.action, func(t *testing.T) {
			// Real time, so the dwell holds the M400 of the request, and
			// with it the state, until the test ends the virtual printer.
			r := startRig(t, virtual.DefaultConfig(), printer.Config{})
			if err := os.WriteFile(filepath.Join(r.files, "dwell.gcode"), []byte("G4 S600\nM117 after the dwell\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r.waitState("OPERATIONAL", 10*time.Second)
			r.job(bridge.ActionStart, "dwell.gcode")
			waitFor(t, "G4 executing", 20*time.Second, func() bool { return slices.Contains(r.vp.Executed(), "G4 S600") })
			r.job(c.action, "")
			r.waitState(c.state, 10*time.Second)

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := r.p.Job(ctx, c.action, "", nil)
			if err == nil {
				t.Fatalf("a second %s during %s was accepted", c.action, c.state)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), "no print is running") {
				t.Errorf("error %q says no print is running while one is in %s", err, c.state)
			}
		})
	}
}
