package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
	"github.com/printbridge/printbridge/hooks"
)

// workerWait bounds every wait for the worker in these tests.
const workerWait = 20 * time.Second

func writeWorkerConfig(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "config.yaml")
	// Rename keeps a reload from ever reading a half-written file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// workerRun is `printbridge worker` running in this process.
type workerRun struct {
	t      *testing.T
	log    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startWorker runs the worker command with args until the test ends and
// waits for its "worker started" line.
func startWorker(t *testing.T, args ...string) *workerRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &workerRun{t: t, log: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	// Each worker gets its own data folder: tests reuse event ids, and a
	// shared seen-events file would make one test's worker skip another's.
	args = append([]string{"--data-dir", t.TempDir()}, args...)
	go func() { w.done <- runWorker(ctx, args, io.Discard, w.log) }()
	t.Cleanup(func() {
		w.stop()
		if t.Failed() {
			t.Logf("worker log:\n%s", w.log.String())
		}
	})
	deadline := time.Now().Add(workerWait)
	for !strings.Contains(w.log.String(), "worker started") {
		select {
		case err := <-w.done:
			t.Fatalf("worker returned %v before it started; log:\n%s", err, w.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker did not start within %s; log:\n%s", workerWait, w.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return w
}

func (w *workerRun) stop() {
	if w.cancel == nil {
		return
	}
	w.cancel()
	w.cancel = nil
	select {
	case err := <-w.done:
		if err != nil {
			w.t.Errorf("worker returned %v", err)
		}
	case <-time.After(workerWait):
		w.t.Errorf("worker did not stop within %s", workerWait)
	}
}

// lines returns the log lines that contain every one of parts.
func (w *workerRun) lines(parts ...string) []string {
	return matchingLines(w.log.String(), parts...)
}

func matchingLines(text string, parts ...string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		ok := line != ""
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// eventSender publishes event envelopes on NATS and collects the hook
// results that the worker publishes.
type eventSender struct {
	t   *testing.T
	bus *natsbus.Bus

	mu      sync.Mutex // guards results
	results []map[string]any
}

func newEventSender(t *testing.T, url string, printers ...string) *eventSender {
	t.Helper()
	bus, err := natsbus.New(context.Background(), natsbus.Config{URL: url, Name: "test-sender"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("connect test sender: %v", err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	s := &eventSender{t: t, bus: bus}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect hook observer: %v", err)
	}
	t.Cleanup(nc.Close)
	for _, p := range printers {
		_, err := nc.Subscribe(bridge.Topics{}.NATSHook(p), func(m *nats.Msg) {
			var r map[string]any
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Errorf("hook result is not JSON: %s", m.Data)
				return
			}
			s.mu.Lock()
			s.results = append(s.results, r)
			s.mu.Unlock()
		})
		if err != nil {
			t.Fatalf("subscribe to hook results: %v", err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush hook observer: %v", err)
	}
	return s
}

func (s *eventSender) send(printer, id, event string, payload bridge.Payload) {
	s.t.Helper()
	env := &bridge.Envelope{Schema: bridge.SchemaVersion, ID: id, Printer: printer, Event: event, Time: time.Now(), Payload: payload}
	data, err := json.Marshal(env)
	if err != nil {
		s.t.Fatalf("encode envelope: %v", err)
	}
	if err := s.bus.PublishEvent(context.Background(), env, data); err != nil {
		s.t.Fatalf("publish %s: %v", event, err)
	}
}

// waitResult returns the hook result for event id and hook name.
func (s *eventSender) waitResult(eventID, hook string) map[string]any {
	s.t.Helper()
	var found map[string]any
	waitFor(s.t, fmt.Sprintf("result of hook %q for event %s", hook, eventID), workerWait, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range s.results {
			if r["event_id"] == eventID && r["hook"] == hook {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

// TestWorkerRejectsSettingsErrors starts the worker with mistakes in the
// printbridge: section. Each one stops it at start with the file, line
// and problem, because it would otherwise run on settings the file does
// not give.
func TestWorkerRejectsSettingsErrors(t *testing.T) {
	const events = `events:
  subscriptions:
  - {event: PrintDone, type: system, shell: false, command: "true"}
`
	for _, c := range []struct {
		name     string
		settings string
		want     []string
	}{
		{"invalid values", "printbridge:\n  hook_timeout: soon\n  max_concurrent_hooks: 0\n", []string{
			`:2:17: error: invalid printbridge.hook_timeout`,
			`:3:25: error: invalid printbridge.max_concurrent_hooks`,
			"2 errors in the printbridge: section",
		}},
		{"unknown key", "printbridge:\n  hook_timout: 30s\n", []string{
			":2:3: error: unknown key printbridge.hook_timout; did you mean printbridge.hook_timeout?",
			"1 error in the printbridge: section",
		}},
		{"misspelled section", "printbrige:\n  hook_timeout: 30s\n", []string{
			// The log line quotes the message, so its quotes are escaped.
			`:1:1: error: top-level key \"printbrige\" is not the worker's printbridge: section`,
			"1 error in the printbridge: section",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := writeWorkerConfig(t, t.TempDir(), c.settings+events)
			code, _, stderr := runCLI(t, "worker", "--config", cfg, "--nats", "nats://127.0.0.1:1", "--metrics-listen", "")
			if code != 1 {
				t.Fatalf("worker exited %d, want 1\n%s", code, stderr)
			}
			for _, want := range c.want {
				if strings.HasPrefix(want, ":") {
					want = cfg + want
				}
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if strings.Contains(stderr, "worker started") {
				t.Error("the worker started despite the errors")
			}
		})
	}
}

func TestWorkerFlagReplacesBrokenSetting(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	cfg := writeWorkerConfig(t, t.TempDir(), `printbridge:
  hook_timeout: soon
events:
  subscriptions:
  - {event: PrintDone, type: system, shell: false, command: "true"}
`)
	w := startWorker(t, "--config", cfg, "--nats", emb.NATSURL(), "--metrics-listen", "", "--hook-timeout", "5s")
	lines := w.lines("config problem", "printbridge.hook_timeout")
	if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "--hook-timeout replaces it") {
		t.Errorf("log lines about the replaced setting = %q, want one WARN naming --hook-timeout", lines)
	}
	if started := w.lines("worker started", "hook_timeout=5s"); len(started) != 1 {
		t.Errorf("start line with hook_timeout=5s missing:\n%s", w.log.String())
	}
}

func TestWorkerLogsUnknownEventsKeyAsError(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	// OctoPrint ignores the key, so the worker starts with the hooks, but
	// the log names the key as an error, as check-config does.
	cfg := writeWorkerConfig(t, t.TempDir(), `events:
  enable: true
  subscriptions:
  - {event: PrintDone, type: system, shell: false, command: "true"}
`)
	w := startWorker(t, "--config", cfg, "--nats", emb.NATSURL(), "--metrics-listen", "")
	lines := w.lines("config problem", "events.enable")
	if len(lines) != 1 {
		t.Fatalf("log lines about events.enable = %q, want one", lines)
	}
	if !strings.Contains(lines[0], "level=ERROR") {
		t.Errorf("log line %q is not at ERROR", lines[0])
	}
	if !strings.Contains(lines[0], `did you mean \"enabled\"?`) {
		t.Errorf("log line %q lacks the suggestion", lines[0])
	}
	if started := w.lines("worker started", "subscriptions=1"); len(started) != 1 {
		t.Errorf("start line with subscriptions=1 missing:\n%s", w.log.String())
	}
}

// overrideConfig serves printer "other" with a long timeout; tests
// override both to see the hook of printer wf1 time out.
const overrideConfig = `printbridge:
  printers: [other]
  hook_timeout: 100s
  max_concurrent_hooks: 2
events:
  subscriptions:
  - {name: slow, event: PrintStarted, type: system, shell: false, command: "sleep 30"}
`

func TestWorkerFlagsOverrideFile(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	cfg := writeWorkerConfig(t, t.TempDir(), overrideConfig)
	sender := newEventSender(t, emb.NATSURL(), "wf1", "other")
	w := startWorker(t, "--config", cfg, "--nats", emb.NATSURL(), "--metrics-listen", "",
		"--printer", "wf1", "--hook-timeout", "300ms", "--max-concurrent-hooks", "3")
	if started := w.lines("worker started", "printers=wf1", "hook_timeout=300ms", "max_concurrent_hooks=3"); len(started) != 1 {
		t.Errorf("start line does not show the flags' settings:\n%s", w.log.String())
	}

	sender.send("other", "o1", bridge.EventPrintStarted, nil)
	sender.send("wf1", "w1", bridge.EventPrintStarted, nil)
	r := sender.waitResult("w1", "slow")
	if errText := fmt.Sprint(r["error"]); !strings.Contains(errText, "hook timed out after 300ms") {
		t.Errorf("hook error = %q, want a timeout after 300ms from --hook-timeout", errText)
	}
}

func TestWorkerEnvOverridesFile(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	cfg := writeWorkerConfig(t, t.TempDir(), overrideConfig)
	sender := newEventSender(t, emb.NATSURL(), "wf1")
	t.Setenv("PRINTBRIDGE_CONFIG", cfg)
	t.Setenv("PRINTBRIDGE_NATS", emb.NATSURL())
	t.Setenv("PRINTBRIDGE_METRICS_LISTEN", "")
	t.Setenv("PRINTBRIDGE_PRINTER", "wf1")
	t.Setenv("PRINTBRIDGE_HOOK_TIMEOUT", "300ms")
	t.Setenv("PRINTBRIDGE_MAX_CONCURRENT_HOOKS", "3")
	// A flag beats the environment.
	w := startWorker(t, "--max-concurrent-hooks", "1")
	if started := w.lines("worker started", "printers=wf1", "hook_timeout=300ms", "max_concurrent_hooks=1"); len(started) != 1 {
		t.Errorf("start line does not show the environment's settings:\n%s", w.log.String())
	}
	if lines := w.lines("metrics endpoint listening"); len(lines) != 0 {
		t.Errorf("PRINTBRIDGE_METRICS_LISTEN=\"\" did not disable the endpoint: %q", lines)
	}
	sender.send("wf1", "w1", bridge.EventPrintStarted, nil)
	r := sender.waitResult("w1", "slow")
	if errText := fmt.Sprint(r["error"]); !strings.Contains(errText, "hook timed out after 300ms") {
		t.Errorf("hook error = %q, want a timeout after 300ms from PRINTBRIDGE_HOOK_TIMEOUT", errText)
	}
}

func TestWorkerLogsUnknownEventOnce(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	cfg := writeWorkerConfig(t, t.TempDir(), `events:
  subscriptions:
  - name: done
    event: PrintDone
    type: system
    shell: false
    command: "true"
  - name: typo
    event: printdone
    type: system
    shell: false
    command: "true"
`)
	w := startWorker(t, "--config", cfg, "--nats", emb.NATSURL(), "--metrics-listen", "")
	lines := w.lines("printdone")
	if len(lines) != 1 {
		t.Fatalf("log lines naming printdone = %d, want exactly 1:\n%s", len(lines), w.log.String())
	}
	for _, want := range []string{"level=WARN", cfg + ":9:12:", `unknown event \"printdone\" never fires`, `did you mean \"PrintDone\"?`, `(entry #2 \"typo\")`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("unknown event line lacks %q: %s", want, lines[0])
		}
	}
}

func TestWorkerNeedsConfig(t *testing.T) {
	code, _, stderr := runCLI(t, "worker", "--nats", "nats://127.0.0.1:1")
	if code != 2 || !strings.Contains(stderr, "missing --config") {
		t.Errorf("worker without --config exited %d with %q, want 2 and missing --config", code, stderr)
	}
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	code, _, stderr = runCLI(t, "worker", "--config", missing, "--nats", "nats://127.0.0.1:1", "--metrics-listen", "")
	if code != 1 || !strings.Contains(stderr, missing) {
		t.Errorf("worker with a missing config exited %d with %q, want 1 naming the file", code, stderr)
	}
}

func TestWorkerRejectsInvalidNumbers(t *testing.T) {
	cfg := writeWorkerConfig(t, t.TempDir(), overrideConfig)
	inFlightRange := fmt.Sprintf("give 1 to %d", hooks.DefaultQueueSize)
	cases := []struct {
		flag, value, want string
	}{
		{"max-concurrent-hooks", "0", "give 1 or more"},
		{"max-concurrent-hooks", "-5", "give 1 or more"},
		{"max-concurrent-hooks", "four", "want a whole number"},
		{"max-in-flight", "0", inFlightRange},
		{"max-in-flight", strconv.Itoa(hooks.DefaultQueueSize + 1), inFlightRange},
		{"nats-max-pending", "0", "give 1 or more"},
		{"nats-max-pending", "-1", "give 1 or more"},
		{"hook-timeout", "-1s", "give a duration such as 90s, or 0 for none"},
		{"hook-timeout", "soon", "give a duration such as 90s, or 0 for none"},
		{"seen-ttl", "0s", "give a positive duration such as 24h"},
		{"seen-ttl", "-1h", "give a positive duration such as 24h"},
	}
	for _, c := range cases {
		t.Run(c.flag+"="+c.value, func(t *testing.T) {
			// The flag on the command line: a usage error.
			code, _, stderr := runCLI(t, "worker", "--config", cfg, "--nats", "nats://127.0.0.1:1",
				"--metrics-listen", "", "--"+c.flag, c.value)
			if code != 2 {
				t.Errorf("--%s %s: exit code %d, want 2", c.flag, c.value, code)
			}
			want := fmt.Sprintf("invalid value %q for flag -%s: %s", c.value, c.flag, c.want)
			if !strings.Contains(stderr, want) {
				t.Errorf("--%s %s wrote %q, want %q", c.flag, c.value, stderr, want)
			}

			// The same value from the environment.
			env := "PRINTBRIDGE_" + strings.ToUpper(strings.ReplaceAll(c.flag, "-", "_"))
			t.Setenv(env, c.value)
			code, _, stderr = runCLI(t, "worker", "--config", cfg, "--nats", "nats://127.0.0.1:1", "--metrics-listen", "")
			if code != 1 {
				t.Errorf("%s=%s: exit code %d, want 1", env, c.value, code)
			}
			want = fmt.Sprintf("invalid value %q in %s: %s", c.value, env, c.want)
			if !strings.Contains(stderr, want) {
				t.Errorf("%s=%s wrote %q, want %q", env, c.value, stderr, want)
			}
		})
	}
}

var metricsAddress = regexp.MustCompile(`msg="metrics endpoint listening" address=(127\.0\.0\.1:[0-9]+)`)

// scrapeMetricFamilies fetches and parses the Prometheus text format from url.
func scrapeMetricFamilies(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse metrics of %s: %v", url, err)
	}
	return families
}

// metricSample returns the sum of the counter or gauge samples of name whose
// labels include labels.
func metricSample(families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	var sum float64
	f, ok := families[name]
	if !ok {
		return -1
	}
	for _, m := range f.GetMetric() {
		matched := 0
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
				matched++
			}
		}
		if matched != len(labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

func TestWorkerMetricsEndpoint(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	cfg := writeWorkerConfig(t, t.TempDir(), `events:
  subscriptions:
  - {name: ok, event: PrintStarted, type: system, shell: false, command: "true"}
  - {name: failing, event: PrintStarted, type: system, shell: false, command: "false"}
  - {name: slow, event: PrintStarted, type: system, shell: false, timeout: 0.3, command: "sleep 30"}
  - {name: missing, event: PrintStarted, type: system, shell: false, command: "echo {nope}"}
  - {name: home, event: Home, type: gcode, command: G28}
`)
	sender := newEventSender(t, emb.NATSURL(), "m1")
	w := startWorker(t, "--config", cfg, "--nats", emb.NATSURL(), "--metrics-listen", "127.0.0.1:0")
	m := metricsAddress.FindStringSubmatch(w.log.String())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", w.log.String())
	}
	url := "http://" + m[1] + "/metrics"

	sender.send("m1", "e1", bridge.EventPrintStarted, nil)
	sender.send("m1", "e1", bridge.EventPrintStarted, nil)
	sender.send("m1", "e2", bridge.EventHome, nil)
	nc, err := nats.Connect(emb.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish(bridge.Topics{}.NATSEvent("m1", "PrintDone"), []byte("not an envelope")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	var families map[string]*dto.MetricFamily
	waitFor(t, "five hook runs on /metrics", workerWait, func() bool {
		families = scrapeMetricFamilies(t, url)
		return metricSample(families, "printbridge_hook_runs_total", nil) == 5 &&
			metricSample(families, "printbridge_worker_events_invalid_total", nil) == 1
	})
	for _, c := range []struct{ hook, event, typ, result string }{
		{"ok", "PrintStarted", "system", "ok"},
		{"failing", "PrintStarted", "system", "failed"},
		{"slow", "PrintStarted", "system", "timeout"},
		{"missing", "PrintStarted", "system", "skipped"},
		{"home", "Home", "gcode", "loop_guard"},
	} {
		labels := map[string]string{"hook": c.hook, "event": c.event, "type": c.typ, "result": c.result}
		if v := metricSample(families, "printbridge_hook_runs_total", labels); v != 1 {
			t.Errorf("printbridge_hook_runs_total%v = %v, want 1", labels, v)
		}
	}
	if h := families["printbridge_hook_duration_seconds"]; h == nil || len(h.GetMetric()) != 1 ||
		h.GetMetric()[0].GetHistogram().GetSampleCount() != 3 {
		t.Errorf("printbridge_hook_duration_seconds = %v, want 3 system samples", h)
	}
	for name, want := range map[string]float64{
		"printbridge_worker_events_duplicate_total":         1,
		"printbridge_worker_events_invalid_total":           1,
		"printbridge_worker_events_dropped_total":           0,
		"printbridge_worker_events_dropped_by_client_total": 0,
		"printbridge_worker_queue_depth":                    0,
		"printbridge_worker_subscriptions":                  5,
		"printbridge_worker_config_last_reload_successful":  1,
		"printbridge_worker_config_entries_skipped":         0,
	} {
		if v := metricSample(families, name, nil); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if v := metricSample(families, "printbridge_worker_events_received_total", map[string]string{"event": "PrintStarted"}); v != 2 {
		t.Errorf("events received for PrintStarted = %v, want 2 (the redelivery included)", v)
	}
	if v := metricSample(families, "printbridge_worker_errors_total", map[string]string{"operation": "publish_result"}); v != 0 {
		t.Errorf("publish_result errors = %v, want 0", v)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := families[name]; !ok {
			t.Errorf("%s missing: the Go and process collectors are not registered", name)
		}
	}
}

func TestWorkerMetricsCountSkippedEntries(t *testing.T) {
	bin := buildPrintbridge(t)
	emb := brokertest.StartNATS(t, false, false)
	dir := t.TempDir()
	// Two entries with errors, one disabled entry (skipped without an
	// error, so not counted) and one good entry.
	cfg := writeWorkerConfig(t, dir, `events:
  subscriptions:
  - {name: good, event: PrintDone, type: system, shell: false, command: "true"}
  - {name: no type, event: PrintDone, command: "true"}
  - {name: no command, event: PrintDone, type: system}
  - {name: off, event: PrintDone, type: system, shell: false, command: "true", enabled: false}
`)
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "worker", "--config", cfg, "--nats", emb.NATSURL(), "--metrics-listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	waitFor(t, "worker started", workerWait, func() bool { return strings.Contains(logs.String(), "worker started") })
	m := metricsAddress.FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", logs.String())
	}
	url := "http://" + m[1] + "/metrics"
	gauges := func() (skipped, reloadOK, subscriptions float64) {
		families := scrapeMetricFamilies(t, url)
		return metricSample(families, "printbridge_worker_config_entries_skipped", nil),
			metricSample(families, "printbridge_worker_config_last_reload_successful", nil),
			metricSample(families, "printbridge_worker_subscriptions", nil)
	}
	configErrors := func() float64 {
		return metricSample(scrapeMetricFamilies(t, url), "printbridge_worker_config_errors", nil)
	}
	hup := func(wantLine string) {
		t.Helper()
		n := len(matchingLines(logs.String(), wantLine))
		if err := syscall.Kill(cmd.Process.Pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, wantLine, workerWait, func() bool { return len(matchingLines(logs.String(), wantLine)) > n })
	}

	skipped, reloadOK, subscriptions := gauges()
	if skipped != 2 {
		t.Errorf("entries_skipped at start = %v, want 2", skipped)
	}
	if reloadOK != 1 {
		t.Errorf("last_reload_successful at start = %v, want 1", reloadOK)
	}
	if subscriptions != 1 {
		t.Errorf("subscriptions at start = %v, want 1", subscriptions)
	}
	if v := configErrors(); v != 2 {
		t.Errorf("config_errors at start = %v, want 2", v)
	}

	// A reload that fails keeps the running config, so its count stays.
	writeWorkerConfig(t, dir, "events:\n  subscriptions:\n  - {event: PrintDone, command: \"true\"}\n")
	hup("config reload failed")
	skipped, reloadOK, _ = gauges()
	if skipped != 2 {
		t.Errorf("entries_skipped after a failed reload = %v, want 2 of the running config", skipped)
	}
	if reloadOK != 0 {
		t.Errorf("last_reload_successful after a failed reload = %v, want 0", reloadOK)
	}
	if v := configErrors(); v != 2 {
		t.Errorf("config_errors after a failed reload = %v, want 2 of the running config", v)
	}

	// An unknown key in the printbridge: section rejects the reload too.
	writeWorkerConfig(t, dir, "printbridge:\n  hook_timout: 30s\nevents:\n  subscriptions:\n  - {event: PrintDone, type: system, shell: false, command: \"true\"}\n")
	hup("config reload failed")
	if lines := matchingLines(logs.String(), "unknown key printbridge.hook_timout; did you mean printbridge.hook_timeout?"); len(lines) != 1 {
		t.Errorf("log lines naming the unknown key = %q, want 1", lines)
	}
	if _, _, subscriptions = gauges(); subscriptions != 1 {
		t.Errorf("subscriptions after the rejected reload = %v, want 1 of the running config", subscriptions)
	}

	writeWorkerConfig(t, dir, "events:\n  subscriptions:\n  - {event: PrintDone, type: system, shell: false, command: \"true\"}\n")
	hup("config reloaded")
	skipped, reloadOK, subscriptions = gauges()
	if skipped != 0 {
		t.Errorf("entries_skipped after a good reload = %v, want 0", skipped)
	}
	if reloadOK != 1 {
		t.Errorf("last_reload_successful after a good reload = %v, want 1", reloadOK)
	}
	if subscriptions != 1 {
		t.Errorf("subscriptions after a good reload = %v, want 1", subscriptions)
	}
	if v := configErrors(); v != 0 {
		t.Errorf("config_errors after a good reload = %v, want 0", v)
	}
}

func TestWorkerReloadsOnSIGHUP(t *testing.T) {
	bin := buildPrintbridge(t)
	emb := brokertest.StartNATS(t, false, false)
	dir := t.TempDir()
	out := filepath.Join(dir, "hooks.txt")
	hook := func(name, word string) string {
		return fmt.Sprintf("  - {name: %s, event: PrintDone, type: system, shell: true, command: \"echo %s-{__eventname} >> %s\"}\n", name, word, out)
	}
	cfg := writeWorkerConfig(t, dir, "events:\n  subscriptions:\n"+hook("first", "a"))
	sender := newEventSender(t, emb.NATSURL(), "hup1")

	logs := &syncBuffer{}
	cmd := exec.Command(bin, "worker", "--config", cfg, "--nats", emb.NATSURL(), "--metrics-listen", "", "--printer", "hup1", "--data-dir", t.TempDir())
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	waitFor(t, "worker started", workerWait, func() bool { return strings.Contains(logs.String(), "worker started") })

	outputs := func() []string {
		data, _ := os.ReadFile(out)
		return strings.Fields(string(data))
	}
	runEvent := func(id, want string) {
		t.Helper()
		n := len(outputs())
		sender.send("hup1", id, bridge.EventPrintDone, nil)
		waitFor(t, "hook output for "+id, workerWait, func() bool { return len(outputs()) > n })
		if got := outputs()[n]; got != want {
			t.Errorf("hook for %s wrote %q, want %q", id, got, want)
		}
	}
	hup := func(wantLine string) {
		t.Helper()
		n := len(matchingLines(logs.String(), wantLine))
		if err := syscall.Kill(cmd.Process.Pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, wantLine, workerWait, func() bool { return len(matchingLines(logs.String(), wantLine)) > n })
	}
	runEvent("d1", "a-PrintDone")

	// Invalid YAML: the old config keeps running, and the log names the
	// file and line.
	writeWorkerConfig(t, dir, "events:\n  subscriptions:\n  - event: [PrintDone\n")
	hup("config reload failed")
	if lines := matchingLines(logs.String(), "config reload failed", cfg+":"); len(lines) != 1 || !strings.Contains(lines[0], "invalid YAML") {
		t.Errorf("reload failure lines = %q, want one naming %s:LINE and invalid YAML", lines, cfg)
	}
	runEvent("d2", "a-PrintDone")

	// An entry error rejects the whole new config, with the problem's
	// file:line in the log.
	writeWorkerConfig(t, dir, "events:\n  subscriptions:\n"+hook("second", "b")+"  - {event: PrintDone, command: \"true\"}\n")
	hup("config reload failed")
	if lines := matchingLines(logs.String(), "config problem", cfg+":4:5: error: missing type"); len(lines) != 1 {
		t.Errorf("problem lines = %q, want one naming %s:4:5", lines, cfg)
	}
	runEvent("d3", "a-PrintDone")

	writeWorkerConfig(t, dir, "events:\n  subscriptions:\n"+hook("second", "b")+hook("third", "c"))
	hup("config reloaded")
	if lines := matchingLines(logs.String(), "config reloaded", "subscriptions=2"); len(lines) != 1 {
		t.Errorf("reload lines = %q, want one with subscriptions=2", lines)
	}
	n := len(outputs())
	sender.send("hup1", "d4", bridge.EventPrintDone, nil)
	waitFor(t, "both new hooks", workerWait, func() bool { return len(outputs()) >= n+2 })
	if got := strings.Join(outputs()[n:], " "); got != "b-PrintDone c-PrintDone" && got != "c-PrintDone b-PrintDone" {
		t.Errorf("hooks after the reload wrote %q, want b-PrintDone and c-PrintDone", got)
	}

	// A file truncated by an editor, and one without events:, keep the
	// running hooks, and the log says how to remove them on purpose.
	for _, text := range []string{"", "printbridge:\n  log_level: info\n", "events:\n"} {
		writeWorkerConfig(t, dir, text)
		hup("config reload failed")
		lines := matchingLines(logs.String(), "config reload failed", "no events.subscriptions list")
		if len(lines) == 0 || !strings.Contains(lines[len(lines)-1], cfg) || !strings.Contains(lines[len(lines)-1], "events: {subscriptions: []}") {
			t.Errorf("for file %q, reload failure lines = %q, want one naming %s and how to remove all hooks", text, lines, cfg)
		}
		n := len(outputs())
		sender.send("hup1", "keep-"+strconv.Itoa(len(text)), bridge.EventPrintDone, nil)
		waitFor(t, "both running hooks", workerWait, func() bool { return len(outputs()) >= n+2 })
	}

	// Removing all hooks on purpose is a valid reload.
	writeWorkerConfig(t, dir, "events:\n  subscriptions: []\n")
	hup("config reloaded")
	if lines := matchingLines(logs.String(), "config reloaded", "subscriptions=0"); len(lines) != 1 {
		t.Errorf("reload lines = %q, want one with subscriptions=0", lines)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("worker exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(workerWait):
		t.Fatal("worker did not exit after SIGTERM")
	}
	if !strings.Contains(logs.String(), "worker stopped") {
		t.Error("log has no worker stopped line")
	}
}

func TestWorkerPersistentSessionCatchesUp(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "ran.txt")
	cfg := writeWorkerConfig(t, dir, fmt.Sprintf(`events:
  subscriptions:
  - event: PrintDone
    type: system
    shell: false
    command: /bin/sh -c 'echo "$0" >> %s' {name}
`, out))
	dataDir := t.TempDir()
	args := []string{"--config", cfg, "--mqtt", url, "--metrics-listen", "", "--mqtt-persistent-session",
		"--mqtt-client-id", "catch-up-worker", "--data-dir", dataDir}
	first := startWorker(t, args...)
	first.stop()

	// Published while no worker runs: the broker keeps it for the session.
	pub, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "catch-up-publisher", Topics: bridge.Topics{}},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	env := &bridge.Envelope{Schema: 1, ID: bridge.NewEventID(time.Now()), Seq: 1, Printer: "p1", Event: bridge.EventPrintDone,
		Time: time.Now().UTC(), Payload: bridge.Payload{{Key: "name", Value: "away.gcode"}, {Key: "path", Value: "away.gcode"},
			{Key: "origin", Value: "local"}, {Key: "size", Value: 1}, {Key: "time", Value: 1.5}}}
	data, _ := json.Marshal(env)
	if err := pub.PublishEvent(context.Background(), env, data); err != nil {
		t.Fatal(err)
	}

	startWorker(t, args...)
	waitFor(t, "the hook of the event published while the worker was away", workerWait, func() bool {
		got, _ := os.ReadFile(out)
		return string(got) == "away.gcode\n"
	})
}

// sendAt is send with the event's time set to at.
func (s *eventSender) sendAt(printer, id, event string, at time.Time) {
	s.t.Helper()
	env := &bridge.Envelope{Schema: bridge.SchemaVersion, ID: id, Printer: printer, Event: event, Time: at}
	data, err := json.Marshal(env)
	if err != nil {
		s.t.Fatalf("encode envelope: %v", err)
	}
	if err := s.bus.PublishEvent(context.Background(), env, data); err != nil {
		s.t.Fatalf("publish %s: %v", event, err)
	}
}

// TestLateGcodeHookDroppedByEdge runs a real edge and worker and delivers a
// PrintDone that the edge fired three minutes ago, as a backlog after an
// outage brings it. The worker sends its G-code with an expiry of the
// event's time plus gcode_max_age (2 minutes), the edge drops it by its own
// clock, and the result is stale. A PrintDone of now is sent as usual.
func TestLateGcodeHookDroppedByEdge(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	_, edgeLog := startMetricsEdge(t, busOptions{natsURL: emb.NATSURL(), baseTopic: bridge.DefaultBase}, nil)
	cfg := writeWorkerConfig(t, t.TempDir(), `events:
  subscriptions:
  - {name: lcd, event: PrintDone, type: gcode, command: "M117 done"}
`)
	startWorker(t, "--config", cfg, "--nats", emb.NATSURL(), "--metrics-listen", "")
	sender := newEventSender(t, emb.NATSURL(), "m1")
	waitFor(t, "the edge's printer operational", 20*time.Second, func() bool {
		return strings.Contains(edgeLog.String(), "to=OPERATIONAL")
	})

	sender.sendAt("m1", "late-1", bridge.EventPrintDone, time.Now().Add(-3*time.Minute))
	late := sender.waitResult("late-1", "lcd")
	if msg, _ := late["error"].(string); !strings.Contains(msg, "gcode_max_age") || !strings.Contains(msg, bridge.ReasonExpired) {
		t.Errorf("result of the late PrintDone = %v, want an error about gcode_max_age and the expiry", late)
	}
	if !strings.Contains(edgeLog.String(), "expired command rejected") {
		t.Errorf("the edge did not log the expired command:\n%s", edgeLog.String())
	}

	sender.sendAt("m1", "now-1", bridge.EventPrintDone, time.Now())
	if r := sender.waitResult("now-1", "lcd"); r["exit_code"] != float64(0) {
		t.Errorf("result of the PrintDone of now = %v, want exit code 0", r)
	}
}

func TestDurationFlagTakesSeconds(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90s", 90 * time.Second, true},
		{"30", 30 * time.Second, true},
		{"0.5", 500 * time.Millisecond, true},
		{"0", 0, true},
		{"-5", 0, false},
		{"-5s", 0, false},
		{"soon", 0, false},
		{"1e30", 0, false},
	} {
		d := boundedDuration{zeroAllowed: true}
		err := d.Set(c.in)
		if (err == nil) != c.ok {
			t.Errorf("Set(%q) error = %v, want ok %v", c.in, err, c.ok)
			continue
		}
		if c.ok && d.value != c.want {
			t.Errorf("Set(%q) = %s, want %s", c.in, d.value, c.want)
		}
	}
}
