// Package brokertest starts real brokers on free loopback ports for tests
// of any package: Mosquitto as a subprocess, nats-server in process, and a
// TCP proxy whose connections a test can cut to simulate a network failure.
//
// Every helper registers its own cleanup with testing.TB.Cleanup.
package brokertest

import (
	"log/slog"
	"net"
	"os"
	"testing"
	"time"
)

// readyTimeout bounds the wait for a broker to accept connections.
const readyTimeout = 10 * time.Second

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process can take it before the caller binds it, which is rare
// enough for tests.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port on 127.0.0.1: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		tb.Fatalf("close probe listener on port %d: %v", port, err)
	}
	return port
}

// Logger returns a logger for brokers and adapters in tests. It writes to
// stderr, which go test shows only for failing packages or with -v, and
// not to tb.Log, because broker goroutines can log after the test ends.
func Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// waitForTCP polls addr until a TCP connect succeeds, exited is closed, or
// readyTimeout passes.
func waitForTCP(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-exited:
			return errExited
		case <-time.After(20 * time.Millisecond):
		}
	}
}
