package hooks

import (
	"context"
	"sync"
	"time"
)

// lazyTimeoutContext is a context that ends at a deadline, like
// context.WithTimeout, but starts its timer only when Done or Err is first
// called. Publishing a hook result on core NATS usually returns without
// waiting, so most results never need the timer. Its start and stop took
// about 7 % of the CPU in a profile of pbbench's NATS core pipeline run.
type lazyTimeoutContext struct {
	// parent must be a context that does not end, such as one from
	// context.WithoutCancel, because Done does not watch it until the
	// timer starts.
	parent   context.Context
	deadline time.Time

	once  sync.Once
	timed context.Context
	// cancel is nil when stop ran before the timer started.
	cancel context.CancelFunc
}

// canceledContext is an already canceled context, which Done and Err of a
// lazyTimeoutContext return from when stop ran before the timer started.
var canceledContext = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// newLazyTimeoutContext returns a context that ends timeout from now, or
// when its stop method is called. parent must not end.
func newLazyTimeoutContext(parent context.Context, timeout time.Duration) *lazyTimeoutContext {
	return &lazyTimeoutContext{parent: parent, deadline: time.Now().Add(timeout)}
}

func (c *lazyTimeoutContext) start() {
	c.once.Do(func() { c.timed, c.cancel = context.WithDeadline(c.parent, c.deadline) })
}

func (c *lazyTimeoutContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *lazyTimeoutContext) Done() <-chan struct{} {
	c.start()
	return c.timed.Done()
}

func (c *lazyTimeoutContext) Err() error {
	c.start()
	return c.timed.Err()
}

func (c *lazyTimeoutContext) Value(key any) any { return c.parent.Value(key) }

// stop releases the timer, like the cancel function of
// context.WithTimeout. Afterwards Done is closed and Err returns
// context.Canceled, or context.DeadlineExceeded when the timer had
// started and the deadline had passed first.
func (c *lazyTimeoutContext) stop() {
	c.once.Do(func() { c.timed = canceledContext })
	if c.cancel != nil {
		c.cancel()
	}
}
