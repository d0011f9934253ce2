package mqtt_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// waitTimeout bounds every wait for a message. Reconnects after a broker
// restart take paho's backoff of one, then two, then four seconds.
const waitTimeout = 30 * time.Second

var topics = bridge.Topics{}

// TestMain routes paho's logs before any test starts a raw paho client,
// because paho reads its loggers without locking.
func TestMain(m *testing.M) {
	mqtt.RouteLibraryLogs(brokertest.Logger())
	os.Exit(m.Run())
}

func newBus(t *testing.T, cfg mqtt.Config) *mqtt.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := mqtt.New(ctx, cfg, brokertest.Logger())
	if err != nil {
		t.Fatalf("mqtt.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// rawClient is a plain paho client, for what the Bus does not expose:
// reading retained state and availability, and publishing retained
// commands.
func rawClient(t *testing.T, url, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(true))
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("connect raw client %s to %s: %v", id, url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func rawSubscribe(t *testing.T, c paho.Client, filter string, h paho.MessageHandler) {
	t.Helper()
	tok := c.Subscribe(filter, 1, h)
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("subscribe raw client to %s: %v", filter, tok.Error())
	}
}

func event(t testing.TB, printer string, seq uint64) (*bridge.Envelope, []byte) {
	t.Helper()
	env := &bridge.Envelope{
		Schema:  bridge.SchemaVersion,
		ID:      bridge.NewEventID(time.Now()),
		Seq:     seq,
		Printer: printer,
		Event:   "ZChange",
		Time:    time.Now().UTC(),
		Payload: bridge.Payload{{Key: "new", Value: float64(seq) / 10}},
	}
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatalf("marshal envelope: %v", err)
	}
	return env, data
}

func atLeast[T any](n int) func([]T) bool {
	return func(v []T) bool { return len(v) >= n }
}

func contains[T comparable](want T) func([]T) bool {
	return func(v []T) bool { return slices.Contains(v, want) }
}

func decodeSeqs(t *testing.T, msgs []bridge.EventMessage) []uint64 {
	t.Helper()
	seqs := make([]uint64, len(msgs))
	for i, m := range msgs {
		env, err := bridge.DecodeEnvelope(m.Data)
		if err != nil {
			t.Fatalf("message %d from %s: %v", i, m.Source, err)
		}
		seqs[i] = env.Seq
	}
	return seqs
}

func TestEventsArriveInOrder(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	worker := newBus(t, mqtt.Config{URL: url})
	edge := newBus(t, mqtt.Config{URL: url})
	ctx := context.Background()

	got := brokertest.NewCollector[bridge.EventMessage]()
	if err := worker.SubscribeEvents(ctx, "", "", got.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	const n = 1000
	for seq := uint64(1); seq <= n; seq++ {
		env, data := event(t, "p1", seq)
		if err := edge.PublishEvent(ctx, env, data); err != nil {
			t.Fatalf("PublishEvent seq %d: %v", seq, err)
		}
	}
	msgs := got.WaitFor(t, "all events", atLeast[bridge.EventMessage](n))
	if len(msgs) != n {
		t.Errorf("received %d events, want %d", len(msgs), n)
	}
	for i, seq := range decodeSeqs(t, msgs) {
		if seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d, want %d: order not kept", i, seq, i+1)
		}
	}
	if want := "mqtt:" + topics.MQTTEvent("p1", "ZChange"); msgs[0].Source != want {
		t.Errorf("Source = %q, want %q", msgs[0].Source, want)
	}
}

func TestSlowHandlerLosesNothing(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	worker := newBus(t, mqtt.Config{URL: url})
	edge := newBus(t, mqtt.Config{URL: url})
	ctx := context.Background()

	// The handler blocks until every event is published. The bus sends
	// a PUBACK only after the handler returns, so Mosquitto sends its
	// default max_inflight_messages of 20 and queues the rest, up to its
	// default max_queued_messages of 1000 (Mosquitto 2.0.11).
	release := make(chan struct{})
	got := brokertest.NewCollector[bridge.EventMessage]()
	if err := worker.SubscribeEvents(ctx, "p1", "", func(m bridge.EventMessage) {
		<-release
		got.Add(m)
	}); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	const n = 1000
	for seq := uint64(1); seq <= n; seq++ {
		env, data := event(t, "p1", seq)
		if err := edge.PublishEvent(ctx, env, data); err != nil {
			t.Fatalf("PublishEvent seq %d: %v", seq, err)
		}
	}
	close(release)
	msgs := got.WaitFor(t, "all events", atLeast[bridge.EventMessage](n))
	for i, seq := range decodeSeqs(t, msgs) {
		if seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d, want %d", i, seq, i+1)
		}
	}
}

