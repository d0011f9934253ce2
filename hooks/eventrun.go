package hooks

import (
	"context"
	"errors"
	"sync"

	"github.com/printbridge/printbridge/bridge"
)

// eventRun follows the hooks of one event from its queueing to the end of
// its last hook. Then it records the event as handled (the claim done, or
// the id in the seen-events file) and acknowledges it to the bus. When
// the worker stopped before the hooks all ran to the end, it releases the
// claim, forgets the id and returns the event to the bus unacknowledged,
// so that a redelivery runs its hooks in full.
type eventRun struct {
	w   *Worker
	ctx context.Context
	env *bridge.Envelope
	// claim is nil without a seen-events bucket. serve sets it before
	// dispatch starts the hooks.
	claim *claim
	// prior are the hook start records that an earlier worker left; serve
	// sets them before dispatch.
	prior priorStarts

	mu   sync.Mutex // guards the fields below
	acks []bridge.AckFunc
	// waits is set once one of acks is a deferred acknowledgement of the
	// bus, which may wait for the broker (EventMessage.Defer).
	waits bool
	// markers are the gate markers of the hooks this run started.
	markers   []string
	running   int
	allQueued bool
	cut       bool
	settled   bool
	// ended is set once the acks were called, with handled as their
	// argument.
	ended   bool
	handled bool
}

// newEventRun starts the run of env. deferred is whether ack is a
// deferred acknowledgement of the bus.
func (w *Worker) newEventRun(ctx context.Context, env *bridge.Envelope, ack bridge.AckFunc, deferred bool) *eventRun {
	return &eventRun{w: w, ctx: ctx, env: env, acks: []bridge.AckFunc{ack}, waits: deferred}
}

// addAck adds the acknowledgement of another delivery of the same event.
// When the run has already ended, ack is called at once with its outcome.
func (r *eventRun) addAck(ack bridge.AckFunc, deferred bool) {
	r.mu.Lock()
	if !r.ended {
		r.acks = append(r.acks, ack)
		r.waits = r.waits || deferred
		r.mu.Unlock()
		return
	}
	handled := r.handled
	r.mu.Unlock()
	ack(handled)
}

// hookStarted counts a hook that ends in the background.
func (r *eventRun) hookStarted() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running++
}

// hookEnded records the end of a hook counted by hookStarted.
func (r *eventRun) hookEnded(res Result) {
	r.mu.Lock()
	r.running--
	if errors.Is(res.Err, ErrStopped) {
		r.cut = true
	}
	end, handled := r.settleLocked()
	r.mu.Unlock()
	if end {
		r.settle(handled)
	}
}

// dispatched records that dispatch has started every hook it was going
// to; stopped means the worker stopped before it started them all.
func (r *eventRun) dispatched(stopped bool) {
	r.mu.Lock()
	r.allQueued = true
	r.cut = r.cut || stopped
	end, handled := r.settleLocked()
	r.mu.Unlock()
	if end {
		r.settle(handled)
	}
}

// settleLocked reports whether the run ends now, because dispatch is over
// and no hook runs, and whether its hooks were handled in full. The
// caller then calls settle after unlocking mu.
func (r *eventRun) settleLocked() (end, handled bool) {
	if !r.allQueued || r.running > 0 || r.settled {
		return false, false
	}
	r.settled = true
	return true, !r.cut
}

// settle ends the run. Completing a claim retries while the bucket does
// not respond, and a deferred ack may wait for the broker, so such a run
// ends on a goroutine of its own. Any other run ends on the caller's
// goroutine, with at most a write to the seen-events file: a goroutine
// per event piled up to several hundred goroutine stacks while a worker
// fell behind at 5,000 events per second (docs/benchmarks.md).
func (r *eventRun) settle(handled bool) {
	r.mu.Lock()
	waits := r.waits
	r.mu.Unlock()
	if r.claim == nil && !waits {
		// NOTE: a deferred ack that a duplicate delivery adds from here
		// on is still called by finish on this goroutine.
		r.finish(handled)
		return
	}
	// The caller runs on a goroutine that w.wg counts, so this Add
	// cannot race with stop's Wait reaching zero.
	r.w.wg.Add(1)
	go func() {
		defer r.w.wg.Done()
		r.finish(handled)
	}()
}

