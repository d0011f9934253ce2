package edge

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/outbox"
)

// maxPublishBatch bounds the events that one publish keeps in flight, and
// so the events a failed batch publishes again.
const maxPublishBatch = 256

// busPublisher is the delivery loop of one bus. Each bus reads the pending
// events from its own position, so a bus whose broker is down does not
// hold back another. An event leaves the outbox and the memory queue once
// every bus has taken it.
type busPublisher struct {
	bus  bridge.Bus
	name string
	log  *slog.Logger
	wake chan struct{}
	// taken is the seq of the last event that the bus took. It starts
	// just below the oldest event pending when delivery starts
	// (deliveryFloor). It is in memory only, so after a restart every bus
	// starts again from the oldest event that the outbox still holds. Only
	// the publisher's goroutine writes it, under Edge.mu.
	taken uint64
}

// initBusMetrics creates the series of every bus of bus at 0.
func (e *Edge) initBusMetrics(bus bridge.Bus) {
	for _, b := range bridge.Buses(bus) {
		e.metrics.InitBus(b.Name())
	}
}

// startPublishers makes one delivery loop per bus of e.bus. Each starts
// just below the oldest event still pending, so that events dropped from
// the outbox before a bus took them, such as while its broker was down
// from the start, count as lost for that bus (checkGap).
func (e *Edge) startPublishers() []*busPublisher {
	floor := e.deliveryFloor()
	var publishers []*busPublisher
	for _, b := range bridge.Buses(e.bus) {
		publishers = append(publishers, &busPublisher{
			bus:   b,
			name:  b.Name(),
			log:   e.log.With("bus", b.Name()),
			wake:  make(chan struct{}, 1),
			taken: floor,
		})
	}
	e.mu.Lock()
	e.publishers = publishers
	e.mu.Unlock()
	return publishers
}

// deliveryFloor returns the seq just below the oldest pending event, or
// the last seq handed out when none is pending. emitMu keeps an event from
// being numbered between the two reads. When the outbox cannot be read it
// returns 0, so every bus starts from the oldest event rather than skip
// one.
func (e *Edge) deliveryFloor() uint64 {
	e.emitMu.Lock()
	defer e.emitMu.Unlock()
	last := e.seq.Last()
	oldest, err := e.nextBatch(0, 1)
	switch {
	case err != nil:
		return 0
	case len(oldest) > 0:
		return oldest[0].env.Seq - 1
	default:
		return last
	}
}

// nextBatch returns up to max pending events with a seq above after, in
// seq order, merged from the outbox and the memory queue.
func (e *Edge) nextBatch(after uint64, max int) ([]pendingEvent, error) {
	var disk []outbox.Record
	if e.outbox != nil {
		recs, err := e.outbox.PeekAfter(after, max)
		if err != nil {
			return nil, err
		}
		disk = recs
	}
	e.mu.Lock()
	var mem []pendingEvent
	for _, ev := range e.queue {
		if len(mem) == max {
			break
		}
		if ev.env.Seq > after {
			mem = append(mem, ev)
		}
	}
	e.mu.Unlock()
	batch := make([]pendingEvent, 0, min(max, len(disk)+len(mem)))
	for len(batch) < max && (len(disk) > 0 || len(mem) > 0) {
		if len(disk) > 0 && (len(mem) == 0 || disk[0].Seq < mem[0].env.Seq) {
			// The bus needs only the routing fields and the id; the
			// envelope itself travels as stored.
			d := disk[0]
			env := &bridge.Envelope{Schema: bridge.SchemaVersion, ID: d.ID, Seq: d.Seq, Printer: e.cfg.PrinterID,
				Event: d.Event, Time: d.Time}
			batch = append(batch, pendingEvent{env: env, data: d.Data, fromOutbox: true})
			disk = disk[1:]
			continue
		}
		batch = append(batch, mem[0])
		mem = mem[1:]
	}
	return batch, nil
}

// delivered moves p past the events its bus took, which are the oldest
// ones above its position, and removes from the outbox and the memory
// queue the events that every bus has taken.
func (e *Edge) delivered(p *busPublisher, events []pendingEvent) {
	if len(events) == 0 {
		return
	}
	last := events[len(events)-1].env
	e.mu.Lock()
	p.taken = last.Seq
	all := p.taken
	for _, other := range e.publishers {
		all = min(all, other.taken)
	}
	for len(e.queue) > 0 && e.queue[0].env.Seq <= all {
		e.queue = e.queue[1:]
	}
	e.metrics.QueueDepth.Set(float64(len(e.queue)))
	e.mu.Unlock()
	e.metrics.BusLastSeq.WithLabelValues(p.name).Set(float64(p.taken))
	if e.outbox == nil || all == 0 {
		return
	}
	if err := e.outbox.Ack(all); err != nil {
		e.log.Error("acknowledging events in the outbox failed; they may be published again", "seq", all, "error", err)
	}
	e.metrics.OutboxDepth.Set(float64(e.outbox.Len()))
}

// checkGap counts and logs the events that p's bus never gets: those
// between its position and the first event still pending. The outbox's
// size or age limit, a full memory queue or a failed encoding dropped
// them before this bus took them, although another bus may have.
func (e *Edge) checkGap(p *busPublisher, batch []pendingEvent) {
	if len(batch) == 0 {
		return
	}
	first := batch[0].env.Seq
	if first <= p.taken+1 {
		return
	}
	lost := first - p.taken - 1
	e.metrics.BusEventsLost.WithLabelValues(p.name).Add(float64(lost))
	p.log.Warn("events dropped before this bus took them; the bus never gets them", "count", lost,
		"after_seq", p.taken, "next_seq", first)
}

