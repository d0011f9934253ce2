package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
	"github.com/printbridge/printbridge/printer/virtual"
)

// faultFile is the slicer file the fault tests print: 100 layers, so a
// print fires many ZChange events.
const faultFile = "prusaslicer-2.8.1_mk4s_mini-cube.gcode"

// faultScale is how many faults of each kind a run injects.
type faultScale struct {
	name          string
	brokerKills   int
	workerKills   int
	edgeKills     int
	unplugs       int
	printerSpeed  float64
	phaseDeadline time.Duration
	// shuffle mixes worker kills between broker restarts. Without it the
	// worker is killed first, so a redelivery after a broker restart goes
	// to the worker instance that already saw the event.
	shuffle bool
}

// scaleFromEnv reads FAULT_SCALE: "full" for `make faults`, anything else
// for the small run of every `go test`.
func scaleFromEnv() faultScale {
	if os.Getenv("FAULT_SCALE") == "full" {
		return faultScale{name: "full", brokerKills: 20, workerKills: 5, edgeKills: 3, unplugs: 1, printerSpeed: 12,
			phaseDeadline: 15 * time.Minute, shuffle: true}
	}
	return faultScale{name: "small", brokerKills: 3, workerKills: 1, edgeKills: 1, unplugs: 1, printerSpeed: 25,
		phaseDeadline: 5 * time.Minute}
}

