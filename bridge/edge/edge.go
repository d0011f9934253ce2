// Package edge joins one printer connection to the bus: it wraps every
// printer event in an envelope with a persisted sequence number, publishes
// events in order, keeps the retained state and availability topics up to
// date, and executes command messages, answering each with replies.
//
// Emit appends each event to an on-disk outbox (package outbox) on the
// printer's owner goroutine, and one publisher goroutine publishes from
// the oldest unacknowledged event, acknowledging it in the outbox only
// after the broker has taken it. So a slow or absent broker never stalls
// the serial stream, and events survive broker outages and edge restarts.
// Without a data directory, or for an event the outbox failed to store,
// events wait in a bounded memory queue instead.
//
// The bus may be handed over later with SetBus: events fired before the
// first broker connection wait in the outbox.
package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/outbox"
	"github.com/printbridge/printbridge/bridge/policy"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/storage"
)

// Version is the printbridge version reported in bridge/info.
var Version = "0.1.0-dev"

const (
	// shutdownDrainTimeout bounds the publishing of what is left at stop.
	shutdownDrainTimeout = 5 * time.Second
	// stopPublishTimeout bounds the last state and the offline marker on
	// each bus at stop.
	stopPublishTimeout = 3 * time.Second
	// stopGrace is how long the stop lets a publish on a live connection
	// finish before it cancels it, so a broker that hangs costs at most
	// this before the drain.
	stopGrace = time.Second
	// gaugeInterval is how often the outbox depth and age gauges are
	// refreshed while the publisher waits.
	gaugeInterval = time.Second
	// errorLogInterval is the shortest time between two log lines about
	// repeated outbox errors.
	errorLogInterval = time.Minute
)

// Config sets up an edge.
type Config struct {
	// Files is the files directory that command/file manages; nil
	// rejects file commands. ImportDir is the only folder that a file add
	// may copy "from" ("" disables adding from a path).
	Files     *storage.Storage
	ImportDir string
	// Policy decides which G-code commands may run; nil allows all.
	Policy    *policy.Policy
	PrinterID string
	// Topics is the base of the bus topics; the edge rejects a reply_to
	// inside them (except its own reply topic).
	Topics bridge.Topics
	// ProtectedTopics are MQTT topic prefixes outside Topics that the edge
	// publishes to (Home Assistant discovery, the OctoPrint-MQTT mirror);
	// a reply_to inside them is rejected too.
	ProtectedTopics []string
	// DataDir holds the seq file and the outbox (DataDir/<printer>.outbox).
	// Without it, events are held in memory only and seq restarts at 1.
	DataDir string
	// Outbox sets the outbox limits and fsync policy.
	Outbox outbox.Options
	// QueueSize bounds the events held in memory when there is no outbox
	// or the outbox failed to store them; 10000 when zero. When full, the
	// oldest event is dropped and counted.
	QueueSize int
	// PublishTimeout bounds one publish attempt; 10s when zero.
	PublishTimeout time.Duration
	// StateInterval is the minimum time between two retained state
	// publishes; 500ms when zero.
	StateInterval time.Duration
	// OnEnvelope, if set, sees every envelope after it is built (tests and
	// the demo use it). It must not block.
	OnEnvelope func(*bridge.Envelope)
	// Presence, if set, is the check for another live edge of this
	// printer id. The edge rejects every command while the check reports
	// that another edge took them (Presence.CommandsStopped).
	Presence *Presence
	// WaitForStart holds the run back until Start: New fires no Startup,
	// and Emit keeps events in memory, unnumbered and out of the outbox.
	// A run that stops without Start discards them, so a start that the
	// presence check rejects leaves nothing in the outbox or seq file.
	// Without it, New calls Start itself.
	WaitForStart bool
}

