package brokertest

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// CollectorTimeout bounds Collector.WaitFor.
const CollectorTimeout = 30 * time.Second

// Collector gathers the values that a message handler receives on its
// goroutine, for a test to wait on.
type Collector[T any] struct {
	mu     sync.Mutex
	values []T
	added  chan struct{}
}

// NewCollector returns an empty Collector.
func NewCollector[T any]() *Collector[T] {
	return &Collector[T]{added: make(chan struct{}, 1)}
}

// Add records v and wakes a waiting WaitFor.
func (c *Collector[T]) Add(v T) {
	c.mu.Lock()
	c.values = append(c.values, v)
	c.mu.Unlock()
	select {
	case c.added <- struct{}{}:
	default:
	}
}

// Snapshot returns a copy of the values so far.
func (c *Collector[T]) Snapshot() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.values)
}

// WaitFor waits until ok accepts the values collected so far and returns
// them. It fails the test after CollectorTimeout.
func (c *Collector[T]) WaitFor(t testing.TB, what string, ok func([]T) bool) []T {
	t.Helper()
	deadline := time.NewTimer(CollectorTimeout)
	defer deadline.Stop()
	for {
		if values := c.Snapshot(); ok(values) {
			return values
		}
		select {
		case <-c.added:
		case <-deadline.C:
			values := c.Snapshot()
			if texts, ok := any(values).([]string); ok {
				t.Fatalf("timed out after %s waiting for %s; got %q", CollectorTimeout, what, texts)
			}
			t.Fatalf("timed out after %s waiting for %s; got %d values", CollectorTimeout, what, len(values))
		}
	}
}
