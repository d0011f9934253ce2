//go:build linux

package mqtt_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// These tests run against brokers that leave Nagle's algorithm on, as
// mosquitto's default config does. They check that the connection paho
// uses sets TCP_QUICKACK after its reads. Its effect on latency and
// throughput is measured by package bench, not here.

// exchangeEvents publishes n events from edge in one batch, more than
// the in-flight window, and checks that worker receives them in order.
func exchangeEvents(t *testing.T, edge, worker *mqtt.Bus, printer string, n int) {
	t.Helper()
	ctx := context.Background()
	got := brokertest.NewCollector[bridge.EventMessage]()
	if err := worker.SubscribeEvents(ctx, printer, "", got.Add); err != nil {
		t.Fatalf("SubscribeEvents: %v", err)
	}
	var batch []bridge.OutgoingEvent
	for seq := 1; seq <= n; seq++ {
		env, data := event(t, printer, uint64(seq))
		batch = append(batch, bridge.OutgoingEvent{Env: env, Data: data})
	}
	taken, err := edge.PublishEvents(ctx, batch)
	if err != nil {
		t.Fatalf("PublishEvents: %v", err)
	}
	if taken != n {
		t.Fatalf("PublishEvents took %d events, want %d", taken, n)
	}
	msgs := got.WaitFor(t, "all events", atLeast[bridge.EventMessage](n))
	for i, seq := range decodeSeqs(t, msgs) {
		if seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d, want %d: order not kept", i, seq, i+1)
		}
	}
}

// checkQuickAck checks that the TCP connection under the connection b
// handed to paho sets TCP_QUICKACK and did so after reading, and returns
// both connections.
func checkQuickAck(t *testing.T, name string, b *mqtt.Bus) (conn, quickAck net.Conn) {
	t.Helper()
	conn, quickAck = mqtt.DialedConnection(b)
	if conn == nil {
		t.Fatalf("%s: no connection was dialed", name)
	}
	if quickAck == nil {
		t.Fatalf("%s: the dialed connection %T does not set TCP_QUICKACK", name, conn)
	}
	rearms, failed := mqtt.QuickAckCount(quickAck)
	if failed {
		t.Errorf("%s: setting TCP_QUICKACK failed on the connection to %s", name, quickAck.RemoteAddr())
	}
	// At least one per read from the socket: the CONNACK on its own,
	// then a SUBACK, PUBACKs or events.
	if rearms < 2 {
		t.Errorf("%s: TCP_QUICKACK was set %d times, want at least 2", name, rearms)
	}
	return conn, quickAck
}

func TestQuickAckOnEdgeAndWorker(t *testing.T) {
	broker := brokertest.StartMosquittoWithOptions(t, brokertest.MosquittoOptions{Nagle: true})
	edge := newBus(t, mqtt.Config{URL: broker.URL()})
	worker := newBus(t, mqtt.Config{URL: broker.URL()})
	exchangeEvents(t, edge, worker, "p1", 40)

	for _, c := range []struct {
		name string
		bus  *mqtt.Bus
	}{{"edge", edge}, {"worker", worker}} {
		conn, quickAck := checkQuickAck(t, c.name, c.bus)
		if conn != quickAck {
			t.Errorf("%s: paho got %T, want the TCP_QUICKACK connection itself on a tcp:// URL", c.name, conn)
		}
		if got := quickAck.RemoteAddr().String(); got != broker.Addr() {
			t.Errorf("%s: the TCP_QUICKACK connection goes to %s, want the broker at %s", c.name, got, broker.Addr())
		}
	}
}

