package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
	"github.com/printbridge/printbridge/hooks"
	"github.com/printbridge/printbridge/printer/virtual"
)

// e2eFile is a real slicer file small enough for every test run.
const e2eFile = "bambustudio-1.9.7.52_square-ring_tiny.gcode"

// syncBuffer is a log sink that tests read while components write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// collector records envelopes and replies seen by an independent
// subscriber on the broker.
type collector struct {
	mu      sync.Mutex
	events  []*bridge.Envelope
	replies []bridge.Reply
	bad     []string
}

func (c *collector) onEvent(m bridge.EventMessage) {
	env, err := bridge.DecodeEnvelope(m.Data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.bad = append(c.bad, err.Error())
		return
	}
	c.events = append(c.events, env)
}

func (c *collector) onReply(data []byte) {
	var r bridge.Reply
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := json.Unmarshal(data, &r); err != nil {
		c.bad = append(c.bad, err.Error())
		return
	}
	c.replies = append(c.replies, r)
}

func (c *collector) has(event string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if e.Event == event {
			return true
		}
	}
	return false
}

func (c *collector) reply(id, status string) (bridge.Reply, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.replies {
		if r.ID == id && r.Status == status {
			return r, true
		}
	}
	return bridge.Reply{}, false
}

// finalIDs returns the ids that got a done, failed or rejected reply.
func (c *collector) finalIDs() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := map[string]bool{}
	for _, r := range c.replies {
		if r.Final() {
			ids[r.ID] = true
		}
	}
	return ids
}

func (c *collector) snapshot() []*bridge.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chain is one running virtual printer, edge and worker.
type chain struct {
	t         *testing.T
	dir       string
	vp        *virtual.Printer
	col       *collector
	observer  bridge.Bus
	edgeLog   *syncBuffer
	hookFile  string
	stopEdge  context.CancelFunc
	edgeDone  chan error
	stopOther func()
}

type busFactory func(t *testing.T, name string) bridge.Bus

func hookConfig(t *testing.T, dir string) (string, string) {
	t.Helper()
	hookFile := filepath.Join(dir, "hook-ran.txt")
	cfg := fmt.Sprintf(`events:
  enabled: true
  subscriptions:
  - event: PrintDone
    name: record done
    type: system
    shell: false
    command: /bin/sh -c 'printf "%%s|%%s\n" "$0" "$1" >> %s' {name} {__eventname}
  - event: PrintStarted
    name: greet
    type: gcode
    command:
    - M117 printbridge-hook {name}
    - M114
  - event: PrintDoneTypo
    name: misspelled
    type: system
    shell: false
    command: /bin/true
`, hookFile)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, hookFile
}

func startChain(t *testing.T, edgeBus busOptions, newBus busFactory, vcfg virtual.Config) *chain {
	t.Helper()
	dir := t.TempDir()
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o750); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "gcode", e2eFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, e2eFile), data, 0o600); err != nil {
		t.Fatal(err)
	}

	vcfg.RecordPath = filepath.Join(dir, "record.gcode")
	vp, err := virtual.New(vcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vpCtx, stopVP := context.WithCancel(context.Background())
	vpDone := make(chan error, 1)
	go func() { vpDone <- vp.Run(vpCtx) }()

	c := &chain{t: t, dir: dir, vp: vp, col: &collector{}, edgeLog: &syncBuffer{}}

	// An independent observer, subscribed before the edge starts, sees
	// every envelope as a Node-RED flow or Home Assistant would.
	c.observer = newBus(t, "observer")
	ctx := context.Background()
	if err := c.observer.SubscribeEvents(ctx, "e2e", "", c.col.onEvent); err != nil {
		t.Fatal(err)
	}
	if err := c.observer.SubscribeReplies(ctx, "e2e", c.col.onReply); err != nil {
		t.Fatal(err)
	}

	cfgPath, hookFile := hookConfig(t, dir)
	c.hookFile = hookFile
	cfg, problems, err := hooks.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var unknown []hooks.Problem
	for _, p := range problems {
		if strings.Contains(p.String(), "PrintDoneTypo") {
			unknown = append(unknown, p)
		}
	}
	if len(unknown) != 1 {
		t.Fatalf("config problems for the unknown event = %v, want exactly one", problems)
	}
	if !strings.Contains(unknown[0].String(), "config.yaml:15:") {
		t.Errorf("unknown event problem %q does not name line 15", unknown[0])
	}
	workerBus := newBus(t, "worker")
	w := hooks.NewWorker(cfg, workerBus, slog.New(slog.DiscardHandler))
	workerCtx, stopWorker := context.WithCancel(context.Background())
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(workerCtx) }()

	edgeCtx, stopEdge := context.WithCancel(context.Background())
	c.stopEdge = stopEdge
	c.edgeDone = make(chan error, 1)
	opts := edgeOptions{
		port: vp.Path(), baud: 115200, printerID: "e2e", filesDir: files, dataDir: filepath.Join(dir, "edge"),
		maxLineLength: 96, autoConnect: true, bus: edgeBus,
	}
	log := slog.New(slog.NewTextHandler(c.edgeLog, &slog.HandlerOptions{Level: slog.LevelInfo}))
	go func() { c.edgeDone <- runEdgeWith(edgeCtx, opts, log, nil) }()

	c.stopOther = func() {
		stopWorker()
		<-workerDone
		_ = workerBus.Close()
		_ = c.observer.Close()
		stopVP()
		<-vpDone
		// Cancelling Run leaves the pty master and its inotify instance
		// open; only Close releases them.
		_ = vp.Close()
	}
	t.Cleanup(func() {
		c.stop()
		c.stopOther()
		if t.Failed() {
			t.Logf("edge log:\n%s", c.edgeLog.String())
		}
	})
	return c
}

