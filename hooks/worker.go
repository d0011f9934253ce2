package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/printbridge/printbridge/bridge"
)

// DefaultQueueSize is the capacity of each printer's event queue.
const DefaultQueueSize = 1024

// publishTimeout bounds publishing one hook result or G-code command.
const publishTimeout = 10 * time.Second

// Option configures a Worker.
type Option func(*Worker)

// OnResult calls f with every hook result, after it is logged and before
// it is published. f may be called from several goroutines at once.
func OnResult(f func(Result)) Option { return func(w *Worker) { w.onResult = f } }

// WithClock sets the clock of the __now placeholder and of durations.
func WithClock(now func() time.Time) Option { return func(w *Worker) { w.now = now } }

// WithQueueSize sets the capacity of each printer's event queue. When a
// queue is full, new events of that printer are dropped with a WARN log
// and their ids forgotten, so a redelivery can still run them.
func WithQueueSize(n int) Option { return func(w *Worker) { w.queueSize = n } }

// WithOutputLimit sets how many bytes of output each result keeps.
func WithOutputLimit(n int) Option { return func(w *Worker) { w.outputLimit = n } }

// WithSeenEvents sets how many recent event ids are remembered.
func WithSeenEvents(n int) Option { return func(w *Worker) { w.seen = newIDSet(n) } }

// WithMetrics makes the worker update m. Without it the worker keeps its
// metrics on a registry of its own that nothing exports.
func WithMetrics(m *Metrics) Option { return func(w *Worker) { w.metrics = m } }

// Worker runs the hooks of a Config for events from a Bus.
//
// Ordering: the events of one printer are dispatched one at a time, in
// the order the bus delivers them. For each event, the matching
// subscriptions are taken in file order. A system hook starts once it gets
// one of max_concurrent_hooks slots, and dispatch waits for a free slot. A
// gcode hook's command is published before the next subscription is
// handled. So every hook of event N has started before any hook of event
// N+1 of the same printer. Started system hooks run concurrently, across
// subscriptions and events, as OctoPrint's threads do; their results can
// finish in any order. G-code replies are awaited in the background and
// take no slot. Printers are independent of each other.
//
// Reload swaps the config between events. Each event runs every one of
// its hooks with the config that was in force when the worker received
// it, so no event is handled half with the old and half with the new
// config.
type Worker struct {
	// cfg is the config in force; Reload replaces it as a whole.
	cfg         atomic.Pointer[Config]
	bus         bridge.Bus
	log         *slog.Logger
	onResult    func(Result)
	now         func() time.Time
	queueSize   int
	outputLimit int
	metrics     *Metrics
	logLevel    *slog.LevelVar

	// printers and group are fixed when the worker is built, because the
	// bus subscriptions made from them last until the bus is closed.
	printers []string
	group    string

	slots *limiter
	seen  *idSet
	// seenPath, if set, persists seen in a file (WithSeenFile); seenLog is
	// that file while Run runs.
	seenPath string
	seenLock *SeenFileLock
	seenLog  *seenLog
	// seenKV, if set, is the shared claim bucket (WithSeenBucket), and
	// claims runs the claim protocol on it.
	seenKV jetstream.KeyValue
	// avail is the printers' availability markers, which the first
	// subscribeReplies subscribes to.
	avail *availability
	// seenRestore creates seenKV's bucket again (WithSeenBucketRestore).
	seenRestore func(context.Context) error
	// seenScope is the key prefix of this worker's claims in seenKV
	// (WithSeenGroup, WithSeenWorker).
	seenScope  string
	claimLease time.Duration
	claims     *claimStore
	// instance names this worker process in hook start records and
	// claims (see workerInstanceID).
	instance string
	// markerDir is the folder of the gates' marker files (see
	// gateScript), "" for none.
	markerDir string
	replies   *replyWaiter
	wg        sync.WaitGroup

	mu     sync.Mutex // guards ctx, queues, inflight and stopped
	ctx    context.Context
	queues map[string]chan queuedEvent
	// inflight holds the queued or running events by id, until they are
	// acknowledged to the bus.
	inflight map[string]*eventRun
	stopped  bool

	// reloadMu serialises Run's subscriptions with Reload, so a reload
	// that adds the first gcode hook subscribes to command replies once.
	reloadMu          sync.Mutex
	runCtx            context.Context // guarded by reloadMu; nil until Run subscribes
	repliesSubscribed bool            // guarded by reloadMu

	malformed  atomic.Int64
	duplicates atomic.Int64
	dropped    atomic.Int64

	dropLogMu    sync.Mutex // guards dropLastLog and dropUnlogged
	dropLastLog  time.Time
	dropUnlogged int64

	// newerSchemas has the printer and schema pairs already warned about
	// (see warnNewerSchema).
	newerSchemas sync.Map
}

