package mqtt_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// syncBuffer is a log sink that the bus's goroutines can share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestClientIDClashReported(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	// No Printer: its "online", a QoS 1 publish at each connect, would
	// be in flight at the takeovers. paho 1.5.1 sets the dup flag of an
	// in-flight packet in resume while its writer packs the packet, a
	// data race inside paho that the race detector reported here once.
	for range 2 {
		b, err := mqtt.New(ctx, mqtt.Config{URL: url, ClientID: "printbridge-edge-twin", Topics: topics}, log)
		if err != nil {
			t.Fatalf("mqtt.New: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(logs.String(), "another client probably uses the same client id") {
		if time.Now().After(deadline) {
			t.Fatalf("no client id clash reported; log:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "client_id=printbridge-edge-twin") {
		t.Errorf("the report does not name the client id; log:\n%s", logs.String())
	}
}

func TestSingleReconnectNotReportedAsClash(t *testing.T) {
	proc := brokertest.StartMosquittoProcess(t, 0)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := mqtt.New(ctx, mqtt.Config{URL: proc.URL(), ClientID: "printbridge-edge-single", Topics: topics}, log)
	if err != nil {
		t.Fatalf("mqtt.New: %v", err)
	}
	defer b.Close()
	proc.Stop()
	proc.Start()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(logs.String(), "connected to MQTT broker") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect after a broker restart; log:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(logs.String(), "same client id") {
		t.Errorf("one broker restart was reported as a client id clash; log:\n%s", logs.String())
	}
}