func TestRetainedStateLateSubscriber(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	edge := newBus(t, mqtt.Config{URL: url})
	ctx := context.Background()

	state := []byte(`{"state":"OPERATIONAL"}`)
	if err := edge.PublishState(ctx, "p1", state); err != nil {
		t.Fatalf("PublishState: %v", err)
	}
	if err := edge.PublishBridgeInfo(ctx, "p1", []byte(`{"schema":1}`)); err != nil {
		t.Fatalf("PublishBridgeInfo: %v", err)
	}

	late := rawClient(t, url, "late")
	got := brokertest.NewCollector[string]()
	rawSubscribe(t, late, "printbridge/#", func(_ paho.Client, m paho.Message) {
		got.Add(fmt.Sprintf("%s retained=%v %s", m.Topic(), m.Retained(), m.Payload()))
	})
	got.WaitFor(t, "retained state", contains(topics.MQTTState("p1")+` retained=true {"state":"OPERATIONAL"}`))
	got.WaitFor(t, "retained bridge info", contains(topics.MQTTBridgeInfo()+` retained=true {"schema":1}`))
	got.WaitFor(t, "retained printer info", contains(topics.MQTTInfo("p1")+` retained=true {"schema":1}`))
}

func TestEventsAreNotRetained(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	edge := newBus(t, mqtt.Config{URL: url})
	ctx := context.Background()

	env, data := event(t, "p1", 1)
	if err := edge.PublishEvent(ctx, env, data); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}
	if err := edge.PublishState(ctx, "p1", []byte("{}")); err != nil {
		t.Fatalf("PublishState: %v", err)
	}
	late := rawClient(t, url, "late")
	got := brokertest.NewCollector[string]()
	record := func(_ paho.Client, m paho.Message) { got.Add(m.Topic()) }
	// Mosquitto sends the retained messages of one SUBSCRIBE before it
	// handles the next, and paho delivers in order, so a retained event
	// would arrive before the retained state.
	rawSubscribe(t, late, topics.MQTTAllEvents("p1"), record)
	rawSubscribe(t, late, topics.MQTTState("p1"), record)
	topicsSeen := got.WaitFor(t, "retained state", contains(topics.MQTTState("p1")))
	if slices.Contains(topicsSeen, topics.MQTTEvent("p1", "ZChange")) {
		t.Errorf("a late subscriber received the event, so it was retained: %v", topicsSeen)
	}
}

func TestLastWillAfterCut(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	proxy := brokertest.StartProxy(t, url[len("tcp://"):])

	watcher := rawClient(t, url, "watcher")
	got := brokertest.NewCollector[string]()
	rawSubscribe(t, watcher, topics.MQTTAvailability("p1"), func(_ paho.Client, m paho.Message) {
		got.Add(string(m.Payload()))
	})

	newBus(t, mqtt.Config{URL: proxy.URL(), Printer: "p1"})
	got.WaitFor(t, "online after connect", contains("online"))

	proxy.Cut()
	got.WaitFor(t, "offline from the last will", func(v []string) bool {
		return len(v) >= 2 && v[len(v)-1] == "offline"
	})
	// paho reconnects through the proxy, and the bus publishes online.
	got.WaitFor(t, "online after reconnect", func(v []string) bool {
		return len(v) >= 3 && v[len(v)-1] == "online"
	})
}

