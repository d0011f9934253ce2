package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// answeringEdge subscribes to printer's commands on a bus of its own and
// replies to each on the message's reply subject, as the edge does.
func answeringEdge(t *testing.T, url, printer string) *brokertest.Collector[bridge.CommandMessage] {
	t.Helper()
	edge := newBus(t, natsbus.Config{URL: url})
	got := brokertest.NewCollector[bridge.CommandMessage]()
	ctx := context.Background()
	if err := edge.SubscribeCommands(ctx, printer, func(m bridge.CommandMessage) {
		got.Add(m)
		if err := edge.PublishReply(ctx, m.Printer, m.Reply, []byte(`{"id":"`+string(m.Data)+`","status":"accepted"}`)); err != nil {
			t.Errorf("PublishReply: %v", err)
		}
	}); err != nil {
		t.Fatalf("SubscribeCommands: %v", err)
	}
	return got
}

func TestCommandWithoutEdgeReportsNoSubscriber(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{NoJetStream: true})
	commands := answeringEdge(t, srv.NATSURL(), "p1")
	worker := newBus(t, natsbus.Config{URL: srv.NATSURL()})
	ctx := context.Background()
	replies := brokertest.NewCollector[string]()
	if err := worker.SubscribeReplies(ctx, "", func(data []byte) { replies.Add(string(data)) }); err != nil {
		t.Fatalf("SubscribeReplies: %v", err)
	}

	err := worker.PublishCommand(ctx, "p2", bridge.CommandGcode, []byte("to-p2"))
	if !errors.Is(err, bridge.ErrNoSubscriber) {
		t.Fatalf("PublishCommand to a printer without an edge: err = %v, want ErrNoSubscriber", err)
	}
	if err := worker.PublishCommand(ctx, "p1", bridge.CommandGcode, []byte("to-p1")); err != nil {
		t.Fatalf("PublishCommand to a printer with an edge: %v", err)
	}
	got := replies.WaitFor(t, "the edge's reply", atLeast[string](1))
	// The server's status for p2 came first, and it must not reach the
	// reply handler as an empty reply.
	if got[0] != `{"id":"to-p1","status":"accepted"}` {
		t.Errorf("first reply = %q, want the edge's reply to p1's command", got[0])
	}
	if m := commands.Snapshot()[0]; m.Reply != topics.NATSReply("p1") {
		t.Errorf("the edge got reply subject %q, want the printer's reply subject %q", m.Reply, topics.NATSReply("p1"))
	}
}

func TestCommandWithoutReplySubscriptionIsNotChecked(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{NoJetStream: true})
	client := newBus(t, natsbus.Config{URL: srv.NATSURL()})
	// Without a subscription to the reply subject the server sends no
	// status, so the bus cannot tell and reports success.
	if err := client.PublishCommand(context.Background(), "p2", bridge.CommandGcode, []byte("x")); err != nil {
		t.Fatalf("PublishCommand: %v", err)
	}
}

// TestConcurrentCommandsAttributedBySubject publishes to a printer with an
// edge and to one without from many goroutines at once: each status must
// be counted for the subject it names only.
func TestConcurrentCommandsAttributedBySubject(t *testing.T) {
	srv := startServer(t, natsbus.EmbeddedOptions{NoJetStream: true})
	worker := newBus(t, natsbus.Config{URL: srv.NATSURL()})
	if err := worker.SubscribeReplies(context.Background(), "", func([]byte) {}); err != nil {
		t.Fatalf("SubscribeReplies: %v", err)
	}
	checkConcurrentCommandsOn(t, srv.NATSURL(), worker)
}

// TestNoSubscriberOnDebianServer runs the check against the nats-server
// that Debian 12 ships, 2.9.10, whose status has no Nats-Subject header.
// The bus publishes one command at a time there from the start, so
// concurrent commands to several printers are attributed too, also
// before the first status came.
func TestNoSubscriberOnDebianServer(t *testing.T) {
	url, version := brokertest.StartNATSProcess(t)
	t.Logf("nats-server %s", version)
	worker := newBus(t, natsbus.Config{URL: url})
	if err := worker.SubscribeReplies(context.Background(), "", func([]byte) {}); err != nil {
		t.Fatalf("SubscribeReplies: %v", err)
	}
	checkConcurrentCommandsOn(t, url, worker)
	err := worker.PublishCommand(context.Background(), "p2", bridge.CommandGcode, []byte("lone"))
	if !errors.Is(err, bridge.ErrNoSubscriber) {
		t.Fatalf("PublishCommand to a printer without an edge: err = %v, want ErrNoSubscriber", err)
	}
}

func TestStatusNamesSubjectByVersion(t *testing.T) {
	for version, want := range map[string]bool{
		"2.9.10":      false,
		"2.11.9":      false,
		"2.12.0":      true,
		"2.15.3":      true,
		"2.12.0-beta": true,
		"3.0.0":       true,
		"":            false,
		"v2.12.0":     false,
	} {
		if got := natsbus.StatusNamesSubject(version); got != want {
			t.Errorf("StatusNamesSubject(%q) = %t, want %t", version, got, want)
		}
	}
}

// checkConcurrentCommandsOn publishes 40 commands to p1, which gets an
// edge, and 40 to p2, which has none, from 80 goroutines on worker, which
// subscribes to the replies. Every p2 command and no p1 command must
// report ErrNoSubscriber.
func checkConcurrentCommandsOn(t *testing.T, url string, worker *natsbus.Bus) {
	t.Helper()
	commands := answeringEdge(t, url, "p1")
	ctx := context.Background()
	const each = 40
	errs := make(map[string][]error)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range each {
		for _, printer := range []string{"p1", "p2"} {
			wg.Go(func() {
				err := worker.PublishCommand(ctx, printer, bridge.CommandGcode, []byte(fmt.Sprintf("%s-%d", printer, i)))
				mu.Lock()
				errs[printer] = append(errs[printer], err)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	for _, err := range errs["p1"] {
		if err != nil {
			t.Errorf("PublishCommand to p1, which has an edge: %v", err)
		}
	}
	reported := 0
	for _, err := range errs["p2"] {
		switch {
		case errors.Is(err, bridge.ErrNoSubscriber):
			reported++
		case err != nil:
			t.Errorf("PublishCommand to p2: %v", err)
		}
	}
	if reported != each {
		t.Errorf("%d of %d commands to p2 reported ErrNoSubscriber, want all", reported, each)
	}
	commands.WaitFor(t, "every command to p1", atLeast[bridge.CommandMessage](each))
}
