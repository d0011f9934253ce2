package brokertest_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge/brokertest"
)

const ioTimeout = 10 * time.Second

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestMosquittoStopAndStart(t *testing.T) {
	m := brokertest.StartMosquittoProcess(t, 0)
	if want := "tcp://" + m.Addr(); m.URL() != want {
		t.Errorf("URL() = %q, want %q", m.URL(), want)
	}
	dial(t, m.Addr())

	m.Stop()
	if conn, err := net.DialTimeout("tcp", m.Addr(), ioTimeout); err == nil {
		conn.Close()
		t.Fatalf("connect to %s succeeded after Stop", m.Addr())
	}
	m.Start()
	dial(t, m.Addr())
	if !strings.Contains(m.LogTail(100), "mosquitto version") {
		t.Errorf("log tail has no mosquitto start line:\n%s", m.LogTail(100))
	}
}

func TestMosquittoNagleOption(t *testing.T) {
	for _, c := range []struct {
		nagle       bool
		wantNoDelay bool
	}{{nagle: false, wantNoDelay: true}, {nagle: true, wantNoDelay: false}} {
		m := brokertest.StartMosquittoWithOptions(t, brokertest.MosquittoOptions{Nagle: c.nagle})
		dial(t, m.Addr())
		config, err := os.ReadFile(m.ConfigPath())
		if err != nil {
			t.Fatalf("read mosquitto config: %v", err)
		}
		if got := strings.Contains(string(config), "set_tcp_nodelay true"); got != c.wantNoDelay {
			t.Errorf("Nagle %v: config sets set_tcp_nodelay true: %v, want %v\n%s", c.nagle, got, c.wantNoDelay, config)
		}
	}
}

// echoServer accepts connections and writes back what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(conn net.Conn, line string) (string, error) {
	if err := conn.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(got), err
}

func TestProxyForwardsAndCuts(t *testing.T) {
	p := brokertest.StartProxy(t, echoServer(t))
	conn := dial(t, p.Addr())
	if got, err := roundTrip(conn, "hello"); err != nil || got != "hello" {
		t.Fatalf("round trip through proxy = %q, %v; want hello", got, err)
	}

	p.Cut()
	if err := conn.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read after Cut = %v, want EOF", err)
	}

	again := dial(t, p.Addr())
	if got, err := roundTrip(again, "again"); err != nil || got != "again" {
		t.Errorf("round trip after Cut = %q, %v; want again", got, err)
	}
}

func TestProxyDownAndUp(t *testing.T) {
	p := brokertest.StartProxy(t, echoServer(t))
	open := dial(t, p.Addr())
	if got, err := roundTrip(open, "x"); err != nil || got != "x" {
		t.Fatalf("round trip through proxy = %q, %v; want x", got, err)
	}

	p.SetDown(true)
	if _, err := roundTrip(open, "cut"); err == nil {
		t.Error("round trip on an open connection succeeded after SetDown(true)")
	}
	if _, err := roundTrip(dial(t, p.Addr()), "new"); err == nil {
		t.Error("round trip on a new connection succeeded while the proxy is down")
	}

	p.SetDown(false)
	if got, err := roundTrip(dial(t, p.Addr()), "y"); err != nil || got != "y" {
		t.Errorf("round trip after SetDown(false) = %q, %v; want y", got, err)
	}
}

func TestStartNATSWithMQTT(t *testing.T) {
	e := brokertest.StartNATS(t, true, true)
	natsAddr := strings.TrimPrefix(e.NATSURL(), "nats://")
	mqttAddr := strings.TrimPrefix(e.MQTTURL(), "tcp://")
	if mqttAddr == "" || mqttAddr == e.MQTTURL() {
		t.Fatalf("MQTTURL() = %q, want tcp://127.0.0.1:<port>", e.MQTTURL())
	}
	dial(t, natsAddr)
	dial(t, mqttAddr)
}

func TestStartNATSWithoutMQTT(t *testing.T) {
	e := brokertest.StartNATS(t, false, false)
	if e.MQTTURL() != "" {
		t.Errorf("MQTTURL() = %q with the MQTT listener off, want empty", e.MQTTURL())
	}
	dial(t, strings.TrimPrefix(e.NATSURL(), "nats://"))
}

func TestFreePortIsBindable(t *testing.T) {
	port := brokertest.FreePort(t)
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listen on free port %d: %v", port, err)
	}
	ln.Close()
}
