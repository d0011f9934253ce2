package printer_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

// writeScripts creates a scripts folder with the given files.
func writeScripts(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "scripts")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	for name, text := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (r *rig) gcode(lines ...string) []string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type result struct {
		replies []string
		err     error
	}
	done := make(chan result, 1)
	if err := r.p.SendGcode(ctx, lines, "test", func(replies []string, err error) { done <- result{replies, err} }); err != nil {
		r.t.Fatalf("send %v: %v", lines, err)
	}
	select {
	case res := <-done:
		if res.err != nil {
			r.t.Fatalf("send %v: %v", lines, res.err)
		}
		return res.replies
	case <-ctx.Done():
		r.t.Fatalf("send %v: no reply", lines)
	}
	return nil
}

// indexOf returns the position of the first event named name, or -1.
func (r *recorder) indexOf(name string) int {
	return slices.Index(r.names(), name)
}

func (r *recorder) all(name string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if e.name == name {
			out = append(out, e)
		}
	}
	return out
}

func assertBefore(t *testing.T, list []string, first, second string) {
	t.Helper()
	i, j := slices.Index(list, first), slices.Index(list, second)
	if i < 0 || j < 0 {
		t.Fatalf("%q at %d and %q at %d; both must be present in %q", first, i, second, j, list)
	}
	if i > j {
		t.Fatalf("%q (at %d) comes after %q (at %d)", first, i, second, j)
	}
}

func TestScriptsRunAroundPrint(t *testing.T) {
	dir := writeScripts(t, map[string]string{
		printer.ScriptAfterPrinterConnected: "; greet\nM117 hello {{ event.baudrate }}\n",
		printer.ScriptBeforePrintStarted:    "M117 start {{ event.name }}\n{# comment #}\n{% if printer_profile.heatedBed %}M117 bed{% endif %}\n",
		printer.ScriptAfterPrintDone:        "M117 done {{ event.time | round(0) | int }}s\n",
	})
	r := startRig(t, fastConfig(), printer.Config{Settings: printer.Settings{ScriptsDir: dir}})
	r.waitState("OPERATIONAL", 10*time.Second)
	waitFor(t, "afterPrinterConnected sent", 10*time.Second, func() bool { return slices.Contains(r.vp.Executed(), "M117 hello 115200") })
	r.job(bridge.ActionStart, testFile)
	waitFor(t, "PrintDone", 60*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })
	waitFor(t, "afterPrintDone sent", 10*time.Second, func() bool {
		ex := r.vp.Executed()
		return len(ex) > 0 && strings.HasPrefix(ex[len(ex)-1], "M117 done ")
	})

	executed := r.vp.Executed()
	first := fileCommands(t)[0]
	assertBefore(t, executed, "M117 start "+testFile, first)
	assertBefore(t, executed, "M117 bed", first)
	if n := strings.TrimSuffix(strings.TrimPrefix(executed[len(executed)-1], "M117 done "), "s"); n == "" || strings.Contains(n, ".") {
		t.Errorf("afterPrintDone rendered %q, want a whole number of seconds", executed[len(executed)-1])
	}

	names := r.rec.names()
	for _, name := range []string{"GcodeScriptAfterPrinterConnectedRunning", "GcodeScriptAfterPrinterConnectedFinished"} {
		if slices.Contains(names, name) {
			t.Errorf("%s fired; OctoPrint sends the connection scripts without events", name)
		}
	}
	assertBefore(t, names, bridge.EventPrintStarted, "GcodeScriptBeforePrintStartedRunning")
	assertBefore(t, names, "GcodeScriptBeforePrintStartedRunning", "GcodeScriptBeforePrintStartedFinished")
	assertBefore(t, names, bridge.EventPrintDone, "GcodeScriptAfterPrintDoneRunning")
	assertBefore(t, names, "GcodeScriptAfterPrintDoneRunning", "GcodeScriptAfterPrintDoneFinished")

	running, _ := r.rec.last("GcodeScriptBeforePrintStartedRunning")
	for key, want := range map[string]any{"name": testFile, "path": testFile, "origin": "local"} {
		if got, _ := running.payload.Get(key); got != want {
			t.Errorf("GcodeScriptBeforePrintStartedRunning %s = %v, want %v", key, got, want)
		}
	}
	finished, _ := r.rec.last("GcodeScriptAfterPrintDoneFinished")
	if _, ok := finished.payload.Get("time"); !ok {
		t.Errorf("GcodeScriptAfterPrintDoneFinished lacks time: %v", finished.payload)
	}
	assertEveryEventListed(t, names)
}

