package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// storeAgain stores env in the event stream once more under a new
// message id, so a worker receives the same envelope again, as after a
// lost ack or an outbox replay past the stream's duplicate window.
func storeAgain(t *testing.T, js jetstream.JetStream, env *bridge.Envelope) {
	t.Helper()
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(bridge.Topics{}.NATSEvent(env.Printer, env.Event))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, env.ID+"-again-"+bridge.NewEventID(time.Now()))
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatalf("store %s again: %v", env.ID, err)
	}
}

// TestWorkerKilledMidHookRunsOnce runs worker processes that share a
// seen-events bucket. The first is killed with SIGKILL while the hook of
// an event runs, so its claim stays without completion but with the
// hook's start record. The same event delivered again to a second worker
// must not start the hook again there: it takes the claim over after one
// lease and reports the hook as interrupted. A third worker in another
// group, which is another job on the same events, runs the hook once for
// its group, although it receives the event twice.
func TestWorkerKilledMidHookRunsOnce(t *testing.T) {
	bin := buildPrintbridge(t)
	srv := brokertest.StartNATS(t, true, false)
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran.txt")
	gate := filepath.Join(dir, "gate")
	// The first run records its pid and blocks, so the test can kill the
	// worker mid-hook. Later runs find the gate file and end at once.
	cfg := writeWorkerConfig(t, dir, fmt.Sprintf(`events:
  subscriptions:
  - name: note
    event: PrintDone
    type: system
    shell: true
    timeout: 0
    command: 'echo "start $PRINTBRIDGE_EVENT_ID $$" >> %[1]s; if [ ! -e %[2]s ]; then touch %[2]s; sleep 60; fi; echo "end $PRINTBRIDGE_EVENT_ID" >> %[1]s'
`, ran, gate))
	newWorkerProc := func(name, group string) *proc {
		p := newProc(t, dir, name, bin, "worker", "--config", cfg, "--nats", srv.NATSURL(), "--jetstream",
			"--group", group, "--seen-store", "kv", "--seen-bucket", "shared_seen", "--metrics-listen", "",
			"--data-dir", filepath.Join(dir, name+"-data"))
		p.readyLog = "worker started"
		return p
	}
	readRan := func() []string {
		data, _ := os.ReadFile(ran)
		return strings.Fields(strings.ReplaceAll(string(data), "\n", " | "))
	}

	sender, err := natsbus.New(context.Background(), natsbus.Config{URL: srv.NATSURL(), Name: "test-edge", JetStream: true},
		brokertest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	js, err := jetstream.New(sender.Conn())
	if err != nil {
		t.Fatal(err)
	}

	first := newWorkerProc("worker-first", "hosts")
	first.Start()
	env := &bridge.Envelope{Schema: bridge.SchemaVersion, ID: bridge.NewEventID(time.Now()), Seq: 1, Printer: "p1",
		Event: bridge.EventPrintDone, Time: time.Now().UTC(), Payload: bridge.Payload{{Key: "name", Value: "cube.gcode"},
			{Key: "path", Value: "cube.gcode"}, {Key: "origin", Value: "local"}, {Key: "size", Value: 1}, {Key: "time", Value: 1.5}}}
	data, _ := json.Marshal(env)
	if err := sender.PublishEvent(context.Background(), env, data); err != nil {
		t.Fatal(err)
	}
	var hookPid int
	waitFor(t, "the first worker's hook to start", workerWait, func() bool {
		data, _ := os.ReadFile(ran)
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "start" && f[1] == env.ID {
				hookPid, _ = strconv.Atoi(f[2])
				return true
			}
		}
		return false
	})
	first.Kill()
	// The hook runs in a process group of its own, which SIGKILL of the
	// worker leaves behind.
	if hookPid > 0 {
		_ = syscall.Kill(-hookPid, syscall.SIGKILL)
	}

	second := newWorkerProc("worker-second", "hosts")
	second.Start()
	storeAgain(t, js, env)
	waitFor(t, "the second worker to report the killed worker's hook as interrupted", workerWait, func() bool {
		return strings.Contains(second.Log(), "hook interrupted: a killed worker had started it")
	})
	if !strings.Contains(second.Log(), "took over the claim") {
		t.Errorf("second worker did not log the takeover:\n%s", second.Tail(20))
	}
	if !strings.Contains(second.Log(), "hook started by a worker that was killed is not started again") {
		t.Errorf("second worker did not warn about the interrupted hook:\n%s", second.Tail(20))
	}

	// A third host in another group, on a consumer of its own, receives
	// every copy of the event from the stream: the first and the
	// redelivery.
	third := newWorkerProc("worker-third", "other-hosts")
	third.Start()
	waitFor(t, "the third worker to take both copies of the event", workerWait, func() bool {
		c, err := js.Consumer(context.Background(), natsbus.DefaultStream, "other-hosts")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	got := strings.Join(readRan(), " ")
	if n := strings.Count(got, "start "+env.ID); n != 2 {
		t.Errorf("hook started %d times, expected 2 (group hosts: once, cut short by the kill; group other-hosts: once): %s", n, got)
	}
	if n := strings.Count(got, "end "+env.ID); n != 1 {
		t.Errorf("hook ended %d times, expected 1 (group other-hosts only, because the test killed the first): %s", n, got)
	}
	for _, p := range []*proc{second, third} {
		if err := p.Stop(); err != nil {
			t.Errorf("%s exited with %v after SIGTERM", p.name, err)
		}
	}
}

// TestWorkerSeenLockBeforeConnect starts a second worker with the data
// folder of a running one and a broker address where nothing listens.
// Before any broker work the second one must stop on the lock, because
// its broker connection would be retried until the context ends.
func TestWorkerSeenLockBeforeConnect(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	dataDir := t.TempDir()
	cfg := writeWorkerConfig(t, t.TempDir(), "events:\n  subscriptions: []\n")
	first := startWorker(t, "--config", cfg, "--nats", emb.NATSURL(), "--metrics-listen", "", "--data-dir", dataDir)

	closed := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	for _, broker := range [][]string{{"--nats", "nats://" + closed}, {"--mqtt", "tcp://" + closed}} {
		ctx, cancel := context.WithTimeout(context.Background(), workerWait)
		logs := &syncBuffer{}
		args := append([]string{"--config", cfg, "--metrics-listen", "", "--data-dir", dataDir}, broker...)
		err := runWorker(ctx, args, io.Discard, logs)
		timedOut := ctx.Err() != nil
		cancel()
		want := "seen-events file " + filepath.Join(dataDir, "seen-events") + " is in use by another worker on this host; give each worker its own --data-dir"
		if err == nil || err.Error() != want {
			t.Errorf("%s: second worker returned %v, want %q", broker[0], err, want)
		}
		if timedOut {
			t.Errorf("%s: the second worker ran until its context ended instead of stopping on the lock", broker[0])
		}
		if lines := matchingLines(logs.String(), "connect"); len(lines) != 0 {
			t.Errorf("%s: the second worker tried the broker before the lock: %q", broker[0], lines)
		}
	}

	// The running worker keeps its file.
	if lines := first.lines("in use"); len(lines) != 0 {
		t.Errorf("the first worker logged %q", lines)
	}
}

// A worker with a broker URL it cannot use stops before it takes the
// seen-events lock, so its --data-dir stays as it was.
func TestWorkerBadBrokerURLLeavesDataDir(t *testing.T) {
	cfg := writeWorkerConfig(t, t.TempDir(), "events:\n  subscriptions: []\n")
	for _, broker := range [][]string{{"--mqtt", "tcp//127.0.0.1:1883"}, {"--mqtt", "http://127.0.0.1:1883"}, {"--nats", "tcp//127.0.0.1:4222"}} {
		dataDir := filepath.Join(t.TempDir(), "worker-data")
		ctx, cancel := context.WithTimeout(context.Background(), workerWait)
		args := append([]string{"--config", cfg, "--metrics-listen", "", "--data-dir", dataDir}, broker...)
		err := runWorker(ctx, args, io.Discard, io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "invalid URL") && !strings.Contains(err.Error(), "unsupported scheme") {
			t.Errorf("%s %s: worker returned %v, want an invalid URL error", broker[0], broker[1], err)
		}
		if _, statErr := os.Stat(dataDir); !errors.Is(statErr, os.ErrNotExist) {
			t.Errorf("%s %s: --data-dir %s exists after the rejected start (%v)", broker[0], broker[1], dataDir, statErr)
		}
	}
}

// A worker given --jetstream without NATS stops at start instead of
// running on MQTT with a file store, whatever form the setting takes,
// before it opens its metrics endpoint. The broker may come from the
// config file's printbridge.mqtt.
func TestWorkerJetStreamWithoutNATS(t *testing.T) {
	dir := t.TempDir()
	plain := writeWorkerConfig(t, dir, "events:\n  subscriptions: []\n")
	withMQTT := filepath.Join(dir, "mqtt-config.yaml")
	if err := os.WriteFile(withMQTT, []byte("printbridge:\n  mqtt: tcp://127.0.0.1:1\nevents:\n  subscriptions: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"flag", nil, []string{"--config", plain, "--mqtt", "tcp://127.0.0.1:1", "--jetstream"}},
		{"environment", map[string]string{"PRINTBRIDGE_JETSTREAM": "true"}, []string{"--config", plain, "--mqtt", "tcp://127.0.0.1:1"}},
		{"broker from config file", nil, []string{"--config", withMQTT, "--jetstream"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			dataDir := filepath.Join(t.TempDir(), "worker-data")
			ctx, cancel := context.WithTimeout(context.Background(), workerWait)
			defer cancel()
			var logs syncBuffer
			args := append([]string{"--metrics-listen", "127.0.0.1:0", "--data-dir", dataDir}, tc.args...)
			err := runWorker(ctx, args, io.Discard, &logs)
			if want := "--jetstream needs a NATS server: give --nats URL"; err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("worker returned %v, want an error containing %q", err, want)
			}
			if strings.Contains(logs.String(), "metrics endpoint listening") {
				t.Errorf("the worker opened its metrics endpoint before it rejected the setting:\n%s", logs.String())
			}
			if _, statErr := os.Stat(dataDir); !errors.Is(statErr, os.ErrNotExist) {
				t.Errorf("--data-dir %s exists after the rejected start (%v)", dataDir, statErr)
			}
		})
	}
}