func (c *chain) stop() {
	if c.stopEdge == nil {
		return
	}
	c.stopEdge()
	if err := <-c.edgeDone; err != nil {
		c.t.Errorf("edge stopped with error: %v", err)
	}
	c.stopEdge = nil
}

func (c *chain) command(kind, data string) {
	c.t.Helper()
	if err := c.observer.PublishCommand(context.Background(), "e2e", kind, []byte(data)); err != nil {
		c.t.Fatal(err)
	}
}

func fileCommands(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", "gcode", e2eFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmds, err := virtual.CommandsOf(f)
	if err != nil {
		t.Fatal(err)
	}
	return cmds
}

// runPrint drives one print through the chain and checks everything the
// user can observe.
func runPrint(t *testing.T, c *chain) {
	waitFor(t, "Connected", 20*time.Second, func() bool { return c.col.has(bridge.EventConnected) })

	// A malformed command is rejected with a reason, and nothing else
	// changes.
	c.command("gcode", `{"id": "bad-1", "commands": "G28", "oops": }`)
	c.command("gcode", `{"id": "bad-2", "commands": ["M117 a\nM112"]}`)
	waitFor(t, "rejection of bad-2", 10*time.Second, func() bool {
		_, ok := c.col.reply("bad-2", bridge.ReplyRejected)
		return ok
	})
	if r, ok := c.col.reply("", bridge.ReplyRejected); !ok || !strings.Contains(r.Reason, "invalid JSON") {
		t.Errorf("malformed JSON got reply %+v, want a rejection naming invalid JSON", r)
	}

	c.command("job", fmt.Sprintf(`{"id": "job-1", "action": "start", "path": %q}`, e2eFile))
	waitFor(t, "PrintDone", 120*time.Second, func() bool { return c.col.has(bridge.EventPrintDone) })
	if _, ok := c.col.reply("job-1", bridge.ReplyDone); !ok {
		waitFor(t, "done reply of job-1", 10*time.Second, func() bool { _, ok := c.col.reply("job-1", bridge.ReplyDone); return ok })
	}

	// The system hook ran as a real process, with each placeholder as one
	// argument.
	waitFor(t, "system hook output", 20*time.Second, func() bool {
		data, _ := os.ReadFile(c.hookFile)
		return len(data) > 0
	})
	got, _ := os.ReadFile(c.hookFile)
	if want := e2eFile + "|PrintDone\n"; string(got) != want {
		t.Errorf("system hook wrote %q, want %q", got, want)
	}

	// Files added through command/file fire OctoPrint's file events and
	// get analysed. The add creates the missing folder sub first.
	c.command("file", `{"id": "f-1", "action": "add", "path": "sub/hello.gcode", "data": "G28\nG1 Z0.2 F300\nG1 X10 Y10 E1 F1200\n"}`)
	waitFor(t, "done reply of f-1", 10*time.Second, func() bool { _, ok := c.col.reply("f-1", bridge.ReplyDone); return ok })
	c.command("file", `{"id": "f-2", "action": "mkdir", "path": "sub"}`)
	waitFor(t, "rejection of f-2 (folder exists)", 10*time.Second, func() bool { _, ok := c.col.reply("f-2", bridge.ReplyRejected); return ok })
	waitFor(t, "Upload", 10*time.Second, func() bool { return c.col.has(bridge.EventUpload) })
	waitFor(t, "analysis of the upload", 20*time.Second, func() bool { return c.col.has("MetadataAnalysisFinished") })
	for _, want := range []string{"FolderAdded", "FileAdded", "UpdatedFiles"} {
		if !c.col.has(want) {
			t.Errorf("%s did not fire for the file command", want)
		}
	}
	// A file that is added but cannot be printed took effect in part:
	// accepted, then failed, never rejected.
	c.command("file", `{"id": "f-7", "action": "add", "path": "bin.gcode", "data": "\u0000\u0001garbage", "print": true}`)
	waitFor(t, "failure of f-7", 10*time.Second, func() bool { _, ok := c.col.reply("f-7", bridge.ReplyFailed); return ok })
	if r, _ := c.col.reply("f-7", bridge.ReplyFailed); !strings.Contains(r.Reason, "file added, but") {
		t.Errorf("f-7 failed with %q, want it to say that the file was added", r.Reason)
	}
	if _, ok := c.col.reply("f-7", bridge.ReplyAccepted); !ok {
		t.Error("f-7 got no accepted reply before its failure")
	}
	if _, ok := c.col.reply("f-7", bridge.ReplyRejected); ok {
		t.Error("f-7 was rejected although the file was added")
	}
	c.command("file", `{"id": "f-4", "action": "add", "path": "x.gcode", "from": "/etc/passwd"}`)
	waitFor(t, "rejection of f-4", 10*time.Second, func() bool { _, ok := c.col.reply("f-4", bridge.ReplyRejected); return ok })
	c.command("file", `{"id": "f-5", "action": "list", "path": "sub"}`)
	c.command("file", `{"id": "f-6", "action": "list", "path": "nope"}`)
	waitFor(t, "reply to f-5", 10*time.Second, func() bool { _, ok := c.col.reply("f-5", bridge.ReplyDone); return ok })
	if r, _ := c.col.reply("f-5", bridge.ReplyDone); len(r.Lines) != 2 || !strings.Contains(r.Lines[1], `"path":"sub/hello.gcode"`) {
		t.Errorf("list of sub = %q, want the folder and its file", r.Lines)
	}
	waitFor(t, "rejection of f-6 (no such folder)", 10*time.Second, func() bool { _, ok := c.col.reply("f-6", bridge.ReplyRejected); return ok })

	// A companion program's custom event goes through the edge's normal
	// path; a payload that does not match the catalogue is rejected.
	c.command("event", `{"id": "ev-1", "event": "plugin_acme_hello", "payload": {"n": 1}}`)
	c.command("event", `{"id": "ev-2", "event": "ZChange", "payload": {"new": "high"}}`)
	waitFor(t, "custom event", 10*time.Second, func() bool { return c.col.has("plugin_acme_hello") })
	waitFor(t, "rejection of ev-2", 10*time.Second, func() bool { _, ok := c.col.reply("ev-2", bridge.ReplyRejected); return ok })

	c.stop()
	waitFor(t, "Shutdown", 10*time.Second, func() bool { return c.col.has(bridge.EventShutdown) })

	events := c.col.snapshot()
	for i, env := range events {
		if env.Seq != uint64(i+1) {
			for j := max(0, i-3); j < min(len(events), i+3); j++ {
				t.Logf("event %d: seq %d %s", j, events[j].Seq, events[j].Event)
			}
			t.Fatalf("event %d (%s) has seq %d, want %d: envelopes lost or out of order", i, env.Event, env.Seq, i+1)
		}
		if env.Printer != "e2e" {
			t.Errorf("event %d is from printer %q", i, env.Printer)
		}
		if err := bridge.ValidateEnvelope(env); err != nil {
			t.Errorf("event %d does not match the catalogue: %v", i, err)
		}
	}
	if len(c.col.bad) > 0 {
		t.Errorf("undecodable messages: %v", c.col.bad)
	}
	var names []string
	for _, env := range events {
		names = append(names, env.Event)
	}
	for _, want := range []string{"Startup", "Connecting", "Connected", "FirmwareData", "FileSelected", "PrintStarted",
		"Home", "ZChange", "PositionUpdate", "PrintDone", "Disconnected", "Shutdown"} {
		if !slices.Contains(names, want) {
			t.Errorf("event %s never arrived; got %v", want, names)
		}
	}
	if names[0] != "Startup" || names[len(names)-1] != "Shutdown" {
		t.Errorf("first and last events are %s and %s, want Startup and Shutdown", names[0], names[len(names)-1])
	}
	checkPrintPayloads(t, events)
	checkRecord(t, c.vp.Executed())

	if !strings.Contains(c.edgeLog.String(), "command rejected") {
		t.Error("edge log has no line for the rejected commands")
	}
}

