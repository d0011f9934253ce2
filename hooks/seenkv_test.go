package hooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// testLease keeps the lease short, so a takeover test waits one second.
const testLease = time.Second

// kvHarness is an embedded NATS server with JetStream, a publisher in
// the edge's place, and workers that share one seen-events bucket.
type kvHarness struct {
	t      *testing.T
	url    string
	edge   *natsbus.Bus
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	ranLog string // every hook run appends "<event id> <worker>" here
}

func newKVHarness(t *testing.T) *kvHarness {
	t.Helper()
	srv := brokertest.StartNATS(t, true, false)
	h := &kvHarness{t: t, url: srv.NATSURL(), ranLog: filepath.Join(t.TempDir(), "ran.txt")}
	ctx := context.Background()
	edge, err := natsbus.New(ctx, natsbus.Config{URL: h.url, Name: "test-edge", JetStream: true}, brokertest.Logger())
	if err != nil {
		t.Fatalf("connect test edge: %v", err)
	}
	t.Cleanup(func() { _ = edge.Close() })
	h.edge = edge
	h.js, err = jetstream.New(edge.Conn())
	if err != nil {
		t.Fatal(err)
	}
	h.kv, err = OpenSeenBucket(ctx, h.js, SeenBucketConfig{Bucket: "test_seen"}, brokertest.Logger())
	if err != nil {
		t.Fatalf("open seen bucket: %v", err)
	}
	return h
}

// kvWorker is one worker of a kvHarness.
type kvWorker struct {
	bus     *natsbus.Bus
	w       *Worker
	metrics *Metrics
	cancel  context.CancelFunc
	done    chan error
}

// startWorker starts a worker on a connection of its own, which stop
// closes as `printbridge worker` does. Workers with
// different groups consume from different durable consumers, so each of
// them receives every event, as two hosts would after a redelivery.
func (h *kvHarness) startWorker(name, group, command string) *kvWorker {
	h.t.Helper()
	return h.startWorkerOpts(name, group, command)
}

// startWorkerOpts is startWorker with more worker options.
func (h *kvHarness) startWorkerOpts(name, group, command string, opts ...Option) *kvWorker {
	h.t.Helper()
	ctx := context.Background()
	bus, err := natsbus.New(ctx, natsbus.Config{URL: h.url, Name: name, JetStream: true}, brokertest.Logger())
	if err != nil {
		h.t.Fatalf("connect worker %s: %v", name, err)
	}
	h.t.Cleanup(func() { _ = bus.Close() })
	js, err := jetstream.New(bus.Conn())
	if err != nil {
		h.t.Fatal(err)
	}
	kv, err := OpenSeenBucket(ctx, js, SeenBucketConfig{Bucket: "test_seen"}, brokertest.Logger())
	if err != nil {
		h.t.Fatalf("open seen bucket for %s: %v", name, err)
	}
	if command == "" {
		command = fmt.Sprintf(`echo "$PRINTBRIDGE_EVENT_ID %s" >> %s`, name, h.ranLog)
	}
	cfg, problems := parseTestConfig(h.t, fmt.Sprintf(`printbridge:
  group: %s
events:
  subscriptions:
  - {name: note, event: PrintDone, type: system, shell: true, timeout: 0, command: %q}
`, group, command))
	if HasErrors(problems) {
		h.t.Fatalf("test config has errors: %v", problems)
	}
	m := NewMetrics(prometheus.NewRegistry())
	sub := &subscribedBus{Bus: bus, subscribed: make(chan struct{}, 1)}
	opts = append([]Option{WithMetrics(m), WithSeenBucket(kv), WithClaimLease(testLease)}, opts...)
	w := NewWorker(cfg, sub, brokertest.Logger().With("worker", name), opts...)
	runCtx, cancel := context.WithCancel(ctx)
	kw := &kvWorker{bus: bus, w: w, metrics: m, cancel: cancel, done: make(chan error, 1)}
	go func() { kw.done <- w.Run(runCtx) }()
	h.t.Cleanup(func() { kw.stop(h.t) })
	select {
	case <-sub.subscribed:
	case err := <-kw.done:
		h.t.Fatalf("worker %s returned before subscribing: %v", name, err)
	case <-time.After(waitTimeout):
		h.t.Fatalf("worker %s did not subscribe", name)
	}
	return kw
}

func (kw *kvWorker) stop(t *testing.T) {
	if kw.cancel == nil {
		return
	}
	kw.cancel()
	kw.cancel = nil
	select {
	case err := <-kw.done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(waitTimeout):
		t.Errorf("Run did not return after its context ended")
	}
	if err := kw.bus.Close(); err != nil {
		t.Errorf("close the worker's bus: %v", err)
	}
}

