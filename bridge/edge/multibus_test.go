package edge_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/edge"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
	"github.com/printbridge/printbridge/bridge/outbox"
	"github.com/printbridge/printbridge/printer"
)

// waitLimit bounds every wait of these tests. It is generous, because the
// edge retries a bus with backoff of up to 10 s and the clients reconnect
// on their own schedule.
const waitLimit = 60 * time.Second

// seqLog records the seq of every event envelope that an observer gets.
type seqLog struct {
	mu     sync.Mutex
	seqs   []uint64
	change chan struct{}
}

func newSeqLog() *seqLog { return &seqLog{change: make(chan struct{}, 1)} }

func (l *seqLog) add(data []byte) {
	var env struct{ Seq uint64 }
	if err := json.Unmarshal(data, &env); err != nil {
		return
	}
	l.mu.Lock()
	l.seqs = append(l.seqs, env.Seq)
	l.mu.Unlock()
	select {
	case l.change <- struct{}{}:
	default:
	}
}

func (l *seqLog) get() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seqs)
}

// waitFor waits until the log contains seq, or fails the test.
func (l *seqLog) waitFor(t *testing.T, name string, seq uint64) {
	t.Helper()
	deadline := time.After(waitLimit)
	for !slices.Contains(l.get(), seq) {
		select {
		case <-l.change:
		case <-deadline:
			t.Fatalf("%s observer did not get seq %d within %s; it got %v", name, seq, waitLimit, l.get())
		}
	}
}

// checkSeqs checks that the log holds seq 1 to last, each once, in order.
func checkSeqs(t *testing.T, name string, l *seqLog, last uint64) {
	t.Helper()
	var want []uint64
	for seq := uint64(1); seq <= last; seq++ {
		want = append(want, seq)
	}
	if got := l.get(); !slices.Equal(got, want) {
		t.Errorf("%s observer got seqs %v, want %v", name, got, want)
	}
}

// multiBusRig is an edge of printer p1 on a real mosquitto and an
// embedded nats-server with JetStream, with an observer on each broker.
// The MQTT observer has a persistent session on a mosquitto that keeps
// its sessions across a restart. The NATS observer reads the event
// stream through a durable consumer. So each gets what the edge published
// while the observer itself was reconnecting.
type multiBusRig struct {
	mosquitto *brokertest.Mosquitto
	natsDir   string
	natsPort  int
	nats      *natsbus.Embedded
	mqttSeen  *seqLog
	natsSeen  *seqLog
	// mqttLost and natsLost receive a value when the edge's connection to
	// that broker drops.
	mqttLost chan struct{}
	natsLost chan struct{}
	edge     *edge.Edge
	stop     func()
}

func startMultiBusRig(t *testing.T) *multiBusRig {
	t.Helper()
	return startMultiBusRigWith(t, edge.Config{}, nil)
}

