package storage

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/printbridge/printbridge/printer/gcode"
)

// enqueueLocked queues p for analysis and wakes the worker.
func (s *Storage) enqueueLocked(p string) {
	if s.queued[p] {
		return
	}
	s.queued[p] = true
	s.queue = append(s.queue, p)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// dequeueLocked drops p (a file, or everything in a folder) from the
// queue and stops its running analysis, whose result would describe
// content that is gone.
func (s *Storage) dequeueLocked(p string) {
	kept := s.queue[:0]
	for _, q := range s.queue {
		if within(q, p) {
			delete(s.queued, q)
			continue
		}
		kept = append(kept, q)
	}
	s.queue = kept
	if s.running != "" && within(s.running, p) && s.cancelRunning != nil {
		s.cancelRunning()
	}
}

// renameQueuedLocked follows a move in the queue. A running analysis of
// a moved file is stopped and the file queued again under its new path.
func (s *Storage) renameQueuedLocked(src, dst string) {
	for i, q := range s.queue {
		if within(q, src) {
			delete(s.queued, q)
			s.queue[i] = dst + q[len(src):]
			s.queued[s.queue[i]] = true
		}
	}
	if s.running != "" && within(s.running, src) && s.cancelRunning != nil {
		s.cancelRunning()
		s.enqueueLocked(dst + s.running[len(src):])
	}
}

// analysisLoop analyses queued files one at a time until ctx ends.
func (s *Storage) analysisLoop(ctx context.Context) {
	for {
		job, ok := s.nextAnalysis(ctx)
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}
		s.runAnalysis(job)
	}
}

type analysisJob struct {
	ctx    context.Context
	path   string
	node   node
	cancel context.CancelFunc
}

// nextAnalysis takes the next file that still lacks an analysis and
// emits MetadataAnalysisStarted for it.
func (s *Storage) nextAnalysis(ctx context.Context) (analysisJob, bool) {
	s.mu.Lock()
	for len(s.queue) > 0 && ctx.Err() == nil {
		p := s.queue[0]
		s.queue = s.queue[1:]
		delete(s.queued, p)
		n, ok := s.tree[p]
		if !ok || n.folder {
			continue
		}
		if fm := s.meta.valid(p, n); fm != nil && fm.Analysis != nil {
			continue
		}
		runCtx, cancel := context.WithCancel(ctx)
		s.running, s.cancelRunning = p, cancel
		s.unlockAndEmit([]event{analysisEvent(EventMetadataAnalysisStarted, p, nil)})
		return analysisJob{ctx: runCtx, path: p, node: n, cancel: cancel}, true
	}
	s.mu.Unlock()
	return analysisJob{}, false
}

// runAnalysis analyses one file and, unless the file changed meanwhile,
// caches the result and emits MetadataAnalysisFinished.
func (s *Storage) runAnalysis(job analysisJob) {
	res, err := s.analyzeFile(job)
	s.mu.Lock()
	stopped := job.ctx.Err() != nil
	job.cancel()
	s.running, s.cancelRunning = "", nil
	switch {
	case stopped:
		// Stopped: the file was removed, moved or replaced, or the
		// storage is shutting down; it is queued again where needed.
		s.mu.Unlock()
		return
	case err != nil:
		s.mu.Unlock()
		s.log.Warn("G-code analysis failed", "path", job.path, "error", err)
		return
	}

	if cur, ok := s.tree[job.path]; !ok || cur != job.node {
		s.mu.Unlock()
		return
	}
	if onDisk, err := s.statNode(job.path); err != nil || onDisk.size != job.node.size || onDisk.modTime != job.node.modTime {
		// Changed from outside during the analysis; the next scan
		// reports the new content and queues it.
		s.mu.Unlock()
		return
	}

	fm := s.meta.entry(job.path, job.node)
	fm.Analysis = res
	s.saveMetadataLocked()
	s.log.Debug("G-code analysed", "path", job.path, "seconds", res.AnalysisSeconds)
	s.unlockAndEmit([]event{analysisEvent(EventMetadataAnalysisFinished, job.path, res.Payload())})
}

func (s *Storage) analyzeFile(job analysisJob) (*gcode.Result, error) {
	f, err := os.Open(s.full(job.path))
	if err != nil {
		return nil, fmt.Errorf("open %q for analysis: %w", job.path, err)
	}
	defer f.Close()
	res, err := gcode.Analyze(ctxReader{ctx: job.ctx, r: f}, s.cfg.Analysis)
	if err != nil {
		return nil, fmt.Errorf("analyse %q: %w", job.path, err)
	}
	return res, nil
}

// ctxReader ends a read at the next call once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// StatisticsAfterPrint records a finished print of the file at path (the
// PrintDone or PrintFailed time, in seconds) in its metadata and emits
// MetadataStatisticsUpdated.
func (s *Storage) StatisticsAfterPrint(path string, printTime float64, success bool) error {
	clean, err := ValidateFilePath(path)
	if err != nil {
		return err
	}
	if math.IsNaN(printTime) || math.IsInf(printTime, 0) || printTime < 0 {
		return fmt.Errorf("print time %v of %q is not a duration in seconds", printTime, clean)
	}
	s.mu.Lock()
	n, ok := s.tree[clean]
	if !ok || n.folder {
		s.mu.Unlock()
		return fmt.Errorf("record print of %q: %w in the files folder", clean, ErrNotFound)
	}
	s.meta.entry(clean, n).record(PrintRecord{Timestamp: time.Now().UTC(), Success: success, PrintTime: printTime})
	s.saveMetadataLocked()
	s.unlockAndEmit([]event{statisticsEvent(clean)})
	return nil
}
