package virtual

import (
	"context"
	"sync"
	"time"
)

// planner is the motion planner's block ring: moves wait in it and a
// runner goroutine executes them one after another, each for its
// duration. Like Marlin's ring of BLOCK_BUFFER_SIZE entries it holds at
// most size-1 blocks, the one being executed included.
type planner struct {
	mu       sync.Mutex      // guards blocks, gen and changed
	blocks   []time.Duration // durations of the queued blocks; blocks[0] is executing
	capacity int
	gen      uint64        // incremented by clear so the runner drops the block it was timing
	changed  chan struct{} // closed and replaced whenever blocks change
}

func newPlanner(size int) *planner {
	return &planner{capacity: size - 1, changed: make(chan struct{})}
}

func (pl *planner) notifyLocked() {
	close(pl.changed)
	pl.changed = make(chan struct{})
}

// tryAdd queues a block if there is room. Otherwise it returns a channel
// that is closed at the next change, to wait on before trying again.
func (pl *planner) tryAdd(d time.Duration) (bool, <-chan struct{}) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if len(pl.blocks) >= pl.capacity {
		return false, pl.changed
	}
	pl.blocks = append(pl.blocks, d)
	pl.notifyLocked()
	return true, nil
}

// empty reports whether all blocks are done, with a channel that is closed
// at the next change.
func (pl *planner) empty() (bool, <-chan struct{}) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return len(pl.blocks) == 0, pl.changed
}

// free returns the number of blocks that can be added now, which
// ADVANCED_OK reports as P.
func (pl *planner) free() int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.capacity - len(pl.blocks)
}

// clear drops all blocks at once, as M410 quickstop, kill and a reset do.
func (pl *planner) clear() {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.blocks = nil
	pl.gen++
	pl.notifyLocked()
}

// run executes blocks until ctx is done. It runs in its own goroutine,
// the stepper interrupt of the simulated board.
func (pl *planner) run(ctx context.Context) {
	for {
		pl.mu.Lock()
		if len(pl.blocks) == 0 {
			changed := pl.changed
			pl.mu.Unlock()
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return
			}
		}
		d, gen := pl.blocks[0], pl.gen
		pl.mu.Unlock()

		if !pl.execute(ctx, d, gen) {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		pl.mu.Lock()
		if pl.gen == gen && len(pl.blocks) > 0 {
			pl.blocks = pl.blocks[1:]
			pl.notifyLocked()
		}
		pl.mu.Unlock()
	}
}

// execute waits for the duration of the front block and reports false if
// the planner was cleared or ctx ended in the meantime.
func (pl *planner) execute(ctx context.Context, d time.Duration, gen uint64) bool {
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		pl.mu.Lock()
		if pl.gen != gen {
			pl.mu.Unlock()
			return false
		}
		changed := pl.changed
		pl.mu.Unlock()
		select {
		case <-timer.C:
			return true
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}
