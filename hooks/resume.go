package hooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
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

// gateNeverOpened reports whether the hook of rec, which a killed worker
// recorded as started, never ran because its gate did not open. It first
// waits for a gate that still waits for its dead worker to exit.
func (w *Worker) gateNeverOpened(ctx context.Context, rec hookStart, res Result) bool {
	waitGateExit(ctx, rec)
	if !rec.gateNeverOpened() {
		return false
	}
	w.log.Info("hook recorded as started by a killed worker never passed its gate; starting it now",
		"printer", res.Printer, "event", res.Event, "event_id", res.EventID, "hook", res.Hook,
		"command", rec.Command, "pid", rec.PID, "started_by", rec.Worker)
	return true
}

// markerMaxAge is the age at which Run deletes a gate marker that no
// worker removed, because its worker was killed: older than the default
// 24h TTL of the seen-events bucket, after which a redelivery runs the
// event's hooks again anyway.
const markerMaxAge = 48 * time.Hour

// WithHookMarkerDir keeps the gate markers (see gateScript) in dir. They
// tell a restarted worker whether a hook that a killed worker recorded
// as started did run. With WithSeenFile the folder defaults to
// hook-starts beside the file.
func WithHookMarkerDir(dir string) Option {
	return func(w *Worker) { w.markerDir = dir }
}

// openMarkerDir creates the marker folder and deletes markers older than
// markerMaxAge. Without a usable folder the worker runs without markers,
// and a hook recorded as started whose process is gone counts as
// interrupted.
func (w *Worker) openMarkerDir() {
	if w.markerDir == "" && w.seenPath != "" && w.claims == nil {
		w.markerDir = filepath.Join(filepath.Dir(w.seenPath), "hook-starts")
	}
	if w.markerDir == "" {
		return
	}
	if err := os.MkdirAll(w.markerDir, 0o750); err != nil {
		w.metrics.errors.WithLabelValues(opSeenFile).Inc()
		w.log.Warn("creating the folder of hook gate markers failed; running without markers", "folder", w.markerDir, "error", err)
		w.markerDir = ""
		return
	}
	entries, err := os.ReadDir(w.markerDir)
	if err != nil {
		w.log.Warn("reading the folder of hook gate markers failed", "folder", w.markerDir, "error", err)
		return
	}
	removed := 0
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < markerMaxAge {
			continue
		}
		if os.Remove(filepath.Join(w.markerDir, e.Name())) == nil {
			removed++
		}
	}
	if removed > 0 {
		w.log.Info("deleted old hook gate markers", "folder", w.markerDir, "count", removed, "max_age", markerMaxAge)
	}
}

// newMarker returns a new marker path for a gate of this run, "" without
// a marker folder.
func (r *eventRun) newMarker() string {
	if r.w.markerDir == "" {
		return ""
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	path := filepath.Join(r.w.markerDir, hex.EncodeToString(b[:]))
	r.mu.Lock()
	r.markers = append(r.markers, path)
	r.mu.Unlock()
	return path
}

// removeMarkers deletes the markers of this run and of the records an
// earlier worker left, once the event is recorded as handled and no
// worker needs them.
func (r *eventRun) removeMarkers() {
	r.mu.Lock()
	paths := r.markers
	r.markers = nil
	r.mu.Unlock()
	for _, rec := range r.prior {
		if rec.Host == hostName && rec.Marker != "" && filepath.Dir(rec.Marker) == r.w.markerDir {
			paths = append(paths, rec.Marker)
		}
	}
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.w.log.Debug("deleting a hook gate marker failed; Run deletes it once it is old", "marker", p, "error", err)
		}
	}
}
