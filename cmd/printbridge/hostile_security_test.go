package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/printer/virtual"
)

const (
	hostilePrinter  = "hostile"
	hostileMessages = 10_000
	// hostileBatch messages are sent before waiting for their replies, so
	// the edge's command queue (256) and Mosquitto's per-client queue
	// (1000 messages) never overflow and every message stays countable.
	hostileBatch = 100
	// hostileReplays of each of the two valid commands are part of the
	// flood; the edge must reply to them again and never run them again.
	hostileReplays = 500
	// hostileHeapGrowth bounds the heap growth over the flood. The test
	// checks that the messages add up to more, so a leak of what they
	// carry would fail it.
	hostileHeapGrowth = 16 << 20
	// hostileSpeed makes the virtual printer take about 35s for the file,
	// five times what the flood took on a 2-core machine with -race.
	hostileSpeed      = 2
	hostileSeed       = 0x686f7374696c65
	hostileReplayLine = "M117 hostile-replay"
	hostileWait       = 5 * time.Minute
)

// hostileMessage is one message of the flood and the id its rejection
// must carry ("" when the edge cannot read an id from it).
type hostileMessage struct {
	kind string
	data []byte
	id   string
}

// expectedReplyID mirrors how the edge finds the id of a message it
// rejects: "id" when the message is a JSON object with a string or
// numeric id.
func expectedReplyID(data []byte) string {
	var probe struct {
		ID any `json:"id"`
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if d.Decode(&probe) != nil || d.More() {
		return ""
	}
	switch id := probe.ID.(type) {
	case string:
		return id
	case json.Number:
		// The edge echoes a numeric id as a string, so that the sender
		// can match the rejection.
		return id.String()
	}
	return ""
}

// hostileFlood makes the messages: malformed, oversized and wrong-typed
// ones on every command kind, and replays of the two valid commands. None
// of them may change the print.
func hostileFlood(r *rand.Rand, n int) []hostileMessage {
	kinds := []string{bridge.CommandGcode, bridge.CommandJob, bridge.CommandConnection, bridge.CommandEvent, "bogus"}
	long := strings.Repeat("X", 200)
	makers := []func(id string) (string, string){
		func(id string) (string, string) {
			return bridge.CommandGcode, fmt.Sprintf(`{"id": %q, "commands": ["M117 a\nM112"]}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandGcode, fmt.Sprintf(`{"id": %q, "commands": ["G28\r"]}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandGcode, fmt.Sprintf(`{"id": %q, "commands": ["M117 %s"]}`, id, long)
		},
		func(id string) (string, string) {
			return bridge.CommandGcode, fmt.Sprintf(`{"id": %q, "commands": {"a": "G28"}}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandGcode, fmt.Sprintf(`{"id": %q, "commands": [1, 2, 3]}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandGcode, fmt.Sprintf(`{"id": %q, "commands": []}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandGcode, fmt.Sprintf(`{"id": %q, "action": "start"}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandGcode, fmt.Sprintf(`{"id": %q, "commands": ["G28"], "expires": "2001-01-01T00:00:00Z"}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandGcode, fmt.Sprintf(`{"id": %q, "commands": ["G28"], "expires": "soon"}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandGcode, fmt.Sprintf(`{"id": %q, "commands": ["G28"], "unknown": true}`, id)
		},
		func(id string) (string, string) { return bridge.CommandGcode, `{"id": 42, "commands": ["G28"]}` },
		func(id string) (string, string) { return bridge.CommandGcode, `{"commands": ["G28"]}` },
		func(id string) (string, string) { return bridge.CommandJob, fmt.Sprintf(`{"id": %q}`, id) },
		func(id string) (string, string) {
			return bridge.CommandJob, fmt.Sprintf(`{"id": %q, "action": "explode"}`, id)
		},
		func(id string) (string, string) { return bridge.CommandJob, fmt.Sprintf(`{"id": %q, "action": 7}`, id) },
		func(id string) (string, string) {
			return bridge.CommandJob, fmt.Sprintf(`{"id": %q, "action": "cancel", "path": "x.gcode"}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandJob, fmt.Sprintf(`{"id": %q, "action": "pause", "commands": ["G28"]}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandJob, fmt.Sprintf(`{"id": %q, "action": "start", "path": "../../etc/passwd"}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandConnection, fmt.Sprintf(`{"id": %q, "action": "reboot"}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandConnection, fmt.Sprintf(`{"id": %q, "action": ["disconnect"]}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandConnection, fmt.Sprintf(`{"id": %q, "action": "connect"}`, id)
		},
		func(id string) (string, string) { return bridge.CommandEvent, fmt.Sprintf(`{"id": %q}`, id) },
		func(id string) (string, string) {
			return bridge.CommandEvent, fmt.Sprintf(`{"id": %q, "event": "ZChange", "payload": {"new": "high"}}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandEvent, fmt.Sprintf(`{"id": %q, "event": "PrintDone", "payload": [1]}`, id)
		},
		func(id string) (string, string) {
			return bridge.CommandEvent, fmt.Sprintf(`{"id": %q, "event": "Home", "action": "connect"}`, id)
		},
		func(id string) (string, string) {
			return kinds[len(id)%len(kinds)], fmt.Sprintf(`{"id": %q, "commands": "G28", "oops": }`, id)
		},
		func(id string) (string, string) { return kinds[len(id)%len(kinds)], strings.Repeat("[", 12000) },
		func(id string) (string, string) { return kinds[len(id)%len(kinds)], "\xff\xfe\xfd" + id },
		func(id string) (string, string) { return kinds[len(id)%len(kinds)], "" },
		func(id string) (string, string) { return kinds[len(id)%len(kinds)], "null" },
		func(id string) (string, string) { return "bogus", fmt.Sprintf(`{"id": %q, "action": "connect"}`, id) },
		func(id string) (string, string) {
			// Over bridge.MaxCommandSize: the edge reads only its length.
			return kinds[len(id)%len(kinds)], fmt.Sprintf(`{"id": %q, "commands": ["M117 %s"]}`, id, strings.Repeat("Y", bridge.MaxCommandSize))
		},
	}
	var msgs []hostileMessage
	for i := 0; len(msgs) < n; i++ {
		id := "h-" + strconv.Itoa(i)
		var kind, data string
		if r.IntN(n) < 2*hostileReplays {
			// A replay of one of the two valid commands, sent before.
			if r.IntN(2) == 0 {
				kind, data = bridge.CommandGcode, fmt.Sprintf(`{"id": "replay-1", "commands": [%q]}`, hostileReplayLine)
			} else {
				kind, data = bridge.CommandJob, fmt.Sprintf(`{"id": "job-1", "action": "start", "path": %q}`, e2eFile)
			}
		} else {
			kind, data = makers[r.IntN(len(makers))](id)
		}
		msgs = append(msgs, hostileMessage{kind: kind, data: []byte(data), id: expectedReplyID([]byte(data))})
	}
	return msgs
}

// tailBuffer is a log sink that keeps only its last max bytes, so the
// flood's warnings do not count as heap growth.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// replyCounter counts replies by id and status.
type replyCounter struct {
	mu       sync.Mutex
	total    int
	byID     map[string]int
	byStatus map[string]map[string]int // id -> status -> count
	bad      int
}

func newReplyCounter() *replyCounter {
	return &replyCounter{byID: map[string]int{}, byStatus: map[string]map[string]int{}}
}

func (c *replyCounter) onReply(data []byte) {
	var r bridge.Reply
	err := json.Unmarshal(data, &r)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.bad++
		return
	}
	c.total++
	c.byID[r.ID]++
	if c.byStatus[r.ID] == nil {
		c.byStatus[r.ID] = map[string]int{}
	}
	c.byStatus[r.ID][r.Status]++
}

func (c *replyCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

func (c *replyCounter) status(id, status string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byStatus[id][status]
}

// commandCounts scrapes printbridge_commands_total from the edge's
// metrics endpoint, by outcome.
func commandCounts(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(scrape(t, addr)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "printbridge_commands_total{") {
			continue
		}
		labels, value, ok := strings.Cut(line[len("printbridge_commands_total{"):], "} ")
		if !ok {
			t.Fatalf("unreadable metric line %q", line)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		for _, l := range strings.Split(labels, ",") {
			if name, val, _ := strings.Cut(l, "="); name == "outcome" {
				out[strings.Trim(val, `"`)] += v
			}
		}
	}
	return out
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestHostileCommandsDuringPrint(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 10,000 messages during a print")
	}
	url := brokertest.StartMosquitto(t)
	dir := t.TempDir()
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o750); err != nil {
		t.Fatal(err)
	}
	gcode, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "gcode", e2eFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, e2eFile), gcode, 0o600); err != nil {
		t.Fatal(err)
	}

	vcfg := virtual.DefaultConfig()
	vcfg.Speed = hostileSpeed
	vp, err := virtual.New(vcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vpCtx, stopVP := context.WithCancel(context.Background())
	vpDone := make(chan error, 1)
	go func() { vpDone <- vp.Run(vpCtx) }()
	t.Cleanup(func() {
		stopVP()
		<-vpDone
		// Cancelling Run leaves the pty master and its inotify instance
		// open; only Close releases them.
		_ = vp.Close()
	})

	observer, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "hostile-observer", Topics: bridge.Topics{}},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = observer.Close() })
	events := &collector{}
	replies := newReplyCounter()
	if err := observer.SubscribeEvents(context.Background(), hostilePrinter, "", events.onEvent); err != nil {
		t.Fatal(err)
	}
	if err := observer.SubscribeReplies(context.Background(), hostilePrinter, replies.onReply); err != nil {
		t.Fatal(err)
	}

	metricsAddr := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	edgeLog := &tailBuffer{max: 16 << 10}
	opts := edgeOptions{port: vp.Path(), baud: 115200, printerID: hostilePrinter, filesDir: files, dataDir: filepath.Join(dir, "edge"),
		maxLineLength: 96, autoConnect: true, metricsListen: metricsAddr,
		bus: busOptions{mqttURL: url, baseTopic: bridge.DefaultBase}}
	edgeCtx, stopEdge := context.WithCancel(context.Background())
	edgeDone := make(chan error, 1)
	go func() {
		edgeDone <- runEdgeWith(edgeCtx, opts, slog.New(slog.NewTextHandler(edgeLog, &slog.HandlerOptions{Level: slog.LevelWarn})), nil)
	}()
	edgeStopped := false
	stopEdgeOnce := func() {
		if !edgeStopped {
			edgeStopped = true
			stopEdge()
			if err := <-edgeDone; err != nil {
				t.Errorf("edge stopped with error: %v", err)
			}
		}
	}
	t.Cleanup(func() {
		stopEdgeOnce()
		if t.Failed() {
			t.Logf("edge log (warnings, last 16 KiB):\n%s", edgeLog.String())
		}
	})

	send := func(kind string, data []byte) {
		t.Helper()
		if err := observer.PublishCommand(context.Background(), hostilePrinter, kind, data); err != nil {
			t.Fatalf("publish %s command: %v", kind, err)
		}
	}
	waitFor(t, "Connected", 30*time.Second, func() bool { return events.has(bridge.EventConnected) })

	// The two valid commands that the flood replays.
	send(bridge.CommandJob, []byte(fmt.Sprintf(`{"id": "job-1", "action": "start", "path": %q}`, e2eFile)))
	send(bridge.CommandGcode, []byte(fmt.Sprintf(`{"id": "replay-1", "commands": [%q]}`, hostileReplayLine)))
	waitFor(t, "PrintStarted", 30*time.Second, func() bool { return events.has(bridge.EventPrintStarted) })
	waitFor(t, "done of replay-1", 30*time.Second, func() bool { return replies.status("replay-1", bridge.ReplyDone) == 1 })
	waitFor(t, "done of job-1", 30*time.Second, func() bool { return replies.status("job-1", bridge.ReplyDone) == 1 })
	flood := hostileFlood(rand.New(rand.NewPCG(hostileSeed, 1)), hostileMessages)
	before := commandCounts(t, metricsAddr)
	repliesBefore := replies.count()
	heapBefore := heapInUse()

	floodBytes := 0
	for _, m := range flood {
		floodBytes += len(m.data)
	}
	if floodBytes <= hostileHeapGrowth {
		t.Fatalf("the flood carries %d bytes, not more than the heap bound of %d, so a leak could pass", floodBytes, hostileHeapGrowth)
	}
	floodStart := time.Now()
	replayCounts := map[string]int{}
	idless := 0
	// An empty message clears a retained command, and the edge ignores it
	// without a reply.
	empty := 0
	for i, m := range flood {
		send(m.kind, m.data)
		if len(m.data) == 0 {
			empty++
		}
		switch m.id {
		case "replay-1", "job-1":
			replayCounts[m.id]++
		case "":
			if len(m.data) > 0 {
				idless++
			}
		}
		if (i+1)%hostileBatch == 0 || i == len(flood)-1 {
			sent := i + 1
			waitFor(t, fmt.Sprintf("replies to the first %d hostile messages", sent), hostileWait, func() bool {
				return replies.count()-repliesBefore >= sent-empty
			})
		}
	}
	if events.has(bridge.EventPrintDone) {
		t.Fatalf("the print finished before the flood ended, so the flood did not all arrive during a print: lower hostileSpeed")
	}
	heapAfter := heapInUse()
	after := commandCounts(t, metricsAddr)
	// A topic kind is the publisher's choice, so it must not become a label.
	if metrics := scrape(t, metricsAddr); strings.Contains(metrics, `kind="bogus"`) || !strings.Contains(metrics, `kind="unknown"`) {
		t.Errorf("commands on command/bogus are not counted under kind=\"unknown\" only")
	}
	if got := replies.count() - repliesBefore; got != len(flood)-empty {
		t.Errorf("%d replies to %d hostile messages, %d of them empty, want one to each message that is not empty", got, len(flood), empty)
	}

	floodTime := time.Since(floodStart)
	waitFor(t, "PrintDone", hostileWait, func() bool { return events.has(bridge.EventPrintDone) })
	t.Logf("flood of %d messages (%d KiB) took %s; the print ended %s after it", len(flood), floodBytes>>10,
		floodTime.Round(time.Millisecond), time.Since(floodStart.Add(floodTime)).Round(time.Millisecond))
	stopEdgeOnce()

	// Accounting: every message was counted by the edge, except replays
	// of a command it already ran, to which it replies again instead.
	counted := sum(after) - sum(before)
	replays := replayCounts["replay-1"] + replayCounts["job-1"]
	if int(counted)+replays != len(flood) {
		t.Errorf("printbridge_commands_total grew by %v (%v, then %v) and %d were replays, for %d messages: messages went uncounted",
			counted, before, after, replays, len(flood))
	}
	if after["accepted"] != before["accepted"] {
		t.Errorf("the flood had %v commands accepted, want none: %v", after["accepted"]-before["accepted"], after)
	}
	if dropped := after["dropped"] - before["dropped"]; dropped != 0 {
		t.Logf("%v messages dropped with a full command queue, and counted", dropped)
	}
	for _, id := range []string{"replay-1", "job-1"} {
		answered := replies.status(id, bridge.ReplyAccepted) + replies.status(id, bridge.ReplyDone)
		if answered != 2+replayCounts[id] {
			t.Errorf("%s got %d accepted or done replies for 1 command and %d replays, want %d", id, answered, replayCounts[id], 2+replayCounts[id])
		}
	}
	replies.mu.Lock()
	// Each message has an id of its own, except the numeric id 42, which
	// the edge echoes as "42" for every message that carries it.
	want := map[string]int{}
	for _, m := range flood {
		if m.id != "" && m.id != "replay-1" && m.id != "job-1" {
			want[m.id]++
		}
	}
	var missing []string
	for id, n := range want {
		if replies.byID[id] != n {
			missing = append(missing, fmt.Sprintf("%s (%d replies for %d messages)", id, replies.byID[id], n))
		}
	}
	slices.Sort(missing)
	if n := replies.byID[""]; n != idless {
		t.Errorf("%d rejections without an id, for %d messages without a readable id", n, idless)
	}
	if replies.bad != 0 {
		t.Errorf("%d replies were not valid JSON", replies.bad)
	}
	replies.mu.Unlock()
	if len(missing) > 0 {
		t.Errorf("%d messages did not get exactly one reply, first %q", len(missing), missing[:min(5, len(missing))])
	}

	if heapAfter > heapBefore && heapAfter-heapBefore > hostileHeapGrowth {
		t.Errorf("heap grew by %d MiB over the flood (%d to %d bytes), more than %d MiB", (heapAfter-heapBefore)>>20,
			heapBefore, heapAfter, hostileHeapGrowth>>20)
	}
	t.Logf("heap before the flood %d KiB, after %d KiB; outcomes %v", heapBefore>>10, heapAfter>>10, after)

	checkHostileRecord(t, vp.Executed())
}

// checkHostileRecord requires the virtual printer to have executed the
// handshake, the file's commands in order with the one replayed M117
// among them exactly once, and the edge's closing M400: no line of the
// flood reached the firmware.
func checkHostileRecord(t *testing.T, executed []string) {
	t.Helper()
	want := fileCommands(t)
	var job []string
	replayed, started := 0, false
	for _, line := range executed {
		switch {
		case line == hostileReplayLine:
			replayed++
		case !started && slices.Contains(connectCommands, line):
		default:
			started = true
			job = append(job, line)
		}
	}
	if replayed != 1 {
		t.Errorf("%q ran %d times, want once: a replay was executed again", hostileReplayLine, replayed)
	}
	if len(job) == 0 || job[len(job)-1] != "M400" {
		t.Fatalf("record does not end with the edge's M400: %q", job[max(0, len(job)-3):])
	}
	job = job[:len(job)-1]
	if len(job) != len(want) {
		t.Fatalf("record has %d job commands, file has %d", len(job), len(want))
	}
	for i := range want {
		if job[i] != want[i] {
			t.Fatalf("record line %d = %q, file command = %q", i, job[i], want[i])
		}
	}
}
