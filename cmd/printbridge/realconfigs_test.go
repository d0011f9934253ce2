package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/hooks"
	"github.com/printbridge/printbridge/printer/virtual"
)

// standinScript records one call per file: the program's name, the
// event, then every argument, each ended by a NUL byte. A file per call
// keeps concurrent hooks from interleaving their records.
const standinScript = `#!/bin/sh
f=$(mktemp "$STANDIN_CALLS/call.XXXXXX") || exit 97
{
  printf '%s\0' "$(basename "$0")" "$PRINTBRIDGE_EVENT"
  for a in "$@"; do printf '%s\0' "$a"; done
} > "$f"
`

// standinPrograms are the programs of the real configs that hooks call
// by name; the stand-ins shadow them in PATH, so no real killall runs.
var standinPrograms = []string{"killall", "python", "cd", "gpio", "curl", "node", "mjpg_streamer"}

// standins is a directory of stand-in programs first in PATH.
type standins struct {
	dir   string
	calls string
}

func newStandins(t *testing.T) *standins {
	t.Helper()
	s := &standins{dir: t.TempDir()}
	for _, name := range standinPrograms {
		s.add(t, name)
	}
	t.Setenv("PATH", s.dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return s
}

func (s *standins) add(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, []byte(standinScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// reset starts an empty record for one config.
func (s *standins) reset(t *testing.T) {
	t.Helper()
	s.calls = t.TempDir()
	t.Setenv("STANDIN_CALLS", s.calls)
}

// redirect points every program of cfg at a stand-in: a program given by
// path is replaced with the stand-in of its base name, and a program
// looked up in PATH must resolve to a stand-in. It fails the test
// rather than let a real program run.
func (s *standins) redirect(t *testing.T, cfg *hooks.Config) {
	t.Helper()
	for _, sub := range cfg.Subscriptions {
		if sub.Type != hooks.TypeSystem {
			continue
		}
		for i := range sub.Commands {
			c := &sub.Commands[i]
			program := ""
			if sub.Shell {
				program = strings.Fields(c.Template)[0]
				if strings.Contains(program, "/") {
					t.Fatalf("entry #%d runs %q under a shell, which a stand-in cannot replace", sub.Entry, program)
				}
			} else {
				if strings.Contains(c.Args[0], "/") {
					c.Args[0] = s.add(t, filepath.Base(c.Args[0]))
				}
				program = c.Args[0]
			}
			resolved, err := exec.LookPath(program)
			if err != nil || filepath.Dir(resolved) != s.dir {
				t.Fatalf("entry #%d would run %q as %q, not a stand-in (%v)", sub.Entry, program, resolved, err)
			}
		}
	}
}

// recorded returns the calls as "Event program arg|arg|...", sorted.
func (s *standins) recorded(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.calls, "call.*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
		if len(fields) < 2 {
			t.Fatalf("stand-in record %s is incomplete: %q", f, data)
		}
		out = append(out, fields[1]+" "+fields[0]+" "+strings.Join(fields[2:], "|"))
	}
	slices.Sort(out)
	return out
}

// realConfigCase is one OctoPrint config of testdata/config and what its
// hooks do during one print.
type realConfigCase struct {
	file string
	// calls are the stand-in runs, as standins.recorded formats them.
	calls []string
	// results are "hook event result" for every hook run.
	results []string
	// pause pauses the print after PrintStarted and resumes it once
	// the PrintPaused hooks have finished.
	pause bool
	// executed are lines that the printer must have run a given number
	// of times, hook lines included.
	executed map[string]int
}

func realConfigCases(home string) []realConfigCase {
	return []realConfigCase{{
		file: "octoprint-config_alveo3d-fan_event-lists_4space.yaml",
		calls: []string{
			"Connected send_fan.sh temp",
			"Disconnected send_fan.sh stop",
			"PrintDone send_fan.sh stop",
			"PrintStarted send_fan.sh start",
		},
		results: []string{"#1 Connected Connected ok", "#2 PrintStarted PrintStarted ok", "#3 PrintDone PrintDone ok",
			"#3 Disconnected Disconnected ok"},
	}, {
		// Without a shell key the commands run without a shell, so
		// killall gets the rest of each line as its arguments. check-config
		// warns about the ";".
		file: "octoprint-config_box3d-industrial-3b_io-led-hooks.yaml",
		calls: []string{
			"Connected killall blink;|~/.octoprint/scripts/IO_off|2|3|12;|~/.octoprint/scripts/IO_on|2|3|12",
			"Connecting killall blink;|~/.octoprint/scripts/IO_off|2|3|12;|~/.octoprint/scripts/blink|2|3|12",
			"Disconnected killall blink;|~/.octoprint/scripts/IO_off|2|3|12;|~/.octoprint/scripts/IO_on|2",
			"PrintDone killall blink;|~/.octoprint/scripts/IO_off|2|3|12;|~/.octoprint/scripts/blink|12",
			"PrintStarted killall blink;|~/.octoprint/scripts/IO_on|2|3|12",
		},
		results: []string{"#1 Connected Connected ok", "#2 Connecting Connecting ok", "#4 PrintDone PrintDone ok",
			"#6 PrintStarted PrintStarted ok", "#7 Disconnected Disconnected ok"},
	}, {
		file: "octoprint-config_yota9_system-and-gcode-hooks.yaml",
		calls: []string{
			"Disconnected killall mjpg_streamer",
			"PrintDone killall mjpg_streamer",
			"PrintStarted cd ~/mjpg-streamer/mjpg-streamer-experimental|&&|./mjpg_streamer|-i|./input_uvc.so|-o|./output_http.so",
			"PrintStarted python ~/Documents/OctoPiLCD/OctoPiLCD.py",
		},
		results: []string{"#1 PrintStarted PrintStarted ok", "#2 PrintStarted PrintStarted ok", "#5 PrintPaused PrintPaused ok",
			"#6 PrintDone PrintDone ok", "#7 Disconnected Disconnected ok"},
		pause: true,
		// The file homes once with G28 and once with G28 X0; the hook
		// adds a G28 while paused.
		executed: map[string]int{"G28": 2, "G28 X0": 1},
	}, {
		// Disconnected is disabled, and {file} is not in the payload of
		// PrintStarted and PrintDone, so those two are skipped. "Multiple
		// Events" quotes its placeholders under shell: true, which
		// printbridge refuses at load (a file name could run shell code).
		file: "octoprint-docs_events-example_v1.11.3_shell-name.yaml",
		results: []string{"Connected Connected ok",
			"Print Done PrintDone skipped", "Print Started PrintStarted skipped"},
		executed: map[string]int{"M117 printer connected!": 1},
	}, {
		// The PrintDone hook needs {file}, so it is skipped; the
		// CaptureDone entry has no type and is never loaded.
		file:    "readme-snippet_pushbullet_last-hook-missing-type.yaml",
		results: []string{"#1 PrintDone PrintDone skipped"},
	}, {
		file: "readme-snippet_webhook_typo-event-key.yaml",
	}}
}

// resultLog records the hook results of a worker.
type resultLog struct {
	mu      sync.Mutex // guards results
	results []hooks.Result
}

func (l *resultLog) add(r hooks.Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.results = append(l.results, r)
}

func (l *resultLog) summaries() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.results {
		label := "ok"
		var fe *hooks.FormatError
		switch {
		case r.Err == nil:
		case errors.As(r.Err, &fe):
			label = "skipped"
		default:
			label = "failed: " + r.Err.Error()
		}
		out = append(out, r.Hook+" "+r.Event+" "+label)
	}
	slices.Sort(out)
	return out
}

func (l *resultLog) count(event string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.results {
		if r.Event == event {
			n++
		}
	}
	return n
}

func (l *resultLog) has(event string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.results, func(r hooks.Result) bool { return r.Event == event })
}

