package main

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// topicRecorder keeps every message of one MQTT subscription in arrival
// order. One subscription delivers in order, so a message the test
// publishes last (a barrier) arrives after everything the broker took
// before it.
type topicRecorder struct {
	mu       sync.Mutex
	messages []mqtt.RawMessage
}

func (r *topicRecorder) add(m mqtt.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages = append(r.messages, m)
}

// payloads returns the payloads received on topic, in arrival order.
func (r *topicRecorder) payloads(topic string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.messages {
		if m.Topic == topic {
			out = append(out, string(m.Payload))
		}
	}
	return out
}

// TestEdgeAvailabilityOncePerConnection runs an edge process against
// Mosquitto through a proxy, cuts its connection once and stops it with
// SIGTERM. A subscriber must see "online" once per connection and
// "offline" once per loss: the last will after the cut, and the marker
// of the clean stop.
func TestEdgeAvailabilityOncePerConnection(t *testing.T) {
	bin := buildPrintbridge(t)
	dir := t.TempDir()
	broker := brokertest.StartMosquittoProcess(t, 0)
	proxy := brokertest.StartProxy(t, broker.Addr())
	const printerID = "avail1"
	topics := bridge.Topics{}
	availability := topics.MQTTAvailability(printerID)
	connected := topics.MQTTEvent(printerID, bridge.EventConnected)
	barrier := "printbridge/" + printerID + "/test-barrier"

	rec := &topicRecorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watcher, err := mqtt.New(ctx, mqtt.Config{URL: broker.URL(), ClientID: "availability-watcher"}, brokertest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watcher.Close() })
	if err := watcher.SubscribeRaw(ctx, "printbridge/"+printerID+"/#", rec.add); err != nil {
		t.Fatal(err)
	}

	link := filepath.Join(dir, "printer-tty")
	vp := newProc(t, dir, "virtual-printer", bin, "virtual-printer", "--link", link, "--log-level", "warn")
	vp.ready = "virtual printer ready"
	vp.Start()
	edge := newProc(t, dir, "edge", bin, "edge", "--port", link, "--printer", printerID,
		"--data-dir", filepath.Join(dir, "edge-data"), "--files", filepath.Join(dir, "files"), "--metrics-listen", "",
		"--mqtt", proxy.URL())
	edge.Start()
	// The edge publishes its start markers before any event.
	waitFor(t, "Connected event", time.Minute, func() bool { return len(rec.payloads(connected)) > 0 })

	proxy.Cut()
	waitFor(t, "online after the reconnect", time.Minute, func() bool {
		markers := rec.payloads(availability)
		will := slices.Index(markers, "offline")
		return will >= 0 && slices.Contains(markers[will:], "online")
	})
	if err := edge.Stop(); err != nil {
		t.Fatalf("the edge exited with %v after SIGTERM", err)
	}

	// The edge waits for the broker's PUBACK of its offline marker
	// (bounded by the bus's close timeout) before it exits, so the
	// barrier arrives after everything the edge published.
	if err := watcher.PublishRaw(ctx, barrier, false, []byte("end")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "barrier message", 20*time.Second, func() bool { return len(rec.payloads(barrier)) > 0 })
	want := []string{"online", "offline", "online", "offline"}
	if got := rec.payloads(availability); !slices.Equal(got, want) {
		t.Errorf("availability markers %q, want %q: online once per connection, the last will after the cut, offline at the stop", got, want)
	}
}