// observeOutbox refreshes the outbox gauges.
func (e *Edge) observeOutbox() {
	if e.outbox == nil {
		return
	}
	e.metrics.OutboxDepth.Set(float64(e.outbox.Len()))
	e.metrics.OutboxOldestAge.Set(e.outbox.OldestAge().Seconds())
}

// publishEvents runs one delivery loop per bus until ctx ends.
func (e *Edge) publishEvents(ctx context.Context) {
	publishers := e.startPublishers()
	var wg sync.WaitGroup
	for _, p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.publishTo(ctx, p)
		}()
	}
	wg.Wait()
}

// publishTo is the delivery loop of one bus: batches of events in seq
// order from the bus's position, each retried with capped backoff from
// its first event that the broker did not take.
// NOTE: an event that the broker always rejects (larger than its maximum
// payload, say) holds up every later event on that bus until MaxAge drops
// it.
func (e *Edge) publishTo(ctx context.Context, p *busPublisher) {
	if !e.waitAnnounced(ctx, p.bus) {
		return
	}
	gauges := time.NewTicker(gaugeInterval)
	defer gauges.Stop()
	attempt := 0
	for {
		batch, err := e.nextBatch(p.taken, maxPublishBatch)
		if err != nil {
			attempt++
			if attempt == 1 || attempt%20 == 0 {
				p.log.Error("reading the outbox failed, retrying", "attempt", attempt, "error", err)
			}
			if !e.sleep(ctx, backoff(attempt), gauges) {
				return
			}
			continue
		}
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			case <-gauges.C:
				e.observeOutbox()
			}
			continue
		}
		e.checkGap(p, batch)
		taken, err := e.publishBatch(ctx, p, batch, stopGrace)
		e.delivered(p, batch[:taken])
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			attempt++
			if attempt == 1 || attempt%20 == 0 {
				ev := batch[taken].env
				p.log.Warn("publishing event failed, retrying", "event", ev.Event, "event_id", ev.ID,
					"seq", ev.Seq, "attempt", attempt, "error", err)
			}
			if !e.sleep(ctx, backoff(attempt), gauges) {
				return
			}
			continue
		}
		if attempt > 0 {
			p.log.Info("event publishing recovered", "attempts", attempt, "after_seq", p.taken)
		}
		attempt = 0
	}
}

// waitAttached waits until b, when it is a bridge.Pending bus, has its
// broker connection. It returns false when ctx ends first. The events
// wait in the outbox meanwhile, and the bus then starts from the oldest.
func waitAttached(ctx context.Context, b bridge.Bus) bool {
	p, ok := b.(*bridge.Pending)
	if !ok {
		return true
	}
	select {
	case <-p.Ready():
		return true
	case <-ctx.Done():
		return false
	}
}

func backoff(attempt int) time.Duration {
	return min(time.Duration(1<<min(attempt-1, 5))*200*time.Millisecond, 10*time.Second)
}

// sleep waits d, refreshing the gauges meanwhile; false when ctx ended.
func (e *Edge) sleep(ctx context.Context, d time.Duration, gauges *time.Ticker) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-gauges.C:
			e.observeOutbox()
		}
	}
}

// publishBatch publishes events in order on p's bus and returns how many,
// counted from the first, the broker has taken. The attempt is bounded by
// PublishTimeout. When ctx ends, it is cancelled at once if the bus's
// connection is down, and after grace if it is up. A publish on a live
// connection that the stop cut short may still reach the broker, so
// publishing it again from drain would deliver it twice. A publish that
// waits for a broker that is gone or hangs would only delay the stop.
func (e *Edge) publishBatch(ctx context.Context, p *busPublisher, events []pendingEvent, grace time.Duration) (int, error) {
	pctx, cancel := context.WithTimeout(context.Background(), e.cfg.PublishTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if grace == 0 || !bridge.Connected(p.bus) {
			cancel()
			return
		}
		time.AfterFunc(grace, cancel)
	})
	defer stop()
	out := make([]bridge.OutgoingEvent, len(events))
	for i, ev := range events {
		out[i] = bridge.OutgoingEvent{Env: ev.env, Data: ev.data}
	}
	taken, err := bridge.PublishEvents(pctx, p.bus, out)
	if err != nil && taken >= len(events) {
		// A bus reported an error for a batch it counted as taken: publish
		// the last event again rather than risk losing it.
		taken = len(events) - 1
	}
	for _, ev := range events[:taken] {
		e.metrics.EventsPublished.WithLabelValues(ev.env.Event).Inc()
	}
	e.metrics.BusEventsPublished.WithLabelValues(p.name).Add(float64(taken))
	if err != nil {
		e.metrics.PublishErrors.Inc()
		e.metrics.BusPublishErrors.WithLabelValues(p.name).Inc()
	}
	return taken, err
}

// drainTo publishes on p's bus what it has not taken, until it has taken
// everything, a publish fails or ctx ends. It returns true when the bus
// took everything.
func (e *Edge) drainTo(ctx context.Context, p *busPublisher) bool {
	if !bridge.Connected(p.bus) {
		p.log.Info("not publishing the events left at shutdown: the broker connection is down; they stay in the outbox for the next start")
		return false
	}
	for ctx.Err() == nil {
		batch, err := e.nextBatch(p.taken, maxPublishBatch)
		if err != nil {
			p.log.Warn("reading the outbox at shutdown failed", "error", err)
			return false
		}
		if len(batch) == 0 {
			return true
		}
		e.checkGap(p, batch)
		taken, err := e.publishBatch(ctx, p, batch, 0)
		e.delivered(p, batch[:taken])
		if err != nil {
			ev := batch[taken].env
			p.log.Warn("publishing event at shutdown failed", "event", ev.Event, "event_id", ev.ID, "error", err)
			return false
		}
	}
	return false
}