// assertEveryEventListed checks that each fired name is one that
// 'printbridge events' lists, literally or through a templated name such
// as GcodeScript${ScriptName}Running.
func assertEveryEventListed(t *testing.T, fired []string) {
	t.Helper()
	placeholder := regexp.MustCompile(`\\\$\\\{[A-Za-z]+\\\}|<[a-z]+>`)
	var patterns []*regexp.Regexp
	for _, d := range bridge.ListedEvents() {
		quoted := regexp.QuoteMeta(d.Name)
		patterns = append(patterns, regexp.MustCompile("^"+placeholder.ReplaceAllString(quoted, "[A-Za-z0-9]+")+"$"))
	}
	for _, name := range fired {
		if !slices.ContainsFunc(patterns, func(p *regexp.Regexp) bool { return p.MatchString(name) }) {
			t.Errorf("%s fired, but 'printbridge events' does not list it", name)
		}
	}
}

func TestMissingScriptStillFiresEvents(t *testing.T) {
	r := startRig(t, fastConfig(), printer.Config{Settings: printer.Settings{ScriptsDir: writeScripts(t, nil)}})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, testFile)
	waitFor(t, "PrintDone", 60*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })
	waitFor(t, "afterPrintDone events", 5*time.Second, func() bool { return r.rec.count("GcodeScriptAfterPrintDoneFinished") == 1 })
	if n := r.rec.count("GcodeScriptBeforePrintStartedRunning"); n != 1 {
		t.Errorf("GcodeScriptBeforePrintStartedRunning fired %d times, want 1", n)
	}
	if n := r.rec.count("GcodeScriptBeforePrintStartedFinished"); n != 1 {
		t.Errorf("GcodeScriptBeforePrintStartedFinished fired %d times, want 1", n)
	}
	assertRecordEqualsFile(t, r.vp.Executed())
}

func TestPauseCancelScriptsGetPositions(t *testing.T) {
	dir := writeScripts(t, map[string]string{
		printer.ScriptAfterPrintPaused:    "{% if pause_position.x is not none %}M117 paused Z{{ pause_position.z }}{% else %}M117 no position{% endif %}\n",
		printer.ScriptBeforePrintResumed:  "M117 resume Z{{ pause_position.z }} T{{ pause_temperature[0].actual | default(-1) | round(0) | int }}\n",
		printer.ScriptAfterPrintCancelled: "M117 cancelled Z{{ cancel_position.z }}\n",
	})
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 1
	r := startRig(t, vcfg, printer.Config{Settings: printer.Settings{ScriptsDir: dir}})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, testFile)
	r.waitState("PRINTING", 10*time.Second)
	r.job(bridge.ActionPause, "")
	r.waitState("PAUSED", 60*time.Second)

	paused, _ := r.rec.last(bridge.EventPrintPaused)
	pos, _ := paused.payload.Get("position")
	z, _ := pos.(bridge.Payload).Get("z")
	want := "M117 paused Z" + pythonFloat(t, z)
	// The script is queued after PrintPaused, so it may still be on its way.
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(r.vp.Executed(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("afterPrintPaused: %q not executed; last lines %q", want, tail(r.vp.Executed(), 8))
		}
		time.Sleep(10 * time.Millisecond)
	}
	assertBefore(t, r.rec.names(), bridge.EventPrintPaused, "GcodeScriptAfterPrintPausedRunning")

	r.job(bridge.ActionResume, "")
	r.waitState("PRINTING", 60*time.Second)
	resumeLine := ""
	for _, l := range r.vp.Executed() {
		if strings.HasPrefix(l, "M117 resume ") {
			resumeLine = l
		}
	}
	if !strings.HasPrefix(resumeLine, "M117 resume Z"+pythonFloat(t, z)+" T") {
		t.Errorf("beforePrintResumed rendered %q, want the pause Z %v and a tool temperature", resumeLine, z)
	}

	r.job(bridge.ActionCancel, "")
	waitFor(t, "PrintCancelled", 60*time.Second, func() bool { return r.rec.count(bridge.EventPrintCancelled) == 1 })
	waitFor(t, "afterPrintCancelled sent", 60*time.Second, func() bool {
		for _, l := range r.vp.Executed() {
			if strings.HasPrefix(l, "M117 cancelled Z") && !strings.HasSuffix(l, "None") {
				return true
			}
		}
		return false
	})
	names := r.rec.names()
	assertBefore(t, names, bridge.EventPrintCancelled, "GcodeScriptAfterPrintCancelledRunning")
	assertBefore(t, names, "GcodeScriptAfterPrintCancelledFinished", bridge.EventPrintFailed)
	assertEveryEventListed(t, names)
}

