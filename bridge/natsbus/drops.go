package natsbus

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// dropLogInterval is the shortest time between two log lines about
// events dropped from one subscription. A worker that falls behind can
// drop thousands of events a second, and a line per event would slow it
// further.
const dropLogInterval = 10 * time.Second

// dropReporter counts the events that nats.go dropped from one core
// event subscription beyond its pending limits. It passes each new drop
// to onDropped, and logs a WARN line with the count at once and then at
// most every logEvery.
type dropReporter struct {
	subject   string
	log       *slog.Logger
	onDropped func(n int)
	logEvery  time.Duration
	// limitMessages and limitBytes are the subscription's pending
	// limits, set before sub.
	limitMessages, limitBytes int
	sub                       atomic.Pointer[nats.Subscription]

	mu       sync.Mutex // guards the fields below
	reported int        // drops passed to onDropped
	unlogged int        // drops not in a log line yet
	lastLog  time.Time
}

// check reads the subscription's drop count and reports what is new.
func (r *dropReporter) check() {
	sub := r.sub.Load()
	if sub == nil {
		return
	}
	dropped, err := sub.Dropped()
	if err != nil {
		return
	}
	r.mu.Lock()
	n := dropped - r.reported
	if n <= 0 {
		r.mu.Unlock()
		return
	}
	r.reported = dropped
	r.unlogged += n
	logNow := time.Since(r.lastLog) >= r.logEvery
	var logged int
	if logNow {
		logged, r.unlogged, r.lastLog = r.unlogged, 0, time.Now()
	}
	r.mu.Unlock()

	if r.onDropped != nil {
		r.onDropped(n)
	}
	if logNow {
		r.warn(logged, dropped)
	}
}

// logUnlogged logs the drops that check counted since its last line.
func (r *dropReporter) logUnlogged() {
	r.mu.Lock()
	n, total := r.unlogged, r.reported
	r.unlogged = 0
	r.mu.Unlock()
	if n > 0 {
		r.warn(n, total)
	}
}

func (r *dropReporter) warn(n, total int) {
	r.log.Warn("events dropped by the NATS client: the handler fell behind and its pending list was full; core NATS does not deliver them again",
		"subject", r.subject, "dropped", n, "dropped_total", total, "pending_limit_messages", r.limitMessages, "pending_limit_bytes", r.limitBytes)
}
