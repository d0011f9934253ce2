package octoprintmqtt

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// watcher records messages of one topic filter on a real broker.
type watcher struct {
	mu   sync.Mutex
	msgs []mqtt.RawMessage
}

func (w *watcher) add(m mqtt.RawMessage) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, m)
}

func (w *watcher) on(topic string) []mqtt.RawMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []mqtt.RawMessage
	for _, m := range w.msgs {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

func newBus(tb testing.TB, url, id string) *mqtt.Bus {
	tb.Helper()
	b, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: id}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

func watch(tb testing.TB, url, filter string) *watcher {
	tb.Helper()
	w := &watcher{}
	if err := newBus(tb, url, "watcher").SubscribeRaw(context.Background(), filter, w.add); err != nil {
		tb.Fatal(err)
	}
	return w
}

func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startMirror runs a mirror until the test ends.
func startMirror(tb testing.TB, url string) *Mirror {
	tb.Helper()
	m, err := New(context.Background(), Config{URL: url, PrinterID: "p1", ShutdownWait: time.Millisecond}, brokertest.Logger())
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("mirror stopped with error: %v", err)
		}
	})
	return m
}

func lastPayload(msgs []mqtt.RawMessage) string {
	if len(msgs) == 0 {
		return ""
	}
	return string(msgs[len(msgs)-1].Payload)
}

func TestMirrorLastWill(t *testing.T) {
	broker := brokertest.StartMosquittoProcess(t, 0)
	proxy := brokertest.StartProxy(t, broker.Addr())
	w := watch(t, broker.URL(), "octoPrint/mqtt")
	startMirror(t, proxy.URL())
	waitUntil(t, "connected marker", func() bool { return lastPayload(w.on("octoPrint/mqtt")) == "connected" })

	// A lost connection makes the broker publish the last will.
	proxy.SetDown(true)
	waitUntil(t, "last will", func() bool { return lastPayload(w.on("octoPrint/mqtt")) == "disconnected" })
	if msgs := w.on("octoPrint/mqtt"); len(msgs) < 2 {
		t.Fatalf("marker messages = %d, want connected then disconnected", len(msgs))
	}
	proxy.SetDown(false)
	waitUntil(t, "connected marker after the reconnect", func() bool { return lastPayload(w.on("octoPrint/mqtt")) == "connected" })
}

func TestMirrorEventAndTemperature(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	w := watch(t, url, "octoPrint/#")
	startMirror(t, url)
	waitUntil(t, "progress reset after the first connect", func() bool { return len(w.on("octoPrint/progress/printing")) > 0 })
	var reset map[string]any
	if err := json.Unmarshal(w.on("octoPrint/progress/printing")[0].Payload, &reset); err != nil {
		t.Fatal(err)
	}
	if reset["path"] != "" || reset["location"] != "" || reset["progress"] != 0.0 {
		t.Errorf("progress reset = %v, want empty location and path and progress 0", reset)
	}

	edge := newBus(t, url, "edge")
	ctx := context.Background()
	z := 0.4
	env := &bridge.Envelope{Schema: 1, ID: bridge.NewEventID(time.Now()), Seq: 1, Printer: "p1", Event: bridge.EventZChange,
		Time: time.Unix(1764800000, 500e6), Payload: bridge.Payload{{Key: "new", Value: z}, {Key: "old", Value: nil}}}
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if err := edge.PublishEvent(ctx, env, data); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "mirrored ZChange", func() bool { return len(w.on("octoPrint/event/ZChange")) > 0 })
	if got, want := string(w.on("octoPrint/event/ZChange")[0].Payload), `{"new":0.4,"old":null,"_event":"ZChange","_timestamp":1764800000}`; got != want {
		t.Errorf("mirrored ZChange = %s, want %s", got, want)
	}

	// Changes below the threshold are not published, as in the plugin.
	for _, actual := range []string{"200.0", "200.05", "201.0"} {
		state := `{"state_id": "OPERATIONAL", "flags": {"printing": false}, "job": null,
			"temperatures": {"tool0": {"actual": ` + actual + `, "target": 210.0}, "chamber": {"actual": 0.0, "target": null}},
			"last_seen": "2026-12-03T21:00:00Z"}`
		if err := edge.PublishState(ctx, "p1", []byte(state)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "temperature 201.0", func() bool {
		return lastPayload(w.on("octoPrint/temperature/tool0")) == `{"actual":201.0,"target":210.0,"_timestamp":1796331600}`
	})
	var actuals []string
	for _, m := range w.on("octoPrint/temperature/tool0") {
		var v struct {
			Actual json.Number `json:"actual"`
		}
		if err := json.Unmarshal(m.Payload, &v); err != nil {
			t.Fatal(err)
		}
		actuals = append(actuals, v.Actual.String())
	}
	if len(actuals) != 2 || actuals[0] != "200.0" || actuals[1] != "201.0" {
		t.Errorf("published tool0 actuals = %v, want [200.0 201.0]", actuals)
	}
	if n := len(w.on("octoPrint/temperature/chamber")); n != 0 {
		t.Errorf("chamber reading 0 with no target was published %d times, want none", n)
	}
}

func TestEventPayloadKeyOrder(t *testing.T) {
	env := &bridge.Envelope{Event: bridge.EventPrintDone, Time: time.Unix(1700000000, 0),
		Payload: bridge.Payload{{Key: "name", Value: "a.gcode"}, {Key: "time", Value: 12.0}}}
	got, err := EventPayload(env)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"a.gcode","time":12.0,"_event":"PrintDone","_timestamp":1700000000}`; string(got) != want {
		t.Errorf("EventPayload = %s, want %s", got, want)
	}
	empty, err := EventPayload(&bridge.Envelope{Event: bridge.EventHome, Time: time.Unix(5, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"_event":"Home","_timestamp":5}`; string(empty) != want {
		t.Errorf("EventPayload without payload = %s, want %s", empty, want)
	}
}
