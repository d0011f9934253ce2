package edge_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/edge"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
	dto "github.com/prometheus/client_model/go"
)

// presenceTestWait is the probe wait of the tests. The brokers run on
// loopback, where a response takes milliseconds. On a machine so slow
// that a response misses the wait, the edge starts and the test fails, so
// it cannot pass wrongly.
const presenceTestWait = 2 * time.Second

// presenceBroker connects presence buses to one broker.
type presenceBroker struct {
	name string
	// addr is the broker's host:port, and scheme the URL scheme of its
	// clients.
	addr   string
	scheme string
	// connect connects to url, and calls onUp after every reconnect.
	connect func(t *testing.T, clientID, url string, onUp func()) bridge.PresenceBus
}

func presenceBrokers(t *testing.T) []presenceBroker {
	t.Helper()
	natsURL := brokertest.StartNATS(t, false, false).NATSURL()
	mqttURL := brokertest.StartMosquitto(t)
	return []presenceBroker{
		{"nats", strings.TrimPrefix(natsURL, "nats://"), "nats://", func(t *testing.T, clientID, url string, onUp func()) bridge.PresenceBus {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			b, err := natsbus.New(ctx, natsbus.Config{URL: url, Name: clientID, OnReconnect: onUp}, brokertest.Logger())
			if err != nil {
				t.Fatalf("natsbus.New: %v", err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		}},
		{"mosquitto", strings.TrimPrefix(mqttURL, "tcp://"), "tcp://", func(t *testing.T, clientID, url string, onUp func()) bridge.PresenceBus {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			b, err := mqtt.New(ctx, mqtt.Config{URL: url, ClientID: clientID, OnConnect: onUp}, brokertest.Logger())
			if err != nil {
				t.Fatalf("mqtt.New: %v", err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		}},
	}
}

func (b presenceBroker) url() string { return b.scheme + b.addr }

// presenceEdge is one presence check with its own connection, logs and
// metrics, stopped when the test ends.
type presenceEdge struct {
	p       *edge.Presence
	bus     bridge.PresenceBus
	metrics *edge.Metrics
	logs    *lockedBuffer
	ctx     context.Context
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newPresenceEdge(t *testing.T, broker presenceBroker, printer, name string, wait time.Duration) *presenceEdge {
	t.Helper()
	return newPresenceEdgeAt(t, broker, broker.url(), printer, name, wait)
}

// newPresenceEdgeAt is newPresenceEdge that connects to url, such as a
// proxy in front of the broker.
func newPresenceEdgeAt(t *testing.T, broker presenceBroker, url, printer, name string, wait time.Duration) *presenceEdge {
	t.Helper()
	logs := &lockedBuffer{}
	metrics := edge.NewMetrics(nil)
	p, err := edge.NewPresence(edge.PresenceConfig{Printer: printer, DataDir: "/data/" + name, ProbeWait: wait, Interval: time.Hour},
		slog.New(slog.NewTextHandler(logs, nil)), metrics)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pe := &presenceEdge{p: p, bus: broker.connect(t, "presence-test-"+name, url, p.Announce), metrics: metrics, logs: logs, ctx: ctx}
	t.Cleanup(func() {
		cancel()
		p.Close()
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, logs.String())
		}
	})
	return pe
}

func (pe *presenceEdge) start() error { return pe.p.Start(pe.ctx, pe.bus) }

func counterValue(t *testing.T, m *edge.Metrics, kind string) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.DuplicateEdges.WithLabelValues(kind).Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetCounter().GetValue()
}

func gaugeValue(t *testing.T, m *edge.Metrics) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.CommandsStopped.Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetGauge().GetValue()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPresenceSecondEdgeRefused(t *testing.T) {
	for _, broker := range presenceBrokers(t) {
		t.Run(broker.name, func(t *testing.T) {
			first := newPresenceEdge(t, broker, "twin", "first", presenceTestWait)
			if err := first.start(); err != nil {
				t.Fatalf("first edge: %v", err)
			}
			second := newPresenceEdge(t, broker, "twin", "second", presenceTestWait)
			err := second.start()
			var dup *edge.DuplicateEdgeError
			if !errors.As(err, &dup) {
				t.Fatalf("second edge started with %v, want a DuplicateEdgeError", err)
			}
			if dup.Other != first.p.Instance() {
				t.Errorf("error names %+v, want the first edge %+v", dup.Other, first.p.Instance())
			}
			if !dup.OtherRunning {
				t.Error("error says the first edge was starting, want running")
			}
			for _, part := range []string{"another edge of printer twin is running", first.p.Instance().ID, "data dir /data/first",
				fmt.Sprintf("pid %d", first.p.Instance().PID), "Stop the other edge, or give this printer its own --printer id"} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not contain %q", err, part)
				}
			}
			waitUntil(t, "the first edge's warning", func() bool {
				return strings.Contains(first.logs.String(), "another edge of this printer id is starting") &&
					strings.Contains(first.logs.String(), "other_instance="+second.p.Instance().ID)
			})
			if got := counterValue(t, first.metrics, "probe"); got != 1 {
				t.Errorf("first edge counted %v probes, want 1", got)
			}
			if err := first.p.CommandsStopped(); err != nil {
				t.Errorf("first edge stopped its commands: %v", err)
			}
			if strings.Contains(second.logs.String(), "did not come back") {
				t.Errorf("the second edge's own probe did not come back:\n%s", second.logs.String())
			}
		})
	}
}

