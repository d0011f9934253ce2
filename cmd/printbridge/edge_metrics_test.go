package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/printer/virtual"
)

// edgeMetricsAddress finds the endpoint's address in the edge's start log,
// whose lines carry component=edge between the message and the address.
var edgeMetricsAddress = regexp.MustCompile(`msg="metrics endpoint listening" .*address=(127\.0\.0\.1:[0-9]+)`)

// startMetricsEdge runs an edge with a virtual printer on the NATS server
// at natsURL and a metrics endpoint on a free port, and returns the
// endpoint's URL once it listens.
func startMetricsEdge(t *testing.T, natsURL string, configure func(*edgeOptions)) string {
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
		bus: busOptions{natsURL: natsURL, baseTopic: bridge.DefaultBase},
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
	return "http://" + address + "/metrics"
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
	url := startMetricsEdge(t, emb.NATSURL(), nil)
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