// startMultiBusRigWith starts the rig with the outbox options of cfg and
// the edge metrics m (new ones when nil).
func startMultiBusRigWith(t *testing.T, cfg edge.Config, m *edge.Metrics) *multiBusRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := brokertest.Logger()
	r := &multiBusRig{
		natsDir:  t.TempDir(),
		mqttSeen: newSeqLog(),
		natsSeen: newSeqLog(),
		mqttLost: make(chan struct{}, 10),
		natsLost: make(chan struct{}, 10),
	}
	r.mosquitto = brokertest.StartMosquittoWithOptions(t, brokertest.MosquittoOptions{
		Config: []string{"persistence true", "persistence_location " + t.TempDir() + "/"},
	})
	r.natsPort = brokertest.FreePort(t)
	r.startNATS(t)
	t.Cleanup(func() { r.nats.Shutdown() })

	mqttObserver, err := mqtt.New(ctx, mqtt.Config{URL: r.mosquitto.URL(), ClientID: "multibus-observer", PersistentSession: true}, log)
	if err != nil {
		t.Fatalf("connect the MQTT observer: %v", err)
	}
	t.Cleanup(func() { _ = mqttObserver.Close() })
	if err := mqttObserver.SubscribeEvents(ctx, "p1", "", func(m bridge.EventMessage) { r.mqttSeen.add(m.Data) }); err != nil {
		t.Fatalf("subscribe the MQTT observer: %v", err)
	}
	natsObserver, err := natsbus.New(ctx, natsbus.Config{URL: r.nats.NATSURL(), JetStream: true, Name: "multibus-observer"}, log)
	if err != nil {
		t.Fatalf("connect the NATS observer: %v", err)
	}
	t.Cleanup(func() { _ = natsObserver.Close() })
	if err := natsObserver.SubscribeEvents(ctx, "p1", "multibus-observer", func(m bridge.EventMessage) { r.natsSeen.add(m.Data) }); err != nil {
		t.Fatalf("subscribe the NATS observer: %v", err)
	}

	mqttBus, err := mqtt.New(ctx, mqtt.Config{URL: r.mosquitto.URL(), ClientID: "multibus-edge", Printer: "p1",
		OnConnectionLost: func(error) { r.mqttLost <- struct{}{} }}, log)
	if err != nil {
		t.Fatalf("connect the edge to mosquitto: %v", err)
	}
	natsBus, err := natsbus.New(ctx, natsbus.Config{URL: r.nats.NATSURL(), JetStream: true, Name: "multibus-edge",
		OnDisconnect: func(error) { r.natsLost <- struct{}{} }}, log)
	if err != nil {
		t.Fatalf("connect the edge to NATS: %v", err)
	}
	bus := bridge.NewMulti(mqttBus, natsBus)
	cfg.PrinterID, cfg.DataDir, cfg.PublishTimeout = "p1", t.TempDir(), 2*time.Second
	e, err := edge.New(cfg, bus, log, m)
	if err != nil {
		t.Fatal(err)
	}
	e.Attach(printer.New(printer.Config{Port: "/nonexistent/p1"}, slog.New(slog.DiscardHandler), e.Emit, printer.Metrics{}))
	r.edge = e
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			stopRun()
			if err := <-done; err != nil {
				t.Errorf("edge Run: %v", err)
			}
			_ = bus.Close()
		})
	}
	t.Cleanup(r.stop)

	// Startup is seq 1 on both buses.
	r.mqttSeen.waitFor(t, "MQTT", 1)
	r.natsSeen.waitFor(t, "NATS", 1)
	return r
}

// startNATS starts nats-server on the rig's port and JetStream directory,
// so a restart finds the stream and consumers again.
func (r *multiBusRig) startNATS(t *testing.T) {
	t.Helper()
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{Port: r.natsPort, StoreDir: r.natsDir}, brokertest.Logger())
	if err != nil {
		t.Fatalf("start nats-server on port %d: %v", r.natsPort, err)
	}
	r.nats = srv
}

// emit fires n Home events and returns the seq of the last one, given the
// seq of the event before them.
func (r *multiBusRig) emit(n int, after uint64) uint64 {
	for range n {
		r.edge.Emit(bridge.EventHome, nil, bridge.Context{})
	}
	return after + uint64(n)
}

func waitSignal(t *testing.T, event string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("%s did not happen within %s", event, waitLimit)
	}
}

// commandReply is the part of a reply that these tests check.
type commandReply struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