// faultSeed is the seed of the fault schedule: FAULT_SEED, or the time.
func faultSeed(t testing.TB) uint64 {
	t.Helper()
	if s := os.Getenv("FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("invalid FAULT_SEED %q: give a whole number", s)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

// hookedEvents are the events the fault worker runs a system hook for.
var hookedEvents = []string{"Startup", "Connected", "Disconnected", "PrintStarted", "ZChange", "PrintDone", "PrintFailed", "Shutdown"}

// writeFaultWorkerConfig writes an OctoPrint config whose system hooks
// append "<event_id> <event>" to sideEffects. The event id comes from the
// PRINTBRIDGE_EVENT_ID variable the worker sets, because it is not a
// placeholder.
func writeFaultWorkerConfig(t testing.TB, dir, sideEffects string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("events:\n  enabled: true\n  subscriptions:\n")
	for _, event := range hookedEvents {
		fmt.Fprintf(&b, `  - event: %s
    name: record %s
    type: system
    command: /bin/sh -c 'printf "%%s %%s\n" "$PRINTBRIDGE_EVENT_ID" "$0" >> %s' {__eventname}
`, event, event, sideEffects)
	}
	path := filepath.Join(dir, "worker-config.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// faultRig is the chain of real processes under test.
type faultRig struct {
	t        *testing.T
	dir      string
	printer  string
	broker   faultBroker
	vp       *proc
	edge     *proc
	worker   *proc
	col      *faultCollector
	obs      bridge.Bus
	hookFile string
	record   string
	rng      *rand.Rand
	scale    faultScale

	jobs       int
	jobsDone   int
	jobsFailed int
	restarts   map[string]int
}

func newFaultRig(t *testing.T, bin string, broker faultBroker, dir string, scale faultScale, seed uint64) *faultRig {
	t.Helper()
	r := &faultRig{
		t: t, dir: dir, printer: "fault1", broker: broker, col: &faultCollector{},
		hookFile: filepath.Join(dir, "hooks-ran.txt"), record: filepath.Join(dir, "record.gcode"),
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), scale: scale, restarts: map[string]int{},
	}
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o750); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "gcode", faultFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, faultFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "printer-tty")

	r.obs = broker.Observer(t, r.printer, r.col)
	r.vp = newProc(t, dir, "virtual-printer", bin, "virtual-printer", "--link", link, "--record", r.record,
		"--speed", strconv.FormatFloat(scale.printerSpeed, 'f', -1, 64), "--log-level", "warn")
	r.vp.ready = "virtual printer ready"
	r.edge = newProc(t, dir, "edge", bin, append([]string{"edge", "--port", link, "--printer", r.printer,
		"--data-dir", filepath.Join(dir, "edge-data"), "--files", files, "--metrics-listen", ""},
		broker.EdgeArgs()...)...)
	cfg := writeFaultWorkerConfig(t, dir, r.hookFile)
	// Debug logs show every duplicate the worker ignored.
	r.worker = newProc(t, dir, "worker", bin, append([]string{"worker", "--config", cfg, "--printer", r.printer,
		"--max-concurrent-hooks", "1", "--log-level", "debug", "--metrics-listen", "",
		"--data-dir", filepath.Join(dir, "worker-data")}, broker.WorkerArgs()...)...)
	r.worker.readyLog = "worker started"
	return r
}

// waitUntil polls cond until it holds or the deadline passes.
func (r *faultRig) waitUntil(what string, timeout time.Duration, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pause waits a random time in [lo, hi): the gaps of the fault schedule.
func (r *faultRig) pause(lo, hi time.Duration) {
	time.Sleep(lo + time.Duration(r.rng.Int64N(int64(hi-lo))))
}

// startJob sends a job start until the edge accepts it or a PrintStarted
// shows it was accepted while its reply was lost. It returns the
// observer's arrival index before the request, for countSince.
func (r *faultRig) startJob() int {
	r.t.Helper()
	mark := r.col.arrivals()
	deadline := time.Now().Add(2 * time.Minute)
	for attempt := 1; ; attempt++ {
		if time.Now().After(deadline) {
			r.t.Fatalf("the edge did not accept a job start within 2m")
		}
		r.jobs++
		id := fmt.Sprintf("fault-job-%d", r.jobs)
		data := fmt.Sprintf(`{"id": %q, "action": "start", "path": %q}`, id, faultFile)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.obs.PublishCommand(ctx, r.printer, bridge.CommandJob, []byte(data))
		cancel()
		if err != nil {
			r.t.Logf("job start %s not sent (attempt %d): %v", id, attempt, err)
			continue
		}
		wait := time.Now().Add(10 * time.Second)
		for time.Now().Before(wait) {
			if rep, ok := r.col.reply(id); ok {
				if rep.Status == bridge.ReplyAccepted {
					return mark
				}
				r.t.Logf("job start %s rejected: %s", id, rep.Reason)
				break
			}
			if r.col.countSince(bridge.EventPrintStarted, mark) > 0 {
				return mark
			}
			time.Sleep(50 * time.Millisecond)
		}
		if r.col.countSince(bridge.EventPrintStarted, mark) > 0 {
			return mark
		}
		time.Sleep(time.Second)
	}
}

// waitPrinting waits until the job started at mark is printing layers.
func (r *faultRig) waitPrinting(mark int) {
	r.t.Helper()
	r.waitUntil("PrintStarted and three ZChange events", r.scale.phaseDeadline, func() bool {
		return r.col.countSince(bridge.EventPrintStarted, mark) > 0 && r.col.countSince(bridge.EventZChange, mark) >= 3
	})
}

func (r *faultRig) done(mark int) bool { return r.col.countSince(bridge.EventPrintDone, mark) > 0 }

// restartBroker takes the broker down for a random moment.
func (r *faultRig) restartBroker() {
	r.broker.Down()
	r.pause(100*time.Millisecond, 2*time.Second)
	r.broker.Start()
	r.restarts[r.broker.Name()]++
}

func (r *faultRig) restartWorker() {
	r.worker.Kill()
	r.pause(0, time.Second)
	r.worker.Start()
	r.restarts["worker"]++
}

// phaseBrokerAndWorker prints the file, as often as needed, while the
// broker and the worker are killed at random moments. The edge and the
// printer stay up, so every job must finish. It returns the number of
// jobs printed.
func (r *faultRig) phaseBrokerAndWorker() int {
	r.t.Helper()
	faults := make([]func(), 0, r.scale.brokerKills+r.scale.workerKills)
	for range r.scale.workerKills {
		faults = append(faults, r.restartWorker)
	}
	for range r.scale.brokerKills {
		faults = append(faults, r.restartBroker)
	}
	if r.scale.shuffle {
		r.rng.Shuffle(len(faults), func(i, j int) { faults[i], faults[j] = faults[j], faults[i] })
	}

	jobs := 1
	mark := r.startJob()
	r.waitPrinting(mark)
	for _, fault := range faults {
		r.pause(300*time.Millisecond, 2500*time.Millisecond)
		if r.done(mark) {
			jobs++
			mark = r.startJob()
		}
		fault()
	}
	r.waitUntil("PrintDone of the last job of the broker and worker phase", r.scale.phaseDeadline, func() bool { return r.done(mark) })
	r.jobsDone += jobs
	return jobs
}

// phaseEdge kills the edge with SIGKILL in the middle of a print, which
// ends that job: the job lives in the edge. The restarted edge connects
// again, and a last job must print to the end.
func (r *faultRig) phaseEdge() {
	r.t.Helper()
	for range r.scale.edgeKills {
		mark := r.startJob()
		r.waitPrinting(mark)
		r.pause(0, 2*time.Second)
		r.edge.Kill()
		r.jobsFailed++
		r.pause(0, time.Second)
		before := r.col.arrivals()
		r.edge.Start()
		r.restarts["edge"]++
		r.waitUntil("Connected after the edge restart", r.scale.phaseDeadline, func() bool {
			return r.col.countSince(bridge.EventConnected, before) > 0
		})
	}
	mark := r.startJob()
	r.waitUntil("PrintDone after the edge restarts", r.scale.phaseDeadline, func() bool { return r.done(mark) })
	r.jobsDone++
}

// phaseUnplug kills the virtual printer in the middle of a print, as
// pulling its USB cable would, and starts it again on the same link. The
// job fails, which is correct, and a new job must print to the end.
func (r *faultRig) phaseUnplug() {
	r.t.Helper()
	for range r.scale.unplugs {
		mark := r.startJob()
		r.waitPrinting(mark)
		r.vp.Kill()
		r.waitUntil("PrintFailed after the unplug", time.Minute, func() bool {
			return r.col.countSince(bridge.EventPrintFailed, mark) > 0
		})
		r.jobsFailed++
		before := r.col.arrivals()
		r.vp.Start()
		r.restarts["virtual-printer"]++
		r.waitUntil("Connected after the replug", time.Minute, func() bool {
			return r.col.countSince(bridge.EventConnected, before) > 0
		})
	}
	mark := r.startJob()
	r.waitUntil("PrintDone after the replug", r.scale.phaseDeadline, func() bool { return r.done(mark) })
	r.jobsDone++
}

// checkPhaseRecord compares what the virtual printer executed during the
// broker and worker phase with jobs copies of the file: the handshake of
// the edge's first connect, then each job's commands, after its M110,
// followed by the edge's closing M400.
func checkPhaseRecord(t *testing.T, executed []string, jobs int) {
	t.Helper()
	want := fileCommandsOf(t, faultFile)
	rest := executed
	for job := 0; job < jobs; job++ {
		for len(rest) > 0 && slices.Contains(connectCommands, rest[0]) {
			rest = rest[1:]
		}
		if len(rest) < len(want)+1 {
			t.Fatalf("job %d of %d: record has %d more lines, want %d", job+1, jobs, len(rest), len(want)+1)
		}
		for k := range want {
			if rest[k] != want[k] {
				t.Fatalf("job %d of %d: record line %d = %q, file command = %q", job+1, jobs, k, rest[k], want[k])
			}
		}
		if rest[len(want)] != "M400" {
			t.Fatalf("job %d of %d ends with %q, want the edge's M400", job+1, jobs, rest[len(want)])
		}
		rest = rest[len(want)+1:]
	}
}

func fileCommandsOf(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", "gcode", name))
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

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(data), "\n"), "\n")
}

