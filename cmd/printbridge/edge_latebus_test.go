package main

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// busRecord keeps what an observer of one bus received: the seq of each
// event, the event names, and the other messages by topic.
type busRecord struct {
	mu     sync.Mutex
	seqs   []uint64
	events []string
	other  map[string][]string
	// arrival is the topic of every message in the order of arrival.
	arrival []string
}

func newBusRecord() *busRecord { return &busRecord{other: map[string][]string{}} }

func (r *busRecord) add(topic string, event string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.arrival = append(r.arrival, topic)
	if event == "" {
		r.other[topic] = append(r.other[topic], string(data))
		return
	}
	var env struct{ Seq uint64 }
	if err := json.Unmarshal(data, &env); err == nil {
		r.seqs = append(r.seqs, env.Seq)
		r.events = append(r.events, event)
	}
}

func (r *busRecord) snapshot() (seqs []uint64, events []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seqs), slices.Clone(r.events)
}

func (r *busRecord) messages(topic string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.other[topic])
}

// firstArrival returns the position of topic's first message among all
// messages, or -1.
func (r *busRecord) firstArrival(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Index(r.arrival, topic)
}

// firstEventArrival returns the position of the first event among all
// messages, or -1.
func (r *busRecord) firstEventArrival(topics bridge.Topics) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.IndexFunc(r.arrival, func(topic string) bool {
		_, mqttEvent, _ := topics.EventOfMQTT(topic)
		_, natsEvent, _ := topics.EventOfNATS(topic)
		return mqttEvent != "" || natsEvent != ""
	})
}

// hasEvent reports whether the record contains an event called name.
func (r *busRecord) hasEvent(name string) bool {
	_, events := r.snapshot()
	return slices.Contains(events, name)
}