func (kw *kvWorker) claims(result string) float64 {
	return metricValue(kw.metrics.claims.WithLabelValues(result))
}

// metricValue reads a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		return -1
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}

func doneEnvelope(id string) *bridge.Envelope {
	return &bridge.Envelope{Schema: bridge.SchemaVersion, ID: id, Printer: testPrinter, Event: bridge.EventPrintDone,
		Time: time.Now(), Payload: bridge.Payload{{Key: "name", Value: "cube.gcode"}}}
}

// publish sends env through the edge's path, deduplicated by event id.
func (h *kvHarness) publish(env *bridge.Envelope) {
	h.t.Helper()
	data, err := json.Marshal(env)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.edge.PublishEvent(context.Background(), env, data); err != nil {
		h.t.Fatalf("publish %s: %v", env.ID, err)
	}
}

// redeliver stores env in the stream once more under a new message id.
// The worker then receives the same envelope a second time, which is what
// it sees after a lost ack or an outbox replay past the stream's
// duplicate window.
func (h *kvHarness) redeliver(env *bridge.Envelope) {
	h.t.Helper()
	data, err := json.Marshal(env)
	if err != nil {
		h.t.Fatal(err)
	}
	msg := nats.NewMsg(bridge.Topics{}.NATSEvent(env.Printer, env.Event))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, env.ID+"-again-"+bridge.NewEventID(time.Now()))
	if _, err := h.js.PublishMsg(context.Background(), msg); err != nil {
		h.t.Fatalf("store %s again: %v", env.ID, err)
	}
}

// ran returns how often each event id's hook ran, and by which workers.
func (h *kvHarness) ran() map[string][]string {
	data, err := os.ReadFile(h.ranLog)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		h.t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if id, worker, ok := strings.Cut(line, " "); ok {
			out[id] = append(out[id], worker)
		}
	}
	return out
}