// TestFaultSuite runs the virtual printer, the edge and the worker as real
// processes against a real broker process, and kills each of them while
// a real slicer file prints. FAULT_SCALE=full (make faults) injects 20
// broker restarts, 5 worker and 3 edge kills; the default run 3, 1 and 1.
// Both runs unplug the printer once.
func TestFaultSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite runs real processes for minutes")
	}
	bin := buildPrintbridge(t)
	scale := scaleFromEnv()
	for _, kind := range []string{"mosquitto", "jetstream"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			var broker faultBroker
			if kind == "mosquitto" {
				broker = startFaultMosquitto(t, dir)
			} else {
				broker = startFaultNATS(t, dir)
			}
			seed := faultSeed(t)
			t.Logf("fault scale %s, seed %d (set FAULT_SEED to repeat), broker down by %s", scale.name, seed, broker.DownSignal())
			runFaultSuite(t, newFaultRig(t, bin, broker, dir, scale, seed))
		})
	}
}

func runFaultSuite(t *testing.T, r *faultRig) {
	if keep := os.Getenv("FAULT_LOG_DIR"); keep != "" {
		t.Cleanup(func() { keepFaultLogs(t, r.dir, filepath.Join(keep, r.broker.Name())) })
	}
	start := time.Now()
	r.vp.Start()
	r.worker.Start()
	r.edge.Start()
	r.waitUntil("Connected", time.Minute, func() bool { return r.col.countSince(bridge.EventConnected, 0) > 0 })

	phaseJobs := r.phaseBrokerAndWorker()
	phaseRecord := readLines(t, r.record)
	r.phaseEdge()
	r.phaseUnplug()

	// A clean stop publishes Shutdown, the last event.
	if err := r.edge.Stop(); err != nil {
		t.Errorf("edge exited with %v after SIGTERM", err)
	}
	// Only the clean stop fires Shutdown: a killed edge cannot.
	r.waitUntil("Shutdown at the subscriber", time.Minute, func() bool {
		return r.col.countSince(bridge.EventShutdown, 0) > 0
	})
	events := r.col.snapshot()
	delivery := analyseDelivery(events)
	// The worker runs the Shutdown hook last; wait for it, then for
	// nothing more to arrive.
	last := delivery.bySeq[delivery.maxSeq]
	waitHook := time.Now().Add(30 * time.Second)
	for time.Now().Before(waitHook) && !slices.ContainsFunc(readHookRuns(t, r.hookFile), func(h hookRun) bool { return h.id == last.ID }) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := r.worker.Stop(); err != nil {
		t.Errorf("worker exited with %v after SIGTERM", err)
	}
	runs := readHookRuns(t, r.hookFile)
	hooks := analyseHooks(runs, delivery, hookedEvents)
	interrupted := countInterrupted(r.worker.Log())

	t.Logf("%s: %d jobs printed, %d cut short by a fault, in %s", r.broker.Name(), r.jobsDone, r.jobsFailed, time.Since(start).Round(time.Second))
	t.Logf("restarts: %v", r.restarts)
	t.Logf("events: %d unique (seq 1..%d), %d arrivals, %d duplicates", delivery.unique, delivery.maxSeq, delivery.arrivals, delivery.duplicates)
	t.Logf("hooks: %d runs for %d hooked events; missed %d %v; ran twice %d; interrupted by a worker SIGKILL %d (%s)",
		hooks.runs, hooks.expected, len(hooks.missedIDs), hooks.missed, len(hooks.twice), interrupted.total, interrupted)

	logStreamCount(t, r.obs, delivery.unique)
	checkDelivery(t, delivery, events)
	if !strings.HasPrefix(last.Event, bridge.EventShutdown) {
		t.Errorf("last event is %s (seq %d), want Shutdown", last.Event, last.Seq)
	}
	if got := r.col.countSince(bridge.EventStartup, 0); got != 1+r.restarts["edge"] {
		t.Errorf("%d Startup events for %d edge starts", got, 1+r.restarts["edge"])
	}
	if strings.Contains(r.edge.Log(), "oldest undelivered events dropped") {
		t.Error("the edge's outbox dropped events; its limits must not be reached here")
	}
	if strings.Contains(r.edge.Log(), "storing event in the outbox failed") {
		t.Error("the edge failed to store events in its outbox")
	}
	if len(hooks.twice) > 0 {
		t.Errorf("hooks ran twice for %d event ids: %v", len(hooks.twice), hooks.twice)
	}
	if len(hooks.outOfSeq) > 0 {
		t.Errorf("hooks started out of event order: %v", hooks.outOfSeq)
	}
	if len(hooks.unknown) > 0 {
		t.Errorf("hooks ran for %d event ids the subscriber never saw: %v", len(hooks.unknown), hooks.unknown)
	}
	if !slices.ContainsFunc(runs, func(h hookRun) bool { return h.id == last.ID }) {
		t.Errorf("the worker, up since the last fault, did not run the hook of the last event (%s seq %d)", last.Event, last.Seq)
	}
	if len(hooks.missedIDs) > 0 {
		t.Errorf("%d hooked events whose hook never ran: %v", len(hooks.missedIDs), hooks.missedIDs)
	}
	checkPhaseRecord(t, phaseRecord, phaseJobs)
}