func checkPrintPayloads(t *testing.T, events []*bridge.Envelope) {
	t.Helper()
	for _, env := range events {
		switch env.Event {
		case bridge.EventPrintStarted:
			for _, key := range []string{"name", "path", "origin", "size"} {
				if _, ok := env.Payload.Get(key); !ok {
					t.Errorf("PrintStarted payload lacks %q: %v", key, env.Payload)
				}
			}
		case bridge.EventPrintDone:
			if v, ok := env.Payload.Get("time"); !ok || !strings.Contains(fmt.Sprint(v), ".") {
				t.Errorf("PrintDone time = %v, want a float", v)
			}
			if env.Context.Progress == nil || *env.Context.Progress != 100 {
				t.Errorf("PrintDone context progress = %v, want 100", env.Context.Progress)
			}
		case bridge.EventZChange:
			if _, ok := env.Payload.Get("new"); !ok {
				t.Errorf("ZChange without new: %v", env.Payload)
			}
			if env.Context.CurrentZ == nil {
				t.Error("ZChange context has no currentZ")
			}
		}
	}
}

// checkRecord compares what the virtual printer executed with the file:
// the handshake first, then every file command in order with the hook's
// lines interleaved, then the edge's closing M400.
// connectCommands are the lines the edge sends at connect and at the
// print start before the file's first line: the handshake, the
// temperature and position auto-reports, the SD card's M21 and listing,
// and the M110 that restarts the line numbers for the print.
var connectCommands = []string{"M110 N0", "M115", "M155 S2", "M154 S5", "M21", "M20", "M20 L T"}