// dropLogInterval is the shortest time between two WARN lines about
// events dropped from full hook queues. A worker that falls behind can
// drop thousands of events a second, and writing a line for each slowed
// the delivery goroutine until the NATS client buffered tens of MB.
const dropLogInterval = 10 * time.Second

// queuedEvent is an event waiting for dispatch, with the config that was
// in force when it arrived.
type queuedEvent struct {
	env *bridge.Envelope
	cfg *Config
	run *eventRun
}

// NewWorker builds a worker; Run starts it.
func NewWorker(cfg *Config, bus bridge.Bus, log *slog.Logger, opts ...Option) *Worker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{
		bus:         bus,
		log:         log.With("component", "worker"),
		now:         time.Now,
		queueSize:   DefaultQueueSize,
		outputLimit: DefaultOutputLimit,
		printers:    cfg.Settings.Printers,
		group:       cfg.Settings.Group,
		queues:      map[string]chan queuedEvent{},
		inflight:    map[string]*eventRun{},
		instance:    workerInstanceID(),
	}
	for _, opt := range opts {
		opt(w)
	}
	if w.seen == nil {
		w.seen = newIDSet(DefaultSeenEvents)
	}
	if w.queueSize <= 0 {
		w.queueSize = DefaultQueueSize
	}
	if w.metrics == nil {
		w.metrics = NewMetrics(prometheus.NewRegistry())
	}
	if w.seenKV != nil {
		w.claims = newClaimStore(w.seenKV, w.claimLease, w.instance, w.seenScope, w.log, w.metrics)
		w.claims.restore = w.seenRestore
	}
	w.avail = newAvailability()
	w.replies = newReplyWaiter(func() { w.metrics.errors.WithLabelValues(opInvalidReply).Inc() })
	w.slots = newLimiter(concurrency(cfg.Settings))
	w.cfg.Store(cfg)
	w.metrics.observeConfig(cfg)
	return w
}

func concurrency(s Settings) int {
	if s.MaxConcurrentHooks <= 0 {
		return DefaultMaxConcurrentHooks
	}
	return s.MaxConcurrentHooks
}

// Config returns the config in force.
func (w *Worker) Config() *Config { return w.cfg.Load() }

