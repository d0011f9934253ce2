package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// hookLine is one line that the farm test's hook appends: the worker that
// ran it, the printer, the event's seq and "start" or "end".
type hookLine struct {
	worker, printer string
	seq             int
	mark            string
}

func readHookLines(t *testing.T, path string) []hookLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines []hookLine
	for _, text := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(text)
		if len(f) != 4 {
			continue
		}
		seq, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("hook line %q: invalid seq: %v", text, err)
		}
		lines = append(lines, hookLine{worker: f[0], printer: f[1], seq: seq, mark: f[3]})
	}
	return lines
}

// TestWorkerFarmKeepsPrinterOrder runs three worker processes in one group
// on JetStream, each given the same list of four printers and
// --max-in-flight 1, so each printer has one consumer that the workers
// share. The events of all printers are published interleaved. The hook
// of one event blocks on a gate file, and the worker running it is killed
// with SIGKILL, which leaves the hook's process running. The other
// printers must finish on the remaining workers while that printer waits,
// and then that printer must finish too. Per printer, every hook must
// start once, after the previous event's hook ended, in seq order.
func TestWorkerFarmKeepsPrinterOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for JetStream's 30 s ack wait after killing a worker")
	}
	bin := buildPrintbridge(t)
	srv := brokertest.StartNATS(t, true, false)
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran.txt")
	gate := filepath.Join(dir, "gate")
	printers := []string{"p1", "p2", "p3", "p4"}
	const (
		events      = 8
		gatePrinter = "p2"
		gateSeq     = 3
	)

	workers := map[string]*proc{}
	for _, name := range []string{"w1", "w2", "w3"} {
		// Each worker gets a config of its own, so that its hook writes
		// the worker's name.
		workerDir := filepath.Join(dir, name)
		if err := os.Mkdir(workerDir, 0o700); err != nil {
			t.Fatal(err)
		}
		// The event's seq comes in the payload's name, because a
		// placeholder must be a PrintDone payload key.
		hook := fmt.Sprintf(`seq={name}; echo "%[1]s $PRINTBRIDGE_PRINTER $seq start" >> %[2]s; `+
			`if [ "$PRINTBRIDGE_PRINTER $seq" = "%[4]s %[5]d" ]; then while [ ! -e %[3]s ]; do sleep 0.05; done; else sleep 0.1; fi; `+
			`echo "%[1]s $PRINTBRIDGE_PRINTER $seq end" >> %[2]s`, name, ran, gate, gatePrinter, gateSeq)
		cfg := writeWorkerConfig(t, workerDir, fmt.Sprintf(`events:
  subscriptions:
  - name: farm
    event: PrintDone
    type: system
    shell: true
    timeout: 0
    command: '%s'
`, hook))
		p := newProc(t, dir, name, bin, "worker", "--config", cfg, "--nats", srv.NATSURL(), "--jetstream",
			"--group", "farm", "--printer", strings.Join(printers, ","), "--max-in-flight", "1",
			"--seen-store", "kv", "--seen-bucket", "farm_seen", "--metrics-listen", "",
			"--data-dir", filepath.Join(workerDir, "data"))
		p.readyLog = "worker started"
		p.Start()
		if !strings.Contains(p.Log(), `order_across_workers="kept per printer"`) {
			t.Errorf("%s did not log that it keeps the order per printer:\n%s", name, p.Tail(20))
		}
		workers[name] = p
	}

	sender, err := natsbus.New(context.Background(), natsbus.Config{URL: srv.NATSURL(), Name: "test-edge", JetStream: true},
		brokertest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	var gateEventID string
	for seq := 1; seq <= events; seq++ {
		for _, printer := range printers {
			env := &bridge.Envelope{Schema: bridge.SchemaVersion, ID: bridge.NewEventID(time.Now()), Seq: uint64(seq),
				Printer: printer, Event: bridge.EventPrintDone, Time: time.Now().UTC(),
				Payload: bridge.Payload{{Key: "name", Value: strconv.Itoa(seq)}, {Key: "path", Value: "cube.gcode"},
					{Key: "origin", Value: "local"}, {Key: "size", Value: 1}, {Key: "time", Value: 1.5}}}
			if printer == gatePrinter && seq == gateSeq {
				gateEventID = env.ID
			}
			data, err := json.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			if err := sender.PublishEvent(context.Background(), env, data); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The gated hook starts on one of the workers, which is then killed
	// without any chance to clean up.
	var victim string
	waitFor(t, fmt.Sprintf("the hook of %s seq %d to start", gatePrinter, gateSeq), workerWait, func() bool {
		for _, l := range readHookLines(t, ran) {
			if l.printer == gatePrinter && l.seq == gateSeq && l.mark == "start" {
				victim = l.worker
				return true
			}
		}
		return false
	})
	workers[victim].Kill()
	// Lines from here on were written after the kill.
	linesAtKill := len(readHookLines(t, ran))
	t.Logf("killed %s while it ran the hook of %s seq %d", victim, gatePrinter, gateSeq)

	ended := func(printer string) int {
		n := 0
		for _, l := range readHookLines(t, ran) {
			if l.printer == printer && l.mark == "end" {
				n++
			}
		}
		return n
	}
	// The other printers go on while the gated printer waits. Events that
	// the killed worker held come back after JetStream's 30 s ack wait.
	const farmWait = 90 * time.Second
	for _, printer := range printers {
		if printer == gatePrinter {
			continue
		}
		waitFor(t, "every hook of "+printer+" to end", farmWait, func() bool { return ended(printer) == events })
	}
	if n := ended(gatePrinter); n != gateSeq-1 {
		t.Errorf("%s: %d hooks ended while the gate was closed, want %d", gatePrinter, n, gateSeq-1)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every hook of "+gatePrinter+" to end", farmWait, func() bool { return ended(gatePrinter) == events })

	lines := readHookLines(t, ran)
	for _, printer := range printers {
		var got []string
		for _, l := range lines {
			if l.printer == printer {
				got = append(got, fmt.Sprintf("%d %s", l.seq, l.mark))
			}
		}
		var want []string
		for seq := 1; seq <= events; seq++ {
			want = append(want, fmt.Sprintf("%d start", seq), fmt.Sprintf("%d end", seq))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: hook lines %q, want each seq once, start then end, in seq order %q", printer, got, want)
		}
	}

	ranHooks := map[string]int{}
	afterKill := map[string]int{}
	for i, l := range lines {
		if l.mark != "start" {
			continue
		}
		ranHooks[l.worker]++
		if i >= linesAtKill {
			afterKill[l.worker]++
		}
	}
	t.Logf("hooks started per worker: %v; after the kill: %v", ranHooks, afterKill)
	if len(ranHooks) < 2 {
		t.Errorf("hooks ran on %d worker(s) %v, want the work shared by at least 2", len(ranHooks), ranHooks)
	}
	// A hook process that the killed worker started just before the kill
	// may write its start line after it, so only the others are counted.
	delete(afterKill, victim)
	if len(afterKill) == 0 {
		t.Errorf("no remaining worker started a hook after the kill")
	}

	// The gated hook's process outlived its worker, so the worker that
	// takes the event over waits for it and reports it as interrupted.
	// Other hooks of the killed worker may be reported so too.
	gateInterrupted := false
	for name, p := range workers {
		if name == victim {
			continue
		}
		for _, line := range strings.Split(p.Log(), "\n") {
			if strings.Contains(line, "hook interrupted: a killed worker had started it") &&
				strings.Contains(line, "event_id="+gateEventID) {
				gateInterrupted = true
			}
		}
		if err := p.Stop(); err != nil {
			t.Errorf("%s exited with %v after SIGTERM", name, err)
		}
	}
	if !gateInterrupted {
		t.Errorf("no remaining worker reported the gated hook (event %s) as interrupted", gateEventID)
	}
}

func TestGroupOrderByBrokerAndFlags(t *testing.T) {
	cases := []struct {
		name                         string
		mqtt, jetStream, printerList bool
		maxInFlight                  int
		want                         string
	}{
		{"jetstream farm", false, true, true, 1, "kept per printer"},
		{"jetstream without printer list", false, true, false, 1, "kept, but one event at a time"},
		{"jetstream with more in flight", false, true, true, 32, "none: give every worker --max-in-flight 1"},
		{"core nats queue group", false, false, true, 1, "none: partition the printers"},
		{"mqtt shared subscription", true, false, true, 1, "none: partition the printers"},
		{"mqtt and jetstream", true, true, true, 1, "none: partition the printers"},
	}
	for _, c := range cases {
		got := groupOrder(c.mqtt, c.jetStream, c.printerList, c.maxInFlight)
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: groupOrder = %q, want prefix %q", c.name, got, c.want)
		}
	}
}

// TestWorkerGroupsEachRunEveryEvent runs worker processes on JetStream
// with one shared seen-events bucket: two in group g1, one in group g2
// and two without a group. Each group must run every event once, and
// each worker without a group must run every event itself, as a NATS
// queue group or an MQTT shared subscription delivers every message to
// each group.
func TestWorkerGroupsEachRunEveryEvent(t *testing.T) {
	bin := buildPrintbridge(t)
	srv := brokertest.StartNATS(t, true, false)
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran.txt")
	const events = 6

	workers := []struct{ name, group string }{{"g1a", "g1"}, {"g1b", "g1"}, {"g2", "g2"}, {"u1", ""}, {"u2", ""}}
	for _, w := range workers {
		workerDir := filepath.Join(dir, w.name)
		if err := os.Mkdir(workerDir, 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := writeWorkerConfig(t, workerDir, fmt.Sprintf(`events:
  subscriptions:
  - name: groups
    event: PrintDone
    type: system
    shell: true
    command: 'echo %s {name} >> %s'
`, w.name, ran))
		args := []string{"worker", "--config", cfg, "--nats", srv.NATSURL(), "--jetstream",
			"--seen-store", "kv", "--seen-bucket", "groups_seen", "--metrics-listen", "",
			"--data-dir", filepath.Join(workerDir, "data")}
		if w.group != "" {
			args = append(args, "--group", w.group)
		}
		p := newProc(t, dir, w.name, bin, args...)
		p.readyLog = "worker started"
		p.Start()
	}

	sender, err := natsbus.New(context.Background(), natsbus.Config{URL: srv.NATSURL(), Name: "test-edge", JetStream: true},
		brokertest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	for seq := 1; seq <= events; seq++ {
		env := &bridge.Envelope{Schema: bridge.SchemaVersion, ID: bridge.NewEventID(time.Now()), Seq: uint64(seq),
			Printer: "p1", Event: bridge.EventPrintDone, Time: time.Now().UTC(),
			Payload: bridge.Payload{{Key: "name", Value: strconv.Itoa(seq)}, {Key: "path", Value: "cube.gcode"},
				{Key: "origin", Value: "local"}, {Key: "size", Value: 1}, {Key: "time", Value: 1.5}}}
		data, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		if err := sender.PublishEvent(context.Background(), env, data); err != nil {
			t.Fatal(err)
		}
	}

	// g1, g2, u1 and u2 each run every event once.
	const want = 4 * events
	readRuns := func() []string {
		data, err := os.ReadFile(ran)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(data)), "\n", " "))
	}
	waitFor(t, fmt.Sprintf("%d hook runs", want), workerWait, func() bool { return len(readRuns()) >= 2*want })
	// Late duplicates would arrive within a moment of the others.
	time.Sleep(500 * time.Millisecond)

	runs := map[string]map[string]int{} // team (group or worker) -> seq -> runs
	fields := readRuns()
	for i := 0; i+1 < len(fields); i += 2 {
		team := fields[i]
		if strings.HasPrefix(team, "g1") {
			team = "g1"
		}
		if runs[team] == nil {
			runs[team] = map[string]int{}
		}
		runs[team][fields[i+1]]++
	}
	for _, team := range []string{"g1", "g2", "u1", "u2"} {
		for seq := 1; seq <= events; seq++ {
			if n := runs[team][strconv.Itoa(seq)]; n != 1 {
				t.Errorf("%s ran the hook of seq %d %d times, expected once", team, seq, n)
			}
		}
	}
}
