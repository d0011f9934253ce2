package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/printbridge/printbridge/bridge"
)

// faultCollector records every envelope a subscriber receives, in arrival
// order and with duplicates, and every command reply.
type faultCollector struct {
	mu      sync.Mutex
	events  []*bridge.Envelope
	replies []bridge.Reply
	bad     []string
}

func (c *faultCollector) onEvent(m bridge.EventMessage) {
	env, err := bridge.DecodeEnvelope(m.Data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.bad = append(c.bad, err.Error())
		return
	}
	c.events = append(c.events, env)
}

func (c *faultCollector) onReply(data []byte) {
	var r bridge.Reply
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := json.Unmarshal(data, &r); err != nil {
		c.bad = append(c.bad, err.Error())
		return
	}
	c.replies = append(c.replies, r)
}

func (c *faultCollector) snapshot() []*bridge.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// arrivals returns how many envelopes have arrived, duplicates included.
func (c *faultCollector) arrivals() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// countSince counts the envelopes of event that arrived at index from or
// later, each event id once.
func (c *faultCollector) countSince(event string, from int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, e := range c.events[min(from, len(c.events)):] {
		if e.Event == event {
			seen[e.ID] = true
		}
	}
	return len(seen)
}

func (c *faultCollector) reply(id string) (bridge.Reply, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.replies {
		if r.ID == id && (r.Status == bridge.ReplyAccepted || r.Status == bridge.ReplyRejected) {
			return r, true
		}
	}
	return bridge.Reply{}, false
}

// deliveryReport is what the subscriber's record shows.
type deliveryReport struct {
	arrivals   int
	unique     int
	maxSeq     uint64
	missing    []uint64
	duplicates int
	// reordered lists seqs that arrived for the first time after a
	// higher seq.
	reordered []uint64
	// reused lists seqs that arrived with two different event ids.
	reused []uint64
	bySeq  map[uint64]*bridge.Envelope
	byID   map[string]*bridge.Envelope
}

func analyseDelivery(events []*bridge.Envelope) deliveryReport {
	r := deliveryReport{arrivals: len(events), bySeq: map[uint64]*bridge.Envelope{}, byID: map[string]*bridge.Envelope{}}
	var highest uint64
	for _, e := range events {
		if prev, ok := r.bySeq[e.Seq]; ok {
			if prev.ID != e.ID {
				r.reused = append(r.reused, e.Seq)
			} else {
				r.duplicates++
			}
			continue
		}
		r.bySeq[e.Seq] = e
		r.byID[e.ID] = e
		if e.Seq < highest {
			r.reordered = append(r.reordered, e.Seq)
		}
		highest = max(highest, e.Seq)
	}
	r.unique = len(r.bySeq)
	r.maxSeq = highest
	for seq := uint64(1); seq <= highest; seq++ {
		if _, ok := r.bySeq[seq]; !ok {
			r.missing = append(r.missing, seq)
		}
	}
	return r
}

// hookRun is one line of the side-effect file: the event id and name a
// system hook was started for.
type hookRun struct {
	id    string
	event string
}

func readHookRuns(t testing.TB, path string) []hookRun {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var runs []hookRun
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		id, event, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("hook side-effect line %q is not <event_id> <event>", line)
		}
		runs = append(runs, hookRun{id: id, event: event})
	}
	return runs
}

// hookReport is what the side-effect file shows, checked against the
// subscriber's record.
type hookReport struct {
	runs      int
	twice     []string // event ids whose hook ran more than once
	unknown   []string // event ids the subscriber never saw
	outOfSeq  []string // first hook starts whose event seq is below an earlier first start's
	expected  int
	missed    map[string]int // by event name: hooked events whose hook never ran
	missedIDs []string
}

func analyseHooks(runs []hookRun, delivery deliveryReport, hooked []string) hookReport {
	r := hookReport{runs: len(runs), missed: map[string]int{}}
	seen := map[string]int{}
	var lastSeq uint64
	for _, run := range runs {
		seen[run.id]++
		if seen[run.id] == 2 {
			r.twice = append(r.twice, run.id)
		}
		if seen[run.id] > 1 {
			// A second run is reported in twice; order is checked on
			// first runs.
			continue
		}
		env, ok := delivery.byID[run.id]
		if !ok {
			r.unknown = append(r.unknown, run.id)
			continue
		}
		if env.Seq < lastSeq {
			r.outOfSeq = append(r.outOfSeq, fmt.Sprintf("%s seq %d after seq %d", env.Event, env.Seq, lastSeq))
		}
		lastSeq = max(lastSeq, env.Seq)
	}
	seqs := make([]uint64, 0, len(delivery.bySeq))
	for seq := range delivery.bySeq {
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		env := delivery.bySeq[seq]
		if !slices.Contains(hooked, env.Event) {
			continue
		}
		r.expected++
		if seen[env.ID] == 0 {
			r.missed[env.Event]++
			r.missedIDs = append(r.missedIDs, fmt.Sprintf("%s seq %d", env.Event, seq))
		}
	}
	return r
}

// interruptedHooks counts, from the worker's log, the hooks that a
// restarted worker found recorded as started by the killed one and did
// not start again.
type interruptedHooks struct {
	total int
	// waited still ran on this host, and the worker waited for them.
	waited int
	// unknown had ended before the worker looked.
	unknown int
	// gateClosed were recorded as started, but their gate never opened
	// because the worker died first, so the restarted worker ran them.
	gateClosed int
}

func countInterrupted(workerLog string) interruptedHooks {
	r := interruptedHooks{
		waited:  strings.Count(workerLog, "hook started by a worker that was killed still runs; waiting"),
		unknown: strings.Count(workerLog, "hook started by a worker that was killed is not started again"),
	}
	r.total = r.waited + r.unknown
	r.gateClosed = strings.Count(workerLog, "never passed its gate; starting it now")
	return r
}

func (r interruptedHooks) String() string {
	return fmt.Sprintf("%d waited for, %d with an unknown outcome; %d recorded but never past the gate, run after the restart",
		r.waited, r.unknown, r.gateClosed)
}