// pythonFloat renders a float as the scripts do (Python's str).
func pythonFloat(t *testing.T, v any) string {
	t.Helper()
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("position value %v (%T) is not a float", v, v)
	}
	tmpl, err := printer.ParseTemplate("probe", "{{ v }}", map[string]bool{"v": true})
	if err != nil {
		t.Fatal(err)
	}
	out, err := tmpl.Render(map[string]any{"v": f})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tail(lines []string, n int) []string {
	return lines[max(0, len(lines)-n):]
}

func TestToolChangeScriptsWrapT(t *testing.T) {
	dir := writeScripts(t, map[string]string{
		printer.ScriptBeforeToolChange: "M117 before {{ tool.old }} to {{ tool.new }}\n",
		printer.ScriptAfterToolChange:  "M117 after {{ tool.old }} to {{ tool.new }}\n",
	})
	vcfg := fastConfig()
	vcfg.Extruders = 2
	profile := printer.DefaultProfile()
	profile.Extruder.Count = 2
	r := startRig(t, vcfg, printer.Config{Settings: printer.Settings{ScriptsDir: dir, Profile: profile}})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.gcode("T1")
	// The request ends with T1's ok; the afterToolChange line follows it.
	waitFor(t, "the afterToolChange script", 10*time.Second, func() bool {
		return slices.Contains(r.vp.Executed(), "M117 after 0 to 1")
	})
	executed := r.vp.Executed()
	i := slices.Index(executed, "T1")
	if i < 1 || i+1 >= len(executed) {
		t.Fatalf("T1 not executed between the scripts: %q", executed)
	}
	if executed[i-1] != "M117 before 0 to 1" {
		t.Errorf("line before T1 = %q, want the beforeToolChange script", executed[i-1])
	}
	if executed[i+1] != "M117 after 0 to 1" {
		t.Errorf("line after T1 = %q, want the afterToolChange script", executed[i+1])
	}
	change, _ := r.rec.last(bridge.EventToolChange)
	if n, _ := change.payload.Get("new"); n != 1 {
		t.Errorf("ToolChange new = %v, want 1", n)
	}
}

func TestScriptTemplateErrorSendsNothing(t *testing.T) {
	dir := writeScripts(t, map[string]string{
		printer.ScriptBeforePrintStarted: "M117 ok\n{{ pause_position.x }}\n",
	})
	r := startRig(t, fastConfig(), printer.Config{Settings: printer.Settings{ScriptsDir: dir}})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, testFile)
	waitFor(t, "PrintDone", 60*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })
	if slices.Contains(r.vp.Executed(), "M117 ok") {
		t.Error("a script that failed to render was partly sent")
	}
	if n := r.rec.count("GcodeScriptBeforePrintStartedRunning"); n != 1 {
		t.Errorf("Running fired %d times, want 1", n)
	}
	if n := r.rec.count("GcodeScriptBeforePrintStartedFinished"); n != 0 {
		t.Errorf("Finished fired %d times for a script that failed, want 0", n)
	}
}

