package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

const testPrinter = "mk3s-1"

// waitTimeout bounds every wait for something the worker does.
const waitTimeout = 20 * time.Second

// harness is a worker on an embedded NATS server, with a fake edge that
// replies to G-code commands, a raw subscription to the hook subject, and the
// results the worker reported.
type harness struct {
	t         *testing.T
	natsURL   string
	edge      bridge.Bus
	results   chan Result
	published chan []byte
	worker    *Worker

	mu       sync.Mutex // guards commands
	commands []bridge.Command

	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, configYAML string, opts ...Option) *harness {
	t.Helper()
	return newHarnessLog(t, configYAML, brokertest.Logger(), opts...)
}

// newHarnessLog is newHarness with the worker logging to log.
func newHarnessLog(t *testing.T, configYAML string, log *slog.Logger, opts ...Option) *harness {
	t.Helper()
	return newHarnessOn(t, false, configYAML, log, opts...)
}

// newJetStreamAwareHarness is newHarness with JetStream when js is set:
// the events go through the stream, and the worker consumes them four at
// a time (MaxAckPending 4).
func newJetStreamAwareHarness(t *testing.T, js bool, configYAML string, opts ...Option) *harness {
	t.Helper()
	return newHarnessOn(t, js, configYAML, brokertest.Logger(), opts...)
}

func newHarnessOn(t *testing.T, js bool, configYAML string, log *slog.Logger, opts ...Option) *harness {
	t.Helper()
	srv := brokertest.StartNATS(t, js, false)
	h := &harness{t: t, natsURL: srv.NATSURL(), results: make(chan Result, 100), published: make(chan []byte, 100), done: make(chan error, 1)}
	ctx := context.Background()

	edge, err := natsbus.New(ctx, natsbus.Config{URL: h.natsURL, Name: "test-edge", JetStream: js}, brokertest.Logger())
	if err != nil {
		t.Fatalf("connect fake edge: %v", err)
	}
	t.Cleanup(func() { _ = edge.Close() })
	h.edge = edge
	if err := edge.SubscribeCommands(ctx, testPrinter, h.answerCommand); err != nil {
		t.Fatalf("subscribe fake edge to commands: %v", err)
	}

	nc, err := nats.Connect(h.natsURL)
	if err != nil {
		t.Fatalf("connect hook observer: %v", err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe(bridge.Topics{}.NATSHook(testPrinter), func(m *nats.Msg) { h.published <- m.Data }); err != nil {
		t.Fatalf("subscribe to hook subject: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush hook observer: %v", err)
	}

	cfg, problems := parseTestConfig(t, configYAML)
	if HasErrors(problems) {
		t.Fatalf("test config has errors: %v", problems)
	}
	workerCfg := natsbus.Config{URL: h.natsURL, Name: "test-worker"}
	if js {
		workerCfg.JetStream, workerCfg.MaxAckPending = true, 4
	}
	workerBus, err := natsbus.New(ctx, workerCfg, brokertest.Logger())
	if err != nil {
		t.Fatalf("connect worker: %v", err)
	}
	t.Cleanup(func() { _ = workerBus.Close() })
	bus := &subscribedBus{Bus: workerBus, subscribed: make(chan struct{}, 10)}
	w := NewWorker(cfg, bus, log, append(opts, OnResult(func(r Result) { h.results <- r }))...)
	h.worker = w

	runCtx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	go func() { h.done <- w.Run(runCtx) }()
	t.Cleanup(h.stop)
	printers := max(1, len(cfg.Settings.Printers))
	for i := 0; i < printers; i++ {
		select {
		case <-bus.subscribed:
		case err := <-h.done:
			t.Fatalf("Run returned before subscribing: %v", err)
		case <-time.After(waitTimeout):
			t.Fatalf("the worker did not subscribe to events")
		}
	}
	return h
}

// subscribedBus reports each SubscribeEvents that returned. natsbus
// flushes before it returns, so events published after that reach the
// worker.
type subscribedBus struct {
	bridge.Bus
	subscribed chan struct{}
}

func (b *subscribedBus) SubscribeEvents(ctx context.Context, printer, group string, h func(bridge.EventMessage)) error {
	err := b.Bus.SubscribeEvents(ctx, printer, group, h)
	b.subscribed <- struct{}{}
	return err
}

// SubscribeAvailability passes the availability markers of an MQTT bus
// through, which the embedded interface would hide.
func (b *subscribedBus) SubscribeAvailability(ctx context.Context, printer string, h func(printer string, online, known bool)) error {
	s, ok := b.Bus.(bridge.AvailabilitySubscriber)
	if !ok {
		return bridge.ErrNoAvailability
	}
	return s.SubscribeAvailability(ctx, printer, h)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run returned %v", err)
		}
	case <-time.After(waitTimeout):
		h.t.Errorf("Run did not return after its context ended")
	}
}

