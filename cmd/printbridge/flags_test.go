package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parseEdgeConfigFile(t *testing.T, content string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	var o edgeOptions
	o.register(fs)
	return parseFlags(fs, []string{"--config", path}, io.Discard, true)
}

func TestConfigFileErrorsNameReason(t *testing.T) {
	err := parseEdgeConfigFile(t, "blocked-commands: M0,M1,M112\nbaud: fast\n")
	if err == nil {
		t.Fatal("a config file with two bad values was accepted")
	}
	msg := err.Error()
	if !strings.Contains(msg, "M112 is the emergency stop") {
		t.Errorf("error %q does not give the blocked-commands reason", msg)
	}
	if !strings.Contains(msg, `"baud"`) || !strings.Contains(msg, "want a whole number") {
		t.Errorf("error %q does not report the bad baud too", msg)
	}
	if strings.Contains(msg, "<command>") {
		t.Errorf("error %q names no command", msg)
	}
}

func TestConfigFileListsUnknownKeys(t *testing.T) {
	err := parseEdgeConfigFile(t, "nonsense: 1\nalso-wrong: 2\nbaud: 115200\n")
	if err == nil {
		t.Fatal("a config file with unknown keys was accepted")
	}
	for _, want := range []string{`"also-wrong"`, `"nonsense"`, "printbridge edge -h"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %s", err, want)
		}
	}
}

func TestBadFlagValueKeepsErrorShort(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := runMain([]string{"edge", "--baud", "fast"}, &stdout, &stderr); code != 2 {
		t.Errorf("exit code = %d, want 2", code)
	}
	out := stderr.String()
	if !strings.Contains(out, `invalid value "fast" for flag -baud`) {
		t.Errorf("output %q does not name the bad value", out)
	}
	if !strings.Contains(out, "Run 'printbridge edge -h'") {
		t.Errorf("output %q does not point to -h", out)
	}
	if n := strings.Count(out, "\n"); n > 3 {
		t.Errorf("output has %d lines, want the error without the usage:\n%s", n, out)
	}
}

func TestCommandHelpHasSummary(t *testing.T) {
	for _, name := range []string{"edge", "worker", "demo", "events", "publish"} {
		var stdout, stderr strings.Builder
		if code := runMain([]string{name, "-h"}, &stdout, &stderr); code != 0 {
			t.Errorf("%s -h: exit code = %d, want 0", name, code)
		}
		out := stderr.String()
		if !strings.HasPrefix(out, "usage: printbridge "+name+" [flags]\n\n"+subcommands[name].summary) {
			t.Errorf("%s -h starts %q, want the usage line and the summary", name, out[:min(len(out), 120)])
		}
	}
}