func TestPresenceSimultaneousStartOneWins(t *testing.T) {
	for _, broker := range presenceBrokers(t) {
		t.Run(broker.name, func(t *testing.T) {
			for round := range 5 {
				printer := fmt.Sprintf("race%d", round)
				edges := []*presenceEdge{
					newPresenceEdge(t, broker, printer, fmt.Sprintf("a%d", round), presenceTestWait),
					newPresenceEdge(t, broker, printer, fmt.Sprintf("b%d", round), presenceTestWait),
				}
				errs := make([]error, len(edges))
				var wg sync.WaitGroup
				for i, pe := range edges {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs[i] = pe.start()
					}()
				}
				wg.Wait()
				if (errs[0] == nil) == (errs[1] == nil) {
					t.Fatalf("round %d: start errors %v and %v, want exactly one edge refused", round, errs[0], errs[1])
				}
				winner, loser := 0, 1
				if errs[0] != nil {
					winner, loser = 1, 0
				}
				var dup *edge.DuplicateEdgeError
				if !errors.As(errs[loser], &dup) {
					t.Fatalf("round %d: refused with %v, want a DuplicateEdgeError", round, errs[loser])
				}
				if dup.Other.ID != edges[winner].p.Instance().ID {
					t.Errorf("round %d: the refused edge names %s, want the winner %s", round, dup.Other.ID, edges[winner].p.Instance().ID)
				}
				// The winner may have finished its wait before the other's
				// probe came, and then it was running. Otherwise both were
				// starting, and the earlier start wins.
				if !dup.OtherRunning && edges[loser].p.Instance().Started.Before(edges[winner].p.Instance().Started) {
					t.Errorf("round %d: the edge that started first lost to one that was starting too", round)
				}
				if err := edges[winner].p.CommandsStopped(); err != nil {
					t.Errorf("round %d: the winner stopped its commands: %v", round, err)
				}
			}
		})
	}
}

func TestPresenceOtherPrinterNotReported(t *testing.T) {
	for _, broker := range presenceBrokers(t) {
		t.Run(broker.name, func(t *testing.T) {
			one := newPresenceEdge(t, broker, "one", "one", presenceTestWait)
			two := newPresenceEdge(t, broker, "two", "two", presenceTestWait)
			if err := one.start(); err != nil {
				t.Fatalf("edge of printer one: %v", err)
			}
			if err := two.start(); err != nil {
				t.Fatalf("edge of printer two: %v", err)
			}
			for _, pe := range []*presenceEdge{one, two} {
				for _, kind := range []string{"probe", "running"} {
					if got := counterValue(t, pe.metrics, kind); got != 0 {
						t.Errorf("%s messages counted: %v, want 0", kind, got)
					}
				}
				if strings.Contains(pe.logs.String(), "another edge") {
					t.Errorf("an edge reported another edge of its printer id:\n%s", pe.logs.String())
				}
			}
		})
	}
}

