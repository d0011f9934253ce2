package hooks

import (
	"context"
	"sync"
)

// limiter bounds the system hooks running at once. Unlike a buffered
// channel, its limit can change while hooks run, which a config reload
// of max_concurrent_hooks needs: a lower limit lets the running hooks
// finish and starts new ones only once fewer than the new limit run.
type limiter struct {
	mu      sync.Mutex // guards limit, running and changed
	limit   int
	running int
	// changed is closed and replaced whenever running or limit changes,
	// to wake the goroutines waiting in acquire.
	changed chan struct{}
}

func newLimiter(limit int) *limiter {
	return &limiter{limit: max(limit, 1), changed: make(chan struct{})}
}

// acquire waits for a free slot and reports false when ctx ended first.
func (l *limiter) acquire(ctx context.Context) bool {
	for {
		l.mu.Lock()
		if l.running < l.limit {
			l.running++
			l.mu.Unlock()
			return true
		}
		wake := l.changed
		l.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return false
		}
	}
}

func (l *limiter) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running--
	l.wakeLocked()
}

func (l *limiter) setLimit(limit int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limit = max(limit, 1)
	l.wakeLocked()
}

func (l *limiter) current() (limit, running int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit, l.running
}

func (l *limiter) wakeLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}