func TestEdgeMQTTDownNATSStillDelivers(t *testing.T) {
	r := startMultiBusRig(t)
	nc, err := nats.Connect(r.nats.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A core NATS subscriber receives every publish, also those that
	// JetStream drops as duplicates of an event id, so it shows whether
	// the edge publishes an event on NATS again while MQTT lags behind.
	corePublished := newSeqLog()
	if _, err := nc.Subscribe("printbridge.p1.event.>", func(m *nats.Msg) { corePublished.add(m.Data) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	r.mosquitto.Stop()
	// Waiting for the edge to see the drop keeps the events below out of
	// a connection that is already dead, which paho would send again
	// after the reconnect besides the edge's own retry.
	waitSignal(t, "the edge's MQTT connection drop", r.mqttLost)
	last := r.emit(20, 1)

	msg, err := nc.Request("printbridge.p1.command.gcode", []byte(`{"id": "nats-req-1", "commands": ["M117 hello"]}`), waitLimit)
	if err != nil {
		t.Fatalf("NATS request with mosquitto down: %v", err)
	}
	var reply commandReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		t.Fatalf("decode reply %q: %v", msg.Data, err)
	}
	if reply.ID != "nats-req-1" {
		t.Errorf("reply %s has id %q, want nats-req-1", msg.Data, reply.ID)
	}

	r.natsSeen.waitFor(t, "NATS", last)
	checkSeqs(t, "NATS", r.natsSeen, last)
	if got := r.mqttSeen.get(); !slices.Equal(got, []uint64{1}) {
		t.Errorf("MQTT observer got seqs %v while mosquitto was down, want only Startup's 1", got)
	}

	r.mosquitto.Start()
	r.mqttSeen.waitFor(t, "MQTT", last)
	checkSeqs(t, "MQTT", r.mqttSeen, last)
	checkSeqs(t, "NATS", r.natsSeen, last)
	// The edge stops after the catch-up, so a publish on NATS that the
	// MQTT catch-up caused has arrived before the check.
	r.stop()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Seq 2 to last, then the Shutdown event of the stop.
	var want []uint64
	for seq := uint64(2); seq <= last+1; seq++ {
		want = append(want, seq)
	}
	if got := corePublished.get(); !slices.Equal(got, want) {
		t.Errorf("core NATS subscriber got seqs %v, want %v, each published once", got, want)
	}
}

func TestEdgeNATSDownMQTTStillDelivers(t *testing.T) {
	r := startMultiBusRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()

	replies := make(chan []byte, 10)
	client := paho.NewClient(paho.NewClientOptions().AddBroker(r.mosquitto.URL()).SetClientID("multibus-commander"))
	if tok := client.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("connect the MQTT commander: %v", tok.Error())
	}
	defer client.Disconnect(0)
	if tok := client.Subscribe("printbridge/p1/reply", 1, func(_ paho.Client, m paho.Message) { replies <- m.Payload() }); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("subscribe to replies: %v", tok.Error())
	}

	r.nats.Shutdown()
	waitSignal(t, "the edge's NATS connection drop", r.natsLost)
	last := r.emit(20, 1)
	if tok := client.Publish("printbridge/p1/command/gcode", 1, false, `{"id": "mqtt-cmd-1", "commands": ["M117 hello"]}`); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("publish the MQTT command: %v", tok.Error())
	}
	select {
	case data := <-replies:
		var reply commandReply
		if err := json.Unmarshal(data, &reply); err != nil {
			t.Fatalf("decode reply %q: %v", data, err)
		}
		if reply.ID != "mqtt-cmd-1" {
			t.Errorf("reply %s has id %q, want mqtt-cmd-1", data, reply.ID)
		}
	case <-ctx.Done():
		t.Fatalf("no reply on MQTT within %s while nats-server was down", waitLimit)
	}

	r.mqttSeen.waitFor(t, "MQTT", last)
	checkSeqs(t, "MQTT", r.mqttSeen, last)
	if got := r.natsSeen.get(); !slices.Equal(got, []uint64{1}) {
		t.Errorf("NATS observer got seqs %v while nats-server was down, want only Startup's 1", got)
	}

	r.startNATS(t)
	r.natsSeen.waitFor(t, "NATS", last)
	checkSeqs(t, "NATS", r.natsSeen, last)
	checkSeqs(t, "MQTT", r.mqttSeen, last)
}

