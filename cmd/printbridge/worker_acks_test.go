package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// redeliveryWait bounds the wait for an event that a killed worker left
// unacknowledged. JetStream delivers it again after its ack wait of 30s,
// and the next worker takes the dead worker's claim over after a lease
// of 10s.
const redeliveryWait = 90 * time.Second

// ackBroker is a real broker for the worker's ack tests, with a sender in
// the edge's place.
type ackBroker struct {
	workerArgs []string
	sender     bridge.Bus
	// settled reports whether the broker has nothing left to deliver to
	// the worker; nil on MQTT, where a later sentinel event shows that.
	settled func() bool
}

func startAckBroker(t *testing.T, kind string) *ackBroker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	switch kind {
	case "mosquitto":
		url := brokertest.StartMosquitto(t)
		sender, err := mqtt.New(ctx, mqtt.Config{URL: url, ClientID: "test-edge"}, brokertest.Logger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sender.Close() })
		return &ackBroker{sender: sender,
			workerArgs: []string{"--mqtt", url, "--mqtt-persistent-session", "--mqtt-client-id", "ack-test-worker"}}
	case "jetstream":
		srv := brokertest.StartNATS(t, true, false)
		sender, err := natsbus.New(ctx, natsbus.Config{URL: srv.NATSURL(), Name: "test-edge", JetStream: true}, brokertest.Logger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sender.Close() })
		js, err := jetstream.New(sender.Conn())
		if err != nil {
			t.Fatal(err)
		}
		// A worker without a group has a consumer named after its worker
		// id, so every consumer of the stream must have settled.
		settled := func() bool {
			stream, err := js.Stream(context.Background(), natsbus.DefaultStream)
			if err != nil {
				return false
			}
			lister := stream.ListConsumers(context.Background())
			consumers := 0
			done := true
			for info := range lister.Info() {
				consumers++
				if info.NumPending != 0 || info.NumAckPending != 0 {
					done = false
				}
			}
			return lister.Err() == nil && consumers > 0 && done
		}
		return &ackBroker{sender: sender, settled: settled, workerArgs: []string{"--nats", srv.NATSURL(), "--jetstream"}}
	}
	t.Fatalf("unknown broker %q", kind)
	return nil
}

func (b *ackBroker) publish(t *testing.T, event string, seq uint64) *bridge.Envelope {
	t.Helper()
	env := &bridge.Envelope{Schema: bridge.SchemaVersion, ID: bridge.NewEventID(time.Now()), Seq: seq, Printer: "p1",
		Event: event, Time: time.Now().UTC(), Payload: bridge.Payload{}}
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.sender.PublishEvent(context.Background(), env, data); err != nil {
		t.Fatalf("publish %s: %v", event, err)
	}
	return env
}

// ackHookConfig writes a config whose ZChange and PrintDone hooks append
// "start <event_id> <pid>" to ran, wait until the gate file exists, and
// append "end <event_id>". The PrintStarted hook appends "sentinel
// <event_id>" and ends at once.
func ackHookConfig(t *testing.T, dir, ran, gate string) string {
	t.Helper()
	blocking := fmt.Sprintf(`'echo "start $PRINTBRIDGE_EVENT_ID $$" >> %[1]s; i=0; while [ ! -e %[2]s ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; echo "end $PRINTBRIDGE_EVENT_ID" >> %[1]s'`, ran, gate)
	return writeWorkerConfig(t, dir, fmt.Sprintf(`events:
  subscriptions:
  - name: slow
    event: [ZChange, PrintDone]
    type: system
    shell: true
    timeout: 0
    command: %s
  - name: sentinel
    event: PrintStarted
    type: system
    shell: true
    command: 'echo "sentinel $PRINTBRIDGE_EVENT_ID" >> %s'
`, blocking, ran))
}

// hookLines counts the lines of ran by their first two fields, such as
// "start <id>".
func hookLines(t *testing.T, ran string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(ran)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			counts[f[0]+" "+f[1]]++
		}
	}
	return counts
}

// hookPid returns the pid that the start line of id recorded, 0 when
// there is none.
func hookPid(t *testing.T, ran, id string) int {
	t.Helper()
	data, _ := os.ReadFile(ran)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "start" && f[1] == id {
			pid, _ := strconv.Atoi(f[2])
			return pid
		}
	}
	return 0
}

// waitDelivered waits until the broker has nothing left for the worker:
// on JetStream by the consumer's counts, on MQTT by a sentinel event
// published now, which the broker delivers after everything queued
// before it.
func (b *ackBroker) waitDelivered(t *testing.T, ran string, seq uint64) {
	t.Helper()
	if b.settled != nil {
		waitFor(t, "the consumer to have nothing pending", redeliveryWait, b.settled)
		return
	}
	sentinel := b.publish(t, bridge.EventPrintStarted, seq)
	waitFor(t, "the sentinel hook", redeliveryWait, func() bool { return hookLines(t, ran)["sentinel "+sentinel.ID] == 1 })
}