// waitDrained waits until every durable consumer of the event stream has
// acked every message, so each worker has decided on each event.
func (h *kvHarness) waitDrained(durables ...string) {
	h.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(waitTimeout)
	for _, d := range durables {
		for {
			c, err := h.js.Consumer(ctx, natsbus.DefaultStream, d)
			if err == nil {
				info, err := c.Info(ctx)
				if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				h.t.Fatalf("consumer %s did not ack every event within %s", d, waitTimeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// waitKey waits until the claim of id has state want.
func (h *kvHarness) waitKey(id, want string) {
	h.t.Helper()
	var got string
	waitUntil(h.t, fmt.Sprintf("claim of %s in state %s", id, want), func() bool {
		entry, err := h.kv.Get(context.Background(), claimKey(id))
		if err != nil {
			got = err.Error()
			return false
		}
		var v claimValue
		_ = json.Unmarshal(entry.Value(), &v)
		got = v.State
		return got == want
	}, func() string { return got })
}

func waitUntil(t *testing.T, what string, ok func() bool, last func() string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last seen: %s", what, last())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSeenBucketTwoWorkersRunOnce(t *testing.T) {
	h := newKVHarness(t)
	a := h.startWorker("a", "host-a", "")
	b := h.startWorker("b", "host-b", "")
	const events = 12
	var ids []string
	for i := 0; i < events; i++ {
		env := doneEnvelope(fmt.Sprintf("two-%02d", i))
		ids = append(ids, env.ID)
		h.publish(env)
	}
	h.waitDrained("host-a", "host-b")
	for _, id := range ids {
		h.waitKey(id, claimDone)
	}
	ran := h.ran()
	for _, id := range ids {
		if len(ran[id]) != 1 {
			t.Errorf("hook of %s ran %d times (by %v), want once", id, len(ran[id]), ran[id])
		}
	}
	if got := a.claims(claimResultClaimed) + b.claims(claimResultClaimed); got != events {
		t.Errorf("claimed = %v over both workers, want %d", got, events)
	}
	if got := a.claims(claimResultDone) + b.claims(claimResultDone) + a.claims(claimResultRunning) + b.claims(claimResultRunning); got != events {
		t.Errorf("done + running_elsewhere = %v over both workers, want %d (one per event for the worker that lost)", got, events)
	}
	for name, kw := range map[string]*kvWorker{"a": a, "b": b} {
		if got := metricValue(kw.metrics.claimsOpen); got != 0 {
			t.Errorf("worker %s has %v open claims after all hooks ended, want 0", name, got)
		}
	}

	// A redelivery of handled events runs nothing, on either worker.
	for _, id := range ids[:3] {
		h.redeliver(doneEnvelope(id))
	}
	h.waitDrained("host-a", "host-b")
	ran = h.ran()
	for _, id := range ids[:3] {
		if len(ran[id]) != 1 {
			t.Errorf("after a redelivery the hook of %s ran %d times (by %v), want once", id, len(ran[id]), ran[id])
		}
	}
}

func TestSeenBucketRestartedWorkerSkipsDone(t *testing.T) {
	h := newKVHarness(t)
	first := h.startWorker("first", "host-a", "")
	env := doneEnvelope("restart-1")
	h.publish(env)
	h.waitDrained("host-a")
	h.waitKey(env.ID, claimDone)
	first.stop(t)

	// A new process has an empty memory; only the bucket knows the event.
	second := h.startWorker("second", "host-a", "")
	h.redeliver(env)
	h.waitDrained("host-a")
	if got := h.ran()[env.ID]; len(got) != 1 {
		t.Errorf("hook ran %d times (by %v), want once", len(got), got)
	}
	if got := second.claims(claimResultDone); got != 1 {
		t.Errorf("second worker's done claims = %v, want 1", got)
	}
}

// A seen-events bucket that the server has lost is created again by the
// worker. It is deleted here, and a server that restarted without its
// store loses it too. Before, the hooks waited for a claim until the
// worker restarted.
func TestSeenBucketDeletedIsCreatedAgain(t *testing.T) {
	h := newKVHarness(t)
	restore := func(ctx context.Context) error {
		_, err := OpenSeenBucket(ctx, h.js, SeenBucketConfig{Bucket: "test_seen"}, brokertest.Logger())
		return err
	}
	h.startWorkerOpts("only", "host-a", "", WithSeenBucketRestore(restore))
	before := doneEnvelope("lost-bucket-1")
	h.publish(before)
	h.waitDrained("host-a")
	h.waitKey(before.ID, claimDone)

	if err := h.js.DeleteKeyValue(context.Background(), "test_seen"); err != nil {
		t.Fatalf("delete the seen-events bucket: %v", err)
	}
	after := doneEnvelope("lost-bucket-2")
	h.publish(after)
	h.waitDrained("host-a")
	h.waitKey(after.ID, claimDone)
	if got := h.ran()[after.ID]; len(got) != 1 {
		t.Errorf("hook of the event after the delete ran %d times, want once", len(got))
	}
}

// TestSeenBucketDeletedWhileHookRuns deletes the seen-events bucket while
// a hook runs. Recording the event as done makes the bucket again and
// writes the missing claim as done, without the warning that another
// worker took the claim over.
func TestSeenBucketDeletedWhileHookRuns(t *testing.T) {
	h := newKVHarness(t)
	restore := func(ctx context.Context) error {
		_, err := OpenSeenBucket(ctx, h.js, SeenBucketConfig{Bucket: "test_seen"}, brokertest.Logger())
		return err
	}
	release := filepath.Join(t.TempDir(), "release")
	kw := h.startWorkerOpts("only", "host-a", fmt.Sprintf(`while [ ! -e %s ]; do sleep 0.05; done; echo "$PRINTBRIDGE_EVENT_ID only" >> %s`, release, h.ranLog),
		WithSeenBucketRestore(restore))
	env := doneEnvelope("lost-while-running")
	h.publish(env)
	h.waitKey(env.ID, claimRunning)

	if err := h.js.DeleteKeyValue(context.Background(), "test_seen"); err != nil {
		t.Fatalf("delete the seen-events bucket: %v", err)
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.waitDrained("host-a")
	h.waitKey(env.ID, claimDone)
	if got := kw.claims(claimResultLost); got != 0 {
		t.Errorf("%v claims counted lost, want 0: the claim was only missing with the bucket", got)
	}
	if got := h.ran()[env.ID]; len(got) != 1 {
		t.Errorf("hook ran %d times, want once", len(got))
	}
}

func TestSeenBucketTakesOverDeadClaim(t *testing.T) {
	h := newKVHarness(t)
	env := doneEnvelope("dead-owner-1")
	// The claim a worker killed between claim and completion leaves.
	dead := claimValue{State: claimRunning, Worker: "killed-worker", Printer: env.Printer, Event: env.Event, Time: time.Now()}
	data, _ := json.Marshal(dead)
	if _, err := h.kv.Create(context.Background(), claimKey(env.ID), data); err != nil {
		t.Fatal(err)
	}
	w := h.startWorker("heir", "host-a", "")
	h.publish(env)
	h.waitKey(env.ID, claimDone)
	h.waitDrained("host-a")
	if got := h.ran()[env.ID]; len(got) != 1 {
		t.Errorf("hook ran %d times (by %v), want once, by the worker that took over", len(got), got)
	}
	if got := w.claims(claimResultTakenOver); got != 1 {
		t.Errorf("taken_over = %v, want 1", got)
	}
}

func TestSeenBucketLeavesLiveClaim(t *testing.T) {
	h := newKVHarness(t)
	env := doneEnvelope("live-owner-1")
	live := claimValue{State: claimRunning, Worker: "live-worker", Printer: env.Printer, Event: env.Event, Time: time.Now()}
	data, _ := json.Marshal(live)
	rev, err := h.kv.Create(context.Background(), claimKey(env.ID), data)
	if err != nil {
		t.Fatal(err)
	}
	// A live owner rewrites its claim more often than once a lease.
	ctx, stopRefresh := context.WithCancel(context.Background())
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		for ctx.Err() == nil {
			time.Sleep(testLease / 4)
			if r, err := h.kv.Update(context.Background(), claimKey(env.ID), data, rev); err == nil {
				rev = r
			}
		}
	}()
	defer func() { stopRefresh(); <-refreshed }()

	w := h.startWorker("other", "host-a", "")
	h.publish(env)
	h.waitDrained("host-a")
	if got := h.ran()[env.ID]; len(got) != 0 {
		t.Errorf("hook ran %d times (by %v) while another worker held a live claim, want 0", len(got), got)
	}
	if got := w.claims(claimResultRunning); got != 1 {
		t.Errorf("running_elsewhere = %v, want 1", got)
	}
	if got := w.claims(claimResultTakenOver); got != 0 {
		t.Errorf("taken_over = %v, want 0", got)
	}
}

// TestSeenBucketKeepsClaimAfterLostReply rewrites a running claim with
// the worker's own value, which is what the key holds when the server
// stored a refresh and stopped before its reply: the worker's next write
// then finds another revision. The claim is still the worker's, so it
// must go on refreshing it and record the event as done, not give it up
// as lost and leave it running for a redelivery to run again.
func TestSeenBucketKeepsClaimAfterLostReply(t *testing.T) {
	h := newKVHarness(t)
	dir := t.TempDir()
	started, proceed := filepath.Join(dir, "started"), filepath.Join(dir, "proceed")
	w := h.startWorker("own", "host-a", fmt.Sprintf(`touch %s; while [ ! -f %s ]; do sleep 0.02; done; echo "$PRINTBRIDGE_EVENT_ID own" >> %s`,
		started, proceed, h.ranLog))
	env := doneEnvelope("lost-reply-1")
	h.publish(env)
	waitUntil(t, "the hook to start", func() bool {
		_, err := os.Stat(started)
		return err == nil
	}, func() string { return "no marker file" })

	rewrite := func() uint64 {
		t.Helper()
		entry, err := h.kv.Get(context.Background(), claimKey(env.ID))
		if err != nil {
			t.Fatal(err)
		}
		var v claimValue
		if err := json.Unmarshal(entry.Value(), &v); err != nil || v.Worker != w.w.claims.instance {
			t.Fatalf("claim %s = %s, want one of worker %s (decode error %v)", env.ID, entry.Value(), w.w.claims.instance, err)
		}
		rev, err := h.kv.Update(context.Background(), claimKey(env.ID), entry.Value(), entry.Revision())
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	// A refresh after the rewrite must adopt it and write again.
	stored := rewrite()
	var last uint64
	waitUntil(t, "a refresh after the rewrite", func() bool {
		entry, err := h.kv.Get(context.Background(), claimKey(env.ID))
		if err == nil {
			last = entry.Revision()
		}
		return last > stored
	}, func() string { return fmt.Sprintf("revision %d, rewritten at %d", last, stored) })

	// The write of done after a rewrite must be retried on the new
	// revision.
	rewrite()
	if err := os.WriteFile(proceed, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.waitKey(env.ID, claimDone)
	h.waitDrained("host-a")
	if got := w.claims(claimResultLost); got != 0 {
		t.Errorf("lost claims = %v, want 0: the key held the worker's own claim", got)
	}

	h.redeliver(env)
	h.waitDrained("host-a")
	if got := h.ran()[env.ID]; len(got) != 1 {
		t.Errorf("hook ran %d times (by %v), want once", len(got), got)
	}
}

func TestClaimKeyHashesForeignIDs(t *testing.T) {
	for _, id := range []string{"0190f3c2-7b1e-7c3a-9d4e-1234567890ab", "e1", "a_b-C"} {
		if got := claimKey(id); got != id {
			t.Errorf("claimKey(%q) = %q, want the id unchanged", id, got)
		}
	}
	for _, id := range []string{"has.dot", "has space", "a>b", strings.Repeat("x", 129), "h=abc"} {
		got := claimKey(id)
		if !strings.HasPrefix(got, "h=") || len(got) != 2+64 {
			t.Errorf("claimKey(%q) = %q, want h= and a SHA-256 in hex", id, got)
		}
	}
}

// TestIsKeyNameMatchesPatterns checks isKeyName against the regular
// expressions it replaced for bucket names and plain keys.
func TestIsKeyNameMatchesPatterns(t *testing.T) {
	bucketName := regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	plainKey := regexp.MustCompile(`^[-_a-zA-Z0-9]{1,128}$`)
	inputs := []string{"", "e1", "a_b-C", "-", "_", "0190f3c2-7b1e-7c3a-9d4e-1234567890ab", "has.dot", "has space",
		"a>b", "a*", "h=abc", "é", "a\n", "\xff", "`", "@", "[", "{", "/", ":",
		strings.Repeat("x", 127), strings.Repeat("x", 128), strings.Repeat("x", 129), strings.Repeat("x", 1000)}
	for _, s := range inputs {
		if got, want := isKeyName(s, 0), bucketName.MatchString(s); got != want {
			t.Errorf("isKeyName(%q, 0) = %v, want %v", s, got, want)
		}
		if got, want := isKeyName(s, maxPlainKeyLen), plainKey.MatchString(s); got != want {
			t.Errorf("isKeyName(%q, %d) = %v, want %v", s, maxPlainKeyLen, got, want)
		}
	}
}

func TestOpenSeenBucketRejectsBadName(t *testing.T) {
	srv := brokertest.StartNATS(t, true, false)
	js := brokertest.JetStreamClient(t, srv.NATSURL())
	_, err := OpenSeenBucket(context.Background(), js, SeenBucketConfig{Bucket: "bad.name"}, nil)
	if err == nil || !strings.Contains(err.Error(), `"bad.name"`) {
		t.Errorf("OpenSeenBucket(bad.name) = %v, want an error naming the value", err)
	}
}

// TestSeenBucketGroupsEachRunEveryEvent runs two groups on one bucket:
// g1 with two workers and g2 with one. Each group runs every event once,
// so a claim of one group never keeps another group from an event.
func TestSeenBucketGroupsEachRunEveryEvent(t *testing.T) {
	h := newKVHarness(t)
	h.startWorkerOpts("g1-a", "g1", "", WithSeenGroup("g1"))
	h.startWorkerOpts("g1-b", "g1", "", WithSeenGroup("g1"))
	h.startWorkerOpts("g2-a", "g2", "", WithSeenGroup("g2"))
	const events = 8
	var ids []string
	for i := 0; i < events; i++ {
		env := doneEnvelope(fmt.Sprintf("groups-%02d", i))
		ids = append(ids, env.ID)
		h.publish(env)
	}
	h.waitDrained("g1", "g2")
	for _, id := range ids {
		for _, scope := range []string{"g1", "g2"} {
			var got string
			waitUntil(t, fmt.Sprintf("claim of %s in group %s done", id, scope), func() bool {
				entry, err := h.kv.Get(context.Background(), claimScope("g", scope)+claimKey(id))
				if err != nil {
					got = err.Error()
					return false
				}
				var v claimValue
				_ = json.Unmarshal(entry.Value(), &v)
				got = v.State
				return got == claimDone
			}, func() string { return got })
		}
	}
	ran := h.ran()
	for _, id := range ids {
		var g1, g2 int
		for _, w := range ran[id] {
			if strings.HasPrefix(w, "g1-") {
				g1++
			} else {
				g2++
			}
		}
		if g1 != 1 || g2 != 1 {
			t.Errorf("event %s ran on %v; want once in g1 and once in g2", id, ran[id])
		}
	}
}

func TestClaimScopeKeys(t *testing.T) {
	cases := map[[2]string]string{
		{"g", "farm"}:       "g_farm.",
		{"w", "farm"}:       "w_farm.",
		{"g", ""}:           "",
		{"g", "a.b"}:        "g=" + sha256Hex16("a.b") + ".",
		{"g", "a_b"}:        "g_a_b.",
		{"w", "host-x.lan"}: "w=" + sha256Hex16("host-x.lan") + ".",
	}
	for in, want := range cases {
		if got := claimScope(in[0], in[1]); got != want {
			t.Errorf("claimScope(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
}

func sha256Hex16(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}
