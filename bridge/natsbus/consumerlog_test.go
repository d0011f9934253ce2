package natsbus_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// logBuffer is an io.Writer for a slog handler that tests read from
// while the bus writes to it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the log lines that contain every one of parts.
func (l *logBuffer) lines(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.buf.String()) {
		matches := true
		for _, p := range parts {
			matches = matches && strings.Contains(line, p)
		}
		if matches {
			out = append(out, line)
		}
	}
	return out
}

// newLoggedBus is newBus with the bus's log written to the returned
// buffer.
func newLoggedBus(t *testing.T, cfg natsbus.Config) (*natsbus.Bus, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	b, err := natsbus.New(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("natsbus.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, logs
}

// TestNewConsumerWarnsOfStoredEvents starts a worker of a new group on a
// stream that already holds events. Their hooks run at once, which a
// user who adds a group may not expect, so the bus warns with their
// number. A worker of the group that starts later, once they were
// delivered, does not warn.
func TestNewConsumerWarnsOfStoredEvents(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	cfg := natsbus.Config{URL: srv.NATSURL(), JetStream: true}
	edge := newBus(t, cfg)
	publishEvents(t, edge, "p1", 1, 3)

	worker, logs := newLoggedBus(t, cfg)
	got := brokertest.NewCollector[bridge.EventMessage]()
	if err := worker.SubscribeEvents(context.Background(), "p1", "late", got.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	if warned := logs.lines("level=WARN", "has delivered nothing yet", "pending=3"); len(warned) != 1 {
		t.Errorf("%d warnings with pending=3 for the new consumer, want 1; log:\n%s", len(warned), logs.lines(""))
	}
	got.WaitFor(t, "the stored events", atLeast[bridge.EventMessage](3))
	ackedUpTo(t, edge, "late_p1", 3)

	second, secondLogs := newLoggedBus(t, cfg)
	if err := second.SubscribeEvents(context.Background(), "p1", "late", func(bridge.EventMessage) {}); err != nil {
		t.Fatalf("SubscribeEvents of the second worker: %v", err)
	}
	if warned := secondLogs.lines("has delivered nothing yet"); len(warned) != 0 {
		t.Errorf("the second worker warned of stored events: %q", warned)
	}
	if started := secondLogs.lines("consuming events", "pending=0"); len(started) != 1 {
		t.Errorf("%d lines \"consuming events\" with pending=0, want 1", len(started))
	}
}

// TestConsumerErrorThenEventsLogged deletes the worker's consumer, which
// nats.go reports as a consumer error, and logs that events come again
// once the restored consumer delivers one.
func TestConsumerErrorThenEventsLogged(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{})
	cfg := natsbus.Config{URL: srv.NATSURL(), JetStream: true}
	edge := newBus(t, cfg)
	worker, logs := newLoggedBus(t, cfg)
	got := brokertest.NewCollector[bridge.EventMessage]()
	if err := worker.SubscribeEvents(context.Background(), "p1", "workers", got.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	publishEvents(t, edge, "p1", 1, 1)
	got.WaitFor(t, "the first event", atLeast[bridge.EventMessage](1))
	ackedUpTo(t, edge, "workers_p1", 1)
	if again := logs.lines("delivers events again"); len(again) != 0 {
		t.Fatalf("logged %q before any consumer error", again)
	}

	stream, err := edge.Stream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteConsumer(context.Background(), "workers_p1"); err != nil {
		t.Fatalf("delete consumer: %v", err)
	}
	pollUntil(t, "consumer error logged", func() error {
		if len(logs.lines("level=WARN", "JetStream consumer error")) == 0 {
			return errors.New("no consumer error logged yet")
		}
		return nil
	})
	publishUntilTaken(t, edge, "p1", 2, 2)
	got.WaitFor(t, "the event after the delete", atLeast[bridge.EventMessage](2))
	if again := logs.lines("level=INFO", "delivers events again"); len(again) != 1 {
		t.Errorf("%d lines saying that the consumer delivers events again, want 1", len(again))
	}
}
