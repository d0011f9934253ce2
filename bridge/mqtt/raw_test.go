package mqtt

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge/brokertest"
)

func TestRawPublishSubscribeRetained(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	ctx := context.Background()
	newRawBus := func(id string) *Bus {
		b, err := New(ctx, Config{URL: url, ClientID: id}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	pub := newRawBus("raw-pub")
	if err := pub.PublishRaw(ctx, "homeassistant/device/x/config", true, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if err := pub.PublishRaw(ctx, "a/+/b", false, []byte("x")); err == nil {
		t.Error("PublishRaw accepted a topic with a wildcard")
	}

	var mu sync.Mutex
	var got []RawMessage
	sub := newRawBus("raw-sub")
	if err := sub.SubscribeRaw(ctx, "homeassistant/#", func(m RawMessage) {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := pub.PublishRaw(ctx, "homeassistant/status", false, []byte("online")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d messages, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if got[0].Topic != "homeassistant/device/x/config" || !got[0].Retained || string(got[0].Payload) != "kept" {
		t.Errorf("first message = %+v, want the retained config", got[0])
	}
	if got[1].Topic != "homeassistant/status" || got[1].Retained {
		t.Errorf("second message = %+v, want the live status", got[1])
	}
}
