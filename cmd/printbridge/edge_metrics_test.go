package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/homeassistant"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/printer/virtual"
)

// edgeMetricsAddress finds the endpoint's address in the edge's start log,
// whose lines carry component=edge between the message and the address.
var edgeMetricsAddress = regexp.MustCompile(`msg="metrics endpoint listening" .*address=(127\.0\.0\.1:[0-9]+)`)

// startMetricsEdge runs an edge with a virtual printer on the brokers of
// bus and a metrics endpoint on a free port. It returns the endpoint's
// URL once it listens, and the edge's log.
func startMetricsEdge(t *testing.T, bus busOptions, configure func(*edgeOptions)) (string, *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	vp, err := virtual.New(vcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vpCtx, stopVP := context.WithCancel(context.Background())
	vpDone := make(chan error, 1)
	go func() { vpDone <- vp.Run(vpCtx) }()

	edgeLog := &syncBuffer{}
	edgeCtx, stopEdge := context.WithCancel(context.Background())
	edgeDone := make(chan error, 1)
	opts := edgeOptions{
		port: vp.Path(), baud: 115200, printerID: "m1", filesDir: filepath.Join(dir, "files"),
		dataDir: filepath.Join(dir, "edge"), maxLineLength: 96, autoConnect: true, metricsListen: "127.0.0.1:0",
		bus: bus,
	}
	if configure != nil {
		configure(&opts)
	}
	log := slog.New(slog.NewTextHandler(edgeLog, &slog.HandlerOptions{Level: slog.LevelInfo}))
	go func() { edgeDone <- runEdgeWith(edgeCtx, opts, log, nil) }()
	t.Cleanup(func() {
		stopEdge()
		if err := <-edgeDone; err != nil {
			t.Errorf("edge stopped with error: %v", err)
		}
		stopVP()
		<-vpDone
		_ = vp.Close()
		if t.Failed() {
			t.Logf("edge log:\n%s", edgeLog.String())
		}
	})
	var address string
	waitFor(t, "the metrics endpoint", 20*time.Second, func() bool {
		m := edgeMetricsAddress.FindStringSubmatch(edgeLog.String())
		if m == nil {
			return false
		}
		address = m[1]
		return true
	})
	return "http://" + address + "/metrics", edgeLog
}

// seriesValue returns the value of the counter series of name whose labels
// are exactly labels, and whether that series exists.
func seriesValue(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	for _, m := range families[name].GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		matched := true
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
				matched = false
			}
		}
		if matched {
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// A fresh edge exports every known series of its labelled counters at 0,
// so that dashboard panels and alerts on them find data before the first
// increment.
func TestEdgeMetricsStartAtZero(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	url, _ := startMetricsEdge(t, busOptions{natsURL: emb.NATSURL(), baseTopic: bridge.DefaultBase}, nil)
	families := scrapeMetricFamilies(t, url)

	type series struct {
		name   string
		labels map[string]string
	}
	var want []series
	for _, reason := range []string{"queue_full", "encode", "stopped", "not_started"} {
		want = append(want, series{"printbridge_events_dropped_total", map[string]string{"reason": reason}})
	}
	for _, reason := range []string{"max_bytes", "max_age", "corrupt"} {
		want = append(want, series{"printbridge_outbox_dropped_total", map[string]string{"reason": reason}})
	}
	for _, reason := range []string{"reply_queue_full", "publish_failed", "encode"} {
		want = append(want, series{"printbridge_replies_dropped_total", map[string]string{"reason": reason}})
	}
	for _, trigger := range []string{"sighup", "profile_change"} {
		for _, outcome := range []string{"applied", "failed"} {
			want = append(want, series{"printbridge_config_reloads_total", map[string]string{"trigger": trigger, "outcome": outcome}})
		}
	}
	kinds := append(slices.Clone(bridge.CommandKinds), "unknown")
	for _, kind := range kinds {
		for _, outcome := range []string{"accepted", "rejected", "retained", "expired", "dropped", "empty"} {
			want = append(want, series{"printbridge_commands_total", map[string]string{"kind": kind, "outcome": outcome}})
		}
		for _, status := range []string{"done", "failed", "rejected"} {
			want = append(want, series{"printbridge_command_results_total", map[string]string{"kind": kind, "status": status}})
		}
	}
	for _, name := range []string{"printbridge_bus_event_publish_errors_total", "printbridge_bus_events_lost_total"} {
		want = append(want, series{name, map[string]string{"bus": "nats"}})
	}
	for _, state := range []string{"ERROR", "OFFLINE"} {
		want = append(want, series{"printbridge_printer_state_changes_total", map[string]string{"state": state}})
	}
	want = append(want, series{"printbridge_serial_stray_oks_total", nil})
	for _, s := range want {
		value, ok := seriesValue(families, s.name, s.labels)
		if !ok {
			t.Errorf("%s%v is missing from /metrics", s.name, s.labels)
			continue
		}
		if value != 0 {
			t.Errorf("%s%v = %v on a fresh edge, want 0", s.name, s.labels, value)
		}
	}
}

// TestEdgeCountsErrorState halts the printer with M112. The ERROR state
// lasts only until the port closes, so printbridge_printer_state rarely
// shows it at a scrape, but printbridge_printer_state_changes_total
// counts it.
func TestEdgeCountsErrorState(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	url, _ := startMetricsEdge(t, busOptions{natsURL: emb.NATSURL(), baseTopic: bridge.DefaultBase}, nil)
	nc, err := nats.Connect(emb.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	topics := bridge.Topics{}
	waitFor(t, "state OPERATIONAL", 20*time.Second, func() bool {
		value, _ := seriesValue(scrapeMetricFamilies(t, url), "printbridge_printer_state_changes_total", map[string]string{"state": "OPERATIONAL"})
		return value >= 1
	})
	if _, err := nc.Request(topics.NATSCommand("m1", bridge.CommandGcode), []byte(`{"id": "halt", "commands": ["M112"]}`), 10*time.Second); err != nil {
		t.Fatalf("M112 command: %v", err)
	}
	errorState := map[string]string{"state": "ERROR"}
	waitFor(t, "the ERROR state counted", 20*time.Second, func() bool {
		value, _ := seriesValue(scrapeMetricFamilies(t, url), "printbridge_printer_state_changes_total", errorState)
		return value >= 1
	})
	if value, _ := seriesValue(scrapeMetricFamilies(t, url), "printbridge_printer_state_changes_total", errorState); value != 1 {
		t.Errorf("printbridge_printer_state_changes_total%v = %v, want 1", errorState, value)
	}
}

// Home Assistant button messages that do not become a command are counted
// in printbridge_commands_total{kind="homeassistant_button"}: an unknown
// payload as rejected and a retained message as retained.
func TestEdgeCountsIgnoredButtons(t *testing.T) {
	mqttURL := brokertest.StartMosquitto(t)
	client, err := mqtt.New(context.Background(), mqtt.Config{URL: mqttURL, ClientID: "button-presser", Topics: bridge.Topics{}},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	topic := homeassistant.ButtonTopic(bridge.Topics{}, "m1")
	// Published before the edge starts, so the edge receives it with the
	// retained flag when it subscribes.
	if err := client.PublishRaw(context.Background(), topic, true, []byte("pause")); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := client.PublishRaw(context.Background(), topic, true, nil); err != nil {
			t.Errorf("clear the retained button message: %v", err)
		}
	}()

	url, edgeLog := startMetricsEdge(t, busOptions{mqttURL: mqttURL, baseTopic: bridge.DefaultBase}, func(o *edgeOptions) {
		o.integrations.homeAssistant = true
	})
	dropped := map[string]string{"kind": "homeassistant_button", "outcome": "dropped"}
	if value, ok := seriesValue(scrapeMetricFamilies(t, url), "printbridge_commands_total", dropped); !ok || value != 0 {
		t.Errorf("printbridge_commands_total%v = %v (exists: %v) on a fresh edge, want 0", dropped, value, ok)
	}
	retained := map[string]string{"kind": "homeassistant_button", "outcome": "retained"}
	waitFor(t, "the retained button message counted", 20*time.Second, func() bool {
		value, _ := seriesValue(scrapeMetricFamilies(t, url), "printbridge_commands_total", retained)
		return value >= 1
	})

	for _, payload := range []string{"bogus", `{"x":1}`, ""} {
		if err := client.PublishRaw(context.Background(), topic, false, []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	rejected := map[string]string{"kind": "homeassistant_button", "outcome": "rejected"}
	waitFor(t, "three rejected button messages", 20*time.Second, func() bool {
		value, _ := seriesValue(scrapeMetricFamilies(t, url), "printbridge_commands_total", rejected)
		return value >= 3
	})
	families := scrapeMetricFamilies(t, url)
	if value, _ := seriesValue(families, "printbridge_commands_total", rejected); value != 3 {
		t.Errorf("printbridge_commands_total%v = %v, want 3 (bogus, {\"x\":1} and empty)", rejected, value)
	}
	if value, _ := seriesValue(families, "printbridge_commands_total", retained); value != 1 {
		t.Errorf("printbridge_commands_total%v = %v, want 1", retained, value)
	}
	if n := strings.Count(edgeLog.String(), "unknown Home Assistant button payload ignored"); n != 3 {
		t.Errorf("edge logged %d unknown button payloads, want 3", n)
	}
}
