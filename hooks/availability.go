package hooks

import (
	"context"
	"sync"
	"time"
)

// offlineGrace is how long after a printer's "offline" arrived a gcode
// hook for it waits for "online" before it fails unsent, and how long
// after the availability subscription a hook for a printer without a
// marker waits for one. An edge publishes "online" before its first
// event, but the markers come on another connection than the events.
// Counting from the marker, not from each hook, lets a backlog of one
// printer's hooks end at once after the first second.
const offlineGrace = time.Second

// freshEventSkew is how much earlier than the arrival of an "offline" an
// event's time may be for the event to count as one that a running edge
// sent after it, because the clocks of the edge and the worker differ.
// The hook of such an event waits for "online" for offlineGrace from its
// own start. An edge that stopped sent its events before its "offline",
// so a backlog of them still ends at once.
const freshEventSkew = 5 * time.Second

// availability is the last availability marker of each printer that the
// worker has seen, from buses that keep one for late subscribers (MQTT's
// retained topic and last will).
type availability struct {
	mu sync.Mutex
	// online has an entry for each printer with a marker: true for
	// "online" or a marker of another text, false for "offline".
	online map[string]bool
	// since is when each printer's entry in online last changed.
	since map[string]time.Time
	// subscribed is when the markers were subscribed to, zero before.
	subscribed time.Time
	// changed is closed and replaced at each change, to wake waiters.
	changed chan struct{}
}

func newAvailability() *availability {
	return &availability{online: map[string]bool{}, since: map[string]time.Time{}, changed: make(chan struct{})}
}

// start records that the markers are subscribed to from now on.
func (a *availability) start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.subscribed = time.Now()
}

// set records a printer's marker. A marker that is neither "online" nor
// "offline" (known false) counts as online, so hooks behave as without
// markers.
func (a *availability) set(printer string, online, known bool) {
	now := online || !known
	a.mu.Lock()
	defer a.mu.Unlock()
	if was, ok := a.online[printer]; ok && was == now {
		return
	}
	a.online[printer] = now
	a.since[printer] = time.Now()
	close(a.changed)
	a.changed = make(chan struct{})
}

// waitOnline reports whether printer may be sent G-code: its marker is
// "online", or it has none. For a printer that is offline it waits for
// "online" until grace after its "offline" arrived, or after its own
// start for an event of eventTime that a running edge sent after the
// "offline" (see freshEventSkew). For a printer without a marker it
// waits for one until grace after the subscription.
func (a *availability) waitOnline(ctx context.Context, printer string, grace time.Duration, eventTime time.Time) bool {
	start := time.Now()
	for {
		a.mu.Lock()
		online, known := a.online[printer]
		since, subscribed, changed := a.since[printer], a.subscribed, a.changed
		a.mu.Unlock()
		until := since.Add(grace)
		switch {
		case known && online:
			return true
		case !known && (subscribed.IsZero() || time.Since(subscribed) >= grace):
			return true
		case !known:
			until = subscribed.Add(grace)
		case eventTime.After(since.Add(-freshEventSkew)) && start.Add(grace).After(until):
			// The edge restarted: its "online" comes on another
			// connection than this event and may come after it.
			until = start.Add(grace)
		}
		wait := time.Until(until)
		if wait <= 0 {
			return false
		}
		timer := time.NewTimer(wait)
		select {
		case <-changed:
			timer.Stop()
		case <-timer.C:
			// The loop decides: an unknown printer counts as online
			// once the subscription's grace has passed.
		case <-ctx.Done():
			timer.Stop()
			return false
		}
	}
}
