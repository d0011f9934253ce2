// Package edge joins one printer connection to the bus: it wraps every
// printer event in an envelope with a persisted sequence number, publishes
// events in order, keeps the retained state and availability topics up to
// date, and executes command messages, answering each with replies.
//
// Events are queued in memory between the printer's owner goroutine and
// one publisher goroutine, so a slow broker never stalls the serial
// stream.
package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
)

// Version is the printbridge version reported in bridge/info.
var Version = "0.1.0-dev"

// Config sets up an edge.
type Config struct {
	PrinterID string
	DataDir   string
	// QueueSize bounds the events held while the broker is unreachable;
	// 10000 when zero. When full, the oldest event is dropped and counted.
	QueueSize int
	// PublishTimeout bounds one publish attempt; 10s when zero.
	PublishTimeout time.Duration
	// StateInterval is the minimum time between two retained state
	// publishes; 500ms when zero.
	StateInterval time.Duration
	// OnEnvelope, if set, sees every envelope after it is built (tests and
	// the demo use it). It must not block.
	OnEnvelope func(*bridge.Envelope)
}

// Edge publishes one printer's events and executes its commands.
type Edge struct {
	cfg     Config
	log     *slog.Logger
	bus     bridge.Bus
	printer *printer.Printer
	seq     *seqStore
	metrics *Metrics

	// mu guards queue and closed.
	mu     sync.Mutex
	queue  []queuedEvent
	closed bool
	wake   chan struct{}

	commands *commandRunner
	wg       sync.WaitGroup
}

type queuedEvent struct {
	env  *bridge.Envelope
	data []byte
}

// New builds an edge for a printer whose events must be routed to
// (*Edge).Emit: create the printer with edge.Emit as its EventFunc, then
// call Attach.
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
	seq, err := openSeqStore(cfg.DataDir, cfg.PrinterID)
	if err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	e := &Edge{
		cfg:     cfg,
		log:     log.With("printer", cfg.PrinterID),
		bus:     bus,
		seq:     seq,
		metrics: metrics,
		wake:    make(chan struct{}, 1),
	}
	e.commands = newCommandRunner(e)
	// Startup is queued before the printer exists, so it is the first
	// event, as in OctoPrint.
	e.Emit(bridge.EventStartup, nil, bridge.Context{})
	return e, nil
}

// Attach sets the printer whose commands the edge executes.
func (e *Edge) Attach(p *printer.Printer) { e.printer = p }