func TestEdgeBridgeInfoOnBothBuses(t *testing.T) {
	r := startMultiBusRig(t)

	type infoMessage struct {
		data     []byte
		retained bool
	}
	got := make(chan infoMessage, 1)
	client := paho.NewClient(paho.NewClientOptions().AddBroker(r.mosquitto.URL()).SetClientID("multibus-info"))
	if tok := client.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer client.Disconnect(0)
	if tok := client.Subscribe("printbridge/bridge/info", 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- infoMessage{data: m.Payload(), retained: m.Retained()}:
		default:
		}
	}); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("subscribe to bridge info: %v", tok.Error())
	}
	select {
	case msg := <-got:
		checkInfo(t, "MQTT", msg.data)
		if !msg.retained {
			t.Error("MQTT bridge info is not retained")
		}
	case <-time.After(waitLimit):
		t.Fatalf("no retained bridge info on MQTT within %s", waitLimit)
	}

	nc, err := nats.Connect(r.nats.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(natsbus.StateBucket)
	if err != nil {
		t.Fatalf("open the NATS state bucket: %v", err)
	}
	entry, err := kv.Get("bridge.info")
	if err != nil {
		t.Fatalf("NATS bridge info in bucket %s: %v", natsbus.StateBucket, err)
	}
	checkInfo(t, "NATS", entry.Value())
}

func checkInfo(t *testing.T, bus string, data []byte) {
	t.Helper()
	var info struct {
		Version  string   `json:"version"`
		Printers []string `json:"printers"`
	}
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatalf("%s bridge info %q: %v", bus, data, err)
	}
	if info.Version != edge.Version {
		t.Errorf("%s bridge info version %q, want %q", bus, info.Version, edge.Version)
	}
	if !slices.Equal(info.Printers, []string{"p1"}) {
		t.Errorf("%s bridge info printers %v, want [p1]", bus, info.Printers)
	}
}

// An outbox that overflows while mosquitto is down drops events that only
// MQTT had not taken: MQTT counts them as lost and gets the later ones in
// order, and NATS, which took every event, loses none.
func TestEdgeOutboxDropLostForLaggingBus(t *testing.T) {
	m := edge.NewMetrics(nil)
	r := startMultiBusRigWith(t, edge.Config{Outbox: outbox.Options{MaxBytes: 64 << 10, SegmentBytes: 8 << 10}}, m)

	r.mosquitto.Stop()
	waitSignal(t, "the edge's MQTT connection drop", r.mqttLost)
	// A Home envelope takes about 200 bytes, so 1000 of them overflow the
	// 64 KiB outbox several times. They are fired in steps that NATS takes
	// before the next, so that the drops hit only events that NATS has.
	last := uint64(1)
	for range 20 {
		last = r.emit(50, last)
		r.natsSeen.waitFor(t, "NATS", last)
	}
	checkSeqs(t, "NATS", r.natsSeen, last)

	r.mosquitto.Start()
	r.mqttSeen.waitFor(t, "MQTT", last)
	// paho sends the events that it had in flight when a publish gave up
	// again after the reconnect, so MQTT may get copies of some events and
	// a few that the outbox dropped. The first copy of each arrives in
	// order.
	var firsts []uint64
	seen := map[uint64]bool{}
	for _, seq := range r.mqttSeen.get() {
		if !seen[seq] {
			seen[seq] = true
			firsts = append(firsts, seq)
		}
	}
	if !slices.IsSorted(firsts) {
		t.Errorf("MQTT observer's first copies arrived in the order %v, want seq order", firsts)
	}
	missing := 0
	for seq := uint64(1); seq <= last; seq++ {
		if !seen[seq] {
			missing++
		}
	}
	if missing == 0 {
		t.Fatalf("MQTT observer got every seq up to %d, want a gap where the outbox dropped events", last)
	}
	lost := busLost(t, m.BusEventsLost.WithLabelValues("mqtt"))
	if lost < float64(missing) {
		t.Errorf("MQTT lost %v events by the metric, want at least the %d that its observer never got", lost, missing)
	}
	if lost := busLost(t, m.BusEventsLost.WithLabelValues("nats")); lost != 0 {
		t.Errorf("NATS lost %v events by the metric, want 0", lost)
	}
}

