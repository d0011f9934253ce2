package virtual

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// printcoreJob is a small real slicer file whose longest command fits
// MAX_CMD_SIZE with line number and checksum, and which has no `(...)`
// comments (printcore strips those, the simulator does not).
const printcoreJob = "../../testdata/gcode/prusaslicer-2.8.1_mk4s_mini-cube.gcode"

const printcoreBinary = "/usr/bin/printcore"

var installPrintcore sync.Once

// printcorePath returns Debian's printcore, installing the package once
// when the test runs as root on a machine with apt-get.
func printcorePath(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(printcoreBinary); err == nil {
		return printcoreBinary
	}
	installPrintcore.Do(func() {
		aptGet, err := exec.LookPath("apt-get")
		if err != nil || os.Geteuid() != 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		apt := func(args ...string) error {
			cmd := exec.CommandContext(ctx, aptGet, args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Logf("apt-get %s: %v\n%s", strings.Join(args, " "), err, tail(string(out), 20))
			}
			return err
		}
		// A machine without package lists needs an update first.
		if apt("install", "-y", "printcore") != nil && apt("update") == nil {
			apt("install", "-y", "printcore")
		}
	})
	if _, err := os.Stat(printcoreBinary); err != nil {
		t.Fatalf("%s not found: install Debian's printcore package (apt-get install printcore) to run the printcore tests", printcoreBinary)
	}
	return printcoreBinary
}

// runPrintcore prints printcoreJob with printcore on a simulator with cfg
// and returns the simulator's executed commands and printcore's output.
//
// printcore waits for each ok without a timeout. In one CI run on a
// loaded two-core machine it waited for four minutes after "Printing:",
// and the same test passed when run again alone. So a print that does not end within
// printcoreTimeout is logged with what the simulator executed and runs
// once more on a fresh simulator. A second hang fails the test.
func runPrintcore(t *testing.T, cfg Config) ([]string, string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		executed, out, err := printcoreAttempt(t, cfg)
		if err == nil {
			return executed, out
		}
		report := fmt.Sprintf("%v; the simulator executed %d commands, the last %q\n%s",
			err, len(executed), executed[max(0, len(executed)-5):], tail(out, 40))
		if errors.Is(err, context.DeadlineExceeded) && attempt == 1 {
			t.Logf("printcore hung, so it prints once more on a fresh simulator: %s", report)
			continue
		}
		t.Fatalf("printcore failed: %s", report)
	}
}

// printcoreTimeout bounds one printcore print; alone it takes about five
// seconds.
const printcoreTimeout = 2 * time.Minute

func printcoreAttempt(t *testing.T, cfg Config) ([]string, string, error) {
	t.Helper()
	binary := printcorePath(t)
	cfg.LinkPath = filepath.Join(t.TempDir(), "ttyVIRTUAL0")
	cfg.RecordPath = filepath.Join(t.TempDir(), "record.txt")
	p := startPrinter(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), printcoreTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, cfg.LinkPath, printcoreJob)
	out, err := cmd.CombinedOutput()
	executed := p.Executed()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w after %s (%v)", ctx.Err(), printcoreTimeout, err)
		}
		return executed, string(out), err
	}
	if strings.Contains(string(out), "Traceback") {
		t.Errorf("printcore printed a Python traceback:\n%s", tail(string(out), 40))
	}
	record, err := os.ReadFile(cfg.RecordPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(executed, "\n") + "\n"; string(record) != got {
		t.Errorf("record file differs from Executed (%d bytes vs %d)", len(record), len(got))
	}
	return executed, string(out), nil
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// withoutPrintcoreLines removes what printcore itself sends around a job:
// M105 until a reply arrives (printcore.py _listen_until_online), an
// M110 with N-1 before the first line (startprint) and, if it was written
// before printcore closed the port, the M110 after the last line.
func withoutPrintcoreLines(t *testing.T, executed []string) []string {
	t.Helper()
	i := 0
	for i < len(executed) && executed[i] == "M105" {
		i++
	}
	if i == len(executed) || executed[i] != "M110" {
		t.Fatalf("printcore's M110 before the job is missing; executed starts with %q", executed[:min(len(executed), 5)])
	}
	job := executed[i+1:]
	if n := len(job); n > 0 && job[n-1] == "M110" {
		job = job[:n-1]
	}
	return job
}

func assertJobExecuted(t *testing.T, executed []string) {
	t.Helper()
	f, err := os.Open(printcoreJob)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := CommandsOf(f)
	if err != nil {
		t.Fatal(err)
	}
	got := withoutPrintcoreLines(t, executed)
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("command %d = %q, want %q (file commands before it matched)", i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("executed %d job commands, want %d", len(got), len(want))
	}
}

// TestPrintcoreKnobs prints the job with printcore through the knobs that
// real Marlin builds also show and that printcore survives. The printcore
// of Printrun 2.0.0rc8 (Debian's package) hangs on the others. It waits
// for each ok without a timeout and counts only lines that start with
// ok, so GluedOKs and the glued half of AutoreportMidline (`...B@:0ok`)
// stop it. Its reader thread ends at the first byte from the printer that
// is not UTF-8 (_readline returns None on UnicodeDecodeError, which ends
// _listen), so TXByteErrors stops it too. It answers every resend
// request, also a repeated one for a line it has just sent again, so
// with DuplicateResend it sends lines twice; the firmware's receive
// buffer flush after each rejection then cuts some of them, and the
// rest of a cut line runs as a command of its own.
func TestPrintcoreKnobs(t *testing.T) {
	cases := []struct {
		name string
		knob func(*Config)
		// minErrors is how many Error: lines printcore must have logged.
		minErrors int
	}{
		{"plain", func(c *Config) {}, 0},
		{"advanced-ok", func(c *Config) { c.AdvancedOK = true }, 0},
		// About one line in ten is rejected.
		{"resend-ratio", func(c *Config) { c.ResendRatio = 10 }, 100},
		{"rx-byte-errors", func(c *Config) { c.RXByteErrors = 0.001; c.Seed = 7 }, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := fastConfig()
			c.knob(&cfg)
			executed, out := runPrintcore(t, cfg)
			assertJobExecuted(t, executed)
			// printcore logs every Error: line it receives.
			if n := strings.Count(out, "Error:"); n < c.minErrors {
				t.Errorf("printcore saw %d Error: lines, want at least %d", n, c.minErrors)
			}
		})
	}
}
