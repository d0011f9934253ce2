package natsbus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// These tests start the embedded server themselves: brokertest imports
// natsbus, so using it here would test the helper with itself.

const waitTimeout = 30 * time.Second

var topics = bridge.Topics{}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func startServer(t *testing.T, opts natsbus.EmbeddedOptions) *natsbus.Embedded {
	t.Helper()
	if opts.StoreDir == "" && !opts.NoJetStream {
		opts.StoreDir = t.TempDir()
	}
	e, err := natsbus.StartEmbedded(opts, testLogger())
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

func newBus(t *testing.T, cfg natsbus.Config) *natsbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := natsbus.New(ctx, cfg, testLogger())
	if err != nil {
		t.Fatalf("natsbus.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
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

func publishEvents(t *testing.T, b bridge.Bus, printer string, from, to uint64) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		env, data := event(t, printer, seq)
		if err := b.PublishEvent(context.Background(), env, data); err != nil {
			t.Fatalf("PublishEvent seq %d: %v", seq, err)
		}
	}
}

func atLeast[T any](n int) func([]T) bool {
	return func(v []T) bool { return len(v) >= n }
}

func seqs(t *testing.T, msgs []bridge.EventMessage) []uint64 {
	t.Helper()
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		env, err := bridge.DecodeEnvelope(m.Data)
		if err != nil {
			t.Fatalf("message %d from %s: %v", i, m.Source, err)
		}
		out[i] = env.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// pollUntil retries f until it returns nil or waitTimeout passes.
func pollUntil(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, waitTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCoreEventsArriveInOrder(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{NoJetStream: true})
	worker := newBus(t, natsbus.Config{URL: srv.NATSURL()})
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL()})

	got := brokertest.NewCollector[bridge.EventMessage]()
	if err := worker.SubscribeEvents(context.Background(), "", "", got.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	const n = 1000
	publishEvents(t, edge, "p1", 1, n)
	msgs := got.WaitFor(t, "all events", atLeast[bridge.EventMessage](n))
	if !slices.Equal(seqs(t, msgs), seqRange(1, n)) {
		t.Errorf("events arrived out of order or twice")
	}
	if want := "nats:" + topics.NATSEvent("p1", "ZChange"); msgs[0].Source != want {
		t.Errorf("Source = %q, want %q", msgs[0].Source, want)
	}
}

func TestQueueGroupSplitsEvents(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{NoJetStream: true})
	got := brokertest.NewCollector[string]()
	for i := range 2 {
		worker := newBus(t, natsbus.Config{URL: srv.NATSURL()})
		name := fmt.Sprintf("worker%d", i)
		if err := worker.SubscribeEvents(context.Background(), "", "workers", func(m bridge.EventMessage) {
			env, err := bridge.DecodeEnvelope(m.Data)
			if err != nil {
				t.Errorf("decode: %v", err)
				return
			}
			got.Add(name + " " + strconv.FormatUint(env.Seq, 10))
		}); err != nil {
			t.Fatalf("SubscribeEvents: %v", err)
		}
	}
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL()})
	const n = 200
	publishEvents(t, edge, "p1", 1, n)

	values := got.WaitFor(t, "every event", atLeast[string](n))
	perWorker := map[string]int{}
	seen := map[string]bool{}
	for _, v := range values {
		name, seq, _ := strings.Cut(v, " ")
		if seen[seq] {
			t.Errorf("event %s delivered twice", seq)
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

func TestJetStreamDropsDuplicateID(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL(), JetStream: true})
	ctx := context.Background()

	env, data := event(t, "p1", 1)
	for range 2 {
		if err := edge.PublishEvent(ctx, env, data); err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
	}
	other, otherData := event(t, "p1", 2)
	if err := edge.PublishEvent(ctx, other, otherData); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}

	stream, err := edge.Stream(ctx)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if info.Config.Name != natsbus.DefaultStream {
		t.Errorf("stream name = %q, want %q", info.Config.Name, natsbus.DefaultStream)
	}
	if info.State.Msgs != 2 {
		t.Errorf("stream holds %d messages, want 2: the event sent twice once, and the other", info.State.Msgs)
	}
}