// Run subscribes to the events (and, for gcode hooks, the command replies)
// of the configured printers and runs hooks until ctx ends. It then kills
// the hooks still running and waits for their results to be published.
// It returns an error only when a subscription fails.
func (w *Worker) Run(ctx context.Context) error {
	if w.seenPath != "" && w.claims == nil {
		l, err := openSeenLog(w.seenPath, w.seen, w.seenLock)
		if err != nil {
			return err
		}
		w.seenLog = l
		defer func() { _ = l.close() }()
	}
	w.openMarkerDir()
	ctx, cancel := context.WithCancel(ctx)
	w.mu.Lock()
	w.ctx = ctx
	w.mu.Unlock()
	defer func() {
		// Cancelling first kills running hooks, so stop does not wait for
		// them to end by themselves.
		cancel()
		w.stop()
	}()

	if w.claims != nil {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.claims.refreshLoop(ctx)
		}()
	}
	if err := w.subscribe(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// subscribe makes the bus subscriptions of Run and logs the start.
func (w *Worker) subscribe(ctx context.Context) error {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	cfg := w.cfg.Load()
	if hasGcodeHooks(cfg) {
		if err := w.subscribeReplies(ctx); err != nil {
			return err
		}
	}
	for _, p := range w.subscribedPrinters() {
		if err := w.bus.SubscribeEvents(ctx, p, w.group, w.handleEvent); err != nil {
			return fmt.Errorf("subscribe to events of %s on %s: %w", printerLabel(p), w.bus.Name(), err)
		}
	}
	w.runCtx = ctx
	limit, _ := w.slots.current()
	w.log.Info("worker started", "bus", w.bus.Name(), "printers", strings.Join(w.printers, ","),
		"group", w.group, "config", cfg.Path, "subscriptions", len(cfg.Subscriptions), "events_enabled", cfg.EventsEnabled,
		"hook_timeout", cfg.Settings.HookTimeout, "gcode_max_age", cfg.Settings.GcodeMaxAge, "max_concurrent_hooks", limit)
	return nil
}

// subscribedPrinters lists the printer of each bus subscription, "" for
// all printers.
func (w *Worker) subscribedPrinters() []string {
	if len(w.printers) == 0 {
		return []string{""}
	}
	return w.printers
}

// subscribeReplies subscribes to the command replies that gcode hooks
// wait for. The caller holds reloadMu.
func (w *Worker) subscribeReplies(ctx context.Context) error {
	w.subscribeAvailability(ctx)
	for _, p := range w.subscribedPrinters() {
		if err := w.bus.SubscribeReplies(ctx, p, w.replies.deliver); err != nil {
			return fmt.Errorf("subscribe to command replies of %s: %w", printerLabel(p), err)
		}
	}
	w.repliesSubscribed = true
	return nil
}

// subscribeAvailability subscribes to the printers' availability markers,
// so that a gcode hook for a printer whose edge is offline fails at once
// instead of after gcodeFirstReplyWait. On MQTT such a hook held a slot of
// the broker's in-flight window meanwhile, which stalled the hooks of the
// other printers too. A failed subscription leaves the hooks working as
// without markers. The caller holds reloadMu.
func (w *Worker) subscribeAvailability(ctx context.Context) {
	for _, p := range w.subscribedPrinters() {
		err := bridge.SubscribeAvailability(ctx, w.bus, p, w.avail.set)
		switch {
		case errors.Is(err, bridge.ErrNoAvailability):
			w.log.Debug("the bus keeps no availability markers; a gcode hook for a printer without an edge fails when the NATS server reports no responders, else after the first reply wait",
				"bus", w.bus.Name(), "wait", gcodeFirstReplyWait)
			return
		case err != nil:
			w.log.Warn("subscribing to availability markers failed; gcode hooks for a printer without an edge fail after the first reply wait",
				"printer", printerLabel(p), "error", err, "wait", gcodeFirstReplyWait)
		}
	}
	w.avail.start()
}

// stop ends dispatch and waits for every goroutine the worker started.
func (w *Worker) stop() {
	w.reloadMu.Lock()
	w.runCtx = nil
	w.reloadMu.Unlock()
	w.mu.Lock()
	w.stopped = true
	for _, q := range w.queues {
		close(q)
	}
	w.mu.Unlock()
	w.wg.Wait()
	w.dropLogMu.Lock()
	unlogged := w.dropUnlogged
	w.dropUnlogged = 0
	w.dropLogMu.Unlock()
	if unlogged > 0 {
		w.log.Warn("events dropped: the printers' hook queues were full", "dropped", unlogged, "dropped_total", w.dropped.Load())
	}
	w.log.Info("worker stopped", "events_malformed", w.malformed.Load(),
		"events_duplicate", w.duplicates.Load(), "events_dropped", w.dropped.Load())
}

func printerLabel(p string) string {
	if p == "" {
		return "all printers"
	}
	return "printer " + p
}

func hasGcodeHooks(cfg *Config) bool {
	for _, s := range cfg.Subscriptions {
		if s.Type == TypeGcode {
			return true
		}
	}
	return false
}

func (w *Worker) servesPrinter(id string) bool {
	if len(w.printers) == 0 {
		return true
	}
	return containsString(w.printers, id)
}

// handleEvent runs on the bus's delivery goroutine. It decodes, drops
// duplicates and queues without waiting for a hook: when the printer's
// queue is full, the event is dropped.
//
// An event with hooks to run is acknowledged to the bus after its last
// hook has ended (see eventRun), every other event at once. An event whose
// hooks will not run here because the worker stops or the queue is full
// is returned to the bus unacknowledged, so that it is delivered again.
func (w *Worker) handleEvent(msg bridge.EventMessage) {
	ack := bridge.AckFunc(func(bool) {})
	deferred := msg.Defer != nil
	if deferred {
		ack = msg.Defer()
	}
	env, err := bridge.DecodeEnvelope(msg.Data)
	if err == nil {
		err = bridge.ValidatePrinterID(env.Printer)
	}
	if err != nil {
		n := w.malformed.Add(1)
		w.metrics.invalid.Inc()
		w.log.Warn("malformed event envelope ignored", "source", msg.Source, "error", err, "malformed_total", n)
		ack(true)
		return
	}
	if env.Printer != msg.Printer || env.Event != msg.Event {
		w.rejectForged(msg, env)
		ack(true)
		return
	}

	if !w.servesPrinter(env.Printer) {
		ack(true)
		return
	}
	if w.isStopping() {
		w.log.Debug("event returned to the bus unacknowledged: the worker is stopping", "printer", env.Printer,
			"event", env.Event, "event_id", env.ID)
		ack(false)
		return
	}
	w.metrics.observeReceived(env.Printer, env.Event)
	if env.Schema > bridge.SchemaVersion {
		w.warnNewerSchema(env)
	}
	if !w.seen.add(env.ID) {
		w.duplicates.Add(1)
		w.metrics.duplicates.Inc()
		w.log.Debug("duplicate event ignored", "printer", env.Printer, "event", env.Event, "event_id", env.ID)
		w.ackDuplicate(env.ID, ack, deferred)
		return
	}
	// The config is taken once here, so every hook of this event runs
	// with it even when a reload happens while the event waits.
	cfg := w.cfg.Load()
	if len(cfg.Match(env.Event)) == 0 {
		w.persistSeen(env.ID)
		ack(true)
		return
	}

	w.mu.Lock()
	if w.stopped || w.ctx == nil {
		w.mu.Unlock()
		w.newEventRun(context.Background(), env, ack, deferred).abandon()
		return
	}
	run := w.newEventRun(w.ctx, env, ack, deferred)
	q := w.queues[env.Printer]
	if q == nil {
		q = make(chan queuedEvent, w.queueSize)
		w.queues[env.Printer] = q
		w.wg.Add(1)
		go w.serve(w.ctx, q)
	}
	select {
	case q <- queuedEvent{env: env, cfg: cfg, run: run}:
		w.inflight[env.ID] = run
		w.metrics.queueDepth.Inc()
		w.mu.Unlock()
	default:
		w.mu.Unlock()
		run.abandon()
		n := w.dropped.Add(1)
		w.metrics.dropped.Inc()
		w.logDropped(env, cap(q), n)
	}
}

// rejectForged counts and logs an envelope whose printer or event is not
// the one of the topic it arrived on. The broker's ACL grants an edge its
// own printer's topics only, so running such an event would let one
// printer's credentials run another printer's hooks and send it G-code.
// It is acknowledged, because a delivery again would be rejected again.
func (w *Worker) rejectForged(msg bridge.EventMessage, env *bridge.Envelope) {
	n := w.malformed.Add(1)
	w.metrics.invalid.Inc()
	w.log.Warn("event envelope rejected: its printer or event does not match the topic it was published on; "+
		"check the credentials of the client that publishes to this topic",
		"source", msg.Source, "topic_printer", msg.Printer, "topic_event", msg.Event,
		"envelope_printer", env.Printer, "envelope_event", env.Event, "event_id", env.ID, "malformed_total", n)
}

// logDropped logs an event dropped from a full hook queue: every one at
// DEBUG, and at WARN the first one and then one line with the count per
// dropLogInterval.
func (w *Worker) logDropped(env *bridge.Envelope, capacity int, total int64) {
	attrs := []any{"printer", env.Printer, "event", env.Event, "event_id", env.ID, "queue_capacity", capacity, "dropped_total", total}
	w.log.Debug("event dropped: the printer's hook queue is full", attrs...)
	w.dropLogMu.Lock()
	w.dropUnlogged++
	if time.Since(w.dropLastLog) < dropLogInterval {
		w.dropLogMu.Unlock()
		return
	}
	dropped := w.dropUnlogged
	w.dropUnlogged, w.dropLastLog = 0, time.Now()
	w.dropLogMu.Unlock()
	w.log.Warn("events dropped: the printer's hook queue is full", append(attrs, "dropped", dropped)...)
}

// isStopping reports whether Run has not started or its context ended.
func (w *Worker) isStopping() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopped || w.ctx == nil || w.ctx.Err() != nil
}

