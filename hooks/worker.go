package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
type Worker struct {
	cfg         *Config
	bus         bridge.Bus
	log         *slog.Logger
	onResult    func(Result)
	now         func() time.Time
	queueSize   int
	outputLimit int

	slots   chan struct{}
	seen    *idSet
	replies *replyWaiter
	wg      sync.WaitGroup

	mu      sync.Mutex // guards ctx, queues and stopped
	ctx     context.Context
	queues  map[string]chan *bridge.Envelope
	stopped bool

	malformed  atomic.Int64
	duplicates atomic.Int64
	dropped    atomic.Int64
}

// NewWorker builds a worker; Run starts it.
func NewWorker(cfg *Config, bus bridge.Bus, log *slog.Logger, opts ...Option) *Worker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{
		cfg:         cfg,
		bus:         bus,
		log:         log.With("component", "worker"),
		now:         time.Now,
		queueSize:   DefaultQueueSize,
		outputLimit: DefaultOutputLimit,
		replies:     newReplyWaiter(),
		queues:      map[string]chan *bridge.Envelope{},
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
	slots := cfg.Settings.MaxConcurrentHooks
	if slots <= 0 {
		slots = DefaultMaxConcurrentHooks
	}
	w.slots = make(chan struct{}, slots)
	return w
}

// Run subscribes to the events (and, for gcode hooks, the command replies)
// of the configured printers and runs hooks until ctx ends. It then kills
// the hooks still running and waits for their results to be published.
// It returns an error only when a subscription fails.
func (w *Worker) Run(ctx context.Context) error {
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

	printers := w.cfg.Settings.Printers
	if len(printers) == 0 {
		printers = []string{""}
	}
	if w.hasGcodeHooks() {
		for _, p := range printers {
			if err := w.bus.SubscribeReplies(ctx, p, w.replies.deliver); err != nil {
				return fmt.Errorf("subscribe to command replies of %s: %w", printerLabel(p), err)
			}
		}
	}
	for _, p := range printers {
		if err := w.bus.SubscribeEvents(ctx, p, w.cfg.Settings.Group, w.handleEvent); err != nil {
			return fmt.Errorf("subscribe to events of %s on %s: %w", printerLabel(p), w.bus.Name(), err)
		}
	}
	w.log.Info("worker started", "bus", w.bus.Name(), "printers", strings.Join(w.cfg.Settings.Printers, ","),
		"group", w.cfg.Settings.Group, "subscriptions", len(w.cfg.Subscriptions), "events_enabled", w.cfg.EventsEnabled,
		"hook_timeout", w.cfg.Settings.HookTimeout, "max_concurrent_hooks", cap(w.slots))
	<-ctx.Done()
	return nil
}

// stop ends dispatch and waits for every goroutine the worker started.
func (w *Worker) stop() {
	w.mu.Lock()
	w.stopped = true
	for _, q := range w.queues {
		close(q)
	}
	w.mu.Unlock()
	w.wg.Wait()
	w.log.Info("worker stopped", "events_malformed", w.malformed.Load(),
		"events_duplicate", w.duplicates.Load(), "events_dropped", w.dropped.Load())
}

func printerLabel(p string) string {
	if p == "" {
		return "all printers"
	}
	return "printer " + p
}

func (w *Worker) hasGcodeHooks() bool {
	for _, s := range w.cfg.Subscriptions {
		if s.Type == TypeGcode {
			return true
		}
	}
	return false
}

func (w *Worker) servesPrinter(id string) bool {
	if len(w.cfg.Settings.Printers) == 0 {
		return true
	}
	return containsString(w.cfg.Settings.Printers, id)
}