// Emit is the printer's EventFunc: it builds the envelope and queues it.
// It never blocks.
func (e *Edge) Emit(name string, payload bridge.Payload, ctx bridge.Context) {
	now := time.Now().UTC()
	env := &bridge.Envelope{
		Schema:  bridge.SchemaVersion,
		ID:      bridge.NewEventID(now),
		Printer: e.cfg.PrinterID,
		Event:   name,
		Time:    now,
		Payload: payload,
		Context: ctx,
	}
	seq, err := e.seq.Next()
	if err != nil {
		e.log.Error("persisting the event sequence failed; numbering continues in memory", "error", err)
	}
	env.Seq = seq
	data, err := json.Marshal(env)
	if err != nil {
		e.log.Error("encoding event failed; event dropped", "event", name, "event_id", env.ID, "error", err)
		e.metrics.EventsDropped.WithLabelValues("encode").Inc()
		return
	}
	if e.cfg.OnEnvelope != nil {
		e.cfg.OnEnvelope(env)
	}
	e.log.Debug("event", "event", name, "event_id", env.ID, "seq", seq)
	e.mu.Lock()
	if len(e.queue) >= e.cfg.QueueSize {
		dropped := e.queue[0]
		e.queue = e.queue[1:]
		e.metrics.EventsDropped.WithLabelValues("queue_full").Inc()
		e.log.Warn("event queue full, oldest event dropped", "event", dropped.env.Event, "event_id", dropped.env.ID,
			"seq", dropped.env.Seq, "queue_size", e.cfg.QueueSize)
	}
	e.queue = append(e.queue, queuedEvent{env: env, data: data})
	e.metrics.QueueDepth.Set(float64(len(e.queue)))
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Run publishes events, state and replies until ctx ends, then publishes
// Shutdown and offline and drains what it can within a few seconds.
func (e *Edge) Run(ctx context.Context) error {
	if e.printer == nil {
		return errors.New("edge has no printer attached")
	}
	e.publishInfo(ctx)
	e.publishAvailability(ctx, true)
	if err := e.bus.SubscribeCommands(ctx, e.cfg.PrinterID, e.commands.receive); err != nil {
		return fmt.Errorf("subscribe to commands of printer %s: %w", e.cfg.PrinterID, err)
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

	// Shutdown goes out after everything queued before it.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Emit(bridge.EventShutdown, nil, bridge.Context{})
	e.drain(shutdownCtx)
	e.publishAvailability(shutdownCtx, false)
	e.mu.Lock()
	e.closed = true
	left := len(e.queue)
	e.mu.Unlock()
	if left > 0 {
		e.log.Warn("edge stopped with events not delivered", "count", left)
	}
	return e.seq.Close()
}

func (e *Edge) publishEvents(ctx context.Context) {
	attempt := 0
	for {
		e.mu.Lock()
		var next *queuedEvent
		if len(e.queue) > 0 {
			next = &e.queue[0]
		}
		e.mu.Unlock()
		if next == nil {
			select {
			case <-ctx.Done():
				return
			case <-e.wake:
				continue
			}
		}
		if err := e.publishOne(ctx, next); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := min(time.Duration(1<<min(attempt, 5))*200*time.Millisecond, 10*time.Second)
			attempt++
			if attempt == 1 || attempt%20 == 0 {
				e.log.Warn("publishing event failed, retrying", "event", next.env.Event, "event_id", next.env.ID,
					"attempt", attempt, "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			continue
		}
		if attempt > 0 {
			e.log.Info("event publishing recovered", "attempts", attempt)
		}
		attempt = 0
		e.pop(next.env.ID)
	}
}

// publishOne publishes one event. The attempt is bounded by
// PublishTimeout but not cancelled by ctx: a publish cut short by shutdown
// may still reach the broker, and publishing it again from drain would
// deliver it twice.
func (e *Edge) publishOne(_ context.Context, q *queuedEvent) error {
	pctx, cancel := context.WithTimeout(context.Background(), e.cfg.PublishTimeout)
	defer cancel()
	if err := e.bus.PublishEvent(pctx, q.env, q.data); err != nil {
		e.metrics.PublishErrors.Inc()
		return err
	}
	e.metrics.EventsPublished.WithLabelValues(q.env.Event).Inc()
	return nil
}

func (e *Edge) pop(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.queue) > 0 && e.queue[0].env.ID == id {
		e.queue = e.queue[1:]
	}
	e.metrics.QueueDepth.Set(float64(len(e.queue)))
}

func (e *Edge) drain(ctx context.Context) {
	for {
		e.mu.Lock()
		var next *queuedEvent
		if len(e.queue) > 0 {
			next = &e.queue[0]
		}
		e.mu.Unlock()
		if next == nil {
			return
		}
		if err := e.publishOne(ctx, next); err != nil {
			e.log.Warn("publishing event at shutdown failed", "event", next.env.Event, "event_id", next.env.ID, "error", err)
			return
		}
		e.pop(next.env.ID)
	}
}

// statePayload is the retained state: the printer snapshot plus the time
// it was taken.
type statePayload struct {
	printer.Snapshot
	Printer  string    `json:"printer"`
	LastSeen time.Time `json:"last_seen"`
}

func (e *Edge) publishState(ctx context.Context) {
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
		pctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
		if err := e.bus.PublishState(pctx, e.cfg.PrinterID, data); err != nil && ctx.Err() == nil {
			e.log.Warn("publishing state failed; the next change retries", "error", err)
			pending = true
			timer.Reset(2 * time.Second)
		}
		cancel()
	}
}

// RepublishRetained publishes state and availability again; the MQTT
// adapter calls it after a reconnect so retained topics are current.
func (e *Edge) RepublishRetained(ctx context.Context) {
	e.publishAvailability(ctx, true)
	if e.printer == nil {
		return
	}
	snap := e.printer.Snapshot()
	data, err := json.Marshal(statePayload{Snapshot: snap, Printer: e.cfg.PrinterID, LastSeen: time.Now().UTC()})
	if err == nil {
		_ = e.bus.PublishState(ctx, e.cfg.PrinterID, data)
	}
}

func (e *Edge) publishAvailability(ctx context.Context, online bool) {
	pctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
	defer cancel()
	if err := e.bus.PublishAvailability(pctx, e.cfg.PrinterID, online); err != nil {
		e.log.Warn("publishing availability failed", "online", online, "error", err)
	}
}

func (e *Edge) publishInfo(ctx context.Context) {
	info := map[string]any{"version": Version, "schema": bridge.SchemaVersion, "printers": []string{e.cfg.PrinterID}}
	data, _ := json.Marshal(info)
	pctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
	defer cancel()
	if infoBus, ok := e.bus.(interface {
		PublishBridgeInfo(context.Context, []byte) error
	}); ok {
		if err := infoBus.PublishBridgeInfo(pctx, data); err != nil {
			e.log.Warn("publishing bridge info failed", "error", err)
		}
	}
}
