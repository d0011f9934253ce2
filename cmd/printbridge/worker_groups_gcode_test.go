package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
	"github.com/printbridge/printbridge/printer/virtual"
)

// Workers of two groups run the same G-code hook on one event. Each group
// runs every event, so the edge must execute the hook's lines once per
// group. With one command id for both, the edge would take the second
// command for a repeat, reply without executing it, and both workers
// would still report success.
func TestWorkerGroupsEachSendGcode(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	dir := t.TempDir()
	const printerID = "gp1"

	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	vcfg.RecordPath = filepath.Join(dir, "record.gcode")
	vp, err := virtual.New(vcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vpCtx, stopVP := context.WithCancel(context.Background())
	vpDone := make(chan error, 1)
	go func() { vpDone <- vp.Run(vpCtx) }()
	t.Cleanup(func() {
		stopVP()
		<-vpDone
		_ = vp.Close()
	})

	observer, err := natsbus.New(context.Background(), natsbus.Config{URL: emb.NATSURL(), Name: "observer"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = observer.Close() })
	col := &collector{}
	if err := observer.SubscribeEvents(context.Background(), printerID, "", col.onEvent); err != nil {
		t.Fatal(err)
	}

	edgeLog := &syncBuffer{}
	edgeCtx, stopEdge := context.WithCancel(context.Background())
	edgeDone := make(chan error, 1)
	opts := edgeOptions{
		port: vp.Path(), baud: 115200, printerID: printerID, filesDir: filepath.Join(dir, "files"),
		dataDir: filepath.Join(dir, "edge"), maxLineLength: 96, autoConnect: true,
		bus: busOptions{natsURL: emb.NATSURL(), baseTopic: bridge.DefaultBase},
	}
	log := slog.New(slog.NewTextHandler(edgeLog, &slog.HandlerOptions{Level: slog.LevelInfo}))
	go func() { edgeDone <- runEdgeWith(edgeCtx, opts, log, nil) }()
	t.Cleanup(func() {
		stopEdge()
		if err := <-edgeDone; err != nil {
			t.Errorf("edge stopped with error: %v", err)
		}
		if t.Failed() {
			t.Logf("edge log:\n%s", edgeLog.String())
		}
	})
	waitFor(t, "Connected", 20*time.Second, func() bool { return col.has(bridge.EventConnected) })

	cfg := writeWorkerConfig(t, dir, `events:
  subscriptions:
  - name: greet
    event: PrintStarted
    type: gcode
    command: M117 group-hook
`)
	sender := newEventSender(t, emb.NATSURL(), printerID)
	for _, group := range []string{"a", "b"} {
		startWorker(t, "--config", cfg, "--nats", emb.NATSURL(), "--metrics-listen", "", "--printer", printerID, "--group", group)
	}
	const eventID = "0190f3c2-7b1e-7c3a-9d4e-0000000000a1"
	sender.send(printerID, eventID, bridge.EventPrintStarted, nil)

	var results []map[string]any
	waitFor(t, "two hook results", workerWait, func() bool {
		sender.mu.Lock()
		defer sender.mu.Unlock()
		results = results[:0]
		for _, r := range sender.results {
			if r["event_id"] == eventID && r["hook"] == "greet" {
				results = append(results, r)
			}
		}
		return len(results) >= 2
	})
	if len(results) != 2 {
		t.Fatalf("%d results for hook greet, want one per group: %v", len(results), results)
	}
	for _, r := range results {
		if errText, _ := r["error"].(string); errText != "" {
			t.Errorf("hook result %v has error %q, want none", r, errText)
		}
		if r["exit_code"] != float64(0) {
			t.Errorf("hook result %v has exit code %v, want 0", r, r["exit_code"])
		}
	}
	if a, b := results[0]["command_id"], results[1]["command_id"]; a == b {
		t.Errorf("both groups sent command id %v, want one id per group", a)
	}

	// The virtual printer records every line it executed.
	waitFor(t, "the G-code of both groups on the printer", workerWait, func() bool {
		data, _ := os.ReadFile(vcfg.RecordPath)
		return strings.Count(string(data), "M117 group-hook") >= 2
	})
	data, err := os.ReadFile(vcfg.RecordPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "M117 group-hook"); n != 2 {
		t.Errorf("the printer executed M117 group-hook %d times, want twice (once per group)", n)
	}
}
