package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs printbridge with args in this process and returns the exit
// code and what it wrote.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runMain(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func configTestdata(name string) string {
	return filepath.Join("..", "..", "testdata", "config", name)
}

func TestCheckConfigDemoPasses(t *testing.T) {
	file := filepath.Join("..", "..", "deploy", "demo-config.yaml")
	code, stdout, stderr := runCLI(t, "check-config", file)
	if code != 0 {
		t.Fatalf("check-config %s exited %d, want 0\nstdout:\n%s\nstderr:\n%s", file, code, stdout, stderr)
	}
	if !strings.Contains(stdout, file+": 6 hooks loaded, 0 errors") {
		t.Errorf("summary line missing or wrong:\n%s", stdout)
	}
}

// emptyPath makes check-config find no bare program name in PATH, so its
// warnings about programs do not depend on what this host has installed.
func emptyPath(t *testing.T) {
	t.Helper()
	t.Setenv("PATH", t.TempDir())
}

func TestCheckConfigMissingType(t *testing.T) {
	emptyPath(t)
	file := configTestdata("readme-snippet_pushbullet_last-hook-missing-type.yaml")
	code, stdout, stderr := runCLI(t, "check-config", file)
	if code != 1 {
		t.Fatalf("exit code %d, want 1\nstdout:\n%s", code, stdout)
	}
	want := file + ":13:5: error: missing type: OctoPrint skips entries without type: system or type: gcode (entry #4)"
	if !strings.Contains(stdout, want+"\n") {
		t.Errorf("stdout lacks the missing type line %q:\n%s", want, stdout)
	}
	// The entry that renders {file} loads and is only warned about.
	if !strings.Contains(stdout, file+":5:14: warning: placeholder {file} is not in the payload of PrintDone") {
		t.Errorf("stdout lacks the {file} warning:\n%s", stdout)
	}
	if !strings.Contains(stdout, file+": 3 hooks loaded, 1 error, 11 warnings\n") {
		t.Errorf("summary line missing or wrong:\n%s", stdout)
	}
	if !strings.Contains(stderr, "the config has errors (1 error, listed above)") {
		t.Errorf("stderr = %q, want the error summary", stderr)
	}
}

func TestCheckConfigEventKeyTypo(t *testing.T) {
	file := configTestdata("readme-snippet_webhook_typo-event-key.yaml")
	code, stdout, _ := runCLI(t, "check-config", file)
	if code != 1 {
		t.Fatalf("exit code %d, want 1: a file whose events key is misspelled runs no hooks\n%s", code, stdout)
	}
	if !strings.Contains(stdout, file+`:1:1: error: top-level key "event" is not read by OctoPrint`) ||
		!strings.Contains(stdout, `did you mean "events"?`) {
		t.Errorf("stdout lacks the misspelled key error with its suggestion:\n%s", stdout)
	}
	if !strings.Contains(stdout, file+": 0 hooks loaded, 1 error, 0 warnings") {
		t.Errorf("summary line missing or wrong:\n%s", stdout)
	}
}

func TestCheckConfigRealConfigs(t *testing.T) {
	// The counts include one warning per system hook program that is not
	// found: every bare name with the empty PATH, and the absolute paths
	// of these files (/home/pi/..., /path/to/python), which no test host has.
	emptyPath(t)
	for name, want := range map[string]string{
		"octoprint-config_alveo3d-fan_event-lists_4space.yaml":   "3 hooks loaded, 0 errors, 6 warnings",
		"octoprint-config_box3d-industrial-3b_io-led-hooks.yaml": "7 hooks loaded, 0 errors, 21 warnings",
		"octoprint-config_yota9_system-and-gcode-hooks.yaml":     "7 hooks loaded, 0 errors, 10 warnings",
		"octoprint-docs_events-example_v1.11.3_shell-name.yaml":  "3 hooks loaded, 1 error, 4 warnings",
		"readme-snippet_pushbullet_last-hook-missing-type.yaml":  "3 hooks loaded, 1 error, 11 warnings",
		"readme-snippet_webhook_typo-event-key.yaml":             "0 hooks loaded, 1 error, 0 warnings",
	} {
		file := configTestdata(name)
		code, stdout, _ := runCLI(t, "check-config", file)
		wantCode := 0
		if !strings.Contains(want, " 0 errors") {
			wantCode = 1
		}
		if code != wantCode || !strings.Contains(stdout, file+": "+want+"\n") {
			t.Errorf("check-config %s exited %d with summary\n%s\nwant exit %d and %q", name, code, stdout, wantCode, want)
		}
	}
}

