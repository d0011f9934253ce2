package hooks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// newMQTTHarness is newHarness on Mosquitto. Its fake edge serves
// testPrinter and, like the real edge, publishes the retained "online"
// of testPrinter and has "offline" as its last will.
func newMQTTHarness(t *testing.T, url, configYAML string) *harness {
	t.Helper()
	h := &harness{t: t, results: make(chan Result, 100), published: make(chan []byte, 100), done: make(chan error, 1)}
	h.edge = connectMQTT(t, url, "test-edge", testPrinter)
	if err := h.edge.SubscribeCommands(context.Background(), testPrinter, h.answerCommand); err != nil {
		t.Fatalf("subscribe fake edge to commands: %v", err)
	}
	h.startMQTTWorker(configYAML, mqtt.Config{URL: url, ClientID: "test-worker"})
	return h
}

// startMQTTWorker runs a worker on an MQTT bus of cfg whose results go to
// h.results. It returns a function that stops the worker and then
// closes its bus, as `printbridge worker` does; the test's end calls it
// too.
func (h *harness) startMQTTWorker(configYAML string, cfg mqtt.Config) (stop func()) {
	h.t.Helper()
	conf, problems := parseTestConfig(h.t, configYAML)
	if HasErrors(problems) {
		h.t.Fatalf("test config has errors: %v", problems)
	}

	b, err := mqtt.New(context.Background(), cfg, brokertest.Logger())
	if err != nil {
		h.t.Fatalf("connect %s: %v", cfg.ClientID, err)
	}
	bus := &subscribedBus{Bus: b, subscribed: make(chan struct{}, 10)}
	return h.startWorkerOn(conf, bus, bus.subscribed, 1)
}

// startWorkerOn runs a worker with conf on bus, whose results go to
// h.results, and returns once subscribed has had n signals. The worker's
// stop also closes bus.
func (h *harness) startWorkerOn(conf *Config, bus bridge.Bus, subscribed <-chan struct{}, n int) (stop func()) {
	h.t.Helper()
	h.worker = NewWorker(conf, bus, brokertest.Logger(), WithMetrics(NewMetrics(prometheus.NewRegistry())),
		OnResult(func(r Result) { h.results <- r }))

	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.worker.Run(runCtx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("Run returned %v", err)
			}
			_ = bus.Close()
		})
	}
	h.t.Cleanup(stop)

	for range n {
		select {
		case <-subscribed:
		case err := <-done:
			h.t.Fatalf("Run returned before subscribing: %v", err)
		case <-time.After(waitTimeout):
			h.t.Fatalf("the worker did not subscribe to events")
		}
	}
	return stop
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

// lcdConfig runs a G-code hook, named lcd, on PrintStarted.
const lcdConfig = `events:
  subscriptions:
  - {name: lcd, event: PrintStarted, type: gcode, command: M117 started}
`

// stopEdgeOf connects and closes an MQTT edge of printer, whose Close
// leaves the retained "offline", as an edge that stopped does.
func stopEdgeOf(t *testing.T, url, printer string) {
	t.Helper()
	edge := connectMQTT(t, url, printer+"-edge", printer)
	if err := edge.Close(); err != nil {
		t.Fatalf("close the edge of %s: %v", printer, err)
	}
}

// TestGcodeHookForOfflinePrinter runs a G-code hook for a printer whose
// edge has stopped, as when a worker works off a backlog. The hook ends
// at once with result offline and sends nothing, while the hook of a
// printer with a running edge is sent. Once the edge is back, the hook
// is sent again.
func TestGcodeHookForOfflinePrinter(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	stopEdgeOf(t, url, "ghost")
	h := newMQTTHarness(t, url, lcdConfig)
	// Sent before its edge stopped, as every event of a stopped edge is.
	h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: "ghost", ID: "g1", Event: bridge.EventPrintStarted, Time: time.Now().Add(-time.Minute)})
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
	if offline.ExitCode != -1 {
		t.Errorf("hook of printer ghost has exit code %d, want -1: no command ran", offline.ExitCode)
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

// TestOfflineBacklogEndsAtOnce queues more events of a printer whose edge
// has stopped than Mosquitto's in-flight window (20) in a persistent
// session, and one event of a printer with a running edge. Each hook of
// the stopped printer ends offline, and the other printer's hook is sent.
// The markers once came on the events' connection, behind the backlog,
// so these hooks ended as timeouts.
func TestOfflineBacklogEndsAtOnce(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	stopEdgeOf(t, url, "ghost")
	config := lcdConfig
	h := newMQTTHarness(t, url, config)
	session := mqtt.Config{URL: url, ClientID: "backlog-worker", PersistentSession: true}
	stop := h.startMQTTWorker(config, session)
	stop()

	const backlog = 25
	for i := range backlog {
		// Sent before the edge of ghost stopped.
		h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: "ghost", ID: fmt.Sprintf("g%d", i), Event: bridge.EventPrintStarted,
			Time: time.Now().Add(-time.Minute)})
	}
	h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: testPrinter, ID: "p1", Event: bridge.EventPrintStarted, Time: time.Now()})
	// The first worker took the events too; only the session's backlog
	// counts from here.
	h.waitResults(backlog + 1)
	h.startMQTTWorker(config, session)
	results := byHook(h.waitResults(backlog + 1))

	for i := range backlog {
		if r := results[fmt.Sprintf("lcd/g%d", i)]; !errors.Is(r.Err, ErrOffline) {
			t.Errorf("hook of queued event g%d of printer ghost = %+v, want ErrOffline", i, r)
		}
	}
	if r := results["lcd/p1"]; r.Err != nil || r.ExitCode != 0 {
		t.Errorf("hook of printer %s = %+v, want done", testPrinter, r)
	}
}