// abandon ends a run whose event was never queued, on the caller's
// goroutine.
func (r *eventRun) abandon() {
	r.mu.Lock()
	r.allQueued, r.cut, r.settled = true, true, true
	r.mu.Unlock()
	r.finish(false)
}

// skip ends a run whose hooks another worker ran or runs, acknowledging
// the event, on the caller's goroutine.
func (r *eventRun) skip() {
	r.mu.Lock()
	r.allQueued, r.settled = true, true
	r.mu.Unlock()
	r.finish(true)
}

// finish records the outcome and calls the acks. Forgetting the id comes
// before the run leaves inflight, so a copy arriving in between is never
// taken for an event that was handled.
func (r *eventRun) finish(handled bool) {
	w := r.w
	if handled {
		if r.claim != nil {
			w.claims.complete(r.ctx, r.claim)
		} else {
			w.persistSeen(r.env.ID)
		}
		r.removeMarkers()
	} else {
		if r.claim != nil {
			w.claims.release(r.ctx, r.claim)
		}
		w.seen.remove(r.env.ID)
	}
	w.mu.Lock()
	if w.inflight[r.env.ID] == r {
		delete(w.inflight, r.env.ID)
	}
	w.mu.Unlock()

	r.mu.Lock()
	r.ended, r.handled = true, handled
	acks := r.acks
	r.acks = nil
	r.mu.Unlock()
	for _, ack := range acks {
		ack(handled)
	}
}

// loadPriorStarts takes the hook start records that an earlier worker
// left for the event: from the claim it took over, or from the
// seen-events file.
func (r *eventRun) loadPriorStarts() {
	switch {
	case r.claim != nil:
		r.prior = r.claim.prior
	case r.w.seenLog != nil:
		r.prior = newPriorStarts(r.w.seenLog.starts(r.env.ID))
	}
}

// recordsStarts reports whether hook starts are recorded durably, in the
// claim or in the seen-events file.
func (r *eventRun) recordsStarts() bool {
	return r.claim != nil || r.w.seenLog != nil
}

// recordStart durably records rec before its process may run. With the
// bucket an error means the hook must not run. A failed write to the
// seen-events file is logged and counted, and the hook runs anyway,
// because the record only guards against a second run after a crash.
func (r *eventRun) recordStart(ctx context.Context, rec hookStart) error {
	if r.claim != nil {
		return r.w.claims.recordHook(ctx, r.claim, rec)
	}
	if err := r.w.seenLog.recordStart(r.env.ID, rec, r.w.seen); err != nil {
		r.w.metrics.errors.WithLabelValues(opSeenFile).Inc()
		r.w.log.Warn("recording the hook start in the seen-events file failed; running the hook anyway, and a restart after a crash may run it again",
			"printer", r.env.Printer, "event", r.env.Event, "event_id", r.env.ID, "hook", rec.Name, "error", err)
	}
	return nil
}

// abortStart undoes the start record of the hook at position hook whose
// gate was closed before command number command ran.
func (r *eventRun) abortStart(hook, command int) {
	switch {
	case r.claim != nil:
		r.w.claims.abortHook(r.claim, hook, command)
	case r.w.seenLog != nil && command <= 1:
		r.logFileError(r.w.seenLog.forgetStart(r.env.ID, hook, r.w.seen))
	case r.w.seenLog != nil:
		r.logFileError(r.w.seenLog.endStart(r.env.ID, hook, r.w.seen))
	}
}

// endStart marks the start record of the hook at position hook as ended.
func (r *eventRun) endStart(hook int) {
	switch {
	case r.claim != nil:
		r.w.claims.endHook(r.claim, hook)
	case r.w.seenLog != nil:
		r.logFileError(r.w.seenLog.endStart(r.env.ID, hook, r.w.seen))
	}
}

func (r *eventRun) logFileError(err error) {
	if err == nil {
		return
	}
	r.w.metrics.errors.WithLabelValues(opSeenFile).Inc()
	r.w.log.Warn("writing a hook record to the seen-events file failed", "printer", r.env.Printer, "event", r.env.Event,
		"event_id", r.env.ID, "error", err)
}