// logStreamCount logs how many messages the JetStream stream holds. More
// messages than events would mean duplicates stored by the server, as
// opposed to redeliveries to a consumer.
func logStreamCount(t *testing.T, bus bridge.Bus, unique int) {
	t.Helper()
	nb, ok := bus.(*natsbus.Bus)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := nb.Stream(ctx)
	if err != nil {
		t.Logf("JetStream stream not readable: %v", err)
		return
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Logf("JetStream stream info failed: %v", err)
		return
	}
	t.Logf("JetStream stream holds %d messages for %d unique events", info.State.Msgs, unique)
}

// keepFaultLogs copies the process logs, the hook side effects and the
// printer's record to dst, for FAULT_LOG_DIR.
func keepFaultLogs(t *testing.T, dir, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o750); err != nil {
		t.Errorf("keep fault logs: %v", err)
		return
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	names = append(names, filepath.Join(dir, "hooks-ran.txt"), filepath.Join(dir, "record.gcode"))
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(name)), data, 0o600); err != nil {
			t.Errorf("keep fault logs: %v", err)
		}
	}
	t.Logf("fault logs kept in %s", dst)
}

func checkDelivery(t *testing.T, d deliveryReport, events []*bridge.Envelope) {
	t.Helper()
	if d.unique == 0 {
		t.Fatal("the subscriber received no events")
	}
	if len(d.missing) > 0 {
		t.Errorf("%d of seq 1..%d never arrived: %v", len(d.missing), d.maxSeq, d.missing)
		for _, seq := range d.missing[:min(3, len(d.missing))] {
			for s := seq - min(seq-1, 2); s <= seq+2; s++ {
				if e, ok := d.bySeq[s]; ok {
					t.Logf("around missing seq %d: seq %d %s", seq, s, e.Event)
				}
			}
		}
	}
	if len(d.reordered) > 0 {
		t.Errorf("events arrived out of order for the first time: %v", d.reordered)
	}
	if len(d.reused) > 0 {
		t.Errorf("seq numbers reused by different event ids: %v", d.reused)
	}
	if first := d.bySeq[1]; first == nil || first.Event != bridge.EventStartup {
		t.Errorf("seq 1 is %v, want Startup", first)
	}
	for _, e := range events {
		if e.Printer == "" || e.ID == "" || e.Schema != bridge.SchemaVersion {
			t.Errorf("incomplete envelope: %+v", e)
			break
		}
	}
}

