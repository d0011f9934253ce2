package natsbus_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// TestPendingLimitCountsDrops blocks the event handler, fills the
// subscription's pending list beyond EventPendingMessages and checks that
// every event is either handled or passed to OnEventsDropped.
func TestPendingLimitCountsDrops(t *testing.T) {
	const (
		events       = 100
		pendingLimit = 10
	)
	srv := startServer(t, natsbus.EmbeddedOptions{NoJetStream: true})
	var dropped atomic.Int64
	worker := newBus(t, natsbus.Config{URL: srv.NATSURL(), EventPendingMessages: pendingLimit,
		OnEventsDropped: func(n int) { dropped.Add(int64(n)) }})
	edge := newBus(t, natsbus.Config{URL: srv.NATSURL()})

	release := make(chan struct{})
	var once sync.Once
	handled := brokertest.NewCollector[bridge.EventMessage]()
	err := worker.SubscribeEvents(context.Background(), "", "", func(m bridge.EventMessage) {
		once.Do(func() { <-release })
		handled.Add(m)
	})
	if err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	// The reply comes after the events on the same server connection,
	// so once it arrives the client has taken every event off the socket
	// while the handler still waits on the first.
	marker := brokertest.NewCollector[[]byte]()
	if err := worker.SubscribeReplies(context.Background(), "p1", marker.Add); err != nil {
		t.Fatalf("SubscribeReplies: %v", err)
	}
	publishEvents(t, edge, "p1", 1, events)
	if err := edge.PublishReply(context.Background(), "p1", "", []byte("marker")); err != nil {
		t.Fatalf("PublishReply: %v", err)
	}
	marker.WaitFor(t, "the marker reply", atLeast[[]byte](1))
	close(release)

	pollUntil(t, "every event handled or counted as dropped", func() error {
		if n := int64(len(handled.Snapshot())) + dropped.Load(); n != events {
			return fmt.Errorf("handled %d + dropped %d = %d, want %d", len(handled.Snapshot()), dropped.Load(), n, events)
		}
		return nil
	})
	if n := len(handled.Snapshot()); n > pendingLimit+1 {
		t.Errorf("handled %d events, want at most the pending limit %d and the one in the handler", n, pendingLimit)
	}
	if dropped.Load() == 0 {
		t.Error("no events counted as dropped, although the pending list was full")
	}
}