// Edge publishes one printer's events and executes its commands.
type Edge struct {
	cfg Config
	log *slog.Logger
	// printerMu guards printer, which Attach sets after the broker
	// callbacks may already run.
	printerMu sync.Mutex
	printer   *printer.Printer
	seq       *seqStore
	jobs      *jobRecordStore // guarded by emitMu
	outbox    *outbox.Outbox  // nil without DataDir
	metrics   *Metrics

	// bus is set once by SetBus, before busReady is closed. Run and the
	// goroutines it starts read it without busMu after busReady.
	bus      bridge.Bus
	busMu    sync.Mutex // guards bus for RepublishRetained and RepublishState
	busOnce  sync.Once
	busReady chan struct{}

	// announceMu guards running and announced. running is true from Run's
	// start markers (bridge info, availability online) until its stop
	// markers. announced names the buses that got the start markers, so a
	// bus that connects late (BusAttached) gets them once.
	announceMu sync.Mutex
	running    bool
	announced  map[string]bool
	// announcedReady has a channel per bus name that closes once the bus
	// got the start markers, so its events and state come after them.
	announcedReady map[string]chan struct{}

	// emitMu orders seq numbering with the append, so records enter the
	// outbox in seq order even when Emit runs on two goroutines.
	emitMu sync.Mutex
	// stopped is set by close under emitMu. Emit then drops events
	// before numbering them, so a dropped event takes no seq that the
	// next start hands out again.
	stopped bool
	// started is set by Start under emitMu. Until then Emit appends to
	// heldEvents (Config.WaitForStart).
	started      bool
	heldEvents   []*bridge.Envelope
	writeErrors  int
	lastWriteLog time.Time
	// encodeBuf is the envelope encoding buffer that Emit reuses under
	// emitMu, because the outbox copies what it appends. An event that is
	// queued in memory gets its own copy.
	encodeBuf []byte

	// mu guards queue and publishers.
	mu    sync.Mutex
	queue []pendingEvent
	// publishers are the delivery loops of the buses, one per bus, which
	// Run starts (deliver.go).
	publishers []*busPublisher

	commands *commandRunner
	// failed receives the error of a failed command subscription (see
	// Failed). Its buffer has room for the one error that a Run sends, so
	// Run does not block on it.
	failed chan error
	wg     sync.WaitGroup
	// policy is the command policy in force; SetPolicy replaces it.
	policy atomic.Pointer[policy.Policy]
}

// pendingEvent is one event to publish, from the outbox or from memory.
type pendingEvent struct {
	env        *bridge.Envelope
	data       []byte
	fromOutbox bool
}

