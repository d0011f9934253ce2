package hooks

import (
	"context"
	"errors"
	"fmt"
)

// Values of the resolution label of
// printbridge_worker_hooks_interrupted_total.
const (
	// interruptedWaited is a hook whose process still ran on this host;
	// the worker waited for it to end.
	interruptedWaited = "waited"
	// interruptedUnknown is a hook whose process had ended, or ran on
	// another host; the worker cannot learn its outcome.
	interruptedUnknown = "unknown"
)

// resumeSystem handles a system hook that an earlier worker recorded as
// started: it never starts it again. A hook recorded as ended is skipped.
// For one that was still running, the worker waits for its process to
// end when that runs on this host, and otherwise reports the hook as
// interrupted with an unknown outcome. The later commands of its list do
// not run, because the exit status of the interrupted one is unknown.
func (w *Worker) resumeSystem(ctx context.Context, index int, rec hookStart, res Result, run *eventRun) {
	attrs := []any{"printer", res.Printer, "event", res.Event, "event_id", res.EventID, "hook", res.Hook,
		"command", rec.Command, "pid", rec.PID, "host", rec.Host, "started_by", rec.Worker}
	if rec.Ended {
		w.log.Info("hook not started again: a worker that stopped earlier started it and saw it end", attrs...)
		return
	}
	if !w.slots.acquire(ctx) {
		return
	}
	run.hookStarted()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer w.slots.release()
		start := w.now()
		resolution := interruptedUnknown
		var waitErr error
		if rec.stillRunning() {
			resolution = interruptedWaited
			w.log.Warn("hook started by a worker that was killed still runs; waiting for it to end, not starting it again", attrs...)
			waitErr = waitOrphan(ctx, rec)
		} else {
			w.log.Warn("hook started by a worker that was killed is not started again; its outcome is unknown", attrs...)
		}
		res.Duration = w.now().Sub(start)
		switch {
		case errors.Is(waitErr, ErrStopped):
			// The record stays as it is, so the next worker waits again.
			res.Err = fmt.Errorf("waiting for command #%d (pid %d) of an interrupted hook: %w", rec.Command, rec.PID, ErrStopped)
		case waitErr != nil:
			res.Err = fmt.Errorf("%w: command #%d (pid %d on %s): %w", ErrInterrupted, rec.Command, rec.PID, rec.Host, waitErr)
		default:
			res.Err = fmt.Errorf("%w: command #%d (pid %d on %s) %s", ErrInterrupted, rec.Command, rec.PID, rec.Host,
				resolutionText(resolution))
		}
		if !errors.Is(waitErr, ErrStopped) {
			w.metrics.interrupted.WithLabelValues(resolution).Inc()
			run.endStart(index)
		}
		run.hookEnded(res)
		w.finish(ctx, res)
	}()
}

func resolutionText(resolution string) string {
	if resolution == interruptedWaited {
		return "ended while this worker waited, with an unknown exit status"
	}
	return "had ended or runs on another host; its outcome is unknown"
}