func TestCommandSuppressedByProfileAndLists(t *testing.T) {
	profile := printer.DefaultProfile()
	profile.HeatedBed = false
	r := startRig(t, fastConfig(), printer.Config{Settings: printer.Settings{
		Profile: profile, BlockedCommands: []string{"M0", "M1"}, IgnoredCommands: []string{"M42"},
	}})
	r.waitState("OPERATIONAL", 10*time.Second)
	replies := r.gcode("M140 S60", "M190 S60", "M141 S40", "T3", "M0", "M42 P4 S255", "G4 P0")

	cases := []struct{ command, severity string }{
		{"M140 S60", "warn"}, {"M190 S60", "warn"}, {"M141 S40", "warn"}, {"T3", "warn"}, {"M0", "warn"}, {"M42 P4 S255", "info"},
	}
	got := r.rec.all(bridge.EventCommandSuppressed)
	if len(got) != len(cases) {
		t.Fatalf("%d CommandSuppressed events, want %d: %v", len(got), len(cases), got)
	}
	executed := r.vp.Executed()
	for i, c := range cases {
		if cmd, _ := got[i].payload.Get("command"); cmd != c.command {
			t.Errorf("event %d command = %v, want %q", i, cmd, c.command)
		}
		if sev, _ := got[i].payload.Get("severity"); sev != c.severity {
			t.Errorf("%s severity = %v, want %s", c.command, sev, c.severity)
		}
		if msg, _ := got[i].payload.Get("message"); msg == "" {
			t.Errorf("%s has no message", c.command)
		}
		if slices.Contains(executed, c.command) {
			t.Errorf("%s reached the firmware", c.command)
		}
		if !slices.Contains(replies, "suppressed: "+c.command) {
			t.Errorf("reply lines %q do not name the suppressed %s", replies, c.command)
		}
	}
	if !slices.Contains(executed, "G4 P0") {
		t.Error("G4 P0 after the suppressed lines was not sent")
	}
}

func TestBlockedLineInJobPausesPrint(t *testing.T) {
	r := startRig(t, fastConfig(), printer.Config{})
	job := "G28\nG1 X10 F3000\nM0 ; change the magnet\nG1 X20\n"
	if err := os.WriteFile(filepath.Join(r.files, "pause.gcode"), []byte(job), 0o600); err != nil {
		t.Fatal(err)
	}
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, "pause.gcode")
	r.waitState("PAUSED", 20*time.Second)
	suppressed, ok := r.rec.last(bridge.EventCommandSuppressed)
	if !ok {
		t.Fatal("no CommandSuppressed for M0 in the file")
	}
	if cmd, _ := suppressed.payload.Get("command"); cmd != "M0" {
		t.Errorf("suppressed command = %v, want M0", cmd)
	}
	if slices.Contains(r.vp.Executed(), "G1 X20") {
		t.Error("the line after M0 was sent before the resume")
	}
	r.job(bridge.ActionResume, "")
	waitFor(t, "PrintDone", 20*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })
	executed := r.vp.Executed()
	if slices.Contains(executed, "M0") {
		t.Error("blocked M0 reached the firmware")
	}
	if !slices.Contains(executed, "G1 X20") {
		t.Error("the print did not continue after the resume")
	}
}

func TestInvalidToolReportedAndRemembered(t *testing.T) {
	profile := printer.DefaultProfile()
	profile.Extruder.Count = 2 // the virtual printer has one
	r := startRig(t, fastConfig(), printer.Config{Settings: printer.Settings{Profile: profile}})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.gcode("T1")
	waitFor(t, "InvalidToolReported", 10*time.Second, func() bool { return r.rec.count(bridge.EventInvalidToolReported) == 1 })
	invalid, _ := r.rec.last(bridge.EventInvalidToolReported)
	if tool, _ := invalid.payload.Get("tool"); tool != 1 {
		t.Errorf("tool = %v, want 1", tool)
	}
	if fallback, _ := invalid.payload.Get("fallback"); fallback != 0 {
		t.Errorf("fallback = %v, want 0", fallback)
	}
	waitFor(t, "fallback T0 sent", 10*time.Second, func() bool { return slices.Contains(r.vp.Executed(), "T0") })

	before := len(r.vp.Executed())
	r.gcode("T1", "G4 P0")
	suppressed, ok := r.rec.last(bridge.EventCommandSuppressed)
	if !ok {
		t.Fatal("a second T1 was not suppressed")
	}
	if cmd, _ := suppressed.payload.Get("command"); cmd != "T1" {
		t.Errorf("suppressed %v, want T1", cmd)
	}
	if slices.Contains(r.vp.Executed()[before:], "T1") {
		t.Error("T1 reached the firmware after it was reported invalid")
	}
}