func TestQuickAckUnderTLS(t *testing.T) {
	pki := brokertest.NewPKI(t)
	url := startTLSBroker(t, pki) // without set_tcp_nodelay
	cfg := mqtt.Config{URL: url, Username: "edge", Password: tlsPassword, Topics: topics,
		TLS: mqtt.TLSOptions{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "broker.test"}}
	edge := newBus(t, cfg)
	worker := newBus(t, cfg)
	exchangeEvents(t, edge, worker, "tls-1", 40)

	for _, c := range []struct {
		name string
		bus  *mqtt.Bus
	}{{"edge", edge}, {"worker", worker}} {
		conn, quickAck := checkQuickAck(t, c.name, c.bus)
		tlsConn, ok := conn.(*tls.Conn)
		if !ok {
			t.Errorf("%s: paho got %T, want *tls.Conn on an ssl:// URL", c.name, conn)
			continue
		}
		if tlsConn.NetConn() != quickAck {
			t.Errorf("%s: the TLS connection runs over %T, want the TCP_QUICKACK connection", c.name, tlsConn.NetConn())
		}
		if state := tlsConn.ConnectionState(); state.ServerName != "broker.test" || !state.HandshakeComplete {
			t.Errorf("%s: TLS state: server name %q, handshake complete %v; want broker.test, true", c.name, state.ServerName, state.HandshakeComplete)
		}
	}
}

func TestQuickAckAfterReconnect(t *testing.T) {
	broker := brokertest.StartMosquittoWithOptions(t, brokertest.MosquittoOptions{Nagle: true})
	connects := make(chan struct{}, 10)
	edge := newBus(t, mqtt.Config{URL: broker.URL(), OnConnect: func() { connects <- struct{}{} }})
	<-connects
	if err := edge.PublishCommand(context.Background(), "p1", bridge.CommandGcode, []byte("G28")); err != nil {
		t.Fatalf("PublishCommand before the restart: %v", err)
	}
	_, before := checkQuickAck(t, "edge before the restart", edge)

	broker.Stop()
	broker.Start()
	select {
	case <-connects:
	case <-time.After(waitTimeout):
		t.Fatalf("edge did not reconnect within %s", waitTimeout)
	}
	if err := edge.PublishCommand(context.Background(), "p1", bridge.CommandGcode, []byte("G28")); err != nil {
		t.Fatalf("PublishCommand after the restart: %v", err)
	}
	_, after := checkQuickAck(t, "edge after the restart", edge)
	if after == before {
		t.Errorf("the connection after the restart is the one from before it")
	}
}

// startNATSWebsocket starts nats-server in this process with its MQTT
// listener and its websocket listener, which carries MQTT on the path
// /mqtt, and returns the ws:// URL.
func startNATSWebsocket(t *testing.T) string {
	t.Helper()
	opts := &server.Options{ServerName: "ws-test", Host: "127.0.0.1", Port: -1, NoSigs: true, JetStream: true, StoreDir: t.TempDir()}
	opts.MQTT.Host, opts.MQTT.Port = "127.0.0.1", -1
	wsPort := brokertest.FreePort(t)
	opts.Websocket.Host, opts.Websocket.Port, opts.Websocket.NoTLS = "127.0.0.1", wsPort, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server options: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats-server did not accept connections within 10s")
	}
	return fmt.Sprintf("ws://%s/mqtt", net.JoinHostPort("127.0.0.1", strconv.Itoa(wsPort)))
}

func TestQuickAckUnderWebsocket(t *testing.T) {
	url := startNATSWebsocket(t)
	edge := newBus(t, mqtt.Config{URL: url})
	worker := newBus(t, mqtt.Config{URL: url})
	exchangeEvents(t, edge, worker, "ws-1", 40)

	for _, c := range []struct {
		name string
		bus  *mqtt.Bus
	}{{"edge", edge}, {"worker", worker}} {
		conn, quickAck := checkQuickAck(t, c.name, c.bus)
		if conn == quickAck {
			t.Errorf("%s: paho got the TCP connection itself, want the websocket over it", c.name)
		}
	}
}

func TestQuickAckDisabledByConfig(t *testing.T) {
	broker := brokertest.StartMosquittoWithOptions(t, brokertest.MosquittoOptions{Nagle: true})
	edge := newBus(t, mqtt.Config{URL: broker.URL(), DisableTCPQuickAck: true})
	worker := newBus(t, mqtt.Config{URL: broker.URL(), DisableTCPQuickAck: true})
	exchangeEvents(t, edge, worker, "p1", 40)

	conn, quickAck := mqtt.DialedConnection(edge)
	if quickAck != nil {
		t.Errorf("the connection sets TCP_QUICKACK with DisableTCPQuickAck set")
	}
	if _, ok := conn.(*net.TCPConn); !ok {
		t.Errorf("paho got %T, want *net.TCPConn with DisableTCPQuickAck set", conn)
	}
}