func TestCheckConfigInvalidYAML(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte("events:\n  subscriptions:\n  - event: [PrintDone\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "check-config", file)
	if code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if !strings.Contains(stderr, file+":") || !strings.Contains(stderr, "invalid YAML") {
		t.Errorf("stderr = %q, want FILE:LINE: invalid YAML", stderr)
	}
}

func TestCheckConfigUsage(t *testing.T) {
	for _, args := range [][]string{{"check-config"}, {"check-config", "a.yaml", "b.yaml"}, {"check-config", "--nope", "a.yaml"}} {
		if code, _, stderr := runCLI(t, args...); code != 2 || !strings.Contains(stderr, "usage: printbridge check-config FILE") {
			t.Errorf("%q exited %d with %q, want 2 and the usage", args, code, stderr)
		}
	}
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	if code, _, stderr := runCLI(t, "check-config", missing); code != 1 || !strings.Contains(stderr, missing) {
		t.Errorf("missing file exited %d with %q, want 1 naming the file", code, stderr)
	}
}

func TestCheckConfigWorkerOutcome(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, text, want string
	}{
		{"settings", "printbridge:\n  hook_timeout: banana\nevents:\n  subscriptions: []\n",
			"the worker does not start with this file, because its printbridge: section has 1 error"},
		{"unknown setting", "printbridge:\n  hook_timout: 30s\nevents:\n  subscriptions: []\n",
			"the worker does not start with this file, because its printbridge: section has 1 error"},
		{"unknown events key", "events:\n  subscription: []\n",
			"the worker starts, but without the hooks that these errors keep from loading"},
		{"entry", "events:\n  subscriptions:\n  - {event: PrintDone, command: \"true\"}\n",
			"the worker starts and skips the entries with errors, as OctoPrint does, and a SIGHUP reload rejects the whole file"},
		{"structure", "evnets:\n  subscriptions: []\n",
			"the worker starts, but without the hooks that these errors keep from loading"},
	} {
		file := filepath.Join(dir, c.name+".yaml")
		if err := os.WriteFile(file, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runCLI(t, "check-config", file)
		if code != 1 {
			t.Errorf("%s: exit code %d, want 1", c.name, code)
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%s: stderr = %q, want it to contain %q", c.name, stderr, c.want)
		}
		if c.name != "entry" && strings.Contains(stderr, "skips the entries") {
			t.Errorf("%s: stderr = %q, which wrongly says the worker skips entries", c.name, stderr)
		}
	}
}

func TestCheckConfigWarnsAboutPrograms(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"runs": 0o755, "plain": 0o644} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	file := writeWorkerConfig(t, dir, fmt.Sprintf(`events:
  subscriptions:
  - {name: absent, event: PrintDone, type: system, shell: false, command: "/nonexistent/prog --flag"}
  - {name: not on path, event: PrintDone, type: system, shell: false, command: "no-such-program"}
  - {name: on path, event: PrintDone, type: system, shell: false, command: "runs {name}"}
  - {name: no exec bit, event: PrintDone, type: system, shell: false, command: "%[1]s/plain"}
  - {name: directory, event: PrintDone, type: system, shell: false, command: "%[1]s"}
  - {name: relative, event: PrintDone, type: system, shell: false, cwd: %[1]s, command: "./runs"}
  - {name: relative absent, event: PrintDone, type: system, shell: false, cwd: %[1]s, command: "./gone"}
  - {name: shell, event: PrintDone, type: system, shell: true, command: "/nonexistent/prog"}
  - {name: bad cwd, event: PrintDone, type: system, shell: false, cwd: /nonexistent/dir, command: "runs"}
`, bin))
	code, stdout, _ := runCLI(t, "check-config", file)
	if code != 0 {
		t.Errorf("exit code %d, want 0: a missing program is a warning\n%s", code, stdout)
	}
	for _, c := range []struct{ line, want string }{
		{"3", `warning: command #1: program "/nonexistent/prog" does not exist, so the hook fails when it runs on this host; install it, fix the path, or check it on the worker's host if the worker runs elsewhere (entry #1 "absent")`},
		{"4", `warning: command #1: program "no-such-program" is not found in PATH`},
		{"6", `warning: command #1: program "` + bin + `/plain" cannot be run: ` + bin + `/plain is not executable`},
		{"7", `warning: command #1: program "` + bin + `" cannot be run: ` + bin + ` is a directory`},
		{"9", `warning: command #1: program "./gone" does not exist`},
	} {
		// The column is where the command value starts, which moves
		// with the length of the temporary folder's path.
		if lines := matchingLines(stdout, file+":"+c.line+":", c.want); len(lines) != 1 {
			t.Errorf("lines of %s:%s with %q = %q, want one:\n%s", file, c.line, c.want, lines, stdout)
		}
	}
	for _, entry := range []string{`"on path"`, `"relative")`, `"shell"`, `"bad cwd"`} {
		if lines := matchingLines(stdout, entry, "program"); len(lines) != 0 {
			t.Errorf("warnings about the program of entry %s = %q, want none", entry, lines)
		}
	}
	if !strings.Contains(stdout, file+": 9 hooks loaded, 0 errors, 6 warnings\n") {
		t.Errorf("summary line missing or wrong:\n%s", stdout)
	}
}