// answerCommand accepts every G-code command and replies done with one
// firmware line per command line.
func (h *harness) answerCommand(msg bridge.CommandMessage) {
	cmd, err := bridge.DecodeCommand(msg.Kind, msg.Data)
	if err != nil {
		h.t.Errorf("worker sent an invalid command: %v", err)
		return
	}
	if cmd.Expires != nil && time.Now().After(*cmd.Expires) {
		// As the edge does, by the clock of the host it runs on.
		reply := bridge.Reply{ID: cmd.ID, Printer: msg.Printer, Kind: msg.Kind, Status: bridge.ReplyRejected, Time: time.Now(),
			Reason: bridge.ReasonExpired + " " + cmd.Expires.Format(time.RFC3339)}
		data, _ := json.Marshal(reply)
		if err := h.edge.PublishReply(context.Background(), msg.Printer, "", data); err != nil {
			h.t.Errorf("publish reply: %v", err)
		}
		return
	}
	h.mu.Lock()
	h.commands = append(h.commands, *cmd)
	h.mu.Unlock()
	go func() {
		for _, status := range []string{bridge.ReplyAccepted, bridge.ReplyDone} {
			reply := bridge.Reply{ID: cmd.ID, Printer: msg.Printer, Kind: msg.Kind, Status: status, Time: time.Now()}
			if status == bridge.ReplyDone {
				for _, line := range cmd.Commands {
					reply.Lines = append(reply.Lines, "ok "+line)
				}
			}
			data, _ := json.Marshal(reply)
			if err := h.edge.PublishReply(context.Background(), msg.Printer, "", data); err != nil {
				h.t.Errorf("publish reply: %v", err)
			}
		}
	}()
}

func (h *harness) publish(env *bridge.Envelope) {
	h.t.Helper()
	if env.Schema == 0 {
		env.Schema = bridge.SchemaVersion
		env.Printer = testPrinter
		env.Time = time.Now()
	}
	data, err := json.Marshal(env)
	if err != nil {
		h.t.Fatalf("encode envelope: %v", err)
	}
	if err := h.edge.PublishEvent(context.Background(), env, data); err != nil {
		h.t.Fatalf("publish event: %v", err)
	}
}

// waitResults returns the next n results, failing the test when they do
// not arrive in time.
func (h *harness) waitResults(n int) []Result {
	h.t.Helper()
	var out []Result
	timeout := time.After(waitTimeout)
	for len(out) < n {
		select {
		case r := <-h.results:
			out = append(out, r)
		case <-timeout:
			h.t.Fatalf("got %d hook results, want %d: %+v", len(out), n, out)
		}
	}
	return out
}

func byHook(results []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range results {
		m[r.Hook+"/"+r.EventID] = r
	}
	return m
}

