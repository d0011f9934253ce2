package main

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/printbridge/printbridge/deploy"
)

// TestDemoPrintsOutsideCheckout runs `printbridge demo` from an empty
// folder, as after `go install`: the config and the G-code file are the
// ones built into the binary, and the print runs to PrintDone with every
// hook succeeding.
func TestDemoPrintsOutsideCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and prints a file")
	}
	bin := buildPrintbridge(t)
	demo := exec.Command(bin, "demo")
	demo.Dir = t.TempDir()
	out, err := demo.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}

	text := string(out)
	if !strings.Contains(text, "printing "+deploy.DemoGcodeName) {
		t.Errorf("demo output does not name the built-in file %s:\n%s", deploy.DemoGcodeName, text)
	}
	if !strings.Contains(text, deploy.DemoConfigName+" (built in)") {
		t.Errorf("demo output does not name the built-in config:\n%s", text)
	}
	if !regexp.MustCompile(`PrintDone\s+1`).MatchString(text) {
		t.Errorf("demo output has no PrintDone count of 1:\n%s", text)
	}

	if !strings.Contains(text, "each hook line names its event's #seq and prints when the hook ends; up to 4 system hooks run at once") {
		t.Errorf("demo output does not say that hook lines print as hooks end:\n%s", text)
	}
	// A hook line names its event's seq unless the hook ended before the
	// demo's own subscription got the event, which is rare.
	hookLine := regexp.MustCompile(`^ +[0-9.]+s +hook "[^"]+" \((system|gcode)\) on (#\d+ )?\w+: `)
	var hookLines, withSeq int
	for _, line := range matchingLines(text, `hook "`) {
		m := hookLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("hook line %q does not have the expected form", line)
			continue
		}
		hookLines++
		if m[2] != "" {
			withSeq++
		}
	}
	if withSeq == 0 || withSeq < hookLines/2 {
		t.Errorf("%d of %d hook lines name their event's seq, want most:\n%s", withSeq, hookLines, text)
	}

	hooks := regexp.MustCompile(`hooks run: (\d+) ok, (\d+) failed`).FindStringSubmatch(text)
	if hooks == nil {
		t.Fatalf("demo output has no hook summary:\n%s", text)
	}
	if ok, _ := strconv.Atoi(hooks[1]); ok == 0 {
		t.Errorf("no hook ran ok:\n%s", text)
	}
	if hooks[2] != "0" {
		t.Errorf("%s hooks failed:\n%s", hooks[2], text)
	}
}

func TestDemoListsConfigErrors(t *testing.T) {
	file := writeWorkerConfig(t, t.TempDir(), `events:
  subscriptions:
  - {name: ok, event: PrintDone, type: system, shell: false, command: "true"}
  - {name: no type, event: PrintDone, command: "true"}
  - {name: no command, event: PrintStarted, type: system}
  - {name: typo, event: printdone, type: system, shell: false, command: "true"}
`)
	code, stdout, stderr := runCLI(t, "demo", "--config", file)
	if code != 1 {
		t.Fatalf("demo with config errors exited %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"hook config " + file + " has 2 errors, so the demo does not start:\n",
		"\n  " + file + `:4:5: error: missing type`,
		"\n  " + file + `:5:5: error: missing command`,
		"Fix them and run 'printbridge check-config " + file + "' to check the file again.",
		"Outside the demo, the worker starts and skips the entries with errors",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if lines := matchingLines(stdout, "config: "+file+":6:", `warning: unknown event "printdone"`); len(lines) != 1 {
		t.Errorf("stdout lines with the warning about printdone = %q, want one:\n%s", lines, stdout)
	}
	if strings.Contains(stdout, "printbridge demo: NATS") {
		t.Errorf("the demo started its components despite the errors:\n%s", stdout)
	}
}

// TestDemoSpeedZeroHooksSucceed runs the demo with no waiting, where the
// virtual printer fires ZChange as fast as the serial line allows. It
// checks that the edge's rate limits reject none of the hooks' G-code and
// that the summary gives the time of the PrintDone line. It also checks
// that no log line names its component twice.
func TestDemoSpeedZeroHooksSucceed(t *testing.T) {
	if testing.Short() {
		t.Skip("prints a file")
	}
	code, stdout, stderr := runCLI(t, "demo", "--speed", "0", "--log-level", "info")
	if code != 0 {
		t.Fatalf("demo --speed 0 exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	if !strings.Contains(stdout, "command rate limits of the edge: off, because --speed 0 prints without waiting\n") {
		t.Errorf("demo output does not say that the rate limits are off:\n%s", stdout)
	}
	hooks := regexp.MustCompile(`hooks run: (\d+) ok, (\d+) failed`).FindStringSubmatch(stdout)
	if hooks == nil {
		t.Fatalf("demo output has no hook summary:\n%s", stdout)
	}
	if ok, _ := strconv.Atoi(hooks[1]); ok == 0 {
		t.Errorf("no hook ran ok:\n%s", stdout)
	}
	if hooks[2] != "0" {
		t.Errorf("%s hooks failed:\n%s", hooks[2], stdout)
	}
	if lines := matchingLines(stderr, "rejected by policy"); len(lines) > 0 {
		t.Errorf("the edge rejected hook commands:\n%s", strings.Join(lines, "\n"))
	}

	eventLine := regexp.MustCompile(`(?m)^ +([0-9.]+)s +#\d+ +PrintDone `).FindStringSubmatch(stdout)
	if eventLine == nil {
		t.Fatalf("demo output has no PrintDone event line:\n%s", stdout)
	}
	summary := regexp.MustCompile(`(?m)^summary: PrintDone at ([0-9.]+)s; the demo ran [0-9.]+s$`).FindStringSubmatch(stdout)
	if summary == nil {
		t.Fatalf("demo output has no summary line with the time of PrintDone:\n%s", stdout)
	}
	if summary[1] != eventLine[1] {
		t.Errorf("summary gives PrintDone at %ss, but its event line shows %ss", summary[1], eventLine[1])
	}

	twice := regexp.MustCompile(`component=\S+ (.* )?component=`)
	if lines := matchingLines(stderr, "component="); len(lines) == 0 {
		t.Errorf("no log line names a component at --log-level info:\n%s", stderr)
	}
	for _, line := range matchingLines(stderr, "component=") {
		if twice.MatchString(line) {
			t.Errorf("log line names a component twice: %s", line)
		}
	}
}