// New builds an edge for a printer whose events must be routed to
// (*Edge).Emit: create the printer with edge.Emit as its EventFunc, then
// call Attach. bus may be nil and handed over later with SetBus.
func New(cfg Config, bus bridge.Bus, log *slog.Logger, metrics *Metrics) (*Edge, error) {
	if err := bridge.ValidatePrinterID(cfg.PrinterID); err != nil {
		return nil, err
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 10000
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	if cfg.StateInterval == 0 {
		cfg.StateInterval = 500 * time.Millisecond
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	metrics.SetPrinter(cfg.PrinterID)
	log = log.With("printer", cfg.PrinterID)
	e := &Edge{
		cfg:      cfg,
		log:      log,
		metrics:  metrics,
		busReady: make(chan struct{}),
		failed:   make(chan error, 1),
	}
	var floor uint64
	if cfg.DataDir != "" {
		opts := cfg.Outbox
		userDrop := opts.OnDrop
		opts.OnDrop = func(n int, reason string) {
			metrics.OutboxDropped.WithLabelValues(reason).Add(float64(n))
			if userDrop != nil {
				userDrop(n, reason)
			}
		}
		ob, err := outbox.Open(filepath.Join(cfg.DataDir, cfg.PrinterID+".outbox"), opts, log)
		if err != nil {
			return nil, fmt.Errorf("open the event outbox of printer %s: %w (check that --data-dir is writable)", cfg.PrinterID, err)
		}
		e.outbox = ob
		floor = ob.LastSeq()
	}
	seq, err := openSeqStore(cfg.DataDir, cfg.PrinterID, floor)
	if err != nil {
		if e.outbox != nil {
			_ = e.outbox.Close()
		}
		return nil, err
	}
	e.seq = seq
	e.jobs = newJobRecordStore(cfg.DataDir, cfg.PrinterID)
	e.policy.Store(cfg.Policy)
	e.commands = newCommandRunner(e)
	e.observeOutbox()
	if bus != nil {
		e.SetBus(bus)
	}
	if !cfg.WaitForStart {
		e.Start()
	}
	return e, nil
}

// Start begins the run: it fires Startup, then PrintFailed for a print
// that the previous run left open, then the events held since New, in the
// order they fired. Later calls do nothing.
func (e *Edge) Start() {
	e.emitMu.Lock()
	defer e.emitMu.Unlock()
	if e.started || e.stopped {
		return
	}
	e.started = true
	// Startup is the first event of the run, as in OctoPrint, even when
	// events were held before it. Events a previous run left in the
	// outbox go out before it.
	e.emitLocked(e.newEnvelope(bridge.EventStartup, nil, bridge.Context{}))
	// The interrupted print's PrintFailed comes before any event of a new
	// connection or job.
	e.closeInterruptedJobLocked()
	held := e.heldEvents
	e.heldEvents = nil
	for _, env := range held {
		e.emitLocked(env)
	}
}

// stopUnstarted marks a run that never started as stopped and drops its
// held events. It reports false, and does nothing, once Start has run.
// The check and the mark share one lock, so a Start that comes after it
// does nothing, and no event enters the outbox of a run that stops here.
func (e *Edge) stopUnstarted() bool {
	e.emitMu.Lock()
	defer e.emitMu.Unlock()
	if e.started {
		return false
	}
	e.stopped = true
	if len(e.heldEvents) == 0 {
		return true
	}
	e.metrics.EventsDropped.WithLabelValues("not_started").Add(float64(len(e.heldEvents)))
	e.log.Info("edge stopped before its run started; its held events are discarded and take no seq", "count", len(e.heldEvents),
		"first_event", e.heldEvents[0].Event, "first_event_id", e.heldEvents[0].ID)
	e.heldEvents = nil
	return true
}

// SetPolicy replaces the command policy, for a configuration reload; nil
// allows all commands. Commands already checked keep the old verdict.
func (e *Edge) SetPolicy(p *policy.Policy) {
	e.policy.Store(p)
}

func (e *Edge) currentPolicy() *policy.Policy {
	return e.policy.Load()
}

// Attach sets the printer whose commands the edge executes.
func (e *Edge) Attach(p *printer.Printer) {
	e.printerMu.Lock()
	defer e.printerMu.Unlock()
	e.printer = p
}

// attached returns the printer set by Attach, or nil. The MQTT adapter's
// on-connect callback reads it from its own goroutine.
func (e *Edge) attached() *printer.Printer {
	e.printerMu.Lock()
	defer e.printerMu.Unlock()
	return e.printer
}

// SetBus hands the edge its broker connection, once it is up. Only the
// first call has an effect.
func (e *Edge) SetBus(bus bridge.Bus) {
	e.busOnce.Do(func() {
		e.initBusMetrics(bus)
		e.busMu.Lock()
		e.bus = bus
		e.busMu.Unlock()
		close(e.busReady)
	})
}

func (e *Edge) currentBus() bridge.Bus {
	e.busMu.Lock()
	defer e.busMu.Unlock()
	return e.bus
}

// maxReusedEncodeBuf is the largest encoding buffer that Emit keeps for
// the next event, so that one huge event does not pin its buffer.
const maxReusedEncodeBuf = 64 << 10

// Emit is the printer's EventFunc: it builds the envelope and stores it
// in the outbox. It does not wait for the broker, only for the outbox's
// disk write (and fsync under the "every" fsync policy).
// Before Start, it holds the event in memory instead (Config.WaitForStart).
func (e *Edge) Emit(name string, payload bridge.Payload, ctx bridge.Context) {
	if name == bridge.EventPrinterStateChanged {
		if id, ok := payload.Get("state_id"); ok {
			if state, ok := id.(string); ok {
				e.metrics.StateChanges.WithLabelValues(state).Inc()
			}
		}
	}
	env := e.newEnvelope(name, payload, ctx)
	e.emitMu.Lock()
	defer e.emitMu.Unlock()
	if e.stopped {
		e.metrics.EventsDropped.WithLabelValues("stopped").Inc()
		e.log.Warn("event fired after the edge stopped; dropped", "event", name, "event_id", env.ID)
		return
	}
	if !e.started {
		e.holdLocked(env)
		return
	}
	e.emitLocked(env)
}

func (e *Edge) newEnvelope(name string, payload bridge.Payload, ctx bridge.Context) *bridge.Envelope {
	now := time.Now().UTC()
	return &bridge.Envelope{
		Schema:  bridge.SchemaVersion,
		ID:      bridge.NewEventID(now),
		Printer: e.cfg.PrinterID,
		Event:   name,
		Time:    now,
		Payload: payload,
		Context: ctx,
	}
}

// holdLocked keeps an event fired before Start, up to QueueSize events.
func (e *Edge) holdLocked(env *bridge.Envelope) {
	if len(e.heldEvents) >= e.cfg.QueueSize {
		dropped := e.heldEvents[0]
		e.heldEvents = e.heldEvents[1:]
		e.metrics.EventsDropped.WithLabelValues("queue_full").Inc()
		e.log.Warn("event queue before the run started is full, oldest event dropped", "event", dropped.Event,
			"event_id", dropped.ID, "queue_size", e.cfg.QueueSize)
	}
	e.heldEvents = append(e.heldEvents, env)
}

// emitLocked numbers env and stores it in the outbox or the memory queue.
func (e *Edge) emitLocked(env *bridge.Envelope) {
	name := env.Event
	env.Seq = e.seq.Next()
	data, err := env.AppendJSON(e.encodeBuf[:0])
	if err != nil {
		e.log.Error("encoding event failed; event dropped", "event", name, "event_id", env.ID, "error", err)
		e.metrics.EventsDropped.WithLabelValues("encode").Inc()
		return
	}
	if cap(data) <= maxReusedEncodeBuf {
		e.encodeBuf = data
	}
	if e.cfg.OnEnvelope != nil {
		e.cfg.OnEnvelope(env)
	}
	e.log.Debug("event", "event", name, "event_id", env.ID, "seq", env.Seq)
	if err := e.jobs.observe(env); err != nil {
		e.metrics.JobRecordErrors.Inc()
		e.log.Error("updating the running print record failed; if the edge is killed during this print, no PrintFailed closes it after the restart",
			"event", name, "event_id", env.ID, "error", err)
	}
	if e.outbox == nil {
		e.enqueue(pendingEvent{env: env, data: bytes.Clone(data)})
	} else if !e.storeLocked(env, data) {
		return
	}
	e.signal()
}

// storeLocked appends to the outbox, or queues a copy of data in memory
// when that fails. It returns false when the event is lost because the
// edge has stopped.
func (e *Edge) storeLocked(env *bridge.Envelope, data []byte) bool {
	err := e.outbox.Append(data, outbox.Meta{Seq: env.Seq, ID: env.ID, Event: env.Event, Time: env.Time})
	if err == nil {
		e.metrics.OutboxDepth.Set(float64(e.outbox.Len()))
		return true
	}
	if errors.Is(err, outbox.ErrClosed) {
		e.metrics.EventsDropped.WithLabelValues("stopped").Inc()
		e.log.Warn("event fired after the edge stopped; dropped", "event", env.Event, "event_id", env.ID, "seq", env.Seq)
		return false
	}
	e.metrics.OutboxWriteErrors.Inc()
	e.writeErrors++
	if now := time.Now(); e.writeErrors == 1 || now.Sub(e.lastWriteLog) >= errorLogInterval {
		e.lastWriteLog = now
		e.log.Error("storing event in the outbox failed; it is held in memory until published, and lost if the edge stops first",
			"event", env.Event, "event_id", env.ID, "seq", env.Seq, "failures", e.writeErrors, "error", err)
	}
	// The outbox does not have this seq, so the seq file must, or a
	// restart could hand it out again.
	if perr := e.seq.Persist(env.Seq); perr != nil {
		e.log.Error("persisting the event sequence failed; a restart may reuse seq numbers", "seq", env.Seq, "error", perr)
	}
	e.enqueue(pendingEvent{env: env, data: bytes.Clone(data)})
	return true
}

func (e *Edge) enqueue(ev pendingEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.queue) >= e.cfg.QueueSize {
		dropped := e.queue[0]
		e.queue = e.queue[1:]
		e.metrics.EventsDropped.WithLabelValues("queue_full").Inc()
		e.log.Warn("event queue full, oldest event dropped", "event", dropped.env.Event, "event_id", dropped.env.ID,
			"seq", dropped.env.Seq, "queue_size", e.cfg.QueueSize)
	}
	e.queue = append(e.queue, ev)
	e.metrics.QueueDepth.Set(float64(len(e.queue)))
}

// signal wakes the delivery loop of every bus.
func (e *Edge) signal() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.publishers {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// Run waits for the bus, then publishes events, state and replies until
// ctx ends. It then publishes Shutdown and offline, and drains what it can
// within a few seconds. What is left stays in the outbox for the next
// start. When ctx ends before SetBus, Shutdown is only stored, or, before
// Start, nothing is stored and the held events are discarded. When the
// command subscription fails, Run sends the error to Failed, goes on
// until ctx ends, and returns the error.
func (e *Edge) Run(ctx context.Context) error {
	if e.printer == nil {
		return errors.New("edge has no printer attached")
	}
	select {
	case <-e.busReady:
	case <-ctx.Done():
		if e.stopUnstarted() {
			return e.close()
		}
		e.Emit(bridge.EventShutdown, nil, bridge.Context{})
		e.log.Warn("edge stopped before a broker connection was up; events stay in the outbox for the next start",
			"count", e.pendingCount())
		return e.close()
	}
	// A bus is up, so the run has begun even if the caller did not say so.
	e.Start()
	e.announceStart(ctx)
	// The buses wait for the reconnect themselves when the connection
	// drops during the subscription, so an error here is one that a retry
	// does not fix, such as a broker that rejects the subscription.
	subscribeErr := e.bus.SubscribeCommands(ctx, e.cfg.PrinterID, e.commands.receive)
	if subscribeErr != nil && ctx.Err() != nil {
		// A stop during the subscription ends its flush; that is the
		// stop, not a broker that rejects the subscription.
		e.log.Debug("edge stopped while subscribing to commands", "error", subscribeErr)
		subscribeErr = nil
	}
	if subscribeErr != nil {
		subscribeErr = fmt.Errorf("subscribe to commands of printer %s: %w", e.cfg.PrinterID, subscribeErr)
		e.log.Error("subscribing to commands failed; the edge takes no commands and must be stopped", "error", subscribeErr)
		e.failed <- subscribeErr
	}
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		e.commands.run(ctx)
	}()
	go func() {
		defer e.wg.Done()
		e.publishState(ctx)
	}()
	e.publishEvents(ctx)
	e.wg.Wait()

	// Shutdown goes out after everything stored before it.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownDrainTimeout)
	defer cancel()
	e.Emit(bridge.EventShutdown, nil, bridge.Context{})
	e.announceMu.Lock()
	e.running = false
	e.announceMu.Unlock()
	e.stopBuses(shutdownCtx)
	return errors.Join(subscribeErr, e.close())
}

// stopBuses publishes on each bus at once what is left of the events,
// until ctx ends, and then the last state and the offline marker under a
// deadline of their own. A bus that did not take every event in time
// (its broker hangs) gets no markers, so it does not delay the stop any
// further.
func (e *Edge) stopBuses(ctx context.Context) {
	e.mu.Lock()
	publishers := map[string]*busPublisher{}
	for _, p := range e.publishers {
		publishers[p.name] = p
	}
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, b := range bridge.Buses(e.bus) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			drained := true
			if p := publishers[b.Name()]; p != nil {
				drained = e.drainTo(ctx, p)
			}
			switch {
			case !bridge.Connected(b):
				e.log.Info("not publishing the last state and the offline marker: the broker connection is down", "bus", b.Name())
			case !drained:
				e.log.Warn("not publishing the last state and the offline marker: the broker did not take the last events in time", "bus", b.Name())
			default:
				e.publishStopMarkersOn(b)
			}
		}()
	}
	wg.Wait()
}

