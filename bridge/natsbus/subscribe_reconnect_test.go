package natsbus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// TestSubscribeCommandsWhileDisconnected subscribes to commands while
// the server is down. The subscription must succeed and deliver commands
// once the server is back.
func TestSubscribeCommandsWhileDisconnected(t *testing.T) {
	port := freePort(t)
	srv := startServer(t, natsbus.EmbeddedOptions{Port: port, NoJetStream: true})
	disconnected := make(chan struct{})
	var once sync.Once
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL(), Name: "edge",
		OnDisconnect: func(error) { once.Do(func() { close(disconnected) }) }})
	srv.Shutdown()
	select {
	case <-disconnected:
	case <-time.After(waitTimeout):
		t.Fatal("the bus did not notice that the server stopped")
	}

	received := make(chan bridge.CommandMessage, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	err := edge.SubscribeCommands(context.Background(), "p1", func(m bridge.CommandMessage) {
		select {
		case received <- m:
		default:
		}
	})
	if err != nil {
		t.Fatalf("SubscribeCommands while disconnected: %v", err)
	}

	srv = startServer(t, natsbus.EmbeddedOptions{Port: port, NoJetStream: true})
	client := newBus(t, natsbus.Config{URL: srv.NATSURL(), Name: "client"})
	// The client cannot see when the edge's subscription reaches the
	// server after its reconnect, so it sends the command until one
	// arrives.
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		if err := client.PublishCommand(ctx, "p1", bridge.CommandGcode, []byte(`{"id":"c-1","commands":["M105"]}`)); err != nil {
			t.Fatalf("PublishCommand: %v", err)
		}
		select {
		case m := <-received:
			if m.Kind != bridge.CommandGcode {
				t.Errorf("command kind %q, want %q", m.Kind, bridge.CommandGcode)
			}
			return
		case <-ticker.C:
		case <-ctx.Done():
			t.Fatal("no command arrived after the server came back")
		}
	}
}
