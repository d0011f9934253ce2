package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/printer/virtual"
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

func TestConfigFileSuggestsHyphenatedKey(t *testing.T) {
	err := parseEdgeConfigFile(t, "auto_connect: true\nBaud: 115200\nauto-conect: false\n")
	if err == nil {
		t.Fatal("a config file with underscored keys was accepted")
	}
	for _, want := range []string{`"auto_connect" (did you mean "auto-connect"?)`, `"Baud" (did you mean "baud"?)`,
		`"auto-conect" (did you mean "auto-connect"?)`} {
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

func TestNumericFlagRangesRejectBadValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"edge", "--baud", "-5"}, "invalid --baud -5: give the printer's serial baud rate"},
		{[]string{"edge", "--baud", "0"}, "invalid --baud 0: give the printer's serial baud rate"},
		{[]string{"edge", "--rx-buffer", "0"}, "invalid --rx-buffer 0: give the firmware's serial receive buffer"},
		{[]string{"edge", "--rx-buffer", "-1"}, "invalid --rx-buffer -1: give the firmware's serial receive buffer"},
		{[]string{"edge", "--max-line-length", "0"}, "invalid --max-line-length 0: give the firmware's MAX_CMD_SIZE"},
		{[]string{"edge", "--outbox-max-mib", "0"}, "invalid --outbox-max-mib 0: give the maximum outbox size in MiB, 1 or more"},
		{[]string{"edge", "--outbox-max-mib", "-1"}, "invalid --outbox-max-mib -1: give the maximum outbox size in MiB, 1 or more"},
		{[]string{"edge", "--outbox-max-age", "-1h"}, "invalid --outbox-max-age -1h0m0s: give a positive duration such as 168h, or 0"},
		{[]string{"edge", "--outbox-fsync-interval", "0"}, "invalid --outbox-fsync-interval 0s: give a positive duration such as 100ms, or set --outbox-fsync every"},
		{[]string{"edge", "--watch-interval", "-1s"}, "invalid --watch-interval -1s: give a positive duration"},
		{[]string{"edge", "--watch-interval", "0"}, "invalid --watch-interval 0s: give a positive duration"},
		{[]string{"edge", "--presence-wait", "-1s"}, "invalid --presence-wait -1s: give a duration such as 2s, or 0 to start without waiting for answers"},
		{[]string{"edge", "--presence-interval", "0"}, "invalid --presence-interval 0s: give a positive duration such as 30s"},
		{[]string{"virtual-printer", "--extruders", "0"}, "invalid --extruders 0: give a number of hotends from 1 to 8"},
		{[]string{"virtual-printer", "--extruders", "9"}, "invalid --extruders 9: give a number of hotends from 1 to 8"},
		{[]string{"virtual-printer", "--bufsize", "0"}, "invalid --bufsize 0: give Marlin's BUFSIZE, 1 or more"},
		{[]string{"virtual-printer", "--planner-size", "1"}, "invalid --planner-size 1: give 2 or more planner slots"},
		{[]string{"virtual-printer", "--max-cmd-size", "0"}, "invalid --max-cmd-size 0: give Marlin's MAX_CMD_SIZE in bytes, 8 or more"},
		{[]string{"virtual-printer", "--rx-buffer", "0"}, "invalid --rx-buffer 0: give the serial receive buffer in bytes, 1 or more"},
		{[]string{"virtual-printer", "--speed", "-1"}, "invalid --speed -1: give 0 (no waiting) or a positive time factor"},
		{[]string{"virtual-printer", "--baud", "-5"}, "invalid --baud -5: give 0 (unpaced) or a positive baud rate"},
		{[]string{"virtual-printer", "--resend-ratio", "101"}, "invalid --resend-ratio 101: give a percentage from 0 to 100"},
		{[]string{"virtual-printer", "--glued-oks", "-1"}, "invalid --glued-oks -1: give a percentage from 0 to 100"},
		{[]string{"virtual-printer", "--dropped-oks", "200"}, "invalid --dropped-oks 200: give a percentage from 0 to 100"},
		{[]string{"virtual-printer", "--autoreport-midline", "-3"}, "invalid --autoreport-midline -3: give a percentage from 0 to 100"},
		{[]string{"virtual-printer", "--reset-after-lines", "-1"}, "invalid --reset-after-lines -1: give 0 (off) or a positive line count"},
		{[]string{"virtual-printer", "--fatal-after-lines", "-1"}, "invalid --fatal-after-lines -1: give 0 (off) or a positive line count"},
		{[]string{"virtual-printer", "--processing-time-us", "-1"}, "invalid --processing-time-us -1: give 0 or a positive number of microseconds"},
		{[]string{"virtual-printer", "--reject-m110", "-1"}, "invalid --reject-m110 -1: give 0 (off) or a positive count"},
		{[]string{"virtual-printer", "--rewind", "-1"}, "invalid --rewind -1: give 0 (off) or a positive line count"},
		{[]string{"virtual-printer", "--rewind-lines", "0"}, "invalid --rewind-lines 0: give a positive line count"},
		{[]string{"virtual-printer", "--byte-errors", "1.5"}, "invalid --byte-errors 1.5: give a probability per byte from 0 to 1"},
		{[]string{"virtual-printer", "--byte-errors", "-0.1"}, "invalid --byte-errors -0.1: give a probability per byte from 0 to 1"},
		{[]string{"virtual-printer", "--rx-byte-errors", "2"}, "invalid --rx-byte-errors 2: give a probability per byte from 0 to 1, or a negative value"},
		{[]string{"virtual-printer", "--tx-byte-errors", "2"}, "invalid --tx-byte-errors 2: give a probability per byte from 0 to 1, or a negative value"},
		{[]string{"virtual-printer", "--sd-write-fail-after", "-1"}, "invalid --sd-write-fail-after -1: give 0 (off) or a positive line count"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			args := tc.args
			if args[0] == "edge" {
				// The edge must reject the value before it creates its
				// data folder.
				args = append(args, "--data-dir", filepath.Join(dir, "data"), "--mqtt", "tcp://127.0.0.1:1")
			}
			var stdout, stderr strings.Builder
			if code := runMain(args, &stdout, &stderr); code == 0 {
				t.Fatalf("exit code 0 for an invalid value; stderr:\n%s", stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.want)
			}
			if strings.Contains(stdout.String(), "virtual printer ready") {
				t.Error("the virtual printer started with an invalid value")
			}
			if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
				t.Errorf("the edge created its data folder before rejecting the value (stat: %v)", err)
			}
		})
	}
}