// publishStopMarkersOn publishes the last state and the offline marker
// on b under stopPublishTimeout. The last state (Offline after the
// printer stopped) replaces the retained one, so it does not go on saying
// Printing.
func (e *Edge) publishStopMarkersOn(b bridge.Bus) {
	ctx, cancel := context.WithTimeout(context.Background(), stopPublishTimeout)
	defer cancel()
	if err := e.publishCurrentStateOn(ctx, b); err != nil {
		e.log.Warn("publishing the final state failed; the retained state may be stale", "bus", b.Name(), "error", err)
	}
	e.publishRunAvailability(ctx, b, false)
}

// Failed returns a channel that receives the error of Run's command
// subscription when it fails. Run sends at most one error, and never sends
// when the presence check stops the commands (see
// Presence.CommandsStopped). Run goes on publishing events until its ctx
// ends, so that the caller can stop the printer first and Shutdown stays
// the last event. Run then returns the error too.
func (e *Edge) Failed() <-chan error {
	return e.failed
}

// publishCurrentState publishes the printer's current snapshot as the
// retained state, outside publishState's rate limit.
func (e *Edge) publishCurrentState(ctx context.Context) error {
	return e.publishCurrentStateOn(ctx, e.currentBus())
}

// publishCurrentStateOn is publishCurrentState on bus, which may be nil.
func (e *Edge) publishCurrentStateOn(ctx context.Context, bus bridge.Bus) error {
	p := e.attached()
	if bus == nil || p == nil {
		return nil
	}
	data, err := json.Marshal(statePayload{Snapshot: p.Snapshot(), Printer: e.cfg.PrinterID, LastSeen: time.Now().UTC()})
	if err != nil {
		return err
	}
	return bus.PublishState(ctx, e.cfg.PrinterID, data)
}