// TestGcodeHookOnNATSDespiteMQTTOffline runs a worker on MQTT and NATS.
// The MQTT availability of printers moved and ghost is "offline". The
// edge of moved now runs on NATS alone, as it would after a move or while
// its MQTT connection is lost, and ghost has no edge at all. The hook of
// moved is sent on NATS and done, and the hook of ghost ends offline.
func TestGcodeHookOnNATSDespiteMQTTOffline(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	stopEdgeOf(t, url, "moved")
	stopEdgeOf(t, url, "ghost")
	srv := brokertest.StartNATS(t, false, false)
	ctx := context.Background()
	h := &harness{t: t, natsURL: srv.NATSURL(), results: make(chan Result, 100), published: make(chan []byte, 100), done: make(chan error, 1)}
	edge, err := natsbus.New(ctx, natsbus.Config{URL: srv.NATSURL(), Name: "moved-edge"}, brokertest.Logger())
	if err != nil {
		t.Fatalf("connect the NATS edge of moved: %v", err)
	}
	t.Cleanup(func() { _ = edge.Close() })
	h.edge = edge
	if err := edge.SubscribeCommands(ctx, "moved", h.answerCommand); err != nil {
		t.Fatalf("subscribe the edge of moved to commands: %v", err)
	}

	workerMQTT, err := mqtt.New(ctx, mqtt.Config{URL: url, ClientID: "both-worker"}, brokertest.Logger())
	if err != nil {
		t.Fatalf("connect the worker to MQTT: %v", err)
	}
	workerNATS, err := natsbus.New(ctx, natsbus.Config{URL: srv.NATSURL(), Name: "both-worker"}, brokertest.Logger())
	if err != nil {
		t.Fatalf("connect the worker to NATS: %v", err)
	}
	subscribed := make(chan struct{}, 10)
	bus := bridge.NewMulti(&subscribedBus{Bus: workerMQTT, subscribed: subscribed}, &subscribedBus{Bus: workerNATS, subscribed: subscribed})
	conf, problems := parseTestConfig(t, lcdConfig)
	if HasErrors(problems) {
		t.Fatalf("test config has errors: %v", problems)
	}
	h.startWorkerOn(conf, bus, subscribed, 2)

	h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: "moved", ID: "m1", Event: bridge.EventPrintStarted, Time: time.Now()})
	h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: "ghost", ID: "g1", Event: bridge.EventPrintStarted, Time: time.Now()})
	results := byHook(h.waitResults(2))

	if r := results["lcd/m1"]; r.Err != nil || r.ExitCode != 0 {
		t.Errorf("hook of printer moved = %+v, want done through its NATS edge", r)
	}
	ghost := results["lcd/g1"]
	if !errors.Is(ghost.Err, ErrOffline) {
		t.Errorf("hook of printer ghost = %+v, want ErrOffline", ghost)
	}
	if ghost.CommandID != "" {
		t.Errorf("hook of printer ghost has command id %s, want none", ghost.CommandID)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.commands) != 1 {
		t.Errorf("the NATS edge got %d commands, want 1 (the one of moved)", len(h.commands))
	}
}

// TestGcodeHookWaitsForOnlineOfRestartedEdge publishes an event of a
// printer whose marker is "offline", and only then starts its edge, which
// publishes "online". The worker gets the two on different connections,
// so the event can come first, as it did in a flaky run: its hook must
// wait for the "online" and be sent, not end offline.
func TestGcodeHookWaitsForOnlineOfRestartedEdge(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	stopEdgeOf(t, url, "ghost")
	h := newMQTTHarness(t, url, lcdConfig)
	// The "offline" must have arrived well before the event, so that
	// only the event's own time lets the hook wait.
	time.Sleep(offlineGrace + 200*time.Millisecond)
	h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: "ghost", ID: "g1", Event: bridge.EventPrintStarted, Time: time.Now()})
	back := connectMQTT(t, url, "ghost-edge", "ghost")
	if err := back.SubscribeCommands(context.Background(), "ghost", h.answerCommand); err != nil {
		t.Fatal(err)
	}
	if r := byHook(h.waitResults(1))["lcd/g1"]; r.Err != nil || r.ExitCode != 0 {
		t.Errorf("hook of the restarted edge's event = %+v, want done", r)
	}
}