func checkRecord(t *testing.T, executed []string) {
	t.Helper()
	want := fileCommands(t)
	var job, hook []string
	started := false
	for _, line := range executed {
		switch {
		case strings.HasPrefix(line, "M117 printbridge-hook"):
			hook = append(hook, line)
		case !started && slices.Contains(connectCommands, line):
		default:
			started = true
			job = append(job, line)
		}
	}
	if len(hook) != 1 || hook[0] != "M117 printbridge-hook "+e2eFile {
		t.Errorf("hook G-code in the record = %q, want one M117 with the file name", hook)
	}
	// The gcode hook also sent M114, which shows up in the job stream.
	if i := slices.Index(job, "M114"); i >= 0 && !slices.Contains(want, "M114") {
		job = slices.Delete(job, i, i+1)
	}
	if len(job) == 0 || job[len(job)-1] != "M400" {
		t.Fatalf("record does not end with the edge's M400: %q", job[max(0, len(job)-3):])
	}
	job = job[:len(job)-1]
	if len(job) != len(want) {
		t.Fatalf("record has %d job commands, file has %d; the record starts %q", len(job), len(want), job[:min(len(job), 8)])
	}
	for i := range want {
		if job[i] != want[i] {
			t.Fatalf("record line %d = %q, file command = %q", i, job[i], want[i])
		}
	}
}

// mqttChainBuses returns the bus maker of startChain for the MQTT broker
// at url, with client ids made of prefix and each bus's name.
func mqttChainBuses(url, prefix string) func(t *testing.T, name string) bridge.Bus {
	return func(t *testing.T, name string) bridge.Bus {
		b, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: prefix + name, Topics: bridge.Topics{}},
			slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// natsChainBuses returns the bus maker of startChain for the NATS server
// at url, with connection names made of prefix and each bus's name.
func natsChainBuses(url, prefix string) func(t *testing.T, name string) bridge.Bus {
	return func(t *testing.T, name string) bridge.Bus {
		b, err := natsbus.New(context.Background(), natsbus.Config{URL: url, Name: prefix + name}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func TestChainOverMosquitto(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	newBus := mqttChainBuses(url, "e2e-")
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	vcfg.GarbageOnOpen = true
	c := startChain(t, busOptions{mqttURL: url, baseTopic: bridge.DefaultBase}, newBus, vcfg)
	runPrint(t, c)
	if n := strings.Count(c.edgeLog.String(), "unreadable bytes from the printer"); n != 1 {
		t.Errorf("edge logged the garbage line %d times, want once", n)
	}

	// The retained state left behind by the stopped edge says so.
	late := newBus(t, "late").(*mqtt.Bus)
	defer late.Close()
	states := make(chan []byte, 1)
	if err := late.SubscribeRaw(context.Background(), bridge.Topics{}.MQTTState("e2e"), func(m mqtt.RawMessage) {
		select {
		case states <- m.Payload:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case data := <-states:
		var st struct {
			State string `json:"state_id"`
		}
		if err := json.Unmarshal(data, &st); err != nil || st.State != "CLOSED" {
			t.Errorf("retained state after the edge stopped = %s, want state_id CLOSED", data)
		}
	case <-time.After(10 * time.Second):
		t.Error("no retained state after the edge stopped")
	}
}

func TestChainOverNATS(t *testing.T) {
	emb := brokertest.StartNATS(t, true, false)
	newBus := natsChainBuses(emb.NATSURL(), "e2e-")
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	c := startChain(t, busOptions{natsURL: emb.NATSURL(), baseTopic: bridge.DefaultBase}, newBus, vcfg)
	runPrint(t, c)
}