// workerReceived reads printbridge_worker_events_received_total{event} from reg.
func workerReceived(t *testing.T, reg *prometheus.Registry, event string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "printbridge_worker_events_received_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == event {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestRealConfigsRunHooks(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	s := newStandins(t)
	gcode, err := os.ReadFile(filepath.Join("..", "..", "testdata", "gcode", e2eFile))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range realConfigCases(home) {
		t.Run(strings.TrimSuffix(c.file, ".yaml"), func(t *testing.T) {
			s.reset(t)
			runRealConfig(t, url, fmt.Sprintf("real%d", i), gcode, s, c)
		})
	}
}

func runRealConfig(t *testing.T, url, printerID string, gcode []byte, s *standins, c realConfigCase) {
	dir := t.TempDir()
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, e2eFile), gcode, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := hooks.LoadConfig(filepath.Join("..", "..", "testdata", "config", c.file))
	if err != nil {
		t.Fatal(err)
	}
	s.redirect(t, cfg)
	cfg.Settings.Printers = []string{printerID}

	newBus := func(name string) *mqtt.Bus {
		b, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: printerID + "-" + name, Topics: bridge.Topics{}},
			slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	col := &collector{}
	observer := newBus("observer")
	if err := observer.SubscribeEvents(context.Background(), printerID, "", col.onEvent); err != nil {
		t.Fatal(err)
	}
	command := func(data string) {
		t.Helper()
		if err := observer.PublishCommand(context.Background(), printerID, bridge.CommandJob, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}

	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	if c.pause {
		// Slow enough that the pause arrives while the file prints.
		vcfg.Speed = 10
	}
	vp, err := virtual.New(vcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vpCtx, stopVP := context.WithCancel(context.Background())
	vpDone := make(chan error, 1)
	go func() { vpDone <- vp.Run(vpCtx) }()
	defer func() {
		stopVP()
		<-vpDone
		// Cancelling Run leaves the pty master and its inotify instance
		// open; only Close releases them.
		_ = vp.Close()
	}()

	results := &resultLog{}
	reg := prometheus.NewRegistry()
	workerLog := &syncBuffer{}
	w := hooks.NewWorker(cfg, newBus("worker"), slog.New(slog.NewTextHandler(workerLog, nil)),
		hooks.WithMetrics(hooks.NewMetrics(reg)), hooks.OnResult(results.add))
	workerCtx, cancelWorker := context.WithCancel(context.Background())
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(workerCtx) }()
	var stopWorker sync.Once
	stopWorkerAndWait := func() {
		stopWorker.Do(func() {
			cancelWorker()
			if err := <-workerDone; err != nil {
				t.Errorf("worker returned %v", err)
			}
		})
	}
	defer func() {
		stopWorkerAndWait()
		if t.Failed() {
			t.Logf("worker log:\n%s", workerLog.String())
		}
	}()
	waitFor(t, "worker started", workerWait, func() bool { return strings.Contains(workerLog.String(), "worker started") })

	edgeLog := &syncBuffer{}
	edgeCtx, stopEdge := context.WithCancel(context.Background())
	edgeDone := make(chan error, 1)
	opts := edgeOptions{
		port: vp.Path(), baud: 115200, printerID: printerID, filesDir: files, dataDir: filepath.Join(dir, "edge"),
		maxLineLength: 96, autoConnect: true, bus: busOptions{mqttURL: url, baseTopic: bridge.DefaultBase},
	}
	go func() {
		edgeDone <- runEdgeWith(edgeCtx, opts, slog.New(slog.NewTextHandler(edgeLog, nil)), nil)
	}()
	edgeStopped := false
	stop := func() {
		if edgeStopped {
			return
		}
		edgeStopped = true
		stopEdge()
		if err := <-edgeDone; err != nil {
			t.Errorf("edge stopped with error: %v", err)
		}
	}
	defer func() {
		stop()
		if t.Failed() {
			t.Logf("edge log:\n%s", edgeLog.String())
		}
	}()

	waitFor(t, "Connected", workerWait, func() bool { return col.has(bridge.EventConnected) })
	// A Connected hook's G-code (a G28, say) goes through the command
	// topic; started before it arrives, the job would make the edge's
	// command policy reject it.
	connectedHooks := 0
	for _, r := range c.results {
		if f := strings.Fields(r); len(f) > 1 && f[1] == bridge.EventConnected {
			connectedHooks++
		}
	}
	waitFor(t, "the Connected hooks", workerWait, func() bool { return results.count(bridge.EventConnected) >= connectedHooks })
	command(fmt.Sprintf(`{"id": "job-1", "action": "start", "path": %q}`, e2eFile))
	if c.pause {
		waitFor(t, "PrintStarted", workerWait, func() bool { return col.has(bridge.EventPrintStarted) })
		command(`{"id": "pause-1", "action": "pause"}`)
		waitFor(t, "the PrintPaused hook", workerWait, func() bool { return results.has(bridge.EventPrintPaused) })
		command(`{"id": "resume-1", "action": "resume"}`)
	}
	waitFor(t, "PrintDone", 2*time.Minute, func() bool { return col.has(bridge.EventPrintDone) })
	stop()
	waitFor(t, "Shutdown", workerWait, func() bool { return col.has(bridge.EventShutdown) })

	// Shutdown is the last event, and events are handled in order, so
	// once the worker has it only the results of earlier hooks remain.
	waitFor(t, "the worker to receive Shutdown", workerWait, func() bool { return workerReceived(t, reg, bridge.EventShutdown) == 1 })
	waitFor(t, fmt.Sprintf("%d hook results", len(c.results)), workerWait, func() bool {
		return len(results.summaries()) >= len(c.results)
	})
	stopWorkerAndWait()

	wantResults, wantCalls := slices.Sorted(slices.Values(c.results)), slices.Sorted(slices.Values(c.calls))
	if got := results.summaries(); !slices.Equal(got, wantResults) {
		t.Errorf("hook results:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(wantResults, "\n  "))
	}
	if got := s.recorded(t); !slices.Equal(got, wantCalls) {
		t.Errorf("stand-in calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(wantCalls, "\n  "))
	}
	executed := vp.Executed()
	for line, want := range c.executed {
		if n := countExecuted(executed, line); n != want {
			t.Errorf("the printer ran %q %d times, want %d", line, n, want)
		}
	}
}

func countExecuted(lines []string, line string) int {
	n := 0
	for _, l := range lines {
		if l == line {
			n++
		}
	}
	return n
}