// handleEvent runs on the bus's delivery goroutine. It decodes, drops
// duplicates and queues without waiting for a hook: when the printer's
// queue is full, the event is dropped.
func (w *Worker) handleEvent(msg bridge.EventMessage) {
	env, err := bridge.DecodeEnvelope(msg.Data)
	if err == nil {
		err = bridge.ValidatePrinterID(env.Printer)
	}
	if err != nil {
		n := w.malformed.Add(1)
		w.log.Warn("malformed event envelope ignored", "source", msg.Source, "error", err, "malformed_total", n)
		return
	}

	if !w.servesPrinter(env.Printer) {
		return
	}
	if !w.seen.add(env.ID) {
		w.duplicates.Add(1)
		w.log.Debug("duplicate event ignored", "printer", env.Printer, "event", env.Event, "event_id", env.ID)
		return
	}
	if len(w.cfg.Match(env.Event)) == 0 {
		return
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.ctx == nil {
		w.seen.remove(env.ID)
		return
	}
	q := w.queues[env.Printer]
	if q == nil {
		q = make(chan *bridge.Envelope, w.queueSize)
		w.queues[env.Printer] = q
		w.wg.Add(1)
		go w.serve(w.ctx, q)
	}
	select {
	case q <- env:
	default:
		w.seen.remove(env.ID)
		n := w.dropped.Add(1)
		w.log.Warn("event dropped: the printer's hook queue is full", "printer", env.Printer, "event", env.Event,
			"event_id", env.ID, "queue_capacity", cap(q), "dropped_total", n)
	}
}

// serve dispatches the events of one printer in order until its queue is
// closed; after ctx ends it only drains the queue.
func (w *Worker) serve(ctx context.Context, q <-chan *bridge.Envelope) {
	defer w.wg.Done()
	for env := range q {
		if ctx.Err() == nil {
			w.dispatch(ctx, env)
		}
	}
}

func (w *Worker) dispatch(ctx context.Context, env *bridge.Envelope) {
	params := Placeholders(env, w.now())
	for _, sub := range w.cfg.Match(env.Event) {
		if ctx.Err() != nil {
			return
		}
		res := Result{Hook: sub.HookName(env.Event), Event: env.Event, EventID: env.ID, Printer: env.Printer,
			Type: sub.Type, ExitCode: -1}
		switch sub.Type {
		case TypeSystem:
			w.startSystem(ctx, sub, params, res)
		case TypeGcode:
			w.startGcode(ctx, sub, params, res)
		}
	}
}

func (w *Worker) timeout(sub *Subscription) time.Duration {
	if sub.TimeoutSet {
		return sub.Timeout
	}
	return w.cfg.Settings.HookTimeout
}

func (w *Worker) startSystem(ctx context.Context, sub *Subscription, params map[string]string, res Result) {
	commands, err := renderSystem(sub, params)
	if err != nil {
		res.Err = err
		w.finish(ctx, res)
		return
	}
	select {
	case w.slots <- struct{}{}:
	case <-ctx.Done():
		return
	}
	w.logStart(sub, res, commands)
	run := systemRun{cwd: sub.Cwd, env: hookEnv(res.Event, res.EventID, res.Printer),
		timeout: w.timeout(sub), outputLimit: w.outputLimit}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { <-w.slots }()
		start := w.now()
		res.Commands, res.OutputTail, res.Err = run.run(ctx, commands)
		res.Duration = w.now().Sub(start)
		if n := len(res.Commands); n > 0 {
			res.ExitCode = res.Commands[n-1].ExitCode
		}
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

func (w *Worker) startGcode(ctx context.Context, sub *Subscription, params map[string]string, res Result) {
	lines, err := renderGcode(sub, res.Event, params)
	if err != nil {
		res.Err = err
		w.finish(ctx, res)
		return
	}
	if len(lines) == 0 {
		res.ExitCode = 0
		res.OutputTail = "no G-code lines to send"
		w.finish(ctx, res)
		return
	}

	start := w.now()
	cmd := bridge.Command{ID: "hook-" + bridge.NewEventID(start), Commands: lines, Source: "hook:" + res.Hook}
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

	reply := w.replies.register(cmd.ID)
	pubCtx, cancel := context.WithTimeout(ctx, publishTimeout)
	err = w.bus.PublishCommand(pubCtx, res.Printer, bridge.CommandGcode, data)
	cancel()
	if err != nil {
		w.replies.forget(cmd.ID)
		res.Err = fmt.Errorf("publish G-code command %s: %w", cmd.ID, err)
		w.finish(ctx, res)
		return
	}
	w.wg.Add(1)
	go w.awaitReply(ctx, reply, w.timeout(sub), start, res)
}

// awaitReply waits for the final reply to the command of a gcode hook and
// finishes its result.
func (w *Worker) awaitReply(ctx context.Context, reply <-chan bridge.Reply, timeout time.Duration, start time.Time, res Result) {
	defer w.wg.Done()
	waitCtx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		waitCtx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()

	select {
	case r := <-reply:
		res.OutputTail = tailString(strings.Join(r.Lines, "\n"), w.outputLimit)
		if r.Status == bridge.ReplyDone {
			res.ExitCode = 0
		} else {
			res.ExitCode = 1
			res.Err = fmt.Errorf("the edge replied %s to G-code command %s: %s", r.Status, res.CommandID, r.Reason)
		}
	case <-waitCtx.Done():
		w.replies.forget(res.CommandID)
		if ctx.Err() != nil {
			res.Err = fmt.Errorf("G-code command %s: %w before its final reply", res.CommandID, ErrStopped)
		} else {
			res.Err = fmt.Errorf("G-code command %s: %w: no final reply within %s (is the edge of printer %s running?)",
				res.CommandID, ErrTimeout, timeout, res.Printer)
		}
	}
	res.Duration = w.now().Sub(start)
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
	attrs := []any{"hook", res.Hook, "event", res.Event, "event_id", res.EventID, "printer", res.Printer,
		"type", string(res.Type), "exit_code", res.ExitCode, "duration", res.Duration}
	var fe *FormatError
	switch {
	case res.Err == nil:
		w.log.Info("hook finished", attrs...)
	case errors.As(res.Err, &fe) && fe.UnknownPlaceholder():
		w.log.Warn("hook skipped: unknown placeholder", append(attrs, "error", res.Err)...)
	case errors.As(res.Err, &fe):
		w.log.Error("hook skipped: template cannot be rendered", append(attrs, "error", res.Err)...)
	case errors.Is(res.Err, ErrLoopGuard):
		w.log.Error("G-code hook not sent: it would fire its own event again", append(attrs, "error", res.Err)...)
	default:
		w.log.Warn("hook failed", append(attrs, "error", res.Err, "output_tail", res.OutputTail)...)
	}
	if w.onResult != nil {
		w.onResult(res)
	}
	data, err := json.Marshal(res)
	if err != nil {
		w.log.Error("encode hook result failed", "hook", res.Hook, "event_id", res.EventID, "error", err)
		return
	}
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	if err := w.bus.PublishHook(pubCtx, res.Printer, data); err != nil {
		w.log.Warn("publish hook result failed", "hook", res.Hook, "event_id", res.EventID, "printer", res.Printer, "error", err)
	}
}