// ackDuplicate ends the delivery of an event whose id the worker has seen.
// While the first delivery's hooks run, the copy is acknowledged with it,
// because acknowledging the copy at once could end a redelivery that the
// first one still needs (an MQTT message sent again after a reconnect).
func (w *Worker) ackDuplicate(id string, ack bridge.AckFunc, deferred bool) {
	w.mu.Lock()
	run := w.inflight[id]
	w.mu.Unlock()
	if run == nil {
		ack(true)
		return
	}
	run.addAck(ack, deferred)
}

// serve dispatches the events of one printer in order until its queue is
// closed; after ctx ends it only drains the queue, returning each event
// to the bus unacknowledged.
//
// With a seen-events bucket it claims each event here, just before its
// hooks start. A claim may wait one lease for a dead owner, and waiting
// here holds up only this printer's later events, not the bus's delivery.
func (w *Worker) serve(ctx context.Context, q <-chan queuedEvent) {
	defer w.wg.Done()
	for item := range q {
		w.metrics.queueDepth.Dec()
		if ctx.Err() == nil && w.claims != nil {
			item.run.claim = w.claims.acquire(ctx, item.env)
			if item.run.claim == nil && ctx.Err() == nil {
				// Another worker ran the hooks or is running them.
				w.duplicates.Add(1)
				w.metrics.duplicates.Inc()
				item.run.skip()
				continue
			}
		}
		item.run.loadPriorStarts()
		if ctx.Err() == nil {
			w.dispatch(ctx, item.cfg, item.env, item.run)
		} else {
			item.run.dispatched(true)
		}
	}
}