// close logs what was not delivered and closes the outbox and seq file.
func (e *Edge) close() error {
	e.emitMu.Lock()
	defer e.emitMu.Unlock()
	e.stopped = true
	e.mu.Lock()
	inMemory := len(e.queue)
	e.mu.Unlock()
	if inMemory > 0 {
		e.log.Warn("edge stopped with events held in memory; they are lost", "count", inMemory)
	}
	var errs []error
	if e.outbox != nil {
		if n := e.outbox.Len(); n > 0 {
			e.log.Info("edge stopped with undelivered events in the outbox; the next start publishes them", "count", n)
		}
		errs = append(errs, e.outbox.Close())
	}
	errs = append(errs, e.seq.Close())
	errs = append(errs, e.commands.persist.close(e.commands.entries))
	return errors.Join(errs...)
}

func (e *Edge) pendingCount() int {
	e.mu.Lock()
	n := len(e.queue)
	e.mu.Unlock()
	if e.outbox != nil {
		n += e.outbox.Len()
	}
	return n
}

// statePayload is the retained state: the printer snapshot plus the time
// it was taken.
type statePayload struct {
	printer.Snapshot
	Printer  string    `json:"printer"`
	LastSeen time.Time `json:"last_seen"`
}

// publishState publishes the retained state on every change, at most once
// per StateInterval. Each bus gets the state from its own goroutine, so a
// bus whose broker hangs does not delay the state on another.
func (e *Edge) publishState(ctx context.Context) {
	var senders []*stateSender
	var wg sync.WaitGroup
	for _, b := range bridge.Buses(e.bus) {
		s := &stateSender{bus: b, log: e.log.With("bus", b.Name()), wake: make(chan struct{}, 1)}
		senders = append(senders, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.sendStates(ctx, s)
		}()
	}
	defer wg.Wait()

	var last time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	pending := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.printer.Changed():
			pending = true
			timer.Reset(max(0, e.cfg.StateInterval-time.Since(last)))
			continue
		case <-timer.C:
		}
		if !pending {
			continue
		}
		pending = false
		last = time.Now()
		snap := e.printer.Snapshot()
		e.metrics.observeSnapshot(&snap)
		data, err := json.Marshal(statePayload{Snapshot: snap, Printer: e.cfg.PrinterID, LastSeen: last.UTC()})
		if err != nil {
			e.log.Error("encoding state failed", "error", err)
			continue
		}
		for _, s := range senders {
			s.offer(data)
		}
	}
}