// inProcessEdge runs an edge in this process on a virtual printer.
type inProcessEdge struct {
	vp       *virtual.Printer
	log      *syncBuffer
	stop     context.CancelFunc
	done     chan error
	mu       sync.Mutex
	envelops []string
}

func (e *inProcessEdge) built(event string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Contains(e.envelops, event)
}

func startInProcessEdge(t *testing.T, dir, printerID string, bus busOptions, speed float64) *inProcessEdge {
	t.Helper()
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o750); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "gcode", faultFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, faultFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = speed
	vp, err := virtual.New(vcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vpCtx, stopVP := context.WithCancel(context.Background())
	vpDone := make(chan error, 1)
	go func() { vpDone <- vp.Run(vpCtx) }()

	e := &inProcessEdge{vp: vp, log: &syncBuffer{}, done: make(chan error, 1)}
	ctx, stop := context.WithCancel(context.Background())
	e.stop = stop
	bus.baseTopic = bridge.DefaultBase
	opts := edgeOptions{port: vp.Path(), baud: 115200, printerID: printerID, filesDir: files, dataDir: filepath.Join(dir, "edge"),
		maxLineLength: 96, autoConnect: true, bus: bus}
	log := slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	go func() {
		e.done <- runEdgeWith(ctx, opts, log, func(env *bridge.Envelope) {
			e.mu.Lock()
			e.envelops = append(e.envelops, env.Event)
			e.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		e.Stop(t)
		stopVP()
		<-vpDone
		// Cancelling Run leaves the pty master and its inotify instance
		// open; only Close releases them.
		_ = vp.Close()
		if t.Failed() {
			t.Logf("edge log:\n%s", e.log.String())
		}
	})
	return e
}

// Stop stops the edge and reports its error; a second call does nothing.
func (e *inProcessEdge) Stop(t *testing.T) {
	t.Helper()
	if e.stop == nil {
		return
	}
	e.stop()
	e.stop = nil
	if err := <-e.done; err != nil {
		t.Errorf("edge stopped with error: %v", err)
	}
}

func edgeBusOptions(b faultBroker) busOptions {
	switch b := b.(type) {
	case *mosquittoBroker:
		return busOptions{mqttURL: b.url()}
	case *natsBroker:
		return busOptions{natsURL: b.url(), jetStream: true}
	}
	panic(fmt.Sprintf("unknown broker %T", b))
}

func startFaultBroker(t *testing.T, kind, dir string) faultBroker {
	t.Helper()
	if kind == "mosquitto" {
		return startFaultMosquitto(t, dir)
	}
	return startFaultNATS(t, dir)
}

func waitCollected(t *testing.T, col *faultCollector, what string, timeout time.Duration, cond func([]*bridge.Envelope) bool) {
	t.Helper()
	waitFor(t, what, timeout, func() bool { return cond(col.snapshot()) })
}

func hasEvent(event string) func([]*bridge.Envelope) bool {
	return func(events []*bridge.Envelope) bool {
		return slices.ContainsFunc(events, func(e *bridge.Envelope) bool { return e.Event == event })
	}
}

// TestEdgeBrokerDownAtStart starts the edge while the broker is down: the
// printer connects at once, and Startup and Connected reach a subscriber
// once the broker is up.
func TestEdgeBrokerDownAtStart(t *testing.T) {
	for _, kind := range []string{"mosquitto", "jetstream"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			broker := startFaultBroker(t, kind, dir)
			col := &faultCollector{}
			broker.Observer(t, "down1", col)
			broker.Down()

			e := startInProcessEdge(t, dir, "down1", edgeBusOptions(broker), 0)
			waitFor(t, "the printer's Connected event while the broker is down", 30*time.Second, func() bool {
				return e.built(bridge.EventConnected)
			})
			if got := col.arrivals(); got != 0 {
				t.Fatalf("the subscriber got %d events while the broker was down", got)
			}
			broker.Start()
			waitCollected(t, col, "Connected at the subscriber", time.Minute, hasEvent(bridge.EventConnected))
			e.Stop(t)
			waitCollected(t, col, "Shutdown at the subscriber", 30*time.Second, hasEvent(bridge.EventShutdown))

			events := col.snapshot()
			d := analyseDelivery(events)
			checkDelivery(t, d, events)
			names := make([]string, 0, d.unique)
			for seq := uint64(1); seq <= d.maxSeq; seq++ {
				if e := d.bySeq[seq]; e != nil {
					names = append(names, e.Event)
				}
			}
			if i := slices.Index(names, bridge.EventConnected); i < 0 || slices.Index(names, bridge.EventStartup) != 0 {
				t.Errorf("events = %v, want Startup first and Connected later", names)
			}
			if names[len(names)-1] != bridge.EventShutdown {
				t.Errorf("last event = %s, want Shutdown", names[len(names)-1])
			}
		})
	}
}