func TestApplySettingsFiresProfileModified(t *testing.T) {
	r := startRig(t, fastConfig(), printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	ctx := context.Background()
	if err := r.p.ApplySettings(ctx, printer.Settings{}); err != nil {
		t.Fatal(err)
	}
	if n := r.rec.count(bridge.EventPrinterProfileModified); n != 0 {
		t.Fatalf("PrinterProfileModified fired %d times for an unchanged profile", n)
	}
	profile := printer.DefaultProfile()
	profile.HeatedBed = false
	if err := r.p.ApplySettings(ctx, printer.Settings{Profile: profile}); err != nil {
		t.Fatal(err)
	}
	modified, ok := r.rec.last(bridge.EventPrinterProfileModified)
	if !ok {
		t.Fatal("no PrinterProfileModified after the profile changed")
	}
	if id, _ := modified.payload.Get("identifier"); id != "_default" {
		t.Errorf("identifier = %v, want _default", id)
	}
	r.gcode("M140 S50")
	if r.rec.count(bridge.EventCommandSuppressed) != 1 {
		t.Error("M140 was not suppressed after the profile lost its heated bed")
	}
}

func TestBeforePrinterDisconnectedSent(t *testing.T) {
	dir := writeScripts(t, map[string]string{printer.ScriptBeforePrinterDisconnected: "M117 bye\n"})
	r := startRig(t, fastConfig(), printer.Config{Settings: printer.Settings{ScriptsDir: dir}})
	r.waitState("OPERATIONAL", 10*time.Second)
	done := make(chan error, 1)
	if err := r.p.Connection(context.Background(), bridge.ActionDisconnect, func(_ []string, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("disconnect did not finish")
	}
	if !slices.Contains(r.vp.Executed(), "M117 bye") {
		t.Errorf("beforePrinterDisconnected not sent: %q", tail(r.vp.Executed(), 5))
	}
	assertBefore(t, r.rec.names(), "Disconnecting", bridge.EventDisconnected)
}

func TestWatchProfileReportsChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "profile.yaml")
	if err := os.WriteFile(path, []byte("id: mk3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan printer.Profile, 4)
	errs := make(chan error, 4)
	w := printer.NewProfileWatcher(path, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	go w.Run(ctx, func(p printer.Profile) { changes <- p }, func(err error) { errs <- err })

	if err := os.WriteFile(path, []byte("id: mk3\nheatedBed: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-changes:
		if p.HeatedBed {
			t.Error("changed profile still has a heated bed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change reported")
	}
	if err := os.WriteFile(path, []byte("id: mk3\nheatedbed: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "heatedbed") || !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not name the unknown key and the file", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("invalid profile not reported")
	}
	select {
	case err := <-errs:
		t.Errorf("the same invalid content was reported twice: %v", err)
	case p := <-changes:
		t.Errorf("an invalid profile was applied: %+v", p)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestLoadScriptsRejectsControlBytes(t *testing.T) {
	dir := writeScripts(t, map[string]string{
		printer.ScriptAfterPrinterConnected: "M117 fine ; a\x01 in a comment is dropped\nM117 a\x00b\x01c\n",
	})
	_, _, err := printer.LoadScripts(dir)
	if err == nil {
		t.Fatal("a script with a NUL byte loaded")
	}
	for _, want := range []string{"GCODE script " + printer.ScriptAfterPrinterConnected, "line 2", "control byte 0x00"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}

	dir = writeScripts(t, map[string]string{
		printer.ScriptAfterPrintDone: "M117 tab\tand CRLF ok\r\nM117 done\r\n",
	})
	if _, _, err := printer.LoadScripts(dir); err != nil {
		t.Errorf("a script with tabs and CRLF line ends was rejected: %v", err)
	}
}

func TestScriptWithControlByteNotSent(t *testing.T) {
	dir := writeScripts(t, map[string]string{
		printer.ScriptAfterPrinterConnected: "M117 before\nM117 a\x00b\x01c\n",
	})
	var mu sync.Mutex
	errorsCounted := 0
	metrics := printer.Metrics{ScriptError: func() {
		mu.Lock()
		defer mu.Unlock()
		errorsCounted++
	}}
	r := startRigMetrics(t, fastConfig(), printer.Config{Settings: printer.Settings{ScriptsDir: dir}}, metrics)
	r.waitState("OPERATIONAL", 10*time.Second)
	waitFor(t, "script error counted", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return errorsCounted > 0
	})
	// The printer replies to M400 after every line before it, so the script would
	// have been executed by the time its reply arrives.
	r.gcode("M400")
	for _, line := range r.vp.Executed() {
		if strings.HasPrefix(line, "M117 a") || line == "M117 before" {
			t.Errorf("the printer executed %q from a script with a control byte", line)
		}
	}
}

// TestScriptNonASCIIWarnsAndSendsQuestionMark runs a script with an
// umlaut in an M117 message, common in scripts written for German
// displays. The printer gets '?' in its place, as from OctoPrint, and the
// log names the script, the line and the character. A tab between
// parameters is sent as a space.
func TestScriptNonASCIIWarnsAndSendsQuestionMark(t *testing.T) {
	dir := writeScripts(t, map[string]string{
		printer.ScriptAfterPrinterConnected: "M117 ready\nM117 Drücken ; Knopf\nG1\tZ5 F600\n",
	})
	var logs syncLog
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := startRigLogger(t, fastConfig(), printer.Config{Settings: printer.Settings{ScriptsDir: dir}}, printer.Metrics{}, log)
	r.waitState("OPERATIONAL", 10*time.Second)
	// The printer replies to M400 after every line before it has run.
	r.gcode("M400")
	for _, want := range []string{"M117 Dr?cken", "G1 Z5 F600"} {
		if !slices.Contains(r.vp.Executed(), want) {
			t.Errorf("the printer executed %q, want %s among them", r.vp.Executed(), want)
		}
	}
	text := logs.String()
	for _, want := range []string{"outside printable ASCII", "script=afterPrinterConnected", "output_line=2", "character='ü'"} {
		if !strings.Contains(text, want) {
			t.Errorf("the log does not contain %s:\n%s", want, text)
		}
	}
	if lines := strings.Count(text, "outside printable ASCII"); lines != 1 {
		t.Errorf("the log has %d warnings, want 1 (a tab is sent as a space, without one):\n%s", lines, text)
	}
}

func TestJobNonASCIIWarnsOnce(t *testing.T) {
	var logs syncLog
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := startRigLogger(t, fastConfig(), printer.Config{}, printer.Metrics{}, log)
	r.waitState("OPERATIONAL", 10*time.Second)
	// Comments are not sent, so their characters need no warning.
	r.writeJob("wuerfel.gcode", "; Würfel, 立方体", "G28", "M117 Würfel", "G1 X5 F600", "M117 Größe ok")
	r.job("start", "wuerfel.gcode")
	waitFor(t, "PrintDone", 20*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })

	for _, want := range []string{"M117 W?rfel", "M117 Gr??e ok"} {
		if !slices.Contains(r.vp.Executed(), want) {
			t.Errorf("the printer executed %q, want %s among them", r.vp.Executed(), want)
		}
	}
	text := logs.String()
	for _, want := range []string{"outside printable ASCII", "file=wuerfel.gcode", "commands=2", "first_line=3", "character='ü'"} {
		if !strings.Contains(text, want) {
			t.Errorf("the log does not contain %s:\n%s", want, text)
		}
	}
	if lines := strings.Count(text, "outside printable ASCII"); lines != 1 {
		t.Errorf("the log has %d warnings, want 1 for the whole file:\n%s", lines, text)
	}
}

// syncLog is a log destination that the printer's goroutines may write
// to while the test reads it.
type syncLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
