package hooks

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/printbridge/printbridge/bridge"
)

func TestMetricsCountHookResults(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, `events:
  subscriptions:
  - {name: ok, event: PrintStarted, type: system, shell: false, command: "true"}
  - {name: failing, event: PrintStarted, type: system, shell: false, command: "false"}
  - {name: slow, event: PrintStarted, type: system, shell: false, timeout: 0.2, command: "sleep 30"}
  - {name: missing, event: PrintStarted, type: system, shell: false, command: "echo {nope}"}
  - {name: home, event: Home, type: gcode, command: G28}
  - {name: lcd, event: Home, type: gcode, command: M117 homed}
`, WithMetrics(NewMetrics(reg)))

	started := &bridge.Envelope{ID: "e1", Event: bridge.EventPrintStarted}
	h.publish(started)
	h.publish(started)
	h.publish(&bridge.Envelope{ID: "e2", Event: bridge.EventHome})
	h.publish(&bridge.Envelope{ID: "e3", Event: "plugin_acme_ping"})
	h.publish(&bridge.Envelope{ID: "e4", Event: "NotInTheCatalogue"})
	nc, err := nats.Connect(h.natsURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	if err := nc.Publish(bridge.Topics{}.NATSEvent(testPrinter, "PrintDone"), []byte("{not json")); err != nil {
		t.Fatalf("publish malformed event: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	h.waitResults(6)

	for _, c := range []struct {
		hook, event, typ, result string
	}{
		{"ok", "PrintStarted", "system", ResultOK},
		{"failing", "PrintStarted", "system", ResultFailed},
		{"slow", "PrintStarted", "system", ResultTimeout},
		{"missing", "PrintStarted", "system", ResultSkipped},
		{"home", "Home", "gcode", ResultLoopGuard},
		{"lcd", "Home", "gcode", ResultOK},
	} {
		labels := map[string]string{"printer": testPrinter, "hook": c.hook, "event": c.event, "type": c.typ, "result": c.result}
		if v := counterValue(t, reg, "printbridge_hook_runs_total", labels); v != 1 {
			t.Errorf("hook_runs_total%v = %v, want 1", labels, v)
		}
	}
	if v := counterValue(t, reg, "printbridge_hook_runs_total", nil); v != 6 {
		t.Errorf("hook runs in all = %v, want 6", v)
	}

	// Skipped and loop-guarded runs ran nothing, so only three system
	// runs and one G-code run have a duration.
	counts := map[string]uint64{}
	for _, m := range metricFamily(t, reg, "printbridge_hook_duration_seconds").GetMetric() {
		counts[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
	}
	if counts["system"] != 3 || counts["gcode"] != 1 {
		t.Errorf("duration samples = %v, want system 3 and gcode 1", counts)
	}

	// Received events include the redelivery; a name outside the
	// catalogue is counted as other.
	for event, want := range map[string]float64{"PrintStarted": 2, "Home": 1, "plugin_acme_ping": 1, "other": 1, "PrintDone": 0} {
		if v := counterValue(t, reg, "printbridge_worker_events_received_total", map[string]string{"printer": testPrinter, "event": event}); v != want {
			t.Errorf("events_received_total{event=%q} = %v, want %v", event, v, want)
		}
	}
	if v := counterValue(t, reg, "printbridge_worker_events_duplicate_total", nil); v != 1 {
		t.Errorf("duplicates = %v, want 1", v)
	}
	if v := counterValue(t, reg, "printbridge_worker_events_invalid_total", nil); v != 1 {
		t.Errorf("invalid = %v, want 1", v)
	}
	if v := gaugeValue(t, reg, "printbridge_worker_queue_depth"); v != 0 {
		t.Errorf("queue depth = %v after all hooks ran, want 0", v)
	}
	if v := gaugeValue(t, reg, "printbridge_worker_subscriptions"); v != 6 {
		t.Errorf("subscriptions = %v, want 6", v)
	}
}

func TestMetricsCountDroppedEvents(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	startedFile, releaseFile := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	logs, log := newLogBuffer()
	h := newHarnessLog(t, `printbridge:
  max_concurrent_hooks: 1
events:
  subscriptions:
  - name: block
    event: PrintStarted
    type: system
    shell: true
    command: "touch {started}; while [ ! -e {release} ]; do sleep 0.05; done"
`, log, WithMetrics(NewMetrics(reg)), WithQueueSize(1))

	event := func(id string) *bridge.Envelope {
		return &bridge.Envelope{ID: id, Event: bridge.EventPrintStarted,
			Payload: bridge.Payload{{Key: "started", Value: startedFile}, {Key: "release", Value: releaseFile}}}
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	depth := func() float64 { return gaugeValue(t, reg, "printbridge_worker_queue_depth") }

	// e1 holds the only slot, e2 waits for it outside the queue, e3 fills
	// the queue of one, and e4 finds it full.
	h.publish(event("e1"))
	waitUntil("the first hook to start", func() bool { _, err := os.Stat(startedFile); return err == nil })
	h.publish(event("e2"))
	waitUntil("e2 to leave the queue", func() bool {
		return counterValue(t, reg, "printbridge_worker_events_received_total", nil) == 2 && depth() == 0
	})
	h.publish(event("e3"))
	waitUntil("e3 in the queue", func() bool { return depth() == 1 })
	h.publish(event("e4"))
	waitUntil("e4 dropped", func() bool { return counterValue(t, reg, "printbridge_worker_events_dropped_total", nil) == 1 })
	// The counter goes up before the line is written.
	waitUntil("the WARN line about e4", func() bool { return len(logs.lines("level=WARN", "events dropped", "event_id=e4")) > 0 })
	if lines := logs.lines("level=WARN", "events dropped", "event_id=e4", "dropped=1"); len(lines) != 1 {
		t.Errorf("WARN lines about dropping e4 = %q, want one with its id and count", lines)
	}
	// Further drops within the log interval are counted, and logged one
	// by one only at DEBUG.
	h.publish(event("e5"))
	waitUntil("e5 dropped", func() bool { return counterValue(t, reg, "printbridge_worker_events_dropped_total", nil) == 2 })
	waitUntil("the DEBUG line about e5", func() bool { return len(logs.lines("level=DEBUG", "event dropped", "event_id=e5")) > 0 })
	if lines := logs.lines("level=DEBUG", "event dropped", "event_id=e5"); len(lines) != 1 {
		t.Errorf("DEBUG lines about dropping e5 = %q, want one with its id", lines)
	}

	if err := os.WriteFile(releaseFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ran := map[string]bool{}
	for _, r := range h.waitResults(3) {
		ran[r.EventID] = true
	}
	if !ran["e1"] || !ran["e2"] || !ran["e3"] {
		t.Errorf("hooks ran for %v, want e1, e2 and e3", ran)
	}

	// The dropped events' ids were forgotten, so their redeliveries run.
	h.publish(event("e4"))
	if r := h.waitResults(1)[0]; r.EventID != "e4" || r.Err != nil {
		t.Errorf("redelivered e4 = %+v, want a successful run", r)
	}
	h.publish(event("e5"))
	if r := h.waitResults(1)[0]; r.EventID != "e5" || r.Err != nil {
		t.Errorf("redelivered e5 = %+v, want a successful run", r)
	}
	if v := counterValue(t, reg, "printbridge_worker_events_duplicate_total", nil); v != 0 {
		t.Errorf("duplicates = %v, want 0 (the redelivery of a dropped event is not a duplicate)", v)
	}
}

func TestMetricsCountConfigErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg, _ := parseTestConfig(t, `events:
  subscription:
  - {name: lights, event: PrintDone, type: system, shell: false, command: "true"}
`)
	w := NewWorker(cfg, nil, nil, WithMetrics(NewMetrics(reg)))
	if v := gaugeValue(t, reg, "printbridge_worker_config_errors"); v != 1 {
		t.Errorf("config_errors at start = %v, want 1 for the unknown key events.subscription", v)
	}
	if v := gaugeValue(t, reg, "printbridge_worker_subscriptions"); v != 0 {
		t.Errorf("subscriptions at start = %v, want 0", v)
	}

	if err := w.Reload(mustParse(t, "events:\n  subscriptions:\n  - {event: PrintDone, type: system, shell: false, command: \"true\"}\n")); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if v := gaugeValue(t, reg, "printbridge_worker_config_errors"); v != 0 {
		t.Errorf("config_errors after a reload without errors = %v, want 0", v)
	}
}