func TestWorkerRunsHooksOverNATS(t *testing.T) {
	rec := newRecorder(t)
	h := newHarness(t, `printbridge:
  printers: [mk3s-1]
events:
  subscriptions:
  - name: notify
    event: [PrintStarted, PrintDone]
    type: system
    shell: false
    command: record {__eventname} {name}
  - name: lcd
    event: PrintStarted
    type: gcode
    command: ["M117 Printing {name}", "M300 S440 P10"]
  - name: photo
    event: PrintDone
    type: system
    shell: false
    command: record {file}
  - name: home-again
    event: Home
    type: gcode
    command: G28
  - name: failing
    event: Home
    type: system
    shell: true
    command: "echo about to fail; exit 7"
`)
	started := &bridge.Envelope{ID: "e1", Event: bridge.EventPrintStarted, Payload: bridge.Payload{{Key: "name", Value: "bench y;.gcode"}}}
	h.publish(started)
	h.publish(started) // a redelivery must not run the hooks again

	nc, err := nats.Connect(h.natsURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	if err := nc.Publish(bridge.Topics{}.NATSEvent(testPrinter, "PrintDone"), []byte("not an envelope")); err != nil {
		t.Fatalf("publish malformed event: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}

	h.publish(&bridge.Envelope{ID: "e2", Event: bridge.EventPrintDone, Payload: bridge.Payload{{Key: "name", Value: "bench y;.gcode"}, {Key: "time", Value: 12.5}}})
	h.publish(&bridge.Envelope{ID: "e3", Event: bridge.EventHome})
	h.publish(&bridge.Envelope{ID: "e4", Event: bridge.EventPrintDone, Printer: "other", Schema: 1, Time: time.Now()})

	got := byHook(h.waitResults(6))
	if r := got["notify/e1"]; r.Err != nil || r.ExitCode != 0 || r.Type != TypeSystem || r.Printer != testPrinter || r.Event != "PrintStarted" {
		t.Errorf("notify on PrintStarted = %+v", r)
	}
	if r := got["notify/e2"]; r.Err != nil || len(r.Commands) != 1 {
		t.Errorf("notify on PrintDone = %+v", r)
	}
	lcd := got["lcd/e1"]
	if lcd.Err != nil || lcd.ExitCode != 0 || lcd.OutputTail != "ok M117 Printing bench y;.gcode\nok M300 S440 P10" {
		t.Errorf("lcd = %+v", lcd)
	}
	var fe *FormatError
	if r := got["photo/e2"]; !errors.As(r.Err, &fe) || !fe.UnknownPlaceholder() || r.ExitCode != -1 {
		t.Errorf("photo with {file} = %+v, want an unknown placeholder", r)
	}
	if r := got["home-again/e3"]; !errors.Is(r.Err, ErrLoopGuard) {
		t.Errorf("home-again = %+v, want ErrLoopGuard", r)
	}
	failing := got["failing/e3"]
	if failing.ExitCode != 7 || failing.Err == nil || failing.OutputTail != "about to fail\n" {
		t.Errorf("failing = %+v", failing)
	}

	calls := rec.calls(t)
	if len(calls) != 2 {
		t.Fatalf("recorder ran %d times, want 2 (no second run for the redelivered event): %+v", len(calls), calls)
	}
	// Hooks of different events run concurrently, so the calls can end
	// in either order.
	byEvent := map[string]recordedCall{}
	for _, c := range calls {
		byEvent[c.EventID] = c
	}
	if c := byEvent["e1"]; argvString(c.Args) != argvString([]string{"PrintStarted", "bench y;.gcode"}) || c.Printer != testPrinter || c.Event != "PrintStarted" {
		t.Errorf("call for e1 = %+v", c)
	}
	if c := byEvent["e2"]; argvString(c.Args) != argvString([]string{"PrintDone", "bench y;.gcode"}) {
		t.Errorf("call for e2 = %+v", c)
	}

	h.mu.Lock()
	commands := append([]bridge.Command(nil), h.commands...)
	h.mu.Unlock()
	if len(commands) != 1 {
		t.Fatalf("edge got %d commands, want 1 (the looping G28 must not be sent): %+v", len(commands), commands)
	}
	if commands[0].Source != "hook:lcd" || commands[0].ID != lcd.CommandID || strings.Join(commands[0].Commands, "|") != "M117 Printing bench y;.gcode|M300 S440 P10" {
		t.Errorf("command = %+v", commands[0])
	}
	// lcd is the second subscription matching PrintStarted. A worker that
	// sends it again after a crash uses the same id, so the edge repeats
	// its reply instead of executing the lines twice.
	if want := gcodeCommandID("e1", "", 1, "lcd", []string{"M117 Printing {name}", "M300 S440 P10"}); commands[0].ID != want {
		t.Errorf("command id = %s, want %s, derived from the event id, the hook and its configured lines", commands[0].ID, want)
	}

	published := map[string]map[string]any{}
	for len(published) < 6 {
		select {
		case data := <-h.published:
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatalf("hook result is not JSON: %s", data)
			}
			published[fmt.Sprint(m["hook"], "/", m["event_id"])] = m
		case <-time.After(waitTimeout):
			t.Fatalf("got %d published results, want 6", len(published))
		}
	}
	f := published["failing/e3"]
	if f["exit_code"] != 7.0 || f["type"] != "system" || f["printer"] != testPrinter || f["event"] != "Home" ||
		f["output_tail"] != "about to fail\n" || !strings.Contains(fmt.Sprint(f["error"]), "exited with status 7") {
		t.Errorf("published result = %v", f)
	}
	if _, ok := f["duration_seconds"].(float64); !ok {
		t.Errorf("duration_seconds missing: %v", f)
	}
	if n := published["notify/e1"]; n["error"] != "" || n["exit_code"] != 0.0 {
		t.Errorf("published success = %v", n)
	}
}

func TestWorkerKeepsPrinterOrder(t *testing.T) {
	rec := newRecorder(t)
	h := newHarness(t, `printbridge:
  max_concurrent_hooks: 1
events:
  subscriptions:
  - {event: ZChange, type: system, shell: false, command: "record {new}"}
`)
	const n = 30
	for i := 0; i < n; i++ {
		h.publish(&bridge.Envelope{ID: fmt.Sprintf("z%d", i), Seq: uint64(i), Event: bridge.EventZChange,
			Payload: bridge.Payload{{Key: "new", Value: float64(i) / 10}}})
	}
	h.waitResults(n)
	calls := rec.calls(t)
	if len(calls) != n {
		t.Fatalf("recorder ran %d times, want %d", len(calls), n)
	}
	for i, c := range calls {
		if want := pyFloatRepr(float64(i) / 10); len(c.Args) != 1 || c.Args[0] != want {
			t.Errorf("call %d = %q, want %q", i, c.Args, want)
		}
	}
}

func TestWorkerStopKillsRunningHook(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "started")
	h := newHarness(t, `events:
  subscriptions:
  - {name: slow, event: PrintStarted, type: system, shell: true, timeout: 0, command: "touch {marker}; sleep 100"}
`)
	h.publish(&bridge.Envelope{ID: "s1", Event: bridge.EventPrintStarted, Payload: bridge.Payload{{Key: "marker", Value: marker}}})
	deadline := time.Now().Add(waitTimeout)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hook did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.stop()
	select {
	case r := <-h.results:
		if !errors.Is(r.Err, ErrStopped) || r.ExitCode != -1 {
			t.Errorf("result = %+v, want ErrStopped and exit code -1", r)
		}
	default:
		t.Errorf("Run returned before the killed hook reported its result")
	}
}

// TestGcodeHookSendsNonASCIIAsQuestionMark runs a G-code hook whose
// {name} is a file name with an umlaut. OctoPrint sends '?' in its place,
// while the edge rejects bytes outside ASCII, so the worker sends '?'.
func TestGcodeHookSendsNonASCIIAsQuestionMark(t *testing.T) {
	h := newHarness(t, `printbridge:
  printers: [mk3s-1]
events:
  subscriptions:
  - name: lcd
    event: PrintPaused
    type: gcode
    command: "M117 Paused {name}"
`)
	h.publish(&bridge.Envelope{ID: "u1", Event: bridge.EventPrintPaused, Payload: bridge.Payload{{Key: "name", Value: "Würfel 立方体.gcode"}}})
	if r := byHook(h.waitResults(1))["lcd/u1"]; r.Err != nil {
		t.Fatalf("lcd = %+v", r)
	}
	h.mu.Lock()
	commands := h.commands
	h.mu.Unlock()
	if len(commands) != 1 || strings.Join(commands[0].Commands, "|") != "M117 Paused W?rfel ???.gcode" {
		t.Errorf("edge got %+v, want one command with M117 Paused W?rfel ???.gcode", commands)
	}
}

// TestGcodeHookOfLateEventNotSent delivers a PrintDone that the edge fired
// three minutes ago, as a broker delivers a worker's backlog after an
// outage. Its G-code (a cool-down, which would turn the heater off in the
// next print) carries an expiry of the event's time plus gcode_max_age, so
// the edge drops it, while its system hook still runs. A newer event
// delivered before it, as in a JetStream redelivery, does not matter.
func TestGcodeHookOfLateEventNotSent(t *testing.T) {
	const config = `events:
  subscriptions:
  - {name: cool, event: PrintDone, type: gcode, command: M104 S0}
  - {name: note, event: PrintDone, type: system, shell: false, command: "true"}
  - {name: lcd, event: PrintStarted, type: gcode, command: M117 started}
`
	for _, c := range []struct {
		name     string
		settings string
		stale    bool
	}{
		{"default age", "", true},
		{"age off", "printbridge:\n  gcode_max_age: 0\n", false},
		{"age longer", "printbridge:\n  gcode_max_age: 5m\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.settings+config)
			now := time.Now()
			h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: testPrinter, ID: "new", Event: bridge.EventPrintStarted, Time: now})
			h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: testPrinter, ID: "old", Event: bridge.EventPrintDone, Time: now.Add(-3 * time.Minute)})
			results := byHook(h.waitResults(3))

			cool := results["cool/old"]
			if errors.Is(cool.Err, ErrStale) != c.stale {
				t.Errorf("cool = %+v, want stale %v", cool, c.stale)
			}
			if got := resultLabel(cool); (got == ResultStale) != c.stale {
				t.Errorf("cool has result %s, want stale %v", got, c.stale)
			}
			if r := results["note/old"]; r.Err != nil {
				t.Errorf("note = %+v, want it run", r)
			}
			if r := results["lcd/new"]; r.Err != nil {
				t.Errorf("lcd = %+v, want it sent", r)
			}
			h.mu.Lock()
			var sent []string
			for _, cmd := range h.commands {
				sent = append(sent, cmd.Commands...)
			}
			h.mu.Unlock()
			if got := slices.Contains(sent, "M104 S0"); got == c.stale {
				t.Errorf("edge ran %q; M104 S0 among them: %v, want %v", sent, got, !c.stale)
			}
		})
	}
}