func TestNumericFlagRangesCheckEnvAndConfig(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(config, []byte("max-line-length: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PRINTBRIDGE_RX_BUFFER", "-1")
	var stdout, stderr strings.Builder
	code := runMain([]string{"edge", "--config", config, "--baud", "-5", "--data-dir", filepath.Join(dir, "data"), "--mqtt", "tcp://127.0.0.1:1"},
		&stdout, &stderr)
	if code == 0 {
		t.Fatalf("exit code 0 for invalid values; stderr:\n%s", stderr.String())
	}
	// Every bad value is reported at once.
	for _, want := range []string{"invalid --baud -5", "invalid PRINTBRIDGE_RX_BUFFER -1", "invalid --max-line-length 0"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q does not contain %q", stderr.String(), want)
		}
	}
}

func TestNumericFlagRangesAcceptDefaults(t *testing.T) {
	edgeFlags := flag.NewFlagSet("edge", flag.ContinueOnError)
	var edgeOpts edgeOptions
	edgeOpts.register(edgeFlags)
	if err := checkFlagRanges(edgeFlags, edgeFlagRanges); err != nil {
		t.Errorf("edge defaults: %v", err)
	}

	virtualFlags := flag.NewFlagSet("virtual-printer", flag.ContinueOnError)
	virtualOpts := &virtualPrinterFlags{cfg: virtual.DefaultConfig()}
	virtualOpts.register(virtualFlags)
	if err := checkFlagRanges(virtualFlags, virtualPrinterFlagRanges); err != nil {
		t.Errorf("virtual printer defaults: %v", err)
	}

	// The bounds themselves are valid values.
	for name, value := range map[string]string{"outbox-max-age": "0", "outbox-max-mib": "1", "baud": "1", "rx-buffer": "1", "max-line-length": "1"} {
		if err := edgeFlags.Set(name, value); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkFlagRanges(edgeFlags, edgeFlagRanges); err != nil {
		t.Errorf("edge bounds: %v", err)
	}
	for name, value := range map[string]string{"extruders": "8", "planner-size": "2", "max-cmd-size": "8", "speed": "0", "resend-ratio": "100",
		"byte-errors": "1", "rx-byte-errors": "-1", "tx-byte-errors": "0"} {
		if err := virtualFlags.Set(name, value); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkFlagRanges(virtualFlags, virtualPrinterFlagRanges); err != nil {
		t.Errorf("virtual printer bounds: %v", err)
	}
}

func TestBadFlagValueNamesExpectedForm(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"edge", "--baud", "fast"}, []string{`invalid value "fast" for flag -baud`, "Give a whole number (the default is 115200)"}},
		{[]string{"edge", "--outbox-max-age", "5x"}, []string{`invalid value "5x" for flag -outbox-max-age`, "Give a duration with a unit, such as 100ms, 30s or 5m"}},
		{[]string{"virtual-printer", "--speed", "x"}, []string{`invalid value "x" for flag -speed`, "Give a number (the default is 1)"}},
	} {
		var stdout, stderr strings.Builder
		if code := runMain(tc.args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit code = %d, want 2", tc.args, code)
		}
		for _, want := range tc.want {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("%v: output %q does not contain %q", tc.args, stderr.String(), want)
			}
		}
	}
}