func (w *Worker) dispatch(ctx context.Context, cfg *Config, env *bridge.Envelope, run *eventRun) {
	// Deferred, so an early return for a stop marks the run cut short.
	defer func() { run.dispatched(ctx.Err() != nil) }()
	params := newPlaceholderSet(env, w.now()).lookup
	for i, sub := range cfg.Match(env.Event) {
		if ctx.Err() != nil {
			return
		}
		res := Result{Hook: sub.HookName(env.Event), Event: env.Event, EventID: env.ID, Printer: env.Printer,
			Type: sub.Type, ExitCode: -1}
		timeout := hookTimeout(cfg, sub)
		switch sub.Type {
		case TypeSystem:
			first := 0
			if prior, ok := run.prior.lookup(i, res.Hook); ok {
				if prior.Ended || !w.gateNeverOpened(ctx, prior, res) {
					w.resumeSystem(ctx, i, prior, res, run)
					continue
				}
				// The commands before the recorded one ended with
				// status 0, so the list goes on from the recorded one.
				first = prior.Command - 1
			}
			w.startSystem(ctx, i, first, sub, timeout, params, res, run)
		case TypeGcode:
			var expires *time.Time
			if maxAge := cfg.Settings.GcodeMaxAge; maxAge > 0 && !env.Time.IsZero() {
				at := env.Time.Add(maxAge)
				expires = &at
			}
			w.startGcode(ctx, i, sub, timeout, params, expires, res, run)
		}
	}
}

// warnNewerSchema logs once per printer and schema that an edge sends
// envelopes of a newer schema than this worker reads. Its hooks still
// run with the fields that the worker reads, so a rolling upgrade that
// starts with the edges loses no hook.
func (w *Worker) warnNewerSchema(env *bridge.Envelope) {
	key := env.Printer + "\x00" + strconv.Itoa(env.Schema)
	if _, warned := w.newerSchemas.LoadOrStore(key, true); warned {
		return
	}
	w.log.Warn("event envelope has a newer schema than this worker knows; upgrade the worker to read its new fields",
		"printer", env.Printer, "event", env.Event, "event_id", env.ID, "schema", env.Schema, "worker_schema", bridge.SchemaVersion)
}

func hookTimeout(cfg *Config, sub *Subscription) time.Duration {
	if sub.TimeoutSet {
		return sub.Timeout
	}
	return cfg.Settings.HookTimeout
}