// TestEdgeBrokerRestartMidPrint restarts the broker twice while a file
// prints: a subscriber whose subscription outlives the restarts receives
// every seq, in order, and the printer executes the whole file.
func TestEdgeBrokerRestartMidPrint(t *testing.T) {
	for _, kind := range []string{"mosquitto", "jetstream"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			broker := startFaultBroker(t, kind, dir)
			col := &faultCollector{}
			obs := broker.Observer(t, "restart1", col)
			e := startInProcessEdge(t, dir, "restart1", edgeBusOptions(broker), 25)
			waitCollected(t, col, "Connected", 30*time.Second, hasEvent(bridge.EventConnected))

			cmd := fmt.Sprintf(`{"id": "job-1", "action": "start", "path": %q}`, faultFile)
			if err := obs.PublishCommand(context.Background(), "restart1", bridge.CommandJob, []byte(cmd)); err != nil {
				t.Fatal(err)
			}
			waitCollected(t, col, "PrintStarted", 30*time.Second, hasEvent(bridge.EventPrintStarted))
			restarts := 0
			for restarts < 2 {
				time.Sleep(500 * time.Millisecond)
				if hasEvent(bridge.EventPrintDone)(col.snapshot()) {
					break
				}
				broker.Down()
				time.Sleep(300 * time.Millisecond)
				broker.Start()
				restarts++
			}
			if restarts < 2 {
				t.Fatalf("the print ended after %d broker restarts; slow the printer down", restarts)
			}
			waitCollected(t, col, "PrintDone", 3*time.Minute, hasEvent(bridge.EventPrintDone))
			e.Stop(t)
			waitCollected(t, col, "Shutdown", 30*time.Second, hasEvent(bridge.EventShutdown))

			events := col.snapshot()
			d := analyseDelivery(events)
			checkDelivery(t, d, events)
			t.Logf("%d broker restarts: %d events, %d arrivals", restarts, d.unique, d.arrivals)
			checkPhaseRecord(t, e.vp.Executed(), 1)
		})
	}
}