// stateSender publishes the newest state on one bus. A state that arrives
// while the previous publish still waits for the broker replaces any
// state not yet sent, because the retained state needs only the newest.
type stateSender struct {
	bus  bridge.Bus
	log  *slog.Logger
	wake chan struct{}
	// mu guards next, the state not yet published, or nil.
	mu   sync.Mutex
	next []byte
}

func (s *stateSender) offer(data []byte) {
	s.mu.Lock()
	s.next = data
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// sendStates publishes what s is offered until ctx ends. A failed publish
// is retried after 2 s unless a newer state has arrived meanwhile.
func (e *Edge) sendStates(ctx context.Context, s *stateSender) {
	if !e.waitAnnounced(ctx, s.bus) {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		for ctx.Err() == nil {
			s.mu.Lock()
			data := s.next
			s.next = nil
			s.mu.Unlock()
			if data == nil {
				break
			}
			pctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
			err := s.bus.PublishState(pctx, e.cfg.PrinterID, data)
			cancel()
			if err == nil || ctx.Err() != nil {
				continue
			}
			s.log.Warn("publishing state failed; retrying in 2s unless the state changes", "error", err)
			s.mu.Lock()
			if s.next == nil {
				s.next = data
			}
			s.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}
}

// RepublishRetained publishes availability and state again on every bus,
// for Home Assistant's birth message. It does nothing before SetBus.
func (e *Edge) RepublishRetained(ctx context.Context) {
	bus := e.currentBus()
	if bus == nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
	defer cancel()
	if err := bus.PublishAvailability(pctx, e.cfg.PrinterID, true); err != nil {
		e.log.Warn("republishing availability failed", "error", err)
	}
	e.RepublishState(ctx)
}

// RepublishState publishes the retained state again on every bus. It does
// nothing before SetBus.
func (e *Edge) RepublishState(ctx context.Context) {
	if e.currentBus() == nil {
		return
	}
	if err := e.publishCurrentState(ctx); err != nil {
		e.log.Warn("republishing the state failed; the next change publishes it", "error", err)
	}
}

// announceStart publishes the start markers on every bus that is
// connected. A bus that connects later gets them from BusAttached.
func (e *Edge) announceStart(ctx context.Context) {
	var buses []bridge.Bus
	e.announceMu.Lock()
	e.running = true
	if e.announced == nil {
		e.announced = map[string]bool{}
	}
	for _, b := range bridge.Buses(e.bus) {
		if bridge.Waiting(b) {
			continue
		}
		e.announced[b.Name()] = true
		buses = append(buses, b)
	}
	e.announceMu.Unlock()
	if len(buses) == 0 {
		return
	}
	bus := buses[0]
	if len(buses) > 1 {
		bus = bridge.NewMulti(buses...)
	}
	e.publishStartMarkers(ctx, bus)
	for _, b := range buses {
		e.markAnnounced(b.Name())
	}
}

// announcedChan returns the channel that closes once the bus called name
// got the start markers. The caller holds announceMu.
func (e *Edge) announcedChan(name string) chan struct{} {
	if e.announcedReady == nil {
		e.announcedReady = map[string]chan struct{}{}
	}
	ch := e.announcedReady[name]
	if ch == nil {
		ch = make(chan struct{})
		e.announcedReady[name] = ch
	}
	return ch
}

// markAnnounced records that the bus called name got the start markers.
func (e *Edge) markAnnounced(name string) {
	e.announceMu.Lock()
	defer e.announceMu.Unlock()
	ch := e.announcedChan(name)
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// waitAnnounced waits until b is attached (see waitAttached) and has got
// the start markers, so a late bus gets bridge info and "online" before
// the state and the events. It returns false when ctx ends first.
func (e *Edge) waitAnnounced(ctx context.Context, b bridge.Bus) bool {
	if !waitAttached(ctx, b) {
		return false
	}
	e.announceMu.Lock()
	ch := e.announcedChan(b.Name())
	e.announceMu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// BusAttached publishes the start markers on b, a bus of the edge whose
// broker connection came up after the others (bridge.Pending), unless
// Run has not published them yet (it then includes b) or has stopped.
// The state and the pending events follow from b's own delivery loops.
func (e *Edge) BusAttached(b bridge.Bus) {
	e.announceMu.Lock()
	publish := e.running && !e.announced[b.Name()]
	if publish {
		e.announced[b.Name()] = true
	}
	e.announceMu.Unlock()
	if !publish {
		return
	}
	e.log.Info("publishing bridge info and availability on a bus that connected late", "bus", b.Name())
	e.publishStartMarkers(context.Background(), b)
	e.markAnnounced(b.Name())
}

// BusReconnected publishes the start markers and the state again on the
// bus called name, whose broker connection came back after it dropped.
// A broker that restarted has lost MQTT's retained messages and, with
// memory storage, the JetStream state bucket's keys. A JetStream key put
// that failed while the connection was away is not retried either. An MQTT
// bus publishes its "online" itself on each connect. It does nothing
// before Run has published the start markers on that bus or after Run
// has stopped.
func (e *Edge) BusReconnected(name string) {
	e.announceMu.Lock()
	publish := e.running && e.announced[name]
	e.announceMu.Unlock()
	if !publish {
		return
	}
	cur := e.currentBus()
	if cur == nil {
		return
	}
	var bus bridge.Bus
	for _, b := range bridge.Buses(cur) {
		if b.Name() == name {
			bus = b
		}
	}
	if bus == nil {
		return
	}
	e.log.Info("publishing bridge info, availability and state again after a reconnect", "bus", name)
	ctx := context.Background()
	e.publishStartMarkers(ctx, bus)
	pctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
	defer cancel()
	if err := e.publishCurrentStateOn(pctx, bus); err != nil {
		e.log.Warn("republishing the state failed; the next change publishes it", "bus", name, "error", err)
	}
}

// publishStartMarkers publishes the start markers on bus: the bridge info
// and, where the bus does not publish it itself, "online".
func (e *Edge) publishStartMarkers(ctx context.Context, bus bridge.Bus) {
	e.publishInfo(ctx, bus)
	e.publishRunAvailability(ctx, bus, true)
}

// publishRunAvailability publishes the marker of the edge's start or stop
// on the buses of bus that do not publish it themselves, so a subscriber
// gets one "online" per connection and one "offline" per stop.
func (e *Edge) publishRunAvailability(ctx context.Context, bus bridge.Bus, online bool) {
	pctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
	defer cancel()
	if err := bridge.PublishUnownedAvailability(pctx, bus, e.cfg.PrinterID, online); err != nil {
		e.log.Warn("publishing availability failed", "bus", bus.Name(), "online", online, "error", err)
	}
}

// publishInfo publishes the retained bridge description on bus.
func (e *Edge) publishInfo(ctx context.Context, bus bridge.Bus) {
	info := map[string]any{"version": Version, "schema": bridge.SchemaVersion, "printers": []string{e.cfg.PrinterID}}
	data, _ := json.Marshal(info)
	pctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
	defer cancel()
	if infoBus, ok := bus.(bridge.BridgeInfoPublisher); ok {
		if err := infoBus.PublishBridgeInfo(pctx, e.cfg.PrinterID, data); err != nil {
			e.log.Warn("publishing bridge info failed", "bus", bus.Name(), "error", err)
		}
	}
}
