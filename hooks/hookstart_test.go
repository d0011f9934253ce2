package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// workerProcEnv holds the JSON workerProcSpec of a worker process: the
// test binary turns into that worker, so a test can kill it with SIGKILL.
const workerProcEnv = "HOOKS_TEST_WORKER"

// workerProcSpec configures a worker process.
type workerProcSpec struct {
	Config string `json:"config"`
	// NATSURL connects through JetStream with the seen-events bucket
	// test_seen; MQTTURL through an MQTT persistent session with the
	// seen-events file SeenFile.
	NATSURL  string `json:"nats_url,omitempty"`
	MQTTURL  string `json:"mqtt_url,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	SeenFile string `json:"seen_file,omitempty"`
	// MarkerDir is the folder of gate markers with the bucket; with the
	// file they go beside it.
	MarkerDir string `json:"marker_dir,omitempty"`
	// Ready is created once the worker has subscribed.
	Ready string `json:"ready"`
	// HoldGate, when set, is created when a hook process waits at its
	// gate, and the worker then blocks before it records the start, or
	// with HoldAfterRecord after it recorded it, before the gate opens.
	HoldGate        string `json:"hold_gate,omitempty"`
	HoldAfterRecord bool   `json:"hold_after_record,omitempty"`
}

// runWorkerProcess is the main function of a worker process.
func runWorkerProcess(spec string) int {
	var s workerProcSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, "worker process spec:", err)
		return 2
	}
	data, err := os.ReadFile(s.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg, problems, err := ParseConfig(s.Config, data)
	if err != nil || HasErrors(problems) {
		fmt.Fprintln(os.Stderr, "worker process config:", err, problems)
		return 2
	}
	if s.HoldGate != "" {
		hold := func() {
			_ = os.WriteFile(s.HoldGate, nil, 0o600)
			select {}
		}
		if s.HoldAfterRecord {
			afterStartRecord = hold
		} else {
			beforeStartRecord = hold
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := brokertest.Logger().With("worker", "process")
	var bus bridge.Bus
	opts := []Option{WithClaimLease(testLease)}
	if s.NATSURL != "" {
		nb, err := natsbus.New(ctx, natsbus.Config{URL: s.NATSURL, Name: "worker-process", JetStream: true}, log)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		js, err := jetstream.New(nb.Conn())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		kv, err := OpenSeenBucket(ctx, js, SeenBucketConfig{Bucket: "test_seen"}, log)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		bus = nb
		opts = append(opts, WithSeenBucket(kv))
		if s.MarkerDir != "" {
			opts = append(opts, WithHookMarkerDir(s.MarkerDir))
		}
	} else {
		mb, err := mqtt.New(ctx, mqtt.Config{URL: s.MQTTURL, ClientID: s.ClientID, PersistentSession: true}, log)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		bus = mb
		opts = append(opts, WithSeenFile(s.SeenFile))
	}
	sub := &subscribedBus{Bus: bus, subscribed: make(chan struct{}, 1)}
	w := NewWorker(cfg, sub, log, opts...)
	go func() {
		<-sub.subscribed
		_ = os.WriteFile(s.Ready, nil, 0o600)
	}()
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = bus.Close()
	return 0
}

// heldHook is a system hook, named "note" on PrintDone, that writes
// "<event id> start <pid>" to a file, waits until a release file exists
// and then writes "<event id> end <pid>".
type heldHook struct {
	dir     string
	ran     string
	release string
}

func newHeldHook(t *testing.T) *heldHook {
	dir := t.TempDir()
	h := &heldHook{dir: dir, ran: filepath.Join(dir, "ran.txt"), release: filepath.Join(dir, "release")}
	t.Cleanup(h.killLeft)
	return h
}

func (h *heldHook) command() string {
	return fmt.Sprintf(`echo "$PRINTBRIDGE_EVENT_ID start $$" >> %[1]s; while [ ! -e %[2]s ]; do sleep 0.05; done; echo "$PRINTBRIDGE_EVENT_ID end $$" >> %[1]s`,
		h.ran, h.release)
}

// config is the worker config of the hook, the one kvHarness workers use.
func (h *heldHook) config(t *testing.T) string {
	path := filepath.Join(h.dir, "config.yaml")
	text := fmt.Sprintf(`events:
  subscriptions:
  - {name: note, event: PrintDone, type: system, shell: true, timeout: 0, command: %q}
`, h.command())
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lines returns the lines of the ran file as [event id, start|end, pid].
func (h *heldHook) lines(t *testing.T) [][]string {
	data, err := os.ReadFile(h.ran)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			out = append(out, f)
		}
	}
	return out
}

func (h *heldHook) count(t *testing.T, what string) int {
	n := 0
	for _, l := range h.lines(t) {
		if l[1] == what {
			n++
		}
	}
	return n
}

// killLeft releases and kills the hook processes a failed test left.
func (h *heldHook) killLeft() {
	_ = os.WriteFile(h.release, nil, 0o600)
	data, _ := os.ReadFile(h.ran)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			if pid, err := strconv.Atoi(f[2]); err == nil && !processGone(pid) {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
	}
}

// workerProc is a running worker process.
type workerProc struct {
	cmd *exec.Cmd
	// exited is closed once Wait has reaped the process, which happens
	// only after all its threads have exited and closed its files.
	exited chan struct{}
	once   sync.Once
}

func startWorkerProc(t *testing.T, spec workerProcSpec) *workerProc {
	t.Helper()
	spec.Ready = filepath.Join(t.TempDir(), "ready")
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), workerProcEnv+"="+string(data), "GORACE=atexit_sleep_ms=0")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker process: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p := &workerProc{cmd: cmd, exited: exited}
	t.Cleanup(p.kill)
	deadline := time.After(waitTimeout)
	for {
		if _, err := os.Stat(spec.Ready); err == nil {
			return p
		}
		select {
		case <-exited:
			t.Fatalf("worker process exited before it subscribed")
		case <-deadline:
			t.Fatalf("worker process did not subscribe within %s", waitTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL, as a crash or the OOM killer would, and waits
// until the process is reaped. Its main thread can show as a zombie while
// other threads still hold its files, and with them the lock of the
// seen-events file.
func (p *workerProc) kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
}

func waitFile(t *testing.T, path, what string) {
	t.Helper()
	waitUntil(t, what, func() bool {
		_, err := os.Stat(path)
		return err == nil
	}, func() string { return "no file " + path })
}

// claimOf reads the claim of id.
func claimOf(t *testing.T, kv jetstream.KeyValue, id string) claimValue {
	t.Helper()
	entry, err := kv.Get(context.Background(), claimKey(id))
	if err != nil {
		t.Fatalf("get claim of %s: %v", id, err)
	}
	var v claimValue
	if err := json.Unmarshal(entry.Value(), &v); err != nil {
		t.Fatalf("claim of %s: %v", id, err)
	}
	return v
}

func runningSlots(w *Worker) int {
	_, running := w.slots.current()
	return running
}

func TestKilledWorkerHookWaitedForKV(t *testing.T) {
	h := newKVHarness(t)
	hook := newHeldHook(t)
	h.ranLog = filepath.Join(t.TempDir(), "unused.txt")
	first := startWorkerProc(t, workerProcSpec{Config: hook.config(t), NATSURL: h.url})
	env := doneEnvelope("killed-kv-1")
	h.publish(env)
	waitUntil(t, "the hook to start", func() bool { return hook.count(t, "start") == 1 },
		func() string { return fmt.Sprint(hook.lines(t)) })
	first.kill()

	claim := claimOf(t, h.kv, env.ID)
	if claim.State != claimRunning {
		t.Fatalf("claim state after the kill = %q, want running", claim.State)
	}
	if len(claim.Hooks) != 1 {
		t.Fatalf("claim hook records = %+v, want one", claim.Hooks)
	}
	pid := hook.lines(t)[0][2]
	if rec := claim.Hooks[0]; strconv.Itoa(rec.PID) != pid || rec.Name != "note" || rec.Command != 1 || rec.Ended || rec.Host != hostName {
		t.Errorf("hook record = %+v, want hook note, command 1, pid %s on %s, not ended", rec, pid, hostName)
	}

	// The hook's process group survived the worker. The next worker
	// takes the claim over after a lease and waits for that process.
	next := h.startWorker("next", "host-a", hook.command())
	h.redeliver(env)
	waitUntil(t, "the next worker to wait for the hook", func() bool { return runningSlots(next.w) == 1 },
		func() string { return fmt.Sprint(runningSlots(next.w), " slots in use") })
	if got := claimOf(t, h.kv, env.ID).State; got != claimRunning {
		t.Errorf("claim state while the hook still runs = %q, want running", got)
	}
	if err := os.WriteFile(hook.release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.waitKey(env.ID, claimDone)

	if got := hook.count(t, "start"); got != 1 {
		t.Errorf("hook started %d times, want once: %v", got, hook.lines(t))
	}
	if got := hook.count(t, "end"); got != 1 {
		t.Errorf("hook ended %d times, want once: %v", got, hook.lines(t))
	}
	if got := metricValue(next.metrics.interrupted.WithLabelValues(interruptedWaited)); got != 1 {
		t.Errorf("interrupted{waited} = %v, want 1", got)
	}
	if got := metricValue(next.metrics.hookRuns.WithLabelValues(env.Printer, "note", env.Event, string(TypeSystem), ResultInterrupted)); got != 1 {
		t.Errorf("hook runs{result=interrupted} = %v, want 1", got)
	}
	if got := next.claims(claimResultTakenOver); got != 1 {
		t.Errorf("taken_over = %v, want 1", got)
	}
}

func TestKilledWorkerHookGoneKV(t *testing.T) {
	h := newKVHarness(t)
	hook := newHeldHook(t)
	h.ranLog = filepath.Join(t.TempDir(), "unused.txt")
	first := startWorkerProc(t, workerProcSpec{Config: hook.config(t), NATSURL: h.url})
	env := doneEnvelope("killed-kv-2")
	h.publish(env)
	waitUntil(t, "the hook to start", func() bool { return hook.count(t, "start") == 1 },
		func() string { return fmt.Sprint(hook.lines(t)) })
	first.kill()
	// The hook ends while no worker runs: its outcome is lost.
	if err := os.WriteFile(hook.release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the hook to end", func() bool { return hook.count(t, "end") == 1 },
		func() string { return fmt.Sprint(hook.lines(t)) })
	pid, _ := strconv.Atoi(hook.lines(t)[0][2])
	waitUntil(t, "the hook process to exit", func() bool { return processGone(pid) }, func() string { return "running" })

	next := h.startWorker("next", "host-a", hook.command())
	h.redeliver(env)
	h.waitKey(env.ID, claimDone)
	if got := hook.count(t, "start"); got != 1 {
		t.Errorf("hook started %d times, want once: %v", got, hook.lines(t))
	}
	if got := metricValue(next.metrics.interrupted.WithLabelValues(interruptedUnknown)); got != 1 {
		t.Errorf("interrupted{unknown} = %v, want 1", got)
	}
	if rec := claimOf(t, h.kv, env.ID).Hooks; len(rec) != 1 || !rec[0].Ended {
		t.Errorf("hook records of the done claim = %+v, want one ended", rec)
	}
}

func TestKilledBeforeGateRunsHookOnceKV(t *testing.T) {
	h := newKVHarness(t)
	hook := newHeldHook(t)
	h.ranLog = filepath.Join(t.TempDir(), "unused.txt")
	held := filepath.Join(t.TempDir(), "held")
	first := startWorkerProc(t, workerProcSpec{Config: hook.config(t), NATSURL: h.url, HoldGate: held})
	env := doneEnvelope("killed-gate-kv-1")
	h.publish(env)
	waitFile(t, held, "the hook process to wait at its gate")
	first.kill()
	if got := claimOf(t, h.kv, env.ID).Hooks; len(got) != 0 {
		t.Errorf("hook records after a kill before the start record = %+v, want none", got)
	}

	next := h.startWorker("next", "host-a", hook.command())
	if err := os.WriteFile(hook.release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.redeliver(env)
	h.waitKey(env.ID, claimDone)
	// The gate of the killed worker saw its pipe close and exited; only
	// the next worker's run started the hook.
	if got := hook.count(t, "start"); got != 1 {
		t.Errorf("hook started %d times, want once: %v", got, hook.lines(t))
	}
	if got := metricValue(next.metrics.hookRuns.WithLabelValues(env.Printer, "note", env.Event, string(TypeSystem), ResultOK)); got != 1 {
		t.Errorf("hook runs{result=ok} = %v, want 1", got)
	}
	if got := metricValue(next.metrics.interrupted.WithLabelValues(interruptedUnknown)); got != 0 {
		t.Errorf("interrupted{unknown} = %v, want 0", got)
	}
}

func TestSeenBucketStopReleasesClaim(t *testing.T) {
	h := newKVHarness(t)
	hook := newHeldHook(t)
	h.ranLog = filepath.Join(t.TempDir(), "unused.txt")
	first := h.startWorker("first", "host-a", hook.command())
	env := doneEnvelope("stopped-kv-1")
	h.publish(env)
	waitUntil(t, "the hook to start", func() bool { return hook.count(t, "start") == 1 },
		func() string { return fmt.Sprint(hook.lines(t)) })
	// SIGTERM kills the running hook and releases the claim with the
	// hook recorded as ended.
	first.stop(t)
	claim := claimOf(t, h.kv, env.ID)
	if claim.State != claimReleased {
		t.Fatalf("claim state after a stop = %q, want released", claim.State)
	}
	if len(claim.Hooks) != 1 || !claim.Hooks[0].Ended {
		t.Fatalf("hook records after a stop = %+v, want one ended", claim.Hooks)
	}
	if got := first.claims(claimResultReleased); got != 1 {
		t.Errorf("released = %v, want 1", got)
	}

	// The redelivery takes the released claim over without waiting out
	// a lease, and does not start the hook that SIGTERM killed again.
	next := h.startWorker("next", "host-a", hook.command())
	h.redeliver(env)
	h.waitKey(env.ID, claimDone)
	if got := hook.count(t, "start"); got != 1 {
		t.Errorf("hook started %d times, want once: %v", got, hook.lines(t))
	}
	if got := next.claims(claimResultTakenOver); got != 1 {
		t.Errorf("taken_over = %v, want 1", got)
	}
}

// mqttSeenWorker starts a worker process on an MQTT persistent session
// with a seen-events file.
func mqttSeenWorker(t *testing.T, url, config, seenFile, holdGate string) *workerProc {
	return startWorkerProc(t, workerProcSpec{Config: config, MQTTURL: url, ClientID: "seen-file-worker",
		SeenFile: seenFile, HoldGate: holdGate})
}

// publishMQTT publishes env at QoS 1 as the edge does.
func publishMQTT(t *testing.T, url string, env *bridge.Envelope) {
	t.Helper()
	edge, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "test-edge-" + env.ID}, brokertest.Logger())
	if err != nil {
		t.Fatalf("connect test edge: %v", err)
	}
	defer edge.Close()
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if err := edge.PublishEvent(context.Background(), env, data); err != nil {
		t.Fatalf("publish %s: %v", env.ID, err)
	}
}

// seenFileWorker runs a worker in this process on the MQTT session of
// mqttSeenWorker, with the same seen-events file.
func seenFileWorker(t *testing.T, url, config, seenFile string) (*Worker, *Metrics, func()) {
	t.Helper()
	data, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	cfg, problems, err := ParseConfig(config, data)
	if err != nil || HasErrors(problems) {
		t.Fatalf("config: %v %v", err, problems)
	}
	bus, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "seen-file-worker", PersistentSession: true},
		brokertest.Logger())
	if err != nil {
		t.Fatalf("connect worker: %v", err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	w := NewWorker(cfg, bus, brokertest.Logger().With("worker", "next"), WithMetrics(m), WithSeenFile(seenFile))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run returned %v", err)
			}
			_ = bus.Close()
		})
	}
	t.Cleanup(stop)
	return w, m, stop
}

func TestKilledWorkerHookWaitedForFile(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	hook := newHeldHook(t)
	seenFile := filepath.Join(t.TempDir(), "seen-events")
	config := hook.config(t)
	first := mqttSeenWorker(t, url, config, seenFile, "")
	env := doneEnvelope("killed-file-1")
	publishMQTT(t, url, env)
	waitUntil(t, "the hook to start", func() bool { return hook.count(t, "start") == 1 },
		func() string { return fmt.Sprint(hook.lines(t)) })
	first.kill()

	// The broker sends the event again, without its PUBACK, on the
	// session's next connection.
	next, metrics, stop := seenFileWorker(t, url, config, seenFile)
	waitUntil(t, "the next worker to wait for the hook", func() bool { return runningSlots(next) == 1 },
		func() string { return fmt.Sprint(runningSlots(next), " slots in use") })
	if err := os.WriteFile(hook.release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the interrupted hook to be counted", func() bool {
		return metricValue(metrics.interrupted.WithLabelValues(interruptedWaited)) == 1
	}, func() string { return "not counted" })
	waitUntil(t, "the event recorded as handled", func() bool {
		data, _ := os.ReadFile(seenFile)
		return strings.Contains(string(data), "\n"+env.ID+"\n")
	}, func() string { data, _ := os.ReadFile(seenFile); return string(data) })
	stop()

	if got := hook.count(t, "start"); got != 1 {
		t.Errorf("hook started %d times, want once: %v", got, hook.lines(t))
	}
	if got := hook.count(t, "end"); got != 1 {
		t.Errorf("hook ended %d times, want once: %v", got, hook.lines(t))
	}
	// A restart after the event was recorded keeps no start records.
	set := newIDSet(0)
	l, err := openSeenLog(seenFile, set, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if got := l.starts(env.ID); len(got) != 0 {
		t.Errorf("start records after the event was done = %+v, want none", got)
	}
	if set.add(env.ID) {
		t.Error("the handled event id was not in the seen-events file")
	}
}

func TestKilledBeforeGateRunsHookOnceFile(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	hook := newHeldHook(t)
	seenFile := filepath.Join(t.TempDir(), "seen-events")
	config := hook.config(t)
	held := filepath.Join(t.TempDir(), "held")
	first := mqttSeenWorker(t, url, config, seenFile, held)
	env := doneEnvelope("killed-gate-file-1")
	publishMQTT(t, url, env)
	waitFile(t, held, "the hook process to wait at its gate")
	first.kill()

	if err := os.WriteFile(hook.release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, metrics, stop := seenFileWorker(t, url, config, seenFile)
	waitUntil(t, "the hook to run on the next worker", func() bool {
		return metricValue(metrics.hookRuns.WithLabelValues(env.Printer, "note", env.Event, string(TypeSystem), ResultOK)) == 1
	}, func() string { return fmt.Sprint(hook.lines(t)) })
	stop()
	if got := hook.count(t, "start"); got != 1 {
		t.Errorf("hook started %d times, want once: %v", got, hook.lines(t))
	}
	if got := metricValue(metrics.interrupted.WithLabelValues(interruptedUnknown)); got != 0 {
		t.Errorf("interrupted{unknown} = %v, want 0", got)
	}
}

func TestGateKeepsArgvAndExitStatus(t *testing.T) {
	rec := newRecorder(t)
	sub := testSub(t, `{event: PrintDone, type: system, shell: false, command: ["record '$(touch /tmp/x)' \"a b\" ; '*'", "sh -c 'exit 3'"]}`)
	commands, err := renderSystem(sub, newPlaceholderSet(testEnvelope(nil), time.Now()).lookup)
	if err != nil {
		t.Fatal(err)
	}
	var recorded []int
	run := systemRun{env: os.Environ(), outputLimit: DefaultOutputLimit,
		recordStart: func(_ context.Context, command, pid int, ticks uint64, _ time.Time, _ string) error {
			if ticks == 0 {
				t.Errorf("command #%d: start ticks 0", command)
			}
			if processGone(pid) {
				t.Errorf("command #%d: pid %d not running while its start is recorded", command, pid)
			}
			recorded = append(recorded, command)
			return nil
		}}
	results, _, err := run.run(context.Background(), commands)
	if err == nil || !strings.Contains(err.Error(), `"sh" exited with status 3`) {
		t.Errorf("err = %v, want \"sh\" exited with status 3", err)
	}
	if len(results) != 2 || results[0].ExitCode != 0 || results[1].ExitCode != 3 {
		t.Errorf("results = %+v, want exit codes 0 and 3", results)
	}
	if fmt.Sprint(recorded) != "[1 2]" {
		t.Errorf("recorded starts = %v, want [1 2]", recorded)
	}
	calls := rec.calls(t)
	if len(calls) != 1 {
		t.Fatalf("recorder calls = %+v, want one", calls)
	}
	want := []string{"$(touch /tmp/x)", "a b", ";", "*"}
	if fmt.Sprint(calls[0].Args) != fmt.Sprint(want) {
		t.Errorf("argv = %q, want %q", calls[0].Args, want)
	}
}

func TestGateRecordErrorKeepsHookFromRunning(t *testing.T) {
	rec := newRecorder(t)
	sub := testSub(t, `{event: PrintDone, type: system, shell: false, command: "record once"}`)
	commands, err := renderSystem(sub, newPlaceholderSet(testEnvelope(nil), time.Now()).lookup)
	if err != nil {
		t.Fatal(err)
	}
	var aborted []int
	run := systemRun{env: os.Environ(), outputLimit: DefaultOutputLimit,
		recordStart: func(context.Context, int, int, uint64, time.Time, string) error {
			return errClaimLost
		},
		startAborted: func(command int) { aborted = append(aborted, command) }}
	results, _, err := run.run(context.Background(), commands)
	if !errors.Is(err, errClaimLost) {
		t.Errorf("err = %v, want errClaimLost", err)
	}
	if len(results) != 1 || results[0].ExitCode != -1 {
		t.Errorf("results = %+v, want one command with exit code -1", results)
	}
	if fmt.Sprint(aborted) != "[1]" {
		t.Errorf("aborted starts = %v, want [1]", aborted)
	}
	if calls := rec.calls(t); len(calls) != 0 {
		t.Errorf("recorder ran %d times behind a closed gate, want 0", len(calls))
	}
}

func TestGateMissingProgramStartsNothing(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.sh")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		filepath.Join(dir, "missing"): "no such file or directory",
		plain:                         "not executable",
		dir:                           "is a directory",
	}
	for program, want := range cases {
		sub := testSub(t, fmt.Sprintf("{event: PrintDone, type: system, shell: false, command: [%q]}", program))
		commands, err := renderSystem(sub, newPlaceholderSet(testEnvelope(nil), time.Now()).lookup)
		if err != nil {
			t.Fatal(err)
		}
		recorded := 0
		run := systemRun{env: os.Environ(), outputLimit: DefaultOutputLimit,
			recordStart: func(context.Context, int, int, uint64, time.Time, string) error {
				recorded++
				return nil
			}}
		results, _, err := run.run(context.Background(), commands)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", program, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hook-starts") {
			t.Errorf("%s: err %q names the gate's marker", program, err)
		}
		if len(results) != 1 || results[0].ExitCode != -1 {
			t.Errorf("%s: results = %+v, want one command with exit code -1", program, results)
		}
		if recorded != 0 {
			t.Errorf("%s: %d starts recorded, want none", program, recorded)
		}
	}
}

func TestGcodeCommandIDDeterministic(t *testing.T) {
	const event = "0190f3c2-7b1e-7c3a-9d4e-1234567890ab"
	for _, group := range []string{"", "farm"} {
		a := gcodeCommandID(event, group, 1, "home", []string{"G28"})
		if again := gcodeCommandID(event, group, 1, "home", []string{"G28"}); again != a {
			t.Errorf("group %q: ids for one event and hook differ: %s, %s", group, a, again)
		}
		others := []string{
			gcodeCommandID("0190f3c2-7b1e-7c3a-9d4e-1234567890ac", group, 1, "home", []string{"G28"}),
			gcodeCommandID(event, group, 2, "home", []string{"G28"}),
			gcodeCommandID(event, group, 1, "park", []string{"G28"}),
		}
		for _, o := range others {
			if o == a {
				t.Errorf("group %q: id %s repeats for another event or hook", group, o)
			}
		}
		if !strings.HasPrefix(a, "hook-") || len(a) != len("hook-")+32 {
			t.Errorf("group %q: id %q, want hook- and 32 hex digits", group, a)
		}
	}
}

// Each group runs every event, so the edge must see a distinct command
// id from each group, or it skips the G-code of all groups but the first.
func TestGcodeCommandIDDiffersByGroup(t *testing.T) {
	const event = "0190f3c2-7b1e-7c3a-9d4e-1234567890ab"
	ids := map[string]string{}
	for _, group := range []string{"", "a", "b", "ab"} {
		id := gcodeCommandID(event, group, 1, "home", []string{"G28"})
		if other, ok := ids[id]; ok {
			t.Errorf("groups %q and %q share the command id %s", other, group, id)
		}
		ids[id] = group
	}
}

// Two workers without a group whose configs give different G-code to
// hooks of one name must both reach the printer, while two that run the
// same config send the lines once.
func TestGcodeCommandIDDiffersByLines(t *testing.T) {
	const event = "0190f3c2-7b1e-7c3a-9d4e-1234567890ab"
	lcd := gcodeCommandID(event, "", 1, "lcd", []string{"M117 {name}"})
	if again := gcodeCommandID(event, "", 1, "lcd", []string{"M117 {name}"}); again != lcd {
		t.Errorf("one config gave the ids %s and %s", lcd, again)
	}
	for _, other := range [][]string{{"M117 Printing {name}"}, {"M117 {name}", "M300"}, {"M117 {name}\x00"}} {
		if id := gcodeCommandID(event, "", 1, "lcd", other); id == lcd {
			t.Errorf("lines %q share the command id %s with M117 {name}", other, id)
		}
	}
	joined := gcodeCommandID(event, "", 1, "lcd", []string{"M117 a", "M117 b"})
	if split := gcodeCommandID(event, "", 1, "lcd", []string{"M117 a\x00gcode\x00M117 b"}); split == joined {
		t.Error("two lines and one line that contains the separator share a command id")
	}
}

func TestSeenFileKeepsHookStarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seen-events")
	set := newIDSet(3)
	l, err := openSeenLog(path, set, nil)
	if err != nil {
		t.Fatal(err)
	}
	started := hookStart{Hook: 0, Name: "a", Command: 1, PID: 42, StartTicks: 7, Host: hostName, Worker: "w1"}
	for _, step := range []func() error{
		func() error { return l.recordStart("e1", started, set) },
		func() error { return l.recordStart("e1", hookStart{Hook: 1, Name: "b", Command: 1, PID: 43}, set) },
		func() error { return l.forgetStart("e1", 1, set) },
		func() error { return l.recordStart("e2", hookStart{Hook: 0, Name: "a", Command: 2, PID: 44}, set) },
		func() error { return l.endStart("e2", 0, set) },
		func() error { return l.recordStart("e3", hookStart{Hook: 0, Name: "a", Command: 1, PID: 45}, set) },
		func() error { set.add("e3"); return l.writeDone("e3", set) },
		// Ids that would read as another kind of line.
		func() error {
			set.add(`{"event_id":"e1","done":true}`)
			return l.writeDone(`{"event_id":"e1","done":true}`, set)
		},
		func() error { set.add("-e2"); return l.writeDone("-e2", set) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.close(); err != nil {
		t.Fatal(err)
	}

	for round := range 2 {
		again := newIDSet(3)
		l2, err := openSeenLog(path, again, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := l2.starts("e1"); len(got) != 1 || got[0] != started {
			t.Errorf("round %d: e1 start records = %+v, want only %+v", round, got, started)
		}
		if got := l2.starts("e2"); len(got) != 1 || !got[0].Ended || got[0].Command != 2 {
			t.Errorf("round %d: e2 start records = %+v, want command 2 ended", round, got)
		}
		if got := l2.starts("e3"); len(got) != 0 {
			t.Errorf("round %d: e3 start records = %+v, want none after done", round, got)
		}
		for _, id := range []string{"e3", `{"event_id":"e1","done":true}`, "-e2"} {
			if !slices.Contains(again.list(), id) {
				t.Errorf("round %d: id %q forgotten", round, id)
			}
		}
		if slices.Contains(again.list(), "e1") {
			t.Errorf("round %d: e1 taken as handled", round)
		}
		// The second round reads the file as compaction writes it.
		l2.mu.Lock()
		err = l2.compactLocked(again)
		l2.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if err := l2.close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOwnRunningClaimKeepsHookRecords covers a claim that this worker
// process left running: a done write that it gave up after a lost reply.
// A redelivery to the same process takes the claim as its own, and must
// keep the hook start records instead of running the hook again.
func TestOwnRunningClaimKeepsHookRecords(t *testing.T) {
	h := newKVHarness(t)
	w := h.startWorker("own", "host-a", "")
	env := doneEnvelope("own-claim-1")
	left := claimValue{State: claimRunning, Worker: w.w.instance, Printer: env.Printer, Event: env.Event, Time: time.Now(),
		Hooks: []hookStart{{Hook: 0, Name: "note", Command: 1, PID: 1, Host: hostName, Worker: w.w.instance, Ended: true}}}
	data, err := json.Marshal(left)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.kv.Create(context.Background(), claimKey(env.ID), data); err != nil {
		t.Fatal(err)
	}
	h.publish(env)
	h.waitKey(env.ID, claimDone)
	h.waitDrained("host-a")
	if got := h.ran()[env.ID]; len(got) != 0 {
		t.Errorf("hook ran %d times (by %v), want 0: the claim recorded it as ended", len(got), got)
	}
	if got := claimOf(t, h.kv, env.ID).Hooks; len(got) != 1 || !got[0].Ended {
		t.Errorf("hook records of the done claim = %+v, want the one left", got)
	}
}

func TestKilledAfterRecordRunsHookOnceKV(t *testing.T) {
	h := newKVHarness(t)
	hook := newHeldHook(t)
	h.ranLog = filepath.Join(t.TempDir(), "unused.txt")
	held := filepath.Join(t.TempDir(), "held")
	markers := filepath.Join(t.TempDir(), "hook-starts")
	first := startWorkerProc(t, workerProcSpec{Config: hook.config(t), NATSURL: h.url, HoldGate: held,
		HoldAfterRecord: true, MarkerDir: markers})
	env := doneEnvelope("killed-record-kv-1")
	h.publish(env)
	waitFile(t, held, "the worker to record the hook start")
	first.kill()
	recs := claimOf(t, h.kv, env.ID).Hooks
	if len(recs) != 1 || recs[0].Marker == "" || filepath.Dir(recs[0].Marker) != markers {
		t.Fatalf("hook records after a kill before the gate opened = %+v, want one with a marker in %s", recs, markers)
	}

	// The gate never opened, so its marker is missing, and the next
	// worker on this host runs the hook.
	next := h.startWorkerOpts("next", "host-a", hook.command(), WithHookMarkerDir(markers))
	if err := os.WriteFile(hook.release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.redeliver(env)
	h.waitKey(env.ID, claimDone)
	if got := hook.count(t, "start"); got != 1 {
		t.Errorf("hook started %d times, want once: %v", got, hook.lines(t))
	}
	if got := metricValue(next.metrics.hookRuns.WithLabelValues(env.Printer, "note", env.Event, string(TypeSystem), ResultOK)); got != 1 {
		t.Errorf("hook runs{result=ok} = %v, want 1", got)
	}
	if got := metricValue(next.metrics.interrupted.WithLabelValues(interruptedUnknown)); got != 0 {
		t.Errorf("interrupted{unknown} = %v, want 0", got)
	}
	if left, _ := os.ReadDir(markers); len(left) != 0 {
		t.Errorf("%d gate markers left after the event was done, want 0", len(left))
	}
}

func TestKilledAfterRecordRunsHookOnceFile(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	hook := newHeldHook(t)
	seenFile := filepath.Join(t.TempDir(), "seen-events")
	config := hook.config(t)
	held := filepath.Join(t.TempDir(), "held")
	first := startWorkerProc(t, workerProcSpec{Config: config, MQTTURL: url, ClientID: "seen-file-worker",
		SeenFile: seenFile, HoldGate: held, HoldAfterRecord: true})
	env := doneEnvelope("killed-record-file-1")
	publishMQTT(t, url, env)
	waitFile(t, held, "the worker to record the hook start")
	first.kill()

	if err := os.WriteFile(hook.release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, metrics, stop := seenFileWorker(t, url, config, seenFile)
	waitUntil(t, "the hook to run on the next worker", func() bool {
		return metricValue(metrics.hookRuns.WithLabelValues(env.Printer, "note", env.Event, string(TypeSystem), ResultOK)) == 1
	}, func() string { return fmt.Sprint(hook.lines(t)) })
	stop()
	if got := hook.count(t, "start"); got != 1 {
		t.Errorf("hook started %d times, want once: %v", got, hook.lines(t))
	}
	if got := metricValue(metrics.interrupted.WithLabelValues(interruptedUnknown)); got != 0 {
		t.Errorf("interrupted{unknown} = %v, want 0", got)
	}
}

func TestGateNumbersResumedCommands(t *testing.T) {
	rec := newRecorder(t)
	sub := testSub(t, `{event: PrintDone, type: system, shell: false, command: ["record one", "record two", "sh -c 'exit 4'"]}`)
	commands, err := renderSystem(sub, newPlaceholderSet(testEnvelope(nil), time.Now()).lookup)
	if err != nil {
		t.Fatal(err)
	}
	var recorded []int
	// A worker resumes the list at its second command, as after a kill
	// before the gate of that command opened.
	run := systemRun{env: os.Environ(), outputLimit: DefaultOutputLimit, firstNumber: 2,
		recordStart: func(_ context.Context, command, _ int, _ uint64, _ time.Time, _ string) error {
			recorded = append(recorded, command)
			return nil
		}}
	results, _, err := run.run(context.Background(), commands[1:])
	if err == nil || !strings.Contains(err.Error(), "command #3") {
		t.Errorf("err = %v, want it to name command #3", err)
	}
	if len(results) != 2 {
		t.Errorf("results = %+v, want two commands", results)
	}
	if fmt.Sprint(recorded) != "[2 3]" {
		t.Errorf("recorded starts = %v, want [2 3]", recorded)
	}
	calls := rec.calls(t)
	if len(calls) != 1 || fmt.Sprint(calls[0].Args) != "[two]" {
		t.Errorf("recorder calls = %+v, want only two", calls)
	}
}