// startSystem starts the system hook at position index of the event's
// matching subscriptions, from the command at position first of its list.
func (w *Worker) startSystem(ctx context.Context, index, first int, sub *Subscription, timeout time.Duration, params placeholderLookup, res Result, run *eventRun) {
	commands, err := renderSystem(sub, params)
	if err != nil {
		res.Err = err
		w.finish(ctx, res)
		return
	}
	if first > 0 && first < len(commands) {
		commands = commands[first:]
	}
	if !w.slots.acquire(ctx) {
		return
	}
	w.logStart(sub, res, commands)
	sys := systemRun{cwd: sub.Cwd, env: hookEnv(res.Event, res.EventID, res.Printer),
		timeout: timeout, outputLimit: w.outputLimit, firstNumber: first + 1}
	if run.recordsStarts() {
		sys.recordStart = func(ctx context.Context, command, pid int, startTicks uint64, deadline time.Time, marker string) error {
			return run.recordStart(ctx, hookStart{Hook: index, Name: res.Hook, Command: command, PID: pid,
				StartTicks: startTicks, Host: hostName, Worker: w.instance, Deadline: deadline, Marker: marker})
		}
		sys.startAborted = func(command int) { run.abortStart(index, command) }
		sys.newMarker = run.newMarker
	}
	run.hookStarted()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer w.slots.release()
		start := w.now()
		res.Commands, res.OutputTail, res.Err = sys.run(ctx, commands)
		res.Duration = w.now().Sub(start)
		if n := len(res.Commands); n > 0 {
			res.ExitCode = res.Commands[n-1].ExitCode
		}
		run.endStart(index)
		// The run learns of the end first, so the event is recorded as
		// handled before the result is published, which waits up to 10s
		// while the broker is down. A worker killed in that wait would
		// otherwise run the hook again on the redelivery.
		run.hookEnded(res)
		w.finish(ctx, res)
	}()
}

// logStart logs each run at DEBUG, and with the rendered commands at INFO
// when the subscription sets debug, as OctoPrint shows commands only then
// (they may hold secrets).
func (w *Worker) logStart(sub *Subscription, res Result, commands []preparedCommand) {
	attrs := []any{"hook", res.Hook, "event", res.Event, "event_id", res.EventID, "printer", res.Printer}
	if !sub.Debug {
		w.log.Debug("hook started", attrs...)
		return
	}
	rendered := make([]string, len(commands))
	for i, c := range commands {
		if c.shell {
			rendered[i] = c.script
		} else {
			rendered[i] = fmt.Sprintf("%q", c.argv)
		}
	}
	w.log.Info("hook started", append(attrs, "commands", rendered)...)
}

// startGcode sends the G-code of a gcode hook. expires, when set, is when
// the edge is to drop the command unsent: the event's time plus
// printbridge.gcode_max_age, both by the edge's clock.
func (w *Worker) startGcode(ctx context.Context, index int, sub *Subscription, timeout time.Duration, params placeholderLookup, expires *time.Time, res Result, run *eventRun) {
	lines, err := renderGcode(sub, res.Event, params)
	if err != nil {
		res.Err = err
		w.finish(ctx, res)
		return
	}
	for i, line := range lines {
		if ascii, changed := toASCII(line); changed {
			// A file name such as Würfel.gcode in {name}: the edge
			// rejects bytes outside ASCII, while OctoPrint sends '?'.
			w.log.Warn("G-code hook line has characters outside printable ASCII; sending '?' in their place, as OctoPrint does",
				"hook", res.Hook, "event", res.Event, "event_id", res.EventID, "printer", res.Printer, "line", line, "sent", ascii)
			lines[i] = ascii
		}
	}
	if len(lines) == 0 {
		res.ExitCode = 0
		res.OutputTail = "no G-code lines to send"
		w.finish(ctx, res)
		return
	}

	target := w.bus
	if !w.avail.waitOnline(ctx, res.Printer, offlineGrace, run.env.Time) {
		natsBus := bridge.BusNamed(w.bus, "nats")
		if natsBus == nil || !bridge.Connected(natsBus) {
			res.Err = fmt.Errorf("%w: the availability of printer %s is \"offline\" (its edge stopped, or the broker published the edge's last will when its connection was lost), so the G-code was not sent; start the edge, or check its broker connection",
				ErrOffline, res.Printer)
			w.finish(ctx, res)
			return
		}
		// The marker is MQTT's. An edge on both buses whose MQTT
		// connection is lost, or one moved to NATS, still takes the
		// command on NATS, whose server reports when no edge does.
		w.log.Debug("the printer's MQTT availability is \"offline\"; sending the G-code hook's command on NATS only",
			"hook", res.Hook, "event_id", res.EventID, "printer", res.Printer)
		target = natsBus
	}

	start := w.now()
	cmd := bridge.Command{ID: gcodeCommandID(res.EventID, w.group, index, res.Hook, sub.templates()), Commands: lines, Source: "hook:" + res.Hook,
		Expires: expires}
	res.CommandID = cmd.ID
	data, err := json.Marshal(cmd)
	if err != nil {
		res.Err = fmt.Errorf("encode G-code command: %w", err)
		w.finish(ctx, res)
		return
	}
	if sub.Debug {
		w.log.Info("hook started", "hook", res.Hook, "event", res.Event, "event_id", res.EventID,
			"printer", res.Printer, "command_id", cmd.ID, "commands", lines)
	}

	firstReply, reply := w.replies.register(cmd.ID)
	pubCtx, cancel := context.WithTimeout(ctx, publishTimeout)
	err = target.PublishCommand(pubCtx, res.Printer, bridge.CommandGcode, data)
	cancel()
	if errors.Is(err, bridge.ErrNoSubscriber) {
		w.replies.forget(cmd.ID)
		// Nothing reached the printer, as with an "offline" marker.
		res.CommandID = ""
		res.Err = fmt.Errorf("%w: G-code command %s reached no edge of printer %s (%v), so the G-code was not sent; start the edge, or check its broker connection",
			ErrOffline, cmd.ID, res.Printer, err)
		w.finish(ctx, res)
		return
	}
	if err != nil {
		w.replies.forget(cmd.ID)
		res.Err = fmt.Errorf("publish G-code command %s: %w", cmd.ID, err)
		w.finish(ctx, res)
		return
	}
	run.hookStarted()
	w.wg.Add(1)
	go w.awaitReply(ctx, firstReply, reply, timeout, start, res, run, target, data)
}