// ackedUpTo polls the consumer until its ack floor reaches streamSeq.
func ackedUpTo(t *testing.T, b *natsbus.Bus, durable string, streamSeq uint64) {
	t.Helper()
	ctx := context.Background()
	pollUntil(t, "consumer acks", func() error {
		stream, err := b.Stream(ctx)
		if err != nil {
			return err
		}
		consumer, err := stream.Consumer(ctx, durable)
		if err != nil {
			return err
		}
		info, err := consumer.Info(ctx)
		if err != nil {
			return err
		}
		if info.AckFloor.Stream < streamSeq || info.NumAckPending != 0 {
			return fmt.Errorf("ack floor at stream sequence %d with %d pending, want %d and 0", info.AckFloor.Stream, info.NumAckPending, streamSeq)
		}
		return nil
	})
}

func TestDurableConsumerResumes(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	cfg := natsbus.Config{URL: srv.NATSURL(), JetStream: true}
	edge := newBus(t, cfg)
	ctx := context.Background()

	first := brokertest.NewCollector[bridge.EventMessage]()
	worker, err := natsbus.New(ctx, cfg, testLogger())
	if err != nil {
		t.Fatalf("natsbus.New: %v", err)
	}
	if err := worker.SubscribeEvents(ctx, "", "", first.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	publishEvents(t, edge, "p1", 1, 5)
	if got := seqs(t, first.WaitFor(t, "first events", atLeast[bridge.EventMessage](5))); !slices.Equal(got, seqRange(1, 5)) {
		t.Errorf("first worker got seqs %v, want 1..5", got)
	}
	ackedUpTo(t, edge, natsbus.DefaultDurable, 5)
	if err := worker.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	publishEvents(t, edge, "p1", 6, 10)
	second := brokertest.NewCollector[bridge.EventMessage]()
	restarted := newBus(t, cfg)
	if err := restarted.SubscribeEvents(ctx, "", "", second.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	second.WaitFor(t, "events sent while away", atLeast[bridge.EventMessage](5))
	ackedUpTo(t, edge, natsbus.DefaultDurable, 10)
	if got := seqs(t, second.Snapshot()); !slices.Equal(got, seqRange(6, 10)) {
		t.Errorf("restarted worker got seqs %v, want 6..10 without the acked 1..5", got)
	}
}

func TestConsumerSurvivesServerRestart(t *testing.T) {
	port := freePort(t)
	opts := natsbus.EmbeddedOptions{Port: port, StoreDir: t.TempDir()}
	srv := startServer(t, opts)
	cfg := natsbus.Config{URL: srv.NATSURL(), JetStream: true}
	edge, got := edgeAndWorker(t, cfg)
	ctx := context.Background()
	publishEvents(t, edge, "p1", 1, 3)
	got.WaitFor(t, "events before the restart", atLeast[bridge.EventMessage](3))
	ackedUpTo(t, edge, "workers_p1", 3)

	srv.Shutdown()
	startServer(t, opts)
	for seq := uint64(4); seq <= 6; seq++ {
		env, data := event(t, "p1", seq)
		pollUntil(t, "publish after the restart", func() error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return edge.PublishEvent(ctx, env, data)
		})
	}
	got.WaitFor(t, "events after the restart", atLeast[bridge.EventMessage](6))
	ackedUpTo(t, edge, "workers_p1", 6)
	if got := seqs(t, got.Snapshot()); !slices.Equal(got, seqRange(1, 6)) {
		t.Errorf("worker got seqs %v, want 1..6 once each", got)
	}
}

func TestCommandRequestReply(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{NoJetStream: true})
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL()})
	ctx := context.Background()

	got := brokertest.NewCollector[bridge.CommandMessage]()
	if err := edge.SubscribeCommands(ctx, "p1", func(m bridge.CommandMessage) {
		got.Add(m)
		if err := edge.PublishReply(ctx, m.Printer, m.Reply, []byte(`{"status":"accepted"}`)); err != nil {
			t.Errorf("PublishReply: %v", err)
		}
	}); err != nil {
		t.Fatalf("SubscribeCommands: %v", err)
	}

	client, err := nats.Connect(srv.NATSURL())
	if err != nil {
		t.Fatalf("connect client: %v", err)
	}
	defer client.Close()
	reply, err := client.Request(topics.NATSCommand("p1", bridge.CommandGcode), []byte(`{"id":"c-1","commands":["G28"]}`), waitTimeout)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if string(reply.Data) != `{"status":"accepted"}` {
		t.Errorf("reply = %s, want the accepted reply", reply.Data)
	}
	cmd := got.Snapshot()[0]
	if cmd.Reply == "" {
		t.Error("CommandMessage.Reply is empty for a NATS request")
	}
	if cmd.Kind != bridge.CommandGcode || cmd.Printer != "p1" {
		t.Errorf("printer/kind = %q/%q, want p1/gcode", cmd.Printer, cmd.Kind)
	}
	if cmd.Retained {
		t.Error("CommandMessage.Retained is set on NATS")
	}
}