// TestWorkerKilledMidHookNotStartedAgain kills a worker process with
// SIGKILL while the hook of an event runs, and then the hook's process.
// The event was not acknowledged, so the broker delivers it to the
// restarted worker, which finds the hook's start record and does not
// start it again, and acknowledges the event. A third worker started
// later does not run it either.
func TestWorkerKilledMidHookNotStartedAgain(t *testing.T) {
	bin := buildPrintbridge(t)
	for _, kind := range []string{"mosquitto", "jetstream"} {
		t.Run(kind, func(t *testing.T) {
			b := startAckBroker(t, kind)
			dir := t.TempDir()
			ran, gate := filepath.Join(dir, "ran.txt"), filepath.Join(dir, "gate")
			cfg := ackHookConfig(t, dir, ran, gate)
			newWorker := func(name string) *proc {
				p := newProc(t, dir, name, bin, append([]string{"worker", "--config", cfg, "--metrics-listen", "",
					"--data-dir", filepath.Join(dir, "worker-data")}, b.workerArgs...)...)
				p.readyLog = "worker started"
				return p
			}

			first := newWorker("worker-first")
			first.Start()
			env := b.publish(t, bridge.EventPrintDone, 1)
			waitFor(t, "the hook to start", workerWait, func() bool { return hookPid(t, ran, env.ID) > 0 })
			first.Kill()
			// The hook runs in a process group of its own, which SIGKILL
			// of the worker leaves behind.
			_ = syscall.Kill(-hookPid(t, ran, env.ID), syscall.SIGKILL)
			if err := os.WriteFile(gate, nil, 0o600); err != nil {
				t.Fatal(err)
			}

			second := newWorker("worker-second")
			second.Start()
			waitFor(t, "the restarted worker to report the hook as interrupted", redeliveryWait, func() bool {
				return strings.Contains(second.Log(), "hook interrupted: a killed worker had started it")
			})
			b.waitDelivered(t, ran, 2)
			if err := second.Stop(); err != nil {
				t.Errorf("second worker exited with %v after SIGTERM", err)
			}

			third := newWorker("worker-third")
			third.Start()
			b.waitDelivered(t, ran, 3)
			if err := third.Stop(); err != nil {
				t.Errorf("third worker exited with %v after SIGTERM", err)
			}
			got := hookLines(t, ran)
			if n := got["start "+env.ID]; n != 1 {
				t.Errorf("hook started %d times, want 1 (cut short by the kill, then never started again): %v", n, got)
			}
			if n := got["end "+env.ID]; n != 0 {
				t.Errorf("hook ended %d times, want 0, because the test killed it: %v", n, got)
			}
		})
	}
}

// TestWorkerStopReturnsQueuedEvents stops a worker with SIGTERM while the
// hook of the first of three events runs and the other two wait for the
// single hook slot. None of them was acknowledged, so the next worker
// gets all three: it does not start the hook that the stop killed again,
// and runs the other two once.
func TestWorkerStopReturnsQueuedEvents(t *testing.T) {
	bin := buildPrintbridge(t)
	for _, kind := range []string{"mosquitto", "jetstream"} {
		t.Run(kind, func(t *testing.T) {
			b := startAckBroker(t, kind)
			dir := t.TempDir()
			ran, gate := filepath.Join(dir, "ran.txt"), filepath.Join(dir, "gate")
			cfg := ackHookConfig(t, dir, ran, gate)
			newWorker := func(name string) *proc {
				p := newProc(t, dir, name, bin, append([]string{"worker", "--config", cfg, "--metrics-listen", "",
					"--max-concurrent-hooks", "1", "--data-dir", filepath.Join(dir, "worker-data")}, b.workerArgs...)...)
				p.readyLog = "worker started"
				return p
			}

			first := newWorker("worker-first")
			first.Start()
			var envs []*bridge.Envelope
			for seq := uint64(1); seq <= 3; seq++ {
				envs = append(envs, b.publish(t, bridge.EventZChange, seq))
			}
			waitFor(t, "the first hook to start", workerWait, func() bool { return hookPid(t, ran, envs[0].ID) > 0 })
			if err := first.Stop(); err != nil {
				t.Errorf("first worker exited with %v after SIGTERM", err)
			}
			if got := hookLines(t, ran); got["end "+envs[0].ID] != 0 || got["start "+envs[1].ID] != 0 {
				t.Fatalf("hooks after the stop = %v, want only the first one started and none ended", got)
			}
			if err := os.WriteFile(gate, nil, 0o600); err != nil {
				t.Fatal(err)
			}

			second := newWorker("worker-second")
			second.Start()
			waitFor(t, "the next worker to run the two hooks that never started", redeliveryWait, func() bool {
				got := hookLines(t, ran)
				return got["end "+envs[1].ID] >= 1 && got["end "+envs[2].ID] >= 1
			})
			b.waitDelivered(t, ran, 4)
			if err := second.Stop(); err != nil {
				t.Errorf("second worker exited with %v after SIGTERM", err)
			}
			got := hookLines(t, ran)
			if n := got["start "+envs[0].ID]; n != 1 {
				t.Errorf("first hook started %d times, want 1 (cut short by the stop, then never started again): %v", n, got)
			}
			if n := got["end "+envs[0].ID]; n != 0 {
				t.Errorf("first hook ended %d times, want 0, because the stop killed it: %v", n, got)
			}
			for i, env := range envs[1:] {
				if n := got["end "+env.ID]; n != 1 {
					t.Errorf("hook of event %d ended %d times, want 1: %v", i+2, n, got)
				}
			}
			for i, env := range envs[1:] {
				if n := got["start "+env.ID]; n != 1 {
					t.Errorf("hook of event %d started %d times, want 1: %v", i+2, n, got)
				}
			}
		})
	}
}