// recordMQTT connects a client with clientID to the broker at url and
// records every message under printbridge/ in rec until the test ends.
func recordMQTT(t *testing.T, ctx context.Context, url, clientID string, rec *busRecord) *mqtt.Bus {
	t.Helper()
	client, err := mqtt.New(ctx, mqtt.Config{URL: url, ClientID: clientID}, brokertest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	err = client.SubscribeRaw(ctx, "printbridge/#", func(m mqtt.RawMessage) {
		_, event, _ := bridge.Topics{}.EventOfMQTT(m.Topic)
		rec.add(m.Topic, event, m.Payload)
	})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// recordNATS connects to the NATS server at url and records every message
// under printbridge. in rec until the test ends.
func recordNATS(t *testing.T, url string, rec *busRecord) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe("printbridge.>", func(m *nats.Msg) {
		_, event, _ := bridge.Topics{}.EventOfNATS(m.Subject)
		rec.add(m.Subject, event, m.Data)
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return nc
}

// startPrinterAndEdge starts a virtual printer and an edge process of
// printerID on it, with the broker flags brokerArgs, in dir.
func startPrinterAndEdge(t *testing.T, bin, dir, printerID string, brokerArgs ...string) *proc {
	t.Helper()
	link := filepath.Join(dir, "printer-tty")
	vp := newProc(t, dir, "virtual-printer", bin, "virtual-printer", "--link", link, "--log-level", "warn")
	vp.ready = "virtual printer ready"
	vp.Start()
	args := append([]string{"edge", "--port", link, "--printer", printerID,
		"--data-dir", filepath.Join(dir, "edge-data"), "--files", filepath.Join(dir, "files"), "--metrics-listen", ""}, brokerArgs...)
	edge := newProc(t, dir, "edge", bin, args...)
	edge.Start()
	return edge
}

// TestEdgeStartsWithOneBrokerDown starts an edge process on MQTT and NATS
// while one of the two brokers is unreachable. The edge must run on the
// other from the start (events, state, commands), and once the missing
// broker is reachable, that bus must get the start markers and every
// event from seq 1 on, in order, and take commands.
func TestEdgeStartsWithOneBrokerDown(t *testing.T) {
	bin := buildPrintbridge(t)
	for _, down := range []string{"nats", "mqtt"} {
		t.Run(down+" down", func(t *testing.T) {
			testEdgeStartsWithBrokerDown(t, bin, down)
		})
	}
}

func testEdgeStartsWithBrokerDown(t *testing.T, bin, down string) {
	dir := t.TempDir()
	mosquitto := brokertest.StartMosquittoProcess(t, 0)
	natsServer := brokertest.StartNATS(t, false, false)
	mqttProxy := brokertest.StartProxy(t, mosquitto.Addr())
	natsProxy := brokertest.StartProxy(t, strings.TrimPrefix(natsServer.NATSURL(), "nats://"))
	downProxy := map[string]*brokertest.Proxy{"mqtt": mqttProxy, "nats": natsProxy}[down]
	downProxy.SetDown(true)

	const printerID = "late1"
	topics := bridge.Topics{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The observers connect to the brokers directly, so they see what the
	// edge publishes as soon as its connection is up.
	seen := map[string]*busRecord{"mqtt": newBusRecord(), "nats": newBusRecord()}
	mqttWatcher := recordMQTT(t, ctx, mosquitto.URL(), "late-bus-watcher", seen["mqtt"])
	nc := recordNATS(t, natsServer.NATSURL(), seen["nats"])

	edge := startPrinterAndEdge(t, bin, dir, printerID, "--mqtt", mqttProxy.URL(), "--nats", "nats://"+natsProxy.Addr())

	up := map[string]string{"mqtt": "nats", "nats": "mqtt"}[down]
	waitFor(t, "Connected event on "+up, time.Minute, func() bool { return seen[up].hasEvent(bridge.EventConnected) })
	checkCommandReply(t, ctx, up, mqttWatcher, nc, printerID, "on-"+up+"-while-"+down+"-down")
	if seqs, _ := seen[down].snapshot(); len(seqs) > 0 {
		t.Fatalf("%s observer got events %v although its broker was unreachable for the edge", down, seqs)
	}

	downProxy.SetDown(false)
	waitFor(t, "Connected event on "+down+" after its broker became reachable", time.Minute, func() bool {
		return seen[down].hasEvent(bridge.EventConnected)
	})
	checkCommandReply(t, ctx, down, mqttWatcher, nc, printerID, "on-"+down+"-after-it-came-up")

	// Every event that the edge stored while the broker was unreachable
	// arrives on the late bus, once and in order, as on the other bus.
	upSeqs, _ := seen[up].snapshot()
	last := upSeqs[len(upSeqs)-1]
	waitFor(t, "every event on "+down, time.Minute, func() bool {
		seqs, _ := seen[down].snapshot()
		return slices.Contains(seqs, last)
	})
	lateSeqs, _ := seen[down].snapshot()
	for i, seq := range lateSeqs {
		if seq != uint64(i+1) {
			t.Fatalf("%s observer got seqs %v, want 1, 2, 3, ... without gaps or repeats", down, lateSeqs)
		}
	}

	markers := map[string][2]string{
		"mqtt": {topics.MQTTAvailability(printerID), topics.MQTTBridgeInfo()},
		"nats": {topics.NATSAvailability(printerID), topics.NATSBridgeInfo()},
	}[down]
	waitFor(t, "availability and bridge info on "+down, time.Minute, func() bool {
		return len(seen[down].messages(markers[0])) > 0 && len(seen[down].messages(markers[1])) > 0
	})
	if got := seen[down].messages(markers[0]); !slices.Equal(got, []string{"online"}) {
		t.Errorf("availability on %s = %q, want one \"online\"", down, got)
	}
	if got := seen[down].messages(markers[1]); len(got) != 1 || !strings.Contains(got[0], printerID) {
		t.Errorf("bridge info on %s = %q, want one message that lists %s", down, got, printerID)
	}
	// A subscriber of the late bus learns that the edge is online before
	// it gets the edge's state and events.
	state := map[string]string{"mqtt": topics.MQTTState(printerID), "nats": topics.NATSState(printerID)}[down]
	firstEvent, firstState := seen[down].firstEventArrival(topics), seen[down].firstArrival(state)
	for _, marker := range markers {
		at := seen[down].firstArrival(marker)
		if at > firstEvent {
			t.Errorf("on %s, %s arrived as message %d, after the first event (message %d)", down, marker, at, firstEvent)
		}
		if firstState >= 0 && at > firstState {
			t.Errorf("on %s, %s arrived as message %d, after the first state (message %d)", down, marker, at, firstState)
		}
	}
	if err := edge.Stop(); err != nil {
		t.Fatalf("the edge exited with %v after SIGTERM; its log:\n%s", err, edge.Tail(40))
	}
	if down == "mqtt" {
		checkPahoLogLines(t, edge.Log())
	}
}

// checkPahoLogLines checks the lines that paho logged while its broker
// was unreachable. paho's loggers are package-wide, so a line must not
// carry the attributes of the edge's presence connection. The proxy
// closes each connection before CONNACK, and that is retried like a
// refused dial, so it must not be logged as an error.
func checkPahoLogLines(t *testing.T, log string) {
	t.Helper()
	var pahoLines []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "library=paho.mqtt.golang") {
			pahoLines = append(pahoLines, line)
		}
	}
	if len(pahoLines) == 0 {
		t.Fatalf("paho logged nothing while the MQTT broker was unreachable; the edge's log:\n%s", log)
	}
	for _, line := range pahoLines {
		if strings.Contains(line, "connection=presence") {
			t.Errorf("paho's line carries the presence connection's attribute: %s", line)
		}
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "connect got error") {
			t.Errorf("a connection closed before CONNACK was logged as an error: %s", line)
		}
	}
}

// checkCommandReply sends a G-code command with id on bus and waits for
// the edge's reply with that id on the same bus.
func checkCommandReply(t *testing.T, ctx context.Context, bus string, mqttClient *mqtt.Bus, nc *nats.Conn, printerID, id string) {
	t.Helper()
	topics := bridge.Topics{}
	command := []byte(`{"id": "` + id + `", "commands": ["M117 ` + id + `"]}`)
	var reply []byte
	switch bus {
	case "nats":
		msg, err := nc.Request(topics.NATSCommand(printerID, bridge.CommandGcode), command, time.Minute)
		if err != nil {
			t.Fatalf("NATS command %s: %v", id, err)
		}
		reply = msg.Data
	case "mqtt":
		replies := make(chan []byte, 8)
		if err := mqttClient.SubscribeRaw(ctx, topics.MQTTReply(printerID), func(m mqtt.RawMessage) { replies <- m.Payload }); err != nil {
			t.Fatal(err)
		}
		if err := mqttClient.PublishRaw(ctx, topics.MQTTCommand(printerID, bridge.CommandGcode), false, command); err != nil {
			t.Fatal(err)
		}
		deadline := time.After(time.Minute)
		for reply == nil {
			select {
			case data := <-replies:
				if strings.Contains(string(data), id) {
					reply = data
				}
			case <-deadline:
				t.Fatalf("no MQTT reply to command %s within a minute", id)
			}
		}
	}
	var r struct{ ID, Status string }
	if err := json.Unmarshal(reply, &r); err != nil || r.ID != id {
		t.Fatalf("reply %s to command %s on %s: want its id (decode error %v)", reply, id, bus, err)
	}
}

// TestWorkerStartsWithOneBrokerDown starts a worker on MQTT and NATS while
// NATS is unreachable. It must run the hooks of MQTT events from the
// start, and those of NATS events once NATS is reachable, with the
// subscriptions it asked for at the start.
func TestWorkerStartsWithOneBrokerDown(t *testing.T) {
	mosquitto := brokertest.StartMosquittoProcess(t, 0)
	natsServer := brokertest.StartNATS(t, false, false)
	natsProxy := brokertest.StartProxy(t, strings.TrimPrefix(natsServer.NATSURL(), "nats://"))
	natsProxy.SetDown(true)
	cfg := writeWorkerConfig(t, t.TempDir(), `events:
  subscriptions:
  - {name: note, event: PrintStarted, type: system, shell: false, command: "true"}
`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mqttSender, err := mqtt.New(ctx, mqtt.Config{URL: mosquitto.URL(), ClientID: "late-worker-sender"}, brokertest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mqttSender.Close() })
	mqttResults := make(chan string, 16)
	if err := mqttSender.SubscribeRaw(ctx, bridge.Topics{}.MQTTHook("w1"), func(m mqtt.RawMessage) { mqttResults <- string(m.Payload) }); err != nil {
		t.Fatal(err)
	}
	natsSender := newEventSender(t, natsServer.NATSURL(), "w1")

	w := startWorker(t, "--config", cfg, "--mqtt", mosquitto.URL(), "--nats", "nats://"+natsProxy.Addr(), "--metrics-listen", "")
	env := &bridge.Envelope{Schema: bridge.SchemaVersion, ID: "over-mqtt-1", Printer: "w1", Event: bridge.EventPrintStarted, Time: time.Now()}
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if err := mqttSender.PublishEvent(ctx, env, data); err != nil {
		t.Fatal(err)
	}
	select {
	case result := <-mqttResults:
		if !strings.Contains(result, `"over-mqtt-1"`) {
			t.Errorf("hook result %s is not the one of event over-mqtt-1", result)
		}
	case <-ctx.Done():
		t.Fatalf("no hook result on MQTT while NATS was unreachable; worker log:\n%s", w.log.String())
	}

	natsProxy.SetDown(false)
	waitFor(t, "the worker's NATS connection", workerWait, func() bool {
		return len(w.lines("broker connection up", "bus=nats")) > 0
	})
	natsSender.send("w1", "over-nats-1", bridge.EventPrintStarted, nil)
	if r := natsSender.waitResult("over-nats-1", "note"); r["exit_code"] != float64(0) {
		t.Errorf("hook result of over-nats-1 = %v, want exit code 0", r)
	}
}

// TestEdgeStopsWithOneBrokerGone stops an edge on MQTT and NATS after the
// NATS server became unreachable, and after it froze (SIGSTOP: the
// connection stays up but the server sends nothing). The edge must not spend
// its stop on that broker: MQTT still gets the Shutdown event, the last
// state (closed) and the offline marker, and the events NATS did not take
// stay in the outbox.
func TestEdgeStopsWithOneBrokerGone(t *testing.T) {
	bin := buildPrintbridge(t)
	t.Run("unreachable", func(t *testing.T) {
		natsServer := brokertest.StartNATS(t, false, false)
		natsProxy := brokertest.StartProxy(t, strings.TrimPrefix(natsServer.NATSURL(), "nats://"))
		testEdgeStopWithNATSAway(t, bin, "nats://"+natsProxy.Addr(), func(edge *proc) {
			natsProxy.SetDown(true)
			waitFor(t, "the edge to see NATS go", time.Minute, func() bool {
				return strings.Contains(edge.Log(), "disconnected from NATS server; reconnecting")
			})
		}, []string{
			"not publishing the events left at shutdown: the broker connection is down",
			"not publishing the last state and the offline marker: the broker connection is down",
		})
	})
	t.Run("frozen", func(t *testing.T) {
		natsServer := startFaultNATS(t, t.TempDir())
		testEdgeStopWithNATSAway(t, bin, natsServer.url(), func(*proc) {
			natsServer.p.signal(syscall.SIGSTOP)
			t.Cleanup(func() { natsServer.p.signal(syscall.SIGCONT) })
		}, []string{
			"publishing event at shutdown failed",
			"not publishing the last state and the offline marker: the broker did not take the last events in time",
		})
	})
}

// testEdgeStopWithNATSAway runs an edge on a mosquitto and natsURL, calls
// away once the edge runs, stops the edge and checks what MQTT got and
// that the edge logged each of wantLogs once for NATS.
func testEdgeStopWithNATSAway(t *testing.T, bin, natsURL string, away func(edge *proc), wantLogs []string) {
	dir := t.TempDir()
	mosquitto := brokertest.StartMosquittoProcess(t, 0)
	const printerID = "gone1"
	topics := bridge.Topics{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	seen := newBusRecord()
	watcher := recordMQTT(t, ctx, mosquitto.URL(), "gone-bus-watcher", seen)
	edge := startPrinterAndEdge(t, bin, dir, printerID, "--mqtt", mosquitto.URL(), "--nats", natsURL)
	waitFor(t, "Connected event on MQTT", time.Minute, func() bool { return seen.hasEvent(bridge.EventConnected) })

	away(edge)
	// Stop kills the edge if it has not exited 15 s after SIGTERM.
	if err := edge.Stop(); err != nil {
		t.Fatalf("the edge exited with %v after SIGTERM; its log:\n%s", err, edge.Tail(40))
	}

	// The watcher gets a barrier after everything the edge published.
	barrier := "printbridge/" + printerID + "/test-barrier"
	if err := watcher.PublishRaw(ctx, barrier, false, []byte("end")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "barrier message", 20*time.Second, func() bool { return len(seen.messages(barrier)) > 0 })
	if _, events := seen.snapshot(); events[len(events)-1] != bridge.EventShutdown {
		t.Errorf("last event on MQTT is %s, want Shutdown (events %v)", events[len(events)-1], events)
	}
	states := seen.messages(topics.MQTTState(printerID))
	if len(states) == 0 || !strings.Contains(states[len(states)-1], `"state_id":"CLOSED"`) {
		last := "none"
		if len(states) > 0 {
			last = states[len(states)-1]
		}
		t.Errorf("last state on MQTT is %s, want state_id CLOSED", last)
	}
	if markers := seen.messages(topics.MQTTAvailability(printerID)); len(markers) == 0 || markers[len(markers)-1] != "offline" {
		t.Errorf("availability markers on MQTT %q, want offline last", markers)
	}
	for _, want := range wantLogs {
		if lines := matchingLines(edge.Log(), want, "bus=nats"); len(lines) != 1 {
			t.Errorf("edge log has %d lines with %q for NATS, want 1:\n%s", len(lines), want, edge.Tail(30))
		}
	}
}

// TestEdgeStartsBesideSilentBroker starts an edge whose MQTT broker
// accepts the TCP connection and never replies, as a host that drops
// packets behind a port forward does, while NATS is up. The edge must
// run on NATS before the MQTT connect attempt times out.
func TestEdgeStartsBesideSilentBroker(t *testing.T) {
	bin := buildPrintbridge(t)
	dir := t.TempDir()

	// The silent broker accepts connections and keeps them open without
	// reading or writing.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	var accepted []net.Conn
	var acceptedMu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			acceptedMu.Lock()
			accepted = append(accepted, c)
			acceptedMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		acceptedMu.Lock()
		defer acceptedMu.Unlock()
		for _, c := range accepted {
			_ = c.Close()
		}
	})

	natsServer := brokertest.StartNATS(t, false, false)
	seen := newBusRecord()
	recordNATS(t, natsServer.NATSURL(), seen)
	edge := startPrinterAndEdge(t, bin, dir, "silent1", "--mqtt", "tcp://"+silent.Addr().String(), "--nats", natsServer.NATSURL())
	waitFor(t, "Connected event on NATS", time.Minute, func() bool { return seen.hasEvent(bridge.EventConnected) })

	// The first MQTT attempt ends only after its 10s connect timeout.
	if lines := matchingLines(edge.Log(), "broker connection failed", "bus=mqtt"); len(lines) > 0 {
		t.Errorf("the edge ran on NATS only after the MQTT attempt failed:\n%s", strings.Join(lines, "\n"))
	}

	if err := edge.Stop(); err != nil {
		t.Fatalf("the edge exited with %v after SIGTERM; its log:\n%s", err, edge.Tail(40))
	}
}