func TestRepliesOnDefaultSubject(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{NoJetStream: true})
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL()})
	worker := newBus(t, natsbus.Config{URL: srv.NATSURL()})
	ctx := context.Background()

	got := brokertest.NewCollector[string]()
	if err := worker.SubscribeReplies(ctx, "", func(data []byte) { got.Add(string(data)) }); err != nil {
		t.Fatalf("SubscribeReplies: %v", err)
	}
	if err := edge.SubscribeCommands(ctx, "p1", func(bridge.CommandMessage) {}); err != nil {
		t.Fatalf("SubscribeCommands: %v", err)
	}
	if err := worker.PublishCommand(ctx, "p1", bridge.CommandJob, []byte(`{"id":"c-2","action":"pause"}`)); err != nil {
		t.Fatalf("PublishCommand: %v", err)
	}
	if err := edge.PublishReply(ctx, "p1", "", []byte("done")); err != nil {
		t.Fatalf("PublishReply: %v", err)
	}
	if v := got.WaitFor(t, "reply", atLeast[string](1)); v[0] != "done" {
		t.Errorf("reply = %q, want %q", v[0], "done")
	}
}

func TestStateStoredInBucket(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL(), JetStream: true})
	ctx := context.Background()

	if err := edge.PublishState(ctx, "p1", []byte(`{"state":"PRINTING"}`)); err != nil {
		t.Fatalf("PublishState: %v", err)
	}
	if err := edge.PublishAvailability(ctx, "p1", true); err != nil {
		t.Fatalf("PublishAvailability: %v", err)
	}
	kv, err := edge.KeyValue()
	if err != nil {
		t.Fatalf("KeyValue: %v", err)
	}
	for key, want := range map[string]string{"p1": `{"state":"PRINTING"}`, "p1.availability": "online"} {
		entry, err := kv.Get(ctx, key)
		if err != nil {
			t.Errorf("get %q from %s: %v", key, natsbus.StateBucket, err)
			continue
		}
		if string(entry.Value()) != want {
			t.Errorf("%s[%q] = %s, want %s", natsbus.StateBucket, key, entry.Value(), want)
		}
	}
}

func TestMQTTListenerGetsNATSEvent(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{MQTT: true})
	if srv.MQTTURL() == "" {
		t.Fatal("MQTTURL is empty with the MQTT listener on")
	}
	ctx := context.Background()
	mqttCtx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	consumer, err := mqtt.New(mqttCtx, mqtt.Config{URL: srv.MQTTURL()}, testLogger())
	if err != nil {
		t.Fatalf("mqtt.New on the NATS MQTT listener: %v", err)
	}
	defer consumer.Close()
	events := brokertest.NewCollector[bridge.EventMessage]()
	if err := consumer.SubscribeEvents(ctx, "p1", "", events.Add); err != nil {
		t.Fatalf("MQTT SubscribeEvents: %v", err)
	}

	edge := newBus(t, natsbus.Config{URL: srv.NATSURL(), JetStream: true})
	env, data := event(t, "p1", 7)
	if err := edge.PublishEvent(ctx, env, data); err != nil {
		t.Fatalf("NATS PublishEvent: %v", err)
	}
	msg := events.WaitFor(t, "event over MQTT", atLeast[bridge.EventMessage](1))[0]
	if string(msg.Data) != string(data) {
		t.Errorf("MQTT subscriber got %s, want %s", msg.Data, data)
	}
	if want := "mqtt:" + topics.MQTTEvent("p1", "ZChange"); msg.Source != want {
		t.Errorf("Source = %q, want %q", msg.Source, want)
	}

	// The other way: a command published over MQTT reaches the NATS side.
	commands := brokertest.NewCollector[bridge.CommandMessage]()
	if err := edge.SubscribeCommands(ctx, "p1", commands.Add); err != nil {
		t.Fatalf("NATS SubscribeCommands: %v", err)
	}
	if err := consumer.PublishCommand(ctx, "p1", bridge.CommandConnection, []byte(`{"id":"c-3","action":"connect"}`)); err != nil {
		t.Fatalf("MQTT PublishCommand: %v", err)
	}
	cmd := commands.WaitFor(t, "command over NATS", atLeast[bridge.CommandMessage](1))[0]
	if cmd.Kind != bridge.CommandConnection || cmd.Printer != "p1" {
		t.Errorf("printer/kind = %q/%q, want p1/connection", cmd.Printer, cmd.Kind)
	}
}