// gcodeFirstReplyWait is how long a gcode hook waits for the edge's first
// reply (accepted) before it fails. The edge sends it as soon as the
// command arrives, so without it no edge of the printer runs. Failing
// early keeps the hook from holding its event for the whole hook timeout,
// and on MQTT also a slot of the broker's in-flight window.
var gcodeFirstReplyWait = 10 * time.Second

// gcodeReplyRecheck is how long a gcode hook waits for its final reply,
// counted from the first reply and then from each repeat, before it
// publishes its command again. The edge repeats its last reply for a
// command id it has seen and does not run the command again. So a final
// reply that the broker lost, such as one published while the edge or
// this worker was reconnecting, is sent again.
var gcodeReplyRecheck = 20 * time.Second

// awaitReply waits for the final reply to the command of a gcode hook and
// finishes its result. It publishes the command again on target, the bus
// that startGcode published it on.
func (w *Worker) awaitReply(ctx context.Context, firstReply <-chan struct{}, reply <-chan bridge.Reply, timeout time.Duration, start time.Time, res Result, run *eventRun, target bridge.Bus, command []byte) {
	defer w.wg.Done()
	waitCtx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		waitCtx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	firstReplyTimer := time.NewTimer(gcodeFirstReplyWait)
	defer firstReplyTimer.Stop()
	// The recheck starts at the first reply: before it, no edge may have
	// the command, and firstReplyTimer ends the wait.
	recheck := time.NewTimer(gcodeReplyRecheck)
	recheck.Stop()
	defer recheck.Stop()

wait:
	for {
		select {
		case <-firstReply:
			firstReply = nil
			firstReplyTimer.Stop()
			recheck.Reset(gcodeReplyRecheck)
		case <-recheck.C:
			w.log.Debug("no reply to the G-code command for a while; publishing it again, so the edge repeats its last reply",
				"hook", res.Hook, "event_id", res.EventID, "printer", res.Printer, "command_id", res.CommandID, "after", gcodeReplyRecheck)
			pubCtx, cancel := context.WithTimeout(ctx, publishTimeout)
			if err := target.PublishCommand(pubCtx, res.Printer, bridge.CommandGcode, command); err != nil {
				w.log.Debug("publishing the G-code command again failed; trying again later", "command_id", res.CommandID, "error", err)
			}
			cancel()
			recheck.Reset(gcodeReplyRecheck)
		case <-firstReplyTimer.C:
			w.replies.forget(res.CommandID)
			res.Err = fmt.Errorf("G-code command %s: %w: no reply from an edge of printer %s within %s; is its edge running and connected to this broker?",
				res.CommandID, ErrTimeout, res.Printer, gcodeFirstReplyWait)
			break wait
		case r := <-reply:
			res.OutputTail = tailString(strings.Join(r.Lines, "\n"), w.outputLimit)
			switch {
			case r.Status == bridge.ReplyDone:
				res.ExitCode = 0
			case r.Status == bridge.ReplyRejected && strings.HasPrefix(r.Reason, bridge.ReasonExpired):
				res.ExitCode = 1
				res.Err = fmt.Errorf("%w: the edge dropped G-code command %s unsent, because it arrived over printbridge.gcode_max_age after its event: %s",
					ErrStale, res.CommandID, r.Reason)
			default:
				res.ExitCode = 1
				res.Err = fmt.Errorf("the edge replied %s to G-code command %s: %s", r.Status, res.CommandID, r.Reason)
			}
			break wait
		case <-waitCtx.Done():
			w.replies.forget(res.CommandID)
			if ctx.Err() != nil {
				res.Err = fmt.Errorf("G-code command %s: %w before its final reply", res.CommandID, ErrStopped)
			} else {
				res.Err = fmt.Errorf("G-code command %s: %w: no final reply within %s (is the edge of printer %s running?)",
					res.CommandID, ErrTimeout, timeout, res.Printer)
			}
			break wait
		}
	}
	res.Duration = w.now().Sub(start)
	run.hookEnded(res)
	w.finish(ctx, res)
}