func busLost(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var metric dto.Metric
	if err := c.Write(&metric); err != nil {
		t.Fatal(err)
	}
	return metric.GetCounter().GetValue()
}

// TestOutboxDropLostForLateBus runs an edge whose MQTT
// connection comes up only after the outbox has overflowed. The events
// that the outbox dropped before MQTT took anything count as lost for
// MQTT, as they do for a bus that was connected once.
func TestOutboxDropLostForLateBus(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := brokertest.Logger()
	mosquittoURL := brokertest.StartMosquitto(t)
	natsServer := brokertest.StartNATS(t, false, false)

	mqttSeen, natsSeen := newSeqLog(), newSeqLog()
	mqttObserver, err := mqtt.New(ctx, mqtt.Config{URL: mosquittoURL, ClientID: "late-observer"}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer mqttObserver.Close()
	if err := mqttObserver.SubscribeEvents(ctx, "p1", "", func(m bridge.EventMessage) { mqttSeen.add(m.Data) }); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(natsServer.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Subscribe("printbridge.p1.event.>", func(m *nats.Msg) { natsSeen.add(m.Data) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	natsBus, err := natsbus.New(ctx, natsbus.Config{URL: natsServer.NATSURL(), Name: "late-edge"}, log)
	if err != nil {
		t.Fatal(err)
	}
	lateMQTT := bridge.NewPending("mqtt")
	bus := bridge.NewMulti(natsBus, lateMQTT)
	defer bus.Close()
	m := edge.NewMetrics(nil)
	e, err := edge.New(edge.Config{PrinterID: "p1", DataDir: t.TempDir(), PublishTimeout: 2 * time.Second,
		Outbox: outbox.Options{MaxBytes: 64 << 10, SegmentBytes: 8 << 10}}, bus, log, m)
	if err != nil {
		t.Fatal(err)
	}
	e.Attach(printer.New(printer.Config{Port: "/nonexistent/p1"}, slog.New(slog.DiscardHandler), e.Emit, printer.Metrics{}))
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	defer func() {
		stopRun()
		if err := <-done; err != nil {
			t.Errorf("edge Run: %v", err)
		}
	}()

	// About 200 bytes per Home envelope, so 1000 overflow the 64 KiB
	// outbox several times, in steps that NATS takes before the next.
	natsSeen.waitFor(t, "NATS", 1)
	last := uint64(1)
	for range 20 {
		for range 50 {
			e.Emit(bridge.EventHome, nil, bridge.Context{})
		}
		last += 50
		natsSeen.waitFor(t, "NATS", last)
	}
	checkSeqs(t, "NATS", natsSeen, last)

	mqttBus, err := mqtt.New(ctx, mqtt.Config{URL: mosquittoURL, ClientID: "late-edge", Printer: "p1"}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := lateMQTT.Attach(mqttBus); err != nil {
		t.Fatal(err)
	}
	e.BusAttached(lateMQTT)
	mqttSeen.waitFor(t, "MQTT", last)
	got := mqttSeen.get()
	if !slices.IsSorted(got) {
		t.Errorf("MQTT observer got seqs out of order: %v", got)
	}
	missing := int(last) - len(got)
	if missing <= 0 || got[0] == 1 {
		t.Fatalf("MQTT observer got %d of %d events from seq %d, want the oldest dropped by the outbox", len(got), last, got[0])
	}
	if lost := busLost(t, m.BusEventsLost.WithLabelValues("mqtt")); lost != float64(missing) {
		t.Errorf("MQTT lost %v events by the metric, want the %d that its observer never got", lost, missing)
	}
	if lost := busLost(t, m.BusEventsLost.WithLabelValues("nats")); lost != 0 {
		t.Errorf("NATS lost %v events by the metric, want 0", lost)
	}
}