// restartWithoutStore stops nats-server, deletes its JetStream store in
// dir, as a container without a volume loses it, and starts it again on
// the same port.
func (n *natsBroker) restartWithoutStore(dir string) {
	n.t.Helper()
	n.Down()
	if err := os.RemoveAll(filepath.Join(dir, "jetstream")); err != nil {
		n.t.Fatal(err)
	}
	n.Start()
}

// TestEdgeNATSServerLostStore replaces nats-server with one that has an
// empty store, as a container without a volume does when it restarts.
// The edge creates the stream and the state bucket again, publishes its
// availability, info and state into the new bucket, and its events reach
// a consumer that was also created again.
func TestEdgeNATSServerLostStore(t *testing.T) {
	dir := t.TempDir()
	broker := startFaultNATS(t, dir)
	col := &faultCollector{}
	obs := broker.Observer(t, "lost1", col)
	startInProcessEdge(t, dir, "lost1", edgeBusOptions(broker), 0)
	waitCollected(t, col, "Connected", 30*time.Second, hasEvent(bridge.EventConnected))

	broker.restartWithoutStore(dir)

	js := brokertest.JetStreamClient(t, broker.url())
	ctx := context.Background()
	want := map[string]string{"lost1.availability": "online", "lost1.info": `"printers":["lost1"]`, "lost1": `"state_id":"OPERATIONAL"`}
	var got map[string]string
	defer func() {
		if t.Failed() {
			t.Logf("state bucket after the loss: %v", got)
		}
	}()
	// bucketHolds reports whether the state bucket has every key of want,
	// and leaves what it read in got.
	bucketHolds := func() bool {
		got = map[string]string{}
		kv, err := js.KeyValue(ctx, natsbus.StateBucket)
		if err != nil {
			return false
		}
		ok := true
		for key, part := range want {
			if entry, err := kv.Get(ctx, key); err == nil {
				got[key] = string(entry.Value())
			}
			ok = ok && strings.Contains(got[key], part)
		}
		return ok
	}
	waitFor(t, "availability, info and state in the new state bucket", 30*time.Second, bucketHolds)

	cmd := fmt.Sprintf(`{"id": "job-1", "action": "start", "path": %q}`, faultFile)
	if err := obs.PublishCommand(ctx, "lost1", bridge.CommandJob, []byte(cmd)); err != nil {
		t.Fatal(err)
	}
	waitCollected(t, col, "PrintStarted after the store was lost", 30*time.Second, hasEvent(bridge.EventPrintStarted))

	// An operator deletes the state bucket alone: the next state that
	// the edge stores makes it create the bucket again and store its
	// availability and info there too.
	if err := js.DeleteKeyValue(ctx, natsbus.StateBucket); err != nil {
		t.Fatalf("delete the state bucket: %v", err)
	}
	want["lost1"] = `"state_id":`
	waitFor(t, "availability, info and state in the state bucket made again", 30*time.Second, bucketHolds)
}