// TestPresencePartitionStopsNewerEdge cuts the older edge off the broker
// while a newer edge of its printer id starts, so the newer one hears no
// answer and runs. Once the older edge is back, it announces itself, and
// the newer edge stops taking commands while the older one keeps them.
func TestPresencePartitionStopsNewerEdge(t *testing.T) {
	for _, broker := range presenceBrokers(t) {
		t.Run(broker.name, func(t *testing.T) {
			proxy := brokertest.StartProxy(t, broker.addr)
			older := newPresenceEdgeAt(t, broker, broker.scheme+proxy.Addr(), "split", "older", presenceTestWait)
			if err := older.start(); err != nil {
				t.Fatalf("older edge: %v", err)
			}
			proxy.SetDown(true)
			newer := newPresenceEdge(t, broker, "split", "newer", presenceTestWait)
			if err := newer.start(); err != nil {
				t.Fatalf("newer edge during the partition: %v", err)
			}
			if err := newer.p.CommandsStopped(); err != nil {
				t.Fatalf("newer edge stopped its commands before the partition healed: %v", err)
			}
			proxy.SetDown(false)

			waitUntil(t, "the newer edge to stop its commands", func() bool { return newer.p.CommandsStopped() != nil })
			err := newer.p.CommandsStopped()
			for _, part := range []string{"printer split has another live edge that started first", older.p.Instance().ID,
				"This edge (instance " + newer.p.Instance().ID, "Stop one of the two edges"} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("reason %q does not contain %q", err, part)
				}
			}
			if got := gaugeValue(t, newer.metrics); got != 1 {
				t.Errorf("newer edge printbridge_commands_stopped = %v, want 1", got)
			}
			if !strings.Contains(newer.logs.String(), "this edge stops taking commands") {
				t.Errorf("newer edge logged no error about stopping its commands:\n%s", newer.logs.String())
			}
			waitUntil(t, "the older edge's error", func() bool {
				return strings.Contains(older.logs.String(), "this edge started first and goes on taking commands")
			})
			if err := older.p.CommandsStopped(); err != nil {
				t.Errorf("older edge stopped its commands: %v", err)
			}
			if got := gaugeValue(t, older.metrics); got != 0 {
				t.Errorf("older edge printbridge_commands_stopped = %v, want 0", got)
			}
			if got := counterValue(t, older.metrics, "running"); got < 1 {
				t.Errorf("older edge counted %v messages of a running edge, want at least 1", got)
			}
		})
	}
}

func TestPresenceInvalidMessageCounted(t *testing.T) {
	for _, broker := range presenceBrokers(t) {
		t.Run(broker.name, func(t *testing.T) {
			pe := newPresenceEdge(t, broker, "strict", "strict", presenceTestWait)
			if err := pe.start(); err != nil {
				t.Fatal(err)
			}
			sender := broker.connect(t, "presence-test-sender", broker.url(), nil)
			bad := []string{
				`not json`,
				`{"type":"probe","printer":"other","state":"starting","instance":"x","started":"2025-01-01T00:00:00Z"}`,
				`{"type":"hello","printer":"strict","state":"starting","instance":"x","started":"2025-01-01T00:00:00Z"}`,
				`{"type":"present","printer":"strict","state":"running","instance":"","started":"2025-01-01T00:00:00Z"}`,
				`{"type":"present","printer":"strict","state":"running","instance":"x"}`,
			}
			for _, data := range bad {
				if err := sender.PublishPresence(context.Background(), "strict", []byte(data)); err != nil {
					t.Fatal(err)
				}
			}
			waitUntil(t, "every invalid message counted", func() bool {
				var out dto.Metric
				_ = pe.metrics.PresenceInvalid.Write(&out)
				return out.GetCounter().GetValue() == float64(len(bad))
			})
			if err := pe.p.CommandsStopped(); err != nil {
				t.Errorf("invalid messages stopped the commands: %v", err)
			}
			if n := strings.Count(pe.logs.String(), "invalid presence message ignored"); n != 1 {
				t.Errorf("%d log lines about invalid messages, want 1 within a minute", n)
			}
		})
	}
}

func TestPresenceWaitEndsAfterEcho(t *testing.T) {
	for _, broker := range presenceBrokers(t) {
		t.Run(broker.name, func(t *testing.T) {
			// With a wait of an hour, Start returns only because its own
			// probe came back; the test's deadline ends it otherwise.
			only := newPresenceEdge(t, broker, "solo", "only", time.Hour)
			started := make(chan error, 1)
			go func() { started <- only.start() }()
			select {
			case err := <-started:
				if err != nil {
					t.Fatalf("edge: %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("Start waited for all of its one-hour presence wait although its probe came back")
			}
			if strings.Contains(only.logs.String(), "did not come back") {
				t.Errorf("the edge's own probe did not come back:\n%s", only.logs.String())
			}
			second := newPresenceEdge(t, broker, "solo", "second", time.Hour)
			var dup *edge.DuplicateEdgeError
			if err := second.start(); !errors.As(err, &dup) {
				t.Fatalf("second edge started with %v, want a DuplicateEdgeError", err)
			}
		})
	}
}