// TestNewerSchemaWarnsOnceAndRuns sends envelopes of schema 2, as an edge
// upgraded before the worker does: the hooks run, and the worker warns
// once for the printer and schema.
func TestNewerSchemaWarnsOnceAndRuns(t *testing.T) {
	logs, log := newLogBuffer()
	h := newHarnessLog(t, `events:
  subscriptions:
  - {name: note, event: PrintDone, type: system, shell: false, command: "true"}
`, log)
	for _, id := range []string{"s1", "s2"} {
		h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion + 1, Printer: testPrinter, ID: id, Event: bridge.EventPrintDone, Time: time.Now()})
	}
	results := byHook(h.waitResults(2))
	for _, key := range []string{"note/s1", "note/s2"} {
		if r, ok := results[key]; !ok || r.Err != nil {
			t.Errorf("%s = %+v, want it run", key, r)
		}
	}
	if got := strings.Count(logs.String(), "newer schema than this worker knows"); got != 1 {
		t.Errorf("%d warnings about the schema, want 1:\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "schema=2") {
		t.Errorf("the warning does not name schema 2:\n%s", logs.String())
	}
}

// TestGcodeFinalReplyLostAskedAgain loses the final reply of a G-code
// command, as a broker restart can. The worker publishes the command
// again after gcodeReplyRecheck, the edge repeats its last reply for the
// known id, and the hook ends done instead of timing out.
func TestGcodeFinalReplyLostAskedAgain(t *testing.T) {
	saved := gcodeReplyRecheck
	gcodeReplyRecheck = 200 * time.Millisecond
	t.Cleanup(func() { gcodeReplyRecheck = saved })
	h := newHarness(t, `events:
  subscriptions:
  - {name: lcd, event: PrintStarted, type: gcode, command: M117 started}
`)
	var mu sync.Mutex
	received := map[string]int{}
	err := h.edge.SubscribeCommands(context.Background(), "lossy", func(msg bridge.CommandMessage) {
		cmd, err := bridge.DecodeCommand(msg.Kind, msg.Data)
		if err != nil {
			t.Errorf("worker sent an invalid command: %v", err)
			return
		}
		mu.Lock()
		received[cmd.ID]++
		n := received[cmd.ID]
		mu.Unlock()
		// The first copy gets accepted and a done that the broker
		// loses; a copy with a known id gets the last reply again.
		status := bridge.ReplyAccepted
		if n > 1 {
			status = bridge.ReplyDone
		}
		data, _ := json.Marshal(bridge.Reply{ID: cmd.ID, Printer: msg.Printer, Kind: msg.Kind, Status: status, Time: time.Now()})
		if err := h.edge.PublishReply(context.Background(), msg.Printer, "", data); err != nil {
			t.Errorf("publish reply: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: "lossy", ID: "l1", Event: bridge.EventPrintStarted, Time: time.Now()})
	r := byHook(h.waitResults(1))["lcd/l1"]
	if r.Err != nil || r.ExitCode != 0 {
		t.Errorf("hook = %+v, want done after the command was published again", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := received[r.CommandID]; got < 2 {
		t.Errorf("edge received the command %d times, want it again after the lost reply", got)
	}
}

// TestGcodeHookWithoutEdgeFailsSoon sends a G-code hook to a printer that
// no edge serves, while a client that never replies subscribes to every
// subject, as `nats sub '>'` does, so the server does not report no
// responders. No reply comes at all, so the hook fails once
// gcodeFirstReplyWait has passed, long before its 60 s hook timeout, and
// names the printer. A hook of the served printer gets its replies as
// before.
func TestGcodeHookWithoutEdgeFailsSoon(t *testing.T) {
	saved := gcodeFirstReplyWait
	gcodeFirstReplyWait = 300 * time.Millisecond
	t.Cleanup(func() { gcodeFirstReplyWait = saved })
	h := newHarness(t, `events:
  subscriptions:
  - {name: lcd, event: PrintStarted, type: gcode, command: M117 started}
`)
	watcher, err := nats.Connect(h.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(watcher.Close)
	if _, err := watcher.Subscribe(">", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: "ghost", ID: "g1", Event: bridge.EventPrintStarted, Time: time.Now()})
	h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: testPrinter, ID: "p1", Event: bridge.EventPrintStarted, Time: time.Now()})
	results := byHook(h.waitResults(2))

	ghost := results["lcd/g1"]
	if !errors.Is(ghost.Err, ErrTimeout) || !strings.Contains(ghost.Err.Error(), "no reply from an edge of printer ghost") {
		t.Errorf("hook of printer ghost = %+v, want a timeout that names the printer", ghost)
	}
	if ghost.Duration >= DefaultHookTimeout {
		t.Errorf("hook of printer ghost ended after %s, want well before the hook timeout %s", ghost.Duration, DefaultHookTimeout)
	}
	if r := results["lcd/p1"]; r.Err != nil || r.ExitCode != 0 {
		t.Errorf("hook of printer %s = %+v, want done", testPrinter, r)
	}
}

// TestGcodeHookWithoutEdgeOnNATS sends G-code hooks to a printer that no
// edge serves on NATS, more of them than a JetStream consumer hands out
// at once (MaxAckPending 4 here). The NATS server reports that the command
// reached no subscriber, so each hook ends at once with result offline,
// not after gcodeFirstReplyWait as a timeout, and the hook of a served
// printer behind them is sent.
func TestGcodeHookWithoutEdgeOnNATS(t *testing.T) {
	for _, js := range []bool{false, true} {
		t.Run(map[bool]string{false: "core", true: "jetstream"}[js], func(t *testing.T) {
			saved := gcodeFirstReplyWait
			// Long enough that a hook ending as a timeout fails the test
			// by its result, not by its time.
			gcodeFirstReplyWait = time.Minute
			t.Cleanup(func() { gcodeFirstReplyWait = saved })
			h := newJetStreamAwareHarness(t, js, `events:
  subscriptions:
  - {name: lcd, event: PrintStarted, type: gcode, command: M117 started}
`)
			const backlog = 12
			for i := range backlog {
				h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: "ghost", ID: fmt.Sprintf("g%d", i), Event: bridge.EventPrintStarted, Time: time.Now()})
			}
			h.publish(&bridge.Envelope{Schema: bridge.SchemaVersion, Printer: testPrinter, ID: "p1", Event: bridge.EventPrintStarted, Time: time.Now()})
			results := byHook(h.waitResults(backlog + 1))
			for i := range backlog {
				r := results[fmt.Sprintf("lcd/g%d", i)]
				if !errors.Is(r.Err, ErrOffline) || resultLabel(r) != ResultOffline {
					t.Errorf("hook of printer ghost = %+v, want result %s", r, ResultOffline)
					continue
				}
				if !strings.Contains(r.Err.Error(), "no edge of printer ghost") {
					t.Errorf("error %q does not say that no edge of printer ghost is connected", r.Err)
				}
				if r.ExitCode != -1 {
					t.Errorf("hook of printer ghost has exit code %d, want -1: no command ran", r.ExitCode)
				}
			}
			if r := results["lcd/p1"]; r.Err != nil || r.ExitCode != 0 {
				t.Errorf("hook of printer %s = %+v, want done", testPrinter, r)
			}
		})
	}
}
