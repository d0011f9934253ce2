package hooks

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// newMQTTHarness is newHarness on Mosquitto. Its fake edge serves
// testPrinter and, like the real edge, publishes the retained "online"
// of testPrinter and has "offline" as its last will.
func newMQTTHarness(t *testing.T, url, configYAML string) *harness {
	t.Helper()
	h := &harness{t: t, results: make(chan Result, 100), published: make(chan []byte, 100), done: make(chan error, 1)}
	ctx := context.Background()
	h.edge = connectMQTT(t, url, "test-edge", testPrinter)
	if err := h.edge.SubscribeCommands(ctx, testPrinter, h.answerCommand); err != nil {
		t.Fatalf("subscribe fake edge to commands: %v", err)
	}

	cfg, problems := parseTestConfig(t, configYAML)
	if HasErrors(problems) {
		t.Fatalf("test config has errors: %v", problems)
	}
	bus := &subscribedBus{Bus: connectMQTT(t, url, "test-worker", ""), subscribed: make(chan struct{}, 10)}
	h.worker = NewWorker(cfg, bus, brokertest.Logger(), WithMetrics(NewMetrics(prometheus.NewRegistry())),
		OnResult(func(r Result) { h.results <- r }))
	runCtx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	go func() { h.done <- h.worker.Run(runCtx) }()
	t.Cleanup(h.stop)
	select {
	case <-bus.subscribed:
	case err := <-h.done:
		t.Fatalf("Run returned before subscribing: %v", err)
	case <-time.After(waitTimeout):
		t.Fatalf("the worker did not subscribe to events")
	}
	return h
}

// connectMQTT connects an MQTT bus; with printer set it publishes that
// printer's availability as an edge does.
func connectMQTT(t *testing.T, url, clientID, printer string) *mqtt.Bus {
	t.Helper()
	b, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: clientID, Printer: printer}, brokertest.Logger())
	if err != nil {
		t.Fatalf("connect %s: %v", clientID, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestGcodeHookForOfflinePrinter runs a G-code hook for a printer whose
// edge has stopped, as when a worker works off a backlog. The hook ends
// at once with result offline and sends nothing, while the hook of a
// printer with a running edge is sent. Once the edge is back, the hook
// is sent again.
func TestGcodeHookForOfflinePrinter(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	// An edge of printer ghost that stopped: its Close leaves the
	// retained "offline".
	ghost := connectMQTT(t, url, "ghost-edge", "ghost")
	if err := ghost.Close(); err != nil {
		t.Fatalf("close the edge of ghost: %v", err)
	}
	h := newMQTTHarness(t, url, `events:
  subscriptions:
  - {name: lcd, event: PrintStarted, type: gcode, command: M117 started}
`)
	h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: "ghost", ID: "g1", Event: bridge.EventPrintStarted, Time: time.Now()})
	h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: testPrinter, ID: "p1", Event: bridge.EventPrintStarted, Time: time.Now()})
	results := byHook(h.waitResults(2))

	offline := results["lcd/g1"]
	if !errors.Is(offline.Err, ErrOffline) {
		t.Errorf("hook of printer ghost = %+v, want ErrOffline", offline)
	}
	if got := resultLabel(offline); got != ResultOffline {
		t.Errorf("hook of printer ghost has result %s, want %s", got, ResultOffline)
	}
	if offline.CommandID != "" {
		t.Errorf("hook of printer ghost sent command %s, want none", offline.CommandID)
	}
	if r := results["lcd/p1"]; r.Err != nil || r.ExitCode != 0 {
		t.Errorf("hook of printer %s = %+v, want done", testPrinter, r)
	}

	// The edge of ghost starts again and publishes "online".
	back := connectMQTT(t, url, "ghost-edge", "ghost")
	if err := back.SubscribeCommands(context.Background(), "ghost", h.answerCommand); err != nil {
		t.Fatal(err)
	}
	h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: "ghost", ID: "g2", Event: bridge.EventPrintStarted, Time: time.Now()})
	if r := byHook(h.waitResults(1))["lcd/g2"]; r.Err != nil || r.ExitCode != 0 {
		t.Errorf("hook of printer ghost after its edge came back = %+v, want done", r)
	}
}