func TestCloseMarksOffline(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	edge, err := mqtt.New(context.Background(), mqtt.Config{URL: url, Printer: "p1"}, brokertest.Logger())
	if err != nil {
		t.Fatalf("mqtt.New: %v", err)
	}
	if err := edge.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	late := rawClient(t, url, "late")
	got := brokertest.NewCollector[string]()
	rawSubscribe(t, late, topics.MQTTAvailability("p1"), func(_ paho.Client, m paho.Message) {
		got.Add(string(m.Payload()))
	})
	got.WaitFor(t, "retained offline", contains("offline"))
	if err := edge.PublishState(context.Background(), "p1", nil); !errors.Is(err, mqtt.ErrClosed) {
		t.Errorf("PublishState after Close = %v, want ErrClosed", err)
	}
}

func TestResubscribeAfterBrokerRestart(t *testing.T) {
	broker := brokertest.StartMosquittoProcess(t, 0)
	reconnects := make(chan struct{}, 10)
	edge := newBus(t, mqtt.Config{URL: broker.URL(), Printer: "p1"})
	worker := newBus(t, mqtt.Config{URL: broker.URL(), OnConnect: func() { reconnects <- struct{}{} }})
	ctx := context.Background()

	got := brokertest.NewCollector[string]()
	if err := worker.SubscribeCommands(ctx, "p1", func(m bridge.CommandMessage) { got.Add(string(m.Data)) }); err != nil {
		t.Fatalf("SubscribeCommands: %v", err)
	}
	<-reconnects // the first connect
	if err := edge.PublishCommand(ctx, "p1", bridge.CommandGcode, []byte("before")); err != nil {
		t.Fatalf("PublishCommand: %v", err)
	}
	got.WaitFor(t, "command before the restart", contains("before"))

	broker.Stop()
	broker.Start()
	select {
	case <-reconnects:
	case <-time.After(waitTimeout):
		t.Fatalf("worker did not reconnect within %s", waitTimeout)
	}
	// The edge may reconnect after the worker, so publish until it works.
	deadline := time.Now().Add(waitTimeout)
	for {
		err := edge.PublishCommand(ctx, "p1", bridge.CommandGcode, []byte("after"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PublishCommand after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got.WaitFor(t, "command after the restart", contains("after"))
}

func TestRetainedCommandIsFlagged(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	sender := rawClient(t, url, "sender")
	tok := sender.Publish(topics.MQTTCommand("p1", bridge.CommandGcode), 1, true, `{"id":"c-1","commands":["G28"]}`)
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("publish retained command: %v", tok.Error())
	}

	edge := newBus(t, mqtt.Config{URL: url})
	got := brokertest.NewCollector[bridge.CommandMessage]()
	if err := edge.SubscribeCommands(context.Background(), "p1", got.Add); err != nil {
		t.Fatalf("SubscribeCommands: %v", err)
	}
	retained := got.WaitFor(t, "retained command", atLeast[bridge.CommandMessage](1))[0]
	if !retained.Retained {
		t.Errorf("retained command has Retained = false")
	}
	if retained.Kind != bridge.CommandGcode || retained.Printer != "p1" {
		t.Errorf("command printer/kind = %q/%q, want p1/gcode", retained.Printer, retained.Kind)
	}

	tok = sender.Publish(topics.MQTTCommand("p1", bridge.CommandJob), 1, false, `{"id":"c-2","action":"pause"}`)
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("publish live command: %v", tok.Error())
	}
	msgs := got.WaitFor(t, "live command", atLeast[bridge.CommandMessage](2))
	if len(msgs) != 2 {
		t.Fatalf("received %d commands, want the retained one once and the live one: %+v", len(msgs), msgs)
	}
	live := msgs[1]
	if live.Retained {
		t.Errorf("live command has Retained = true")
	}
	if live.Kind != bridge.CommandJob {
		t.Errorf("live command kind = %q, want job", live.Kind)
	}
}

func TestSharedSubscriptionSplitsEvents(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	ctx := context.Background()
	got := brokertest.NewCollector[string]()
	for i := range 2 {
		worker := newBus(t, mqtt.Config{URL: url})
		name := fmt.Sprintf("worker%d", i)
		if err := worker.SubscribeEvents(ctx, "", "workers", func(m bridge.EventMessage) {
			env, err := bridge.DecodeEnvelope(m.Data)
			if err != nil {
				t.Errorf("decode: %v", err)
				return
			}
			got.Add(fmt.Sprintf("%s %d", name, env.Seq))
		}); err != nil {
			t.Fatalf("SubscribeEvents: %v", err)
		}
	}

	edge := newBus(t, mqtt.Config{URL: url})
	const n = 200
	for seq := uint64(1); seq <= n; seq++ {
		env, data := event(t, fmt.Sprintf("p%d", seq%4), seq)
		if err := edge.PublishEvent(ctx, env, data); err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
	}
	values := got.WaitFor(t, "every event once", atLeast[string](n))
	perWorker := map[string]int{}
	seen := map[uint64]bool{}
	for _, v := range values {
		var name string
		var seq uint64
		if _, err := fmt.Sscanf(v, "%s %d", &name, &seq); err != nil {
			t.Fatalf("parse %q: %v", v, err)
		}
		if seen[seq] {
			t.Errorf("event %d delivered twice", seq)
		}
		seen[seq] = true
		perWorker[name]++
	}
	if len(seen) != n {
		t.Errorf("received %d distinct events, want %d", len(seen), n)
	}
	if perWorker["worker0"] == 0 || perWorker["worker1"] == 0 {
		t.Errorf("events per worker = %v, want both to receive some", perWorker)
	}
}

func TestPersistentSessionKeepsEvents(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	proxy := brokertest.StartProxy(t, url[len("tcp://"):])
	ctx := context.Background()

	reconnects := make(chan struct{}, 10)
	worker := newBus(t, mqtt.Config{
		URL: proxy.URL(), ClientID: "worker-persistent", PersistentSession: true,
		OnConnect: func() { reconnects <- struct{}{} },
	})
	got := brokertest.NewCollector[bridge.EventMessage]()
	if err := worker.SubscribeEvents(ctx, "p1", "", got.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	<-reconnects

	// Events published while the worker is away wait in its session on
	// the broker; with a clean session they would be lost.
	edge := newBus(t, mqtt.Config{URL: url})
	proxy.SetDown(true)
	const n = 20
	for seq := uint64(1); seq <= n; seq++ {
		env, data := event(t, "p1", seq)
		if err := edge.PublishEvent(ctx, env, data); err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
	}
	proxy.SetDown(false)
	msgs := got.WaitFor(t, "events sent while the worker was away", atLeast[bridge.EventMessage](n))
	for i, seq := range decodeSeqs(t, msgs) {
		if seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d, want %d", i, seq, i+1)
		}
	}
}

func TestPersistentSessionAcrossRestart(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	ctx := context.Background()
	cfg := mqtt.Config{URL: url, ClientID: "worker-restart", PersistentSession: true}

	// A clean DISCONNECT keeps a persistent session on the broker.
	first := newBus(t, cfg)
	if err := first.SubscribeEvents(ctx, "p1", "", func(bridge.EventMessage) {}); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	edge := newBus(t, mqtt.Config{URL: url})
	const n = 10
	for seq := uint64(1); seq <= n; seq++ {
		env, data := event(t, "p1", seq)
		if err := edge.PublishEvent(ctx, env, data); err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
	}

	// The broker sends the queued events right after CONNACK, before the
	// new process subscribes, so the bus must keep them until then.
	second := newBus(t, cfg)
	got := brokertest.NewCollector[bridge.EventMessage]()
	if err := second.SubscribeEvents(ctx, "p1", "", got.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	msgs := got.WaitFor(t, "events queued in the session", atLeast[bridge.EventMessage](n))
	for i, seq := range decodeSeqs(t, msgs) {
		if seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d, want %d", i, seq, i+1)
		}
	}
}

func TestDuplicateFilterRejected(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	b := newBus(t, mqtt.Config{URL: url})
	ctx := context.Background()
	if err := b.SubscribeEvents(ctx, "", "", func(bridge.EventMessage) {}); err != nil {
		t.Fatalf("first SubscribeEvents: %v", err)
	}
	if err := b.SubscribeEvents(ctx, "", "g", func(bridge.EventMessage) {}); err == nil {
		t.Error("second subscription to the same filter succeeded, want an error")
	}
}

func TestNewFailsWithoutBroker(t *testing.T) {
	port := brokertest.FreePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := mqtt.New(ctx, mqtt.Config{URL: fmt.Sprintf("tcp://user:secret@127.0.0.1:%d", port)}, brokertest.Logger())
	if err == nil {
		t.Fatal("New succeeded without a broker")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error %q contains the password", err)
	}
}

// TestDeferredAckRedelivery defers the PUBACKs of a persistent session.
// Later events arrive while the first is unacknowledged. After a
// reconnect, the broker sends again the events whose PUBACK was not sent,
// and not the one whose PUBACK was.
func TestDeferredAckRedelivery(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	ctx := context.Background()
	cfg := mqtt.Config{URL: url, ClientID: "worker-deferred", PersistentSession: true}

	first := newBus(t, cfg)
	var mu sync.Mutex
	var acks []bridge.AckFunc
	got := brokertest.NewCollector[bridge.EventMessage]()
	err := first.SubscribeEvents(ctx, "p1", "", func(m bridge.EventMessage) {
		if m.Defer == nil {
			t.Error("an MQTT event message has no Defer")
			return
		}
		mu.Lock()
		acks = append(acks, m.Defer())
		mu.Unlock()
		got.Add(m)
	})
	if err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	edge := newBus(t, mqtt.Config{URL: url})
	for seq := uint64(1); seq <= 3; seq++ {
		env, data := event(t, "p1", seq)
		if err := edge.PublishEvent(ctx, env, data); err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
	}
	if s := decodeSeqs(t, got.WaitFor(t, "three unacked events", atLeast[bridge.EventMessage](3))); !slices.Equal(s, []uint64{1, 2, 3}) {
		t.Fatalf("seqs before any PUBACK = %v, want 1, 2, 3", s)
	}
	mu.Lock()
	acks[1](true)
	acks[0](false)
	mu.Unlock()
	// Seq 4 arrives while seq 1 and 3 are unacknowledged. Seq 1 was given
	// up, so the PUBACK of seq 2 goes out. The one of seq 4 waits for
	// seq 3, which never gets one, so the broker keeps seq 4 too.
	env, data := event(t, "p1", 4)
	if err := edge.PublishEvent(ctx, env, data); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}
	got.WaitFor(t, "seq 4", atLeast[bridge.EventMessage](4))
	mu.Lock()
	acks[3](true)
	mu.Unlock()
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	second := newBus(t, cfg)
	again := brokertest.NewCollector[bridge.EventMessage]()
	if err := second.SubscribeEvents(ctx, "p1", "", again.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	env, data = event(t, "p1", 5)
	if err := edge.PublishEvent(ctx, env, data); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}
	msgs := again.WaitFor(t, "the unacked events and seq 5", func(v []bridge.EventMessage) bool {
		s := decodeSeqs(t, v)
		return len(s) > 0 && s[len(s)-1] == 5
	})
	if s := decodeSeqs(t, msgs); !slices.Equal(s, []uint64{1, 3, 4, 5}) {
		t.Errorf("seqs after the reconnect = %v, want 1, 3 and 4 (no PUBACK sent) and the new 5", s)
	}
}
