package policy

import (
	"fmt"
	"sync"
	"time"
)

// maxSources bounds the per-source buckets. The source field is chosen by
// the sender, so without a bound a sender could grow the map without end.
// Past it, full buckets (which behave as new ones) are dropped first, and
// sources that still find no room share one overflow bucket.
const maxSources = 1024

// overflowSource is the key of the shared bucket for sources past maxSources.
const overflowSource = "\x00overflow"

// bucket is a token bucket; tokens may go negative after a message larger
// than the burst.
type bucket struct {
	tokens float64
	last   time.Time
}

type limiter struct {
	perSource RateConfig
	total     RateConfig
	now       func() time.Time

	// mu guards sources and all.
	mu      sync.Mutex
	sources map[string]*bucket
	all     bucket
}

func newLimiter(perSource, total RateConfig, now func() time.Time) *limiter {
	return &limiter{perSource: perSource, total: total, now: now, sources: map[string]*bucket{},
		all: bucket{tokens: float64(total.Burst), last: now()}}
}

func (l *limiter) allow(source string, n int) error {
	if n <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var b *bucket
	if l.perSource.LinesPerSecond > 0 {
		b = l.sourceBucketLocked(source, now)
		refill(b, l.perSource, now)
		if !hasRoom(b, l.perSource, n) {
			return &PolicyError{Rule: RuleRate, Reason: fmt.Sprintf("source %q sent more than %g lines per second (burst %d); slow down and retry",
				truncate(source, 40), l.perSource.LinesPerSecond, l.perSource.Burst)}
		}
	}
	if l.total.LinesPerSecond > 0 {
		refill(&l.all, l.total, now)
		if !hasRoom(&l.all, l.total, n) {
			return &PolicyError{Rule: RuleTotalRate, Reason: fmt.Sprintf("the printer got more than %g lines per second from all sources (burst %d); slow down and retry",
				l.total.LinesPerSecond, l.total.Burst)}
		}
		l.all.tokens -= float64(n)
	}
	if b != nil {
		b.tokens -= float64(n)
	}
	return nil
}

// hasRoom reports whether n lines may pass: n tokens, or a full bucket for
// a message larger than the burst.
func hasRoom(b *bucket, r RateConfig, n int) bool {
	return b.tokens >= float64(min(n, r.Burst))
}

func refill(b *bucket, r RateConfig, now time.Time) {
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = min(float64(r.Burst), b.tokens+elapsed*r.LinesPerSecond)
	}
	b.last = now
}

func (l *limiter) sourceBucketLocked(source string, now time.Time) *bucket {
	if b, ok := l.sources[source]; ok {
		return b
	}
	if len(l.sources) >= maxSources {
		for key, b := range l.sources {
			refill(b, l.perSource, now)
			if b.tokens >= float64(l.perSource.Burst) {
				delete(l.sources, key)
			}
		}
	}
	if len(l.sources) >= maxSources {
		source = overflowSource
		if b, ok := l.sources[source]; ok {
			return b
		}
	}
	b := &bucket{tokens: float64(l.perSource.Burst), last: now}
	l.sources[source] = b
	return b
}
