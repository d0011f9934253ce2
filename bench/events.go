package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// eventRecorder is a printer.EventFunc that notes when each event first
// fired and how often. It takes a mutex that readers hold only briefly
// and signals without waiting, so the printer's owner goroutine is not
// held up.
type eventRecorder struct {
	mu      sync.Mutex
	first   map[string]time.Time
	count   map[string]int
	changed chan struct{}
}

func newEventRecorder() *eventRecorder {
	return &eventRecorder{first: map[string]time.Time{}, count: map[string]int{}, changed: make(chan struct{}, 1)}
}

func (r *eventRecorder) emit(name string, _ bridge.Payload, _ bridge.Context) {
	now := time.Now()
	r.mu.Lock()
	if _, ok := r.first[name]; !ok {
		r.first[name] = now
	}
	r.count[name]++
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *eventRecorder) firstTime(name string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.first[name]
	return t, ok
}

func (r *eventRecorder) times(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[name]
}

// wait blocks until one of names has fired and returns the first of them
// in the order given.
func (r *eventRecorder) wait(ctx context.Context, timeout time.Duration, names ...string) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		for _, n := range names {
			if _, ok := r.firstTime(n); ok {
				return n, nil
			}
		}
		select {
		case <-r.changed:
		case <-timer.C:
			return "", fmt.Errorf("none of the events %v fired within %s", names, timeout)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}