func tailString(s string, limit int) string {
	t := newTailBuffer(limit)
	_, _ = t.Write([]byte(s))
	return t.String()
}

// finish logs a result, hands it to OnResult and publishes it on the
// printer's hook topic, even while the worker stops.
func (w *Worker) finish(ctx context.Context, res Result) {
	w.logResult(res)
	w.metrics.observeResult(res)
	if w.onResult != nil {
		w.onResult(res)
	}
	// Each result gets its own buffer, because the MQTT adapter's paho
	// client keeps data in its store until the PUBACK.
	data, err := res.AppendJSON(make([]byte, 0, res.encodedSizeHint()))
	if err != nil {
		w.metrics.errors.WithLabelValues(opEncodeResult).Inc()
		w.log.Error("encode hook result failed", "hook", res.Hook, "event_id", res.EventID, "error", err)
		return
	}
	pubCtx := newLazyTimeoutContext(context.WithoutCancel(ctx), publishTimeout)
	defer pubCtx.stop()
	if err := w.bus.PublishHook(pubCtx, res.Printer, data); err != nil {
		w.metrics.errors.WithLabelValues(opPublishResult).Inc()
		w.log.Warn("publish hook result failed", "hook", res.Hook, "event_id", res.EventID, "printer", res.Printer, "error", err)
	}
}

// logResult logs a hook's result. It builds the attributes only when the
// level is enabled, because a busy worker finishes a hook for every event.
func (w *Worker) logResult(res Result) {
	level, msg := slog.LevelInfo, "hook finished"
	withOutput := false
	var fe *FormatError
	switch {
	case res.Err == nil:
	case errors.As(res.Err, &fe) && fe.UnknownPlaceholder():
		level, msg = slog.LevelWarn, "hook skipped: unknown placeholder"
	case errors.As(res.Err, &fe):
		level, msg = slog.LevelError, "hook skipped: template cannot be rendered"
	case errors.Is(res.Err, ErrInterrupted):
		level, msg = slog.LevelWarn, "hook interrupted: a killed worker had started it"
	case errors.Is(res.Err, ErrLoopGuard):
		level, msg = slog.LevelError, "G-code hook not sent: it would fire its own event again"
	case errors.Is(res.Err, ErrStale):
		level, msg = slog.LevelWarn, "G-code hook not sent: its event came too late"
	case errors.Is(res.Err, ErrOffline):
		level, msg = slog.LevelWarn, "G-code hook not sent: the printer's edge is offline"
	default:
		level, msg, withOutput = slog.LevelWarn, "hook failed", true
	}
	if !w.log.Enabled(context.Background(), level) {
		return
	}
	attrs := []any{"hook", res.Hook, "event", res.Event, "event_id", res.EventID, "printer", res.Printer,
		"type", string(res.Type), "exit_code", res.ExitCode, "duration", res.Duration}
	if res.Err != nil {
		attrs = append(attrs, "error", res.Err)
	}
	if withOutput {
		attrs = append(attrs, "output_tail", res.OutputTail)
	}
	w.log.Log(context.Background(), level, msg, attrs...)
}

// persistSeen appends the id of a handled event to the seen-events file.
// A write error is logged and counted, and the event is still
// acknowledged, because its hooks did run.
func (w *Worker) persistSeen(line string) {
	if w.seenLog == nil {
		return
	}
	if err := w.seenLog.writeDone(line, w.seen); err != nil {
		w.metrics.errors.WithLabelValues(opSeenFile).Inc()
		w.log.Warn("recording the event id failed; a redelivery after a restart may run its hooks again", "error", err)
	}
}
