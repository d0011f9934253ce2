package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/printbridge/printbridge/bridge"
)

// logBuffer is a log sink that a test reads while the worker writes.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the log lines that contain every one of parts.
func (b *logBuffer) lines(parts ...string) []string {
	var out []string
	for _, line := range strings.Split(b.String(), "\n") {
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

func newLogBuffer() (*logBuffer, *slog.Logger) {
	b := &logBuffer{}
	return b, slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func pairConfig(prefix string) string {
	return fmt.Sprintf(`events:
  subscriptions:
  - {name: %[1]s1, event: ZChange, type: system, shell: false, command: "true"}
  - {name: %[1]s2, event: ZChange, type: system, shell: false, command: "true"}
`, prefix)
}

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	cfg, problems := parseTestConfig(t, text)
	if HasErrors(problems) {
		t.Fatalf("test config has errors: %v", problems)
	}
	return cfg
}

// hooksByEvent groups the hook names of results by event id.
func hooksByEvent(results []Result) map[string][]string {
	m := map[string][]string{}
	for _, r := range results {
		m[r.EventID] = append(m[r.EventID], r.Hook)
	}
	for id := range m {
		slices.Sort(m[id])
	}
	return m
}

func TestReloadSwapsBetweenEvents(t *testing.T) {
	h := newHarness(t, pairConfig("a"))
	configs := []*Config{mustParse(t, pairConfig("a")), mustParse(t, pairConfig("b"))}

	zchange := func(id string) *bridge.Envelope {
		return &bridge.Envelope{ID: id, Event: bridge.EventZChange, Payload: bridge.Payload{{Key: "new", Value: 0.2}}}
	}
	h.publish(zchange("first"))
	first := hooksByEvent(h.waitResults(2))["first"]
	if !slices.Equal(first, []string{"a1", "a2"}) {
		t.Fatalf("hooks before any reload = %v, want a1 and a2", first)
	}

	// Reloads land between events that are in flight, so each event
	// runs with one config or the other, never a mix.
	const events = 40
	for i := range events {
		if i%4 == 0 {
			if err := h.worker.Reload(configs[(i/4+1)%2]); err != nil {
				t.Fatalf("Reload: %v", err)
			}
		}
		h.publish(zchange(fmt.Sprintf("z%d", i)))
	}
	got := hooksByEvent(h.waitResults(2 * events))
	for id, names := range got {
		if !slices.Equal(names, []string{"a1", "a2"}) && !slices.Equal(names, []string{"b1", "b2"}) {
			t.Errorf("event %s ran hooks %v, want a1+a2 or b1+b2", id, names)
		}
	}

	if err := h.worker.Reload(configs[1]); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	h.publish(zchange("last"))
	last := hooksByEvent(h.waitResults(2))["last"]
	if !slices.Equal(last, []string{"b1", "b2"}) {
		t.Errorf("hooks of an event sent after Reload returned = %v, want b1 and b2", last)
	}
}

func TestReloadFromKeepsConfigOnError(t *testing.T) {
	logs, log := newLogBuffer()
	reg := prometheus.NewRegistry()
	h := newHarnessLog(t, `events:
  subscriptions:
  - {name: old, event: PrintDone, type: system, shell: false, command: "true"}
`, log, WithMetrics(NewMetrics(reg)))

	loadErr := errors.New("config.yaml:3: invalid YAML: did not find expected key")
	err := h.worker.ReloadFrom(func() (*Config, error) { return nil, loadErr })
	if !errors.Is(err, loadErr) {
		t.Fatalf("ReloadFrom = %v, want the load error", err)
	}
	if lines := logs.lines("config reload failed", "config.yaml:3"); len(lines) != 1 {
		t.Errorf("log lines about the failed reload = %q, want one naming config.yaml:3", lines)
	}
	if v := gaugeValue(t, reg, "printbridge_worker_config_last_reload_successful"); v != 0 {
		t.Errorf("last_reload_successful = %v after a failed reload, want 0", v)
	}
	if v := counterValue(t, reg, "printbridge_worker_config_reloads_total", map[string]string{"result": "failed"}); v != 1 {
		t.Errorf("failed reloads = %v, want 1", v)
	}

	h.publish(&bridge.Envelope{ID: "d1", Event: bridge.EventPrintDone})
	if r := h.waitResults(1)[0]; r.Hook != "old" || r.Err != nil {
		t.Errorf("result after the failed reload = %+v, want hook old, ok", r)
	}
	if err := h.worker.ReloadFrom(func() (*Config, error) { return mustParse(t, pairConfig("n")), nil }); err != nil {
		t.Fatalf("ReloadFrom a good config: %v", err)
	}
	if v := gaugeValue(t, reg, "printbridge_worker_config_last_reload_successful"); v != 1 {
		t.Errorf("last_reload_successful = %v after a good reload, want 1", v)
	}
	if v := gaugeValue(t, reg, "printbridge_worker_subscriptions"); v != 2 {
		t.Errorf("subscriptions gauge = %v, want 2", v)
	}
	if lines := logs.lines("config reloaded", "subscriptions=2"); len(lines) != 1 {
		t.Errorf("reload log lines = %q, want one with subscriptions=2", lines)
	}
}

func TestReloadKeepsBusSettings(t *testing.T) {
	logs, log := newLogBuffer()
	h := newHarnessLog(t, `printbridge:
  printers: [mk3s-1]
events:
  subscriptions:
  - {name: old, event: PrintDone, type: system, shell: false, command: "true"}
`, log)
	next := mustParse(t, `printbridge:
  printers: [other]
  group: pool
  hook_timeout: 5s
events:
  subscriptions:
  - {name: new, event: PrintDone, type: system, shell: false, command: "true"}
`)
	if err := h.worker.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	for _, key := range []string{"printbridge.printers", "printbridge.group"} {
		if lines := logs.lines("takes effect only after a restart", "key="+key); len(lines) != 1 {
			t.Errorf("warnings for %s = %q, want one", key, lines)
		}
	}
	running := h.worker.Config().Settings
	if !slices.Equal(running.Printers, []string{testPrinter}) || running.Group != "" {
		t.Errorf("running printers %v and group %q changed by a reload, want [%s] and none", running.Printers, running.Group, testPrinter)
	}
	if running.HookTimeout != 5*time.Second {
		t.Errorf("hook timeout after reload = %s, want 5s", running.HookTimeout)
	}
	if next.Settings.Group != "pool" {
		t.Errorf("Reload changed the caller's Config: group = %q", next.Settings.Group)
	}

	h.publish(&bridge.Envelope{ID: "d1", Event: bridge.EventPrintDone})
	if r := h.waitResults(1)[0]; r.Hook != "new" || r.Printer != testPrinter {
		t.Errorf("result = %+v, want hook new for %s", r, testPrinter)
	}
}

func TestReloadSubscribesReplies(t *testing.T) {
	h := newHarness(t, `events:
  subscriptions:
  - {name: sys, event: PrintDone, type: system, shell: false, command: "true"}
`)
	// Without a reply subscription the G-code hook would wait for its
	// reply until this timeout.
	next := mustParse(t, `printbridge:
  hook_timeout: 10s
events:
  subscriptions:
  - {name: lcd, event: PrintStarted, type: gcode, command: "M117 {name}"}
`)
	if err := h.worker.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	h.publish(&bridge.Envelope{ID: "s1", Event: bridge.EventPrintStarted, Payload: bridge.Payload{{Key: "name", Value: "cube.gcode"}}})
	r := h.waitResults(1)[0]
	if r.Err != nil || r.OutputTail != "ok M117 cube.gcode" {
		t.Errorf("gcode hook added by a reload = %+v, want the edge's done reply", r)
	}
}

func TestReloadAppliesLogLevel(t *testing.T) {
	level := new(slog.LevelVar)
	h := newHarness(t, pairConfig("a"), WithLogLevel(level))
	if err := h.worker.Reload(mustParse(t, "printbridge:\n  log_level: debug\n"+pairConfig("b"))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level after reload = %s, want DEBUG", level.Level())
	}
}

func TestReloadBeforeRun(t *testing.T) {
	w := NewWorker(mustParse(t, pairConfig("a")), nil, nil)
	if err := w.Reload(mustParse(t, pairConfig("b"))); err != nil {
		t.Fatalf("Reload before Run: %v", err)
	}
	if got := w.Config().Subscriptions[0].Name; got != "b1" {
		t.Errorf("first subscription after reload = %q, want b1", got)
	}
	if err := w.Reload(nil); err == nil {
		t.Error("Reload(nil) returned no error")
	}
	if got := w.Config().Subscriptions[0].Name; got != "b1" {
		t.Errorf("Reload(nil) replaced the config: first subscription = %q", got)
	}
}

func TestLimiterFollowsNewLimit(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	l := newLimiter(1)
	if !l.acquire(context.Background()) {
		t.Fatal("first acquire failed")
	}
	if l.acquire(done) {
		t.Fatal("second acquire at limit 1 succeeded")
	}
	l.setLimit(2)
	if !l.acquire(done) {
		t.Fatal("acquire after raising the limit to 2 failed")
	}
	l.setLimit(1)
	l.release()
	if l.acquire(done) {
		t.Fatal("acquire with 1 running at limit 1 succeeded")
	}
	l.release()
	if !l.acquire(done) {
		t.Fatal("acquire with none running failed")
	}

	// A waiting acquire wakes up when a slot frees.
	acquired := make(chan bool)
	go func() { acquired <- l.acquire(context.Background()) }()
	l.release()
	if !<-acquired {
		t.Error("waiting acquire did not get the freed slot")
	}
	if limit, running := l.current(); limit != 1 || running != 1 {
		t.Errorf("limit %d and running %d, want 1 and 1", limit, running)
	}
}

func TestLogProblemsOncePerProblem(t *testing.T) {
	logs, log := newLogBuffer()
	_, problems := parseTestConfig(t, `events:
  subscriptions:
  - {name: typo, event: PrintDoneTypo, type: system, shell: false, command: "true"}
  - {name: broken, event: PrintDone, command: "true"}
`)
	LogProblems(context.Background(), log, problems)
	lines := logs.lines("PrintDoneTypo")
	if len(lines) != 1 {
		t.Fatalf("log lines about PrintDoneTypo = %q, want exactly one", lines)
	}
	if !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "config.yaml:3:") {
		t.Errorf("unknown event line = %q, want a WARN naming config.yaml:3", lines[0])
	}
	if errs := logs.lines("level=ERROR", "missing type", "config.yaml:4:"); len(errs) != 1 {
		t.Errorf("missing type lines = %q, want one ERROR naming config.yaml:4", errs)
	}
}

// metricFamily gathers reg and returns the family called name.
func metricFamily(t *testing.T, reg *prometheus.Registry, name string) *dto.MetricFamily {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f
		}
	}
	t.Fatalf("metric %s is not registered", name)
	return nil
}