func TestCheckConfigWarnsAboutPolicy(t *testing.T) {
	file := writeWorkerConfig(t, t.TempDir(), `events:
  subscriptions:
  - {name: pause, event: PrintDone, type: gcode, command: M0}
  - name: mixed
    event: PrintDone
    type: gcode
    command:
    - M117 done {name}
    - m 1 ; wait for the button
    - N10 G28
`)
	code, stdout, _ := runCLI(t, "check-config", file)
	if code != 0 {
		t.Errorf("exit code %d, want 0: a rejected G-code line is a warning\n%s", code, stdout)
	}
	for _, want := range []string{
		file + `:3:59: warning: command #1 "M0" is rejected by the edge's default command policy (rule deny: M0 is on the policy's deny list. ` +
			`To allow it, start the edge with --command-policy naming a YAML file whose deny list leaves it out (deny: [] clears the default list of M0 and M1)); ` +
			`the edge also needs a --blocked-commands list without it (the default is M0,M1) (entry #1 "pause")`,
		file + `:9:7: warning: command #2 "m 1 ; wait for the button" is rejected by the edge's default command policy (rule deny: M1 is on the policy's deny list.`,
		file + `:10:7: warning: command #3 "N10 G28" is rejected by the edge's default command policy (rule line_number:`,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if lines := matchingLines(stdout, "M117"); len(lines) != 0 {
		t.Errorf("warnings about the accepted M117 line = %q, want none", lines)
	}
	if !strings.Contains(stdout, file+": 2 hooks loaded, 0 errors, 3 warnings\n") {
		t.Errorf("summary line missing or wrong:\n%s", stdout)
	}
}

func TestCheckConfigShellDashC(t *testing.T) {
	dir := t.TempDir()
	// A shell run with -c parses its script as code, so the rule of
	// shell: true applies to placeholders inside quotes in the script.
	quoted := filepath.Join(dir, "quoted.yaml")
	text := "events:\n  subscriptions:\n  - event: PrintStarted\n    type: system\n    command: /bin/sh -c 'echo started \"{name}\" >> hooklog.txt'\n"
	if err := os.WriteFile(quoted, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := runCLI(t, "check-config", quoted)
	if code != 1 {
		t.Fatalf("exit code %d, want 1\n%s", code, stdout)
	}
	want := quoted + `:5:14: error: placeholder {name} in command #1 is inside shell quotes in the script that /bin/sh runs with -c`
	if !strings.Contains(stdout, want) {
		t.Errorf("stdout lacks %q:\n%s", want, stdout)
	}
	if !strings.Contains(stdout, quoted+": 0 hooks loaded, 1 error,") {
		t.Errorf("summary line missing or wrong:\n%s", stdout)
	}

	// The same script with a bare placeholder loads: its value is quoted
	// as one word when the hook runs.
	bare := filepath.Join(dir, "bare.yaml")
	text = "events:\n  subscriptions:\n  - event: PrintStarted\n    type: system\n    command: /bin/sh -c \"echo started {name} >> hooklog.txt\"\n"
	if err := os.WriteFile(bare, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = runCLI(t, "check-config", bare)
	if code != 0 {
		t.Fatalf("exit code %d, want 0\n%s", code, stdout)
	}
	if !strings.Contains(stdout, bare+": 1 hook loaded, 0 errors,") {
		t.Errorf("summary line missing or wrong:\n%s", stdout)
	}
}

func TestCheckConfigUnknownEventsKey(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		key, hint, summary string
	}{
		{"subscription", `; did you mean "subscriptions"?`, "0 hooks loaded, 1 error, 1 warning"},
		{"enable", `; did you mean "enabled"?`, "1 hook loaded, 1 error, 0 warnings"},
		{"hooks", "", "1 hook loaded, 1 error, 0 warnings"},
	} {
		file := filepath.Join(dir, c.key+".yaml")
		text := "events:\n  " + c.key + ": true\n  subscriptions:\n  - {event: PrintDone, type: system, shell: false, command: /bin/true}\n"
		if c.key == "subscription" {
			text = "events:\n  subscription:\n  - {event: PrintDone, type: system, shell: false, command: /bin/true}\n"
		}
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runCLI(t, "check-config", file)
		if code != 1 {
			t.Errorf("%s: exit code %d, want 1\n%s", c.key, code, stdout)
		}
		want := file + ":2:3: error: unknown key events." + c.key + " is not read by OctoPrint, which reads only enabled and subscriptions" + c.hint + "\n"
		if !strings.Contains(stdout, want) {
			t.Errorf("%s: stdout lacks %q:\n%s", c.key, want, stdout)
		}
		if !strings.Contains(stdout, file+": "+c.summary+"\n") {
			t.Errorf("%s: summary line missing or wrong, want %q:\n%s", c.key, c.summary, stdout)
		}
		if !strings.Contains(stderr, "the config has errors") {
			t.Errorf("%s: stderr = %q, want the error summary", c.key, stderr)
		}
	}
}