func TestNewFailsWithoutServer(t *testing.T) {
	url := fmt.Sprintf("nats://user:secret@127.0.0.1:%d", freePort(t))
	_, err := natsbus.New(context.Background(), natsbus.Config{URL: url}, testLogger())
	if err == nil {
		t.Fatal("New succeeded without a server")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error %q contains the password", err)
	}
}

func TestMQTTNeedsJetStream(t *testing.T) {
	if _, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{MQTT: true, NoJetStream: true}, testLogger()); err == nil {
		t.Fatal("StartEmbedded accepted MQTT without JetStream")
	}
}

func TestStreamNeedsJetStream(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{NoJetStream: true})
	b := newBus(t, natsbus.Config{URL: srv.NATSURL()})
	if _, err := b.Stream(context.Background()); err == nil {
		t.Error("Stream succeeded without JetStream")
	}
	if _, err := b.KeyValue(); err == nil {
		t.Error("KeyValue succeeded without JetStream")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestDeferredAckAndNak defers the acks of a JetStream consumer with
// MaxAckPending 3. All three events arrive while none is acked, a Nak
// delivers the first one again, and the acks move the ack floor.
func TestDeferredAckAndNak(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL(), JetStream: true})
	worker := newBus(t, natsbus.Config{URL: srv.NATSURL(), JetStream: true, MaxAckPending: 3})
	ctx := context.Background()

	var mu sync.Mutex
	var acks []bridge.AckFunc
	got := brokertest.NewCollector[bridge.EventMessage]()
	err := worker.SubscribeEvents(ctx, "", "", func(m bridge.EventMessage) {
		if m.Defer == nil {
			t.Error("a JetStream event message has no Defer")
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
	publishEvents(t, edge, "p1", 1, 3)
	if s := seqs(t, got.WaitFor(t, "three unacked events", atLeast[bridge.EventMessage](3))); !slices.Equal(s, seqRange(1, 3)) {
		t.Fatalf("seqs before any ack = %v, want 1..3", s)
	}

	mu.Lock()
	acks[0](false)
	mu.Unlock()
	if s := seqs(t, got.WaitFor(t, "the nakked event again", atLeast[bridge.EventMessage](4))); s[3] != 1 {
		t.Errorf("seq after the Nak = %d, want 1", s[3])
	}
	mu.Lock()
	for _, ack := range acks[1:] {
		ack(true)
	}
	mu.Unlock()
	ackedUpTo(t, edge, natsbus.DefaultDurable, 3)
	if s := seqs(t, got.Snapshot()); len(s) != 4 {
		t.Errorf("seqs = %v, want 1, 2, 3 and the redelivered 1", s)
	}
}

// TestCloseWhileServerDown closes a JetStream consumer's bus while its
// server is gone. A drain cannot work then, and Close must not report the
// reconnecting connection as a failure.
func TestCloseWhileServerDown(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{Port: -1})
	disconnected := make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	worker, err := natsbus.New(ctx, natsbus.Config{URL: srv.NATSURL(), JetStream: true,
		OnDisconnect: func(error) { once.Do(func() { close(disconnected) }) }}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.SubscribeEvents(ctx, "p1", "", func(bridge.EventMessage) {}); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	select {
	case <-disconnected:
	case <-ctx.Done():
		t.Fatal("the bus did not notice that the server stopped")
	}
	if err := worker.Close(); err != nil {
		t.Errorf("Close while the server is down: %v", err)
	}
}