func hasLabels(m *dto.Metric, labels map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
			found++
		}
	}
	return found == len(labels)
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, m := range metricFamily(t, reg, name).GetMetric() {
		if hasLabels(m, labels) {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return metricFamily(t, reg, name).GetMetric()[0].GetGauge().GetValue()
}

func TestReloadRejectsFileWithoutEvents(t *testing.T) {
	logs, log := newLogBuffer()
	reg := prometheus.NewRegistry()
	h := newHarnessLog(t, `events:
  subscriptions:
  - {name: old, event: PrintDone, type: system, shell: false, command: "true"}
`, log, WithMetrics(NewMetrics(reg)))

	cutOff := []string{"", "printbridge:\n  log_level: info\n", "events:\n",
		"events:\n  enabled: true\n", "events:\n  enabled: true\n  subscriptions:\n"}
	for i, text := range cutOff {
		err := h.worker.Reload(mustParse(t, text))
		if !errors.Is(err, ErrEventsMissing) {
			t.Errorf("Reload of %q = %v, want ErrEventsMissing", text, err)
		}
		if v := counterValue(t, reg, "printbridge_worker_config_reloads_total", map[string]string{"result": "failed"}); v != float64(i+1) {
			t.Errorf("failed reloads after %q = %v, want %d", text, v, i+1)
		}
	}
	if lines := logs.lines("config reload failed", "config.yaml is empty or has no events.subscriptions list", "events: {enabled: false}"); len(lines) != len(cutOff) {
		t.Errorf("log lines about the rejected reloads = %q, want %d naming the file and how to remove all hooks", lines, len(cutOff))
	}
	h.publish(&bridge.Envelope{ID: "d1", Event: bridge.EventPrintDone})
	if r := h.waitResults(1)[0]; r.Hook != "old" || r.Err != nil {
		t.Errorf("result after the rejected reloads = %+v, want hook old, ok", r)
	}

	// enabled: false turns the hooks off on purpose, without a list.
	if err := h.worker.Reload(mustParse(t, "events:\n  enabled: false\n")); err != nil {
		t.Errorf("Reload with enabled: false = %v, want nil", err)
	}
	if err := h.worker.Reload(mustParse(t, "events:\n  subscriptions:\n  - {name: old, event: PrintDone, type: system, shell: false, command: \"true\"}\n")); err != nil {
		t.Fatalf("Reload back to the hook = %v, want nil", err)
	}

	// An explicit empty list removes all hooks, and then a file without
	// events: loads, because no hook is left to drop.
	if err := h.worker.Reload(mustParse(t, "events:\n  subscriptions: []\n")); err != nil {
		t.Fatalf("Reload with subscriptions: [] = %v, want nil", err)
	}
	if err := h.worker.Reload(mustParse(t, "")); err != nil {
		t.Errorf("Reload of an empty file without hooks running = %v, want nil", err)
	}
}