// TestWorkerNATSServerLostStore replaces nats-server with one that has an
// empty store under a running JetStream worker. Without any event, the
// worker creates its consumer and its seen-events bucket again after the
// reconnect, so the first event's claim need not fail first.
func TestWorkerNATSServerLostStore(t *testing.T) {
	dir := t.TempDir()
	broker := startFaultNATS(t, dir)
	config := writeWorkerConfig(t, t.TempDir(), `events:
  subscriptions:
  - {name: note, event: PrintDone, type: system, command: "true"}
`)
	w := startWorker(t, "--config", config, "--nats", broker.url(), "--jetstream", "--group", "lost")

	broker.restartWithoutStore(dir)

	js := brokertest.JetStreamClient(t, broker.url())
	ctx := context.Background()
	waitFor(t, "the seen-events bucket and the consumer made again", 30*time.Second, func() bool {
		if _, err := js.KeyValue(ctx, "printbridge_seen"); err != nil {
			return false
		}
		_, err := js.Consumer(ctx, natsbus.DefaultStream, "lost")
		return err == nil
	})
	if len(w.lines("seen-events bucket is missing")) == 0 {
		t.Errorf("the worker did not log the lost seen-events bucket; log:\n%s", w.log.String())
	}
}

// TestEdgeRestartRemembersCommandIDs sends a G-code command again after
// the edge restarted on the same data folder, as a worker does whose
// final reply was lost: the new edge repeats the reply and does not run
// the lines a second time.
func TestEdgeRestartRemembersCommandIDs(t *testing.T) {
	dir := t.TempDir()
	broker := startFaultBroker(t, "mosquitto", dir)
	col := &faultCollector{}
	obs := broker.Observer(t, "cmdlog1", col)
	first := startInProcessEdge(t, dir, "cmdlog1", edgeBusOptions(broker), 0)
	waitCollected(t, col, "Connected", 30*time.Second, hasEvent(bridge.EventConnected))
	cmd := []byte(`{"id": "once-1", "commands": ["M117 once"]}`)
	finals := func() []string {
		col.mu.Lock()
		defer col.mu.Unlock()
		var out []string
		for _, r := range col.replies {
			if r.ID == "once-1" && r.Final() {
				out = append(out, r.Status)
			}
		}
		return out
	}
	if err := obs.PublishCommand(context.Background(), "cmdlog1", bridge.CommandGcode, cmd); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the final reply", 30*time.Second, func() bool { return len(finals()) == 1 })
	first.Stop(t)

	from := len(col.snapshot())
	second := startInProcessEdge(t, dir, "cmdlog1", edgeBusOptions(broker), 0)
	waitFor(t, "Connected of the restarted edge", 30*time.Second, func() bool { return col.countSince(bridge.EventConnected, from) > 0 })
	if err := obs.PublishCommand(context.Background(), "cmdlog1", bridge.CommandGcode, cmd); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the repeated final reply", 30*time.Second, func() bool { return len(finals()) == 2 })
	if got := finals(); got[1] != bridge.ReplyDone {
		t.Errorf("the restarted edge replied %s, want the first run's done", got[1])
	}
	if executedContains(second.vp, "M117 once") {
		t.Error("the restarted edge ran the command a second time")
	}
}

// TestEdgeInvalidBrokerConfigStops checks that a configuration error of
// the background broker connection stops the edge with that error,
// instead of leaving it running without a broker.
func TestEdgeInvalidBrokerConfigStops(t *testing.T) {
	dir := t.TempDir()
	vp, err := virtual.New(virtual.DefaultConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vpCtx, stopVP := context.WithCancel(context.Background())
	vpDone := make(chan error, 1)
	go func() { vpDone <- vp.Run(vpCtx) }()
	defer func() {
		stopVP()
		<-vpDone
		// Cancelling Run leaves the pty master and its inotify instance
		// open; only Close releases them.
		_ = vp.Close()
	}()

	opts := edgeOptions{port: vp.Path(), baud: 115200, printerID: "badcfg", dataDir: filepath.Join(dir, "edge"), maxLineLength: 96,
		bus: busOptions{mqttURL: "tcp://127.0.0.1:1", baseTopic: "bad/#"}}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- runEdgeWith(ctx, opts, slog.New(slog.DiscardHandler), nil) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "base topic") {
			t.Errorf("runEdgeWith returned %v, want the invalid base topic error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the edge kept running for 30s with an invalid base topic")
	}
}
