package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// faultBroker is a real broker process that a fault test takes down and
// brings back on the same port with the same storage.
type faultBroker interface {
	Name() string
	Start()
	// Down stops the broker with the signal of its fault model, which the
	// implementations explain.
	Down()
	// DownSignal names the signal Down sends, for the test log.
	DownSignal() string
	Running() bool
	// EdgeArgs and WorkerArgs are the broker flags of the edge and worker.
	EdgeArgs() []string
	WorkerArgs() []string
	// Observer connects a subscriber that keeps its subscription across
	// broker restarts: an MQTT persistent session or a JetStream durable
	// consumer. It records every event and reply of printer.
	Observer(t testing.TB, printer string, col *faultCollector) bridge.Bus
	Log() string
}

// waitListening polls addr until it accepts TCP connections.
func waitListening(t testing.TB, addr string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if !p.Running() {
			t.Fatalf("%s exited before listening on %s:\n%s", p.name, addr, p.Tail(30))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not accept connections on %s: %v\n%s", p.name, addr, err, p.Tail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mosquittoBroker is a mosquitto process with persistence on, so
// persistent sessions and their queued QoS 1 messages survive a restart.
type mosquittoBroker struct {
	t    testing.TB
	p    *proc
	port int
}

func startFaultMosquitto(t testing.TB, dir string) *mosquittoBroker {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("mosquitto not found in PATH or at %s: install Debian's mosquitto package, which `make test` does", bin)
		}
	}
	m := &mosquittoBroker{t: t, port: brokertest.FreePort(t)}
	store := filepath.Join(dir, "mosquitto-store")
	if err := os.MkdirAll(store, 0o750); err != nil {
		t.Fatal(err)
	}
	// As root, mosquitto switches to the user "mosquitto" unless the
	// config names another user, and that user cannot write to the test's
	// directory.
	runAs := "root"
	if u, err := user.Current(); err == nil {
		runAs = u.Username
	}
	conf := strings.Join([]string{
		fmt.Sprintf("listener %d 127.0.0.1", m.port),
		"allow_anonymous true",
		"persistence true",
		"persistence_location " + store + "/",
		// The default of 1000 queued messages per client drops the rest
		// silently.
		"max_queued_messages 0",
		"user " + runAs,
		"log_dest stderr",
		"log_type error",
		"log_type warning",
		"log_type notice",
		"log_type information",
		"",
	}, "\n")
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.p = newProc(t, dir, "mosquitto", bin, "-c", confPath)
	m.Start()
	return m
}

func (m *mosquittoBroker) Name() string { return "mosquitto" }

func (m *mosquittoBroker) addr() string { return "127.0.0.1:" + strconv.Itoa(m.port) }

func (m *mosquittoBroker) url() string { return "tcp://" + m.addr() }

func (m *mosquittoBroker) Start() {
	m.t.Helper()
	m.p.Start()
	waitListening(m.t, m.addr(), m.p)
}

// Down stops mosquitto with SIGTERM. Mosquitto saves its persistence file
// only at shutdown and at autosave_interval, so after SIGKILL it would
// forget messages it has already acknowledged to the edge. No client can
// make up for that, so the fault model here is a clean broker restart.
func (m *mosquittoBroker) Down() { _ = m.p.Stop() }

func (m *mosquittoBroker) DownSignal() string { return "SIGTERM" }

func (m *mosquittoBroker) Running() bool { return m.p.Running() }

func (m *mosquittoBroker) EdgeArgs() []string { return []string{"--mqtt", m.url()} }

// WorkerArgs gives the worker a persistent session under a fixed client
// id, so that Mosquitto queues the events fired while it is down.
func (m *mosquittoBroker) WorkerArgs() []string {
	return []string{"--mqtt", m.url(), "--mqtt-persistent-session", "--mqtt-client-id", "fault-worker"}
}

func (m *mosquittoBroker) Log() string { return m.p.Log() }

func (m *mosquittoBroker) Observer(t testing.TB, printer string, col *faultCollector) bridge.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := mqtt.New(ctx, mqtt.Config{URL: m.url(), ClientID: "fault-observer", PersistentSession: true},
		brokertest.Logger().With("bus", "observer"))
	if err != nil {
		t.Fatalf("connect the observer to mosquitto: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.SubscribeEvents(ctx, printer, "", col.onEvent); err != nil {
		t.Fatal(err)
	}
	if err := b.SubscribeReplies(ctx, printer, col.onReply); err != nil {
		t.Fatal(err)
	}
	return b
}

// natsBroker is a nats-server process with JetStream storing in the
// test's directory.
type natsBroker struct {
	t    testing.TB
	p    *proc
	port int
}

func startFaultNATS(t testing.TB, dir string) *natsBroker {
	t.Helper()
	bin := brokertest.FindNATSServer(t)
	n := &natsBroker{t: t, port: brokertest.FreePort(t)}
	store := filepath.Join(dir, "jetstream")
	n.p = newProc(t, dir, "nats-server", bin, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-js", "-sd", store,
		"-n", "printbridge-faults")
	n.Start()
	return n
}

func (n *natsBroker) Name() string { return "nats-jetstream" }

func (n *natsBroker) addr() string { return "127.0.0.1:" + strconv.Itoa(n.port) }

func (n *natsBroker) url() string { return "nats://" + n.addr() }

func (n *natsBroker) Start() {
	n.t.Helper()
	n.p.Start()
	waitListening(n.t, n.addr(), n.p)
}

// Down kills nats-server with SIGKILL. JetStream has written a message
// to its store files before it acknowledges it, so a killed process loses
// nothing it acknowledged (a power loss could, within its sync interval).
func (n *natsBroker) Down() { n.p.Kill() }

func (n *natsBroker) DownSignal() string { return "SIGKILL" }

func (n *natsBroker) Running() bool { return n.p.Running() }

func (n *natsBroker) EdgeArgs() []string { return []string{"--nats", n.url(), "--jetstream"} }

// WorkerArgs keeps one unacknowledged event at a time, the setting that
// keeps a printer's order when the worker is killed (docs/delivery.md),
// because the suite checks that hooks start in seq order.
func (n *natsBroker) WorkerArgs() []string {
	return []string{"--nats", n.url(), "--jetstream", "--max-in-flight", "1"}
}

func (n *natsBroker) Log() string { return n.p.Log() }

func (n *natsBroker) Observer(t testing.TB, printer string, col *faultCollector) bridge.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := natsbus.New(ctx, natsbus.Config{URL: n.url(), Name: "fault-observer", JetStream: true},
		brokertest.Logger().With("bus", "observer"))
	if err != nil {
		t.Fatalf("connect the observer to nats-server: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.SubscribeEvents(ctx, printer, "fault-observer", col.onEvent); err != nil {
		t.Fatal(err)
	}
	if err := b.SubscribeReplies(ctx, printer, col.onReply); err != nil {
		t.Fatal(err)
	}
	return b
}
