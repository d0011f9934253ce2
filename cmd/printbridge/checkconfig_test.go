package main

import (
	"bytes"
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

func TestCheckConfigMissingType(t *testing.T) {
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
	if !strings.Contains(stdout, file+": 3 hooks loaded, 1 error, 8 warnings\n") {
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
	for name, want := range map[string]string{
		"octoprint-config_alveo3d-fan_event-lists_4space.yaml":   "3 hooks loaded, 0 errors, 3 warnings",
		"octoprint-config_box3d-industrial-3b_io-led-hooks.yaml": "7 hooks loaded, 0 errors, 14 warnings",
		"octoprint-config_yota9_system-and-gcode-hooks.yaml":     "7 hooks loaded, 0 errors, 6 warnings",
		"octoprint-docs_events-example_v1.11.3_shell-name.yaml":  "3 hooks loaded, 1 error, 2 warnings",
		"readme-snippet_pushbullet_last-hook-missing-type.yaml":  "3 hooks loaded, 1 error, 8 warnings",
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
