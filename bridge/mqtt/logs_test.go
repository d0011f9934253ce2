package mqtt

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
)

// reconnectLogsChildEnv makes TestReconnectLogsNoLibraryErrors run the
// broker outage itself, in a child test process. paho's loggers are set
// once per process (by TestMain, to stderr), so the parent reads the
// child's stderr to see what paho logged at which level.
const reconnectLogsChildEnv = "PRINTBRIDGE_TEST_RECONNECT_LOGS_CHILD"

// logsWait bounds every wait in these tests. The fourth reconnect
// attempt comes after paho's backoff of 1, 2 and 4 seconds.
const logsWait = time.Minute

// syncLog is stderr of the child process, written by the copy goroutine
// of os/exec and read by the test.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestReconnectLogsNoLibraryErrors(t *testing.T) {
	if os.Getenv(reconnectLogsChildEnv) != "" {
		runReconnectOutage(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReconnectLogsNoLibraryErrors$", "-test.count=1")
	cmd.Env = append(os.Environ(), reconnectLogsChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncLog
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Attempt 4 starts after the dial of attempt 3 failed, so three
	// failed reconnect dials are logged by then.
	deadline := time.Now().Add(logsWait)
	for len(matchingLogLines(stderr.String(), "reconnecting to MQTT broker", "attempt=4")) == 0 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("no fourth reconnect attempt within %s; child output:\n%s", logsWait, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = stdin.Close()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("child test failed: %v", err)
		}
	case <-time.After(logsWait):
		_ = cmd.Process.Kill()
		<-exited
		t.Errorf("child test did not end within %s after its stdin closed", logsWait)
	}
	out := stderr.String()
	if t.Failed() {
		t.Logf("child output:\n%s", out)
	}

	if !strings.Contains(out, "library=paho.mqtt.golang") {
		t.Fatalf("the child logged no paho line at all, so the routing is untested; output:\n%s", out)
	}
	for _, text := range []string{"connection refused", "Failed to connect to a broker", "trying next"} {
		if lines := matchingLogLines(out, "level=ERROR", text); len(lines) != 0 {
			t.Errorf("paho lines with %q at ERROR = %q, want none", text, lines)
		}
	}
	if lines := matchingLogLines(out, "level=WARN", "trying next"); len(lines) != 0 {
		t.Errorf("paho's \"trying next\" at WARN = %q, want none", lines)
	}
	// The outage is reported once, with its cause.
	if lines := matchingLogLines(out, "level=WARN", "library=paho.mqtt.golang", "dial tcp", "connection refused"); len(lines) != 1 {
		t.Errorf("paho failed-dial lines at WARN = %q, want exactly one", lines)
	}
	if lines := matchingLogLines(out, "level=ERROR", "library=paho.mqtt.golang", "internalConnLost stopDone unexpectedly nil"); len(lines) != 1 {
		t.Errorf("paho's other errors at ERROR = %q, want the one the child logged", lines)
	}
	for _, attempt := range []string{"attempt=1", "attempt=2", "attempt=3"} {
		if lines := matchingLogLines(out, "reconnecting to MQTT broker", attempt); len(lines) != 1 {
			t.Errorf("bus lines for reconnect %s = %q, want one", attempt, lines)
		}
	}
}

// runReconnectOutage stops the broker under a connected bus, so paho
// reconnects, and tries a first connect to the stopped broker. It logs
// one error of paho's that is not about a dial, and returns when stdin
// closes.
func runReconnectOutage(t *testing.T) {
	proc := brokertest.StartMosquittoProcess(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), logsWait)
	defer cancel()
	log := brokertest.Logger()
	b, err := New(ctx, Config{URL: proc.URL(), Topics: bridge.Topics{}}, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer b.Close()
	proc.Stop()

	if second, err := New(ctx, Config{URL: proc.URL(), Topics: bridge.Topics{}}, log); err == nil {
		_ = second.Close()
		t.Error("New connected to a stopped broker")
	}
	paho.ERROR.Println(paho.CLI, "internalConnLost stopDone unexpectedly nil - BUG BUG")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func matchingLogLines(text string, parts ...string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		ok := line != ""
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

func TestRepeatLimiterAllowsOncePerInterval(t *testing.T) {
	r := repeatLimiter{interval: time.Minute}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if ok, held := r.allow("a", start); !ok || held != 0 {
		t.Errorf("first a = %v, %d, want allowed with 0 held", ok, held)
	}
	for i := range 3 {
		if ok, _ := r.allow("a", start.Add(time.Duration(i+1)*time.Second)); ok {
			t.Errorf("repeat %d of a within the interval was allowed", i+1)
		}
	}
	if ok, held := r.allow("b", start.Add(time.Second)); !ok || held != 0 {
		t.Errorf("first b = %v, %d, want allowed with 0 held", ok, held)
	}
	if ok, held := r.allow("a", start.Add(time.Minute)); !ok || held != 3 {
		t.Errorf("a after the interval = %v, %d, want allowed with 3 held", ok, held)
	}
	if ok, _ := r.allow("a", start.Add(time.Minute+time.Second)); ok {
		t.Error("a right after it was allowed again was allowed")
	}
}

func TestDialFailureRecognized(t *testing.T) {
	for _, c := range []struct {
		text string
		want bool
	}{
		{"[client]   dial tcp 127.0.0.1:1883: connect: connection refused", true},
		{"[client]   dial tcp: lookup broker.invalid: no such host", true},
		{"[client]   dial unix /run/mosquitto.sock: connect: no such file or directory", true},
		{"[client]   socks connect tcp 127.0.0.1:1080->broker:1883: dial tcp 127.0.0.1:1080: connect: connection refused", true},
		{"[client]   tls: failed to verify certificate: x509: certificate signed by unknown authority", false},
		{"[client]   internalConnLost stopDone unexpectedly nil - BUG BUG", false},
		{"[net]      dial tcp 127.0.0.1:1883: connect: connection refused", false},
		{"[net]      connect got error EOF", true},
		{"[net]      connect got error read tcp 127.0.0.1:48634->127.0.0.1:1883: read: connection reset by peer", true},
		{"[net]      connect got error write tcp 127.0.0.1:48634->127.0.0.1:1883: write: broken pipe", true},
		{"[net]      connect got error read tcp 127.0.0.1:48634->127.0.0.1:1883: i/o timeout", true},
		{"[net]      connect got error unknown packet type", false},
		{"[net]      logic got error", false},
	} {
		if got := isDialFailure(c.text); got != c.want {
			t.Errorf("isDialFailure(%q) = %v, want %v", c.text, got, c.want)
		}
	}
}

// TestClosedBeforeConnackWarnsOnce writes paho's line for a connection
// that closed before CONNACK twice, from two local ports: a reconnect's
// new port must not make the repeat a second warning.
func TestClosedBeforeConnackWarnsOnce(t *testing.T) {
	var out syncLog
	logger := libraryLogger{slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})), slog.LevelError}
	for _, port := range []string{"52640", "52654"} {
		logger.Println(paho.NET, "connect got error read tcp 127.0.0.1:"+port+"->192.0.2.7:1883: read: connection reset by peer")
	}
	text := out.String()
	if lines := matchingLogLines(text, "level=WARN", "connection reset by peer"); len(lines) != 1 {
		t.Errorf("warnings = %q, want one", lines)
	}
	if lines := matchingLogLines(text, "level=DEBUG", "connection reset by peer"); len(lines) != 1 {
		t.Errorf("debug lines = %q, want the repeat", lines)
	}
	if lines := matchingLogLines(text, "level=ERROR"); len(lines) != 0 {
		t.Errorf("errors = %q, want none", lines)
	}
}
