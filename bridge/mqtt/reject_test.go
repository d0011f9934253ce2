package mqtt_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// A reply topic with a wildcard is rejected before it reaches the broker,
// which would close the connection, and the bus stays usable.
func TestPublishReplyWildcardRejected(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	var logs syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := mqtt.New(ctx, mqtt.Config{URL: url, ClientID: "reject-wildcard", Printer: "p1", Topics: topics},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan string, 4)
	if err := b.SubscribeRaw(ctx, "printbridge/p1/reply", func(m mqtt.RawMessage) { got <- string(m.Payload) }); err != nil {
		t.Fatal(err)
	}
	// Mosquitto closes the connection for a topic with U+FFFE or U+FFFF.
	for _, topic := range []string{"x/#", "printbridge/+/reply", "a\x00b", strings.Repeat("a", 65536), "a/\uffff", "a/\ufffe"} {
		err := b.PublishReply(ctx, "p1", topic, []byte(`{"id":"w1"}`))
		if err == nil {
			t.Errorf("PublishReply to %.20q succeeded, want an error", topic)
		}
	}
	if err := b.PublishReply(ctx, "p1", "", []byte(`{"id":"after"}`)); err != nil {
		t.Fatalf("PublishReply after the rejected topics: %v", err)
	}
	select {
	case payload := <-got:
		if payload != `{"id":"after"}` {
			t.Errorf("reply = %s, want the one after the rejected topics", payload)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no reply after the rejected topics")
	}
	if strings.Contains(logs.String(), "lost connection") {
		t.Errorf("the bus lost its connection; log:\n%s", logs.String())
	}
}

// A message that makes the broker close the connection (here one over
// mosquitto's max_packet_size) is dropped after a few reconnects, instead
// of being sent again after every reconnect forever.
func TestBrokerRejectedMessageDropped(t *testing.T) {
	proc := brokertest.StartMosquittoWithOptions(t, brokertest.MosquittoOptions{Config: []string{"max_packet_size 2048"}})
	var logs syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := mqtt.New(ctx, mqtt.Config{URL: proc.URL(), ClientID: "reject-large", Printer: "p1", Topics: topics},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan string, 4)
	if err := b.SubscribeRaw(ctx, "printbridge/p1/reply", func(m mqtt.RawMessage) { got <- string(m.Payload) }); err != nil {
		t.Fatal(err)
	}

	// The result is not checked: paho 1.5 completes the first token
	// without an error when its resume replaces it.
	shortCtx, shortCancel := context.WithTimeout(ctx, time.Second)
	_ = b.PublishReply(shortCtx, "p1", "", []byte(strings.Repeat("x", 4096)))
	shortCancel()

	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(logs.String(), "dropping an MQTT message") {
		if time.Now().After(deadline) {
			t.Fatalf("the rejected message was never dropped; log:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(logs.String(), "another client probably uses the same client id") {
		t.Errorf("a rejected message was reported as a client id clash; log:\n%s", logs.String())
	}
	if err := b.PublishReply(ctx, "p1", "", []byte(`{"id":"after"}`)); err != nil {
		t.Fatalf("PublishReply after the drop: %v", err)
	}
	for {
		select {
		case payload := <-got:
			if payload == `{"id":"after"}` {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no reply after the drop; log:\n%s", logs.String())
		}
	}
}