func TestOutboxOptionsNameOneFlag(t *testing.T) {
	for _, tc := range []struct {
		opts edgeOptions
		want string
	}{
		{edgeOptions{outboxMaxAge: -time.Hour}, "invalid --outbox-max-age -1h0m0s: give a positive duration such as 168h, or 0 to keep events of any age"},
		{edgeOptions{outboxFsyncInterval: -time.Second}, "invalid --outbox-fsync-interval -1s: give a positive duration such as 100ms"},
		{edgeOptions{outboxMaxMiB: -1}, "invalid --outbox-max-mib -1: give 1 or more"},
	} {
		tc.opts.outboxFsync = "batch"
		_, err := tc.opts.outboxOptions()
		if err == nil || err.Error() != tc.want {
			t.Errorf("outboxOptions() error = %v, want %q", err, tc.want)
		}
	}
}

func TestPublishBadPayloadShowsExample(t *testing.T) {
	var stdout, stderr strings.Builder
	code := runMain([]string{"publish", "--printer", "p1", "--event", "ZChange", "--payload", "notjson", "--mqtt", "tcp://127.0.0.1:1"}, &stdout, &stderr)
	if code == 0 {
		t.Fatal("publish accepted --payload notjson")
	}
	for _, want := range []string{`invalid --payload "notjson"`, `give a JSON object, such as --payload '{"new": 0.4, "old": 0.2}'`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("output %q does not contain %q", stderr.String(), want)
		}
	}
}

func TestMisspelledEnvWarns(t *testing.T) {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.Bool("auto-connect", true, "")
	fs.Int("baud", 115200, "")
	var stderr strings.Builder
	warnMisspelledEnv(fs, []string{"PRINTBRIDGE_AUTO_CONECT=false", "PRINTBRIDGE_BAUD=250000", "PRINTBRIDGE_GROUP=farm", "PRINTBRIDGE_CONFIG=x.yaml", "HOME=/root"}, &stderr)
	out := stderr.String()
	want := "printbridge edge: warning: environment variable PRINTBRIDGE_AUTO_CONECT names no flag and is ignored; did you mean PRINTBRIDGE_AUTO_CONNECT?\n"
	if out != want {
		t.Errorf("warnings %q, expected %q", out, want)
	}
}

func TestEnvFlagErrorNamesVariable(t *testing.T) {
	for _, tc := range []struct {
		env, value string
		want       string
	}{
		{"PRINTBRIDGE_FLOW", "sideways", `invalid value "sideways" in PRINTBRIDGE_FLOW: invalid flow control "sideways"`},
		{"PRINTBRIDGE_LOG_LEVEL", "loud", `invalid value "loud" in PRINTBRIDGE_LOG_LEVEL: invalid log level "loud"`},
		{"PRINTBRIDGE_LOG_FORMAT", "xml", `invalid value "xml" in PRINTBRIDGE_LOG_FORMAT: invalid log format "xml"`},
		{"PRINTBRIDGE_OUTBOX_FSYNC", "sometimes", `invalid value "sometimes" in PRINTBRIDGE_OUTBOX_FSYNC: invalid outbox fsync policy "sometimes"`},
		{"PRINTBRIDGE_CONFIG", "/nonexistent/edge.yaml", "PRINTBRIDGE_CONFIG: read config file: open /nonexistent/edge.yaml"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(tc.env, tc.value)
			dir := t.TempDir()
			var stdout, stderr strings.Builder
			code := runMain([]string{"edge", "--data-dir", filepath.Join(dir, "data"), "--mqtt", "tcp://127.0.0.1:1"}, &stdout, &stderr)
			if code == 0 {
				t.Fatalf("exit code 0 for %s=%s", tc.env, tc.value)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.want)
			}
			if strings.Contains(stderr.String(), "--"+strings.ToLower(strings.TrimPrefix(tc.env, "PRINTBRIDGE_"))) {
				t.Errorf("stderr %q names the flag, not the variable that set it", stderr.String())
			}
		})
	}
}

func TestCommandLineFlagErrorNamesFlag(t *testing.T) {
	t.Setenv("PRINTBRIDGE_FLOW", "window")
	var stdout, stderr strings.Builder
	code := runMain([]string{"edge", "--flow", "sideways", "--data-dir", filepath.Join(t.TempDir(), "data"), "--mqtt", "tcp://127.0.0.1:1"}, &stdout, &stderr)
	if code == 0 {
		t.Fatal("exit code 0 for --flow sideways")
	}
	if want := `invalid value "sideways" for flag -flow`; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q does not contain %q", stderr.String(), want)
	}
}

func TestWorkerConfigEnvErrorNamesVariable(t *testing.T) {
	t.Setenv("PRINTBRIDGE_CONFIG", "/nonexistent/config.yaml")
	var stdout, stderr strings.Builder
	code := runMain([]string{"worker", "--data-dir", filepath.Join(t.TempDir(), "data"), "--mqtt", "tcp://127.0.0.1:1"}, &stdout, &stderr)
	if code == 0 {
		t.Fatal("exit code 0 for a PRINTBRIDGE_CONFIG file that does not exist")
	}
	want := "PRINTBRIDGE_CONFIG: read OctoPrint config: open /nonexistent/config.yaml"
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q does not contain %q", stderr.String(), want)
	}
}
