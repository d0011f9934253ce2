package hooks

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/printbridge/printbridge/bridge"
)

const (
	// DefaultSeenBucket is the JetStream key-value bucket of event claims.
	DefaultSeenBucket = "printbridge_seen"
	// DefaultSeenTTL is how long the bucket keeps a claim after its last
	// write. It matches the event stream's maximum age of 24h, beyond
	// which JetStream has no copy of the event to deliver again.
	DefaultSeenTTL = 24 * time.Hour
	// DefaultClaimLease is how long a claim may go without a refresh
	// before another worker takes it over. It is below the JetStream ack
	// wait of 30s, so a redelivery that waits out a lease is still acked
	// before JetStream delivers the event once more.
	DefaultClaimLease = 10 * time.Second

	// kvOpTimeout bounds one request to the bucket.
	kvOpTimeout = 5 * time.Second
	// claimRetryMax is the longest pause between attempts to claim while
	// the bucket does not respond.
	claimRetryMax = 5 * time.Second
	// claimRetryLogEvery rate-limits the warnings of a claim that keeps
	// failing.
	claimRetryLogEvery = 30 * time.Second
)

// Values of the state field of a claim.
const (
	claimRunning = "running"
	claimDone    = "done"
	// claimReleased is a claim given up by a worker that stopped after it
	// had started hooks of the event. The next worker takes it over at
	// once, keeping its hook start records, so it runs only the hooks
	// that never started.
	claimReleased = "released"
)

// Values of the result label of printbridge_worker_seen_claims_total.
const (
	claimResultClaimed   = "claimed"
	claimResultDone      = "done"
	claimResultRunning   = "running_elsewhere"
	claimResultTakenOver = "taken_over"
	claimResultLost      = "lost"
	claimResultReleased  = "released"
)

// claimResults lists the labels of printbridge_worker_seen_claims_total,
// so every series exists from the start.
var claimResults = []string{claimResultClaimed, claimResultDone, claimResultRunning, claimResultTakenOver,
	claimResultLost, claimResultReleased}

// maxPlainKeyLen is the longest event id that claimKey uses as its key
// unchanged.
const maxPlainKeyLen = 128

// isKeyName reports whether s has 1 to maxLen bytes (no limit when maxLen
// is 0), each an ASCII letter, a digit, '-' or '_': the alphabet of
// bucket names, and of the event ids that are their own key. Such a key
// has no '=', so it never equals a hashed key. A loop replaces the
// regular expression ^[-_a-zA-Z0-9]{1,128}$, which Go compiles into 128
// copies of the class and which held 39 kB of heap from start-up (a heap
// profile of the package initialisers).
func isKeyName(s string, maxLen int) bool {
	if len(s) == 0 || (maxLen > 0 && len(s) > maxLen) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// SeenBucketConfig configures the JetStream key-value bucket that workers
// share their event claims in.
type SeenBucketConfig struct {
	// Bucket is the bucket name, DefaultSeenBucket when empty.
	Bucket string
	// TTL is how long a claim is kept after its last write, DefaultSeenTTL
	// when zero.
	TTL time.Duration
}

// OpenSeenBucket checks that the claim bucket exists and creates it when
// it does not. An existing bucket is used as it is: when its TTL or
// history differs from cfg, a warning names both values, because other
// workers may rely on the bucket's settings.
func OpenSeenBucket(ctx context.Context, js jetstream.JetStream, cfg SeenBucketConfig, log *slog.Logger) (jetstream.KeyValue, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultSeenBucket
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultSeenTTL
	}
	if !isKeyName(cfg.Bucket, 0) {
		return nil, fmt.Errorf("invalid seen-events bucket name %q: use letters, digits, '-' and '_' only", cfg.Bucket)
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("invalid seen-events TTL %s: give a positive duration such as 24h", cfg.TTL)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      cfg.Bucket,
			Description: "printbridge worker claims on event ids, so workers sharing it run each event's hooks once",
			History:     1,
			TTL:         cfg.TTL,
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Another worker created it first.
			kv, err = js.KeyValue(ctx, cfg.Bucket)
		} else if err == nil {
			log.Info("created the seen-events bucket", "bucket", cfg.Bucket, "ttl", cfg.TTL)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open JetStream key-value bucket %s for seen events: %w; check that JetStream is enabled and the user may use $KV.%s.>", cfg.Bucket, err, cfg.Bucket)
	}
	status, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the status of key-value bucket %s: %w", cfg.Bucket, err)
	}
	if status.TTL() != cfg.TTL || status.History() != 1 {
		log.Warn("the seen-events bucket exists with other settings; using them as they are",
			"bucket", cfg.Bucket, "ttl", status.TTL(), "requested_ttl", cfg.TTL, "history", status.History(), "requested_history", 1)
	}
	return kv, nil
}

// WithSeenBucket makes the worker claim each event in kv before it runs
// the event's hooks, so that workers sharing kv run them once between
// them (see claimStore). It replaces WithSeenFile.
func WithSeenBucket(kv jetstream.KeyValue) Option {
	return func(w *Worker) { w.seenKV = kv }
}

// WithSeenBucketRestore gives the worker a way to create the bucket of
// WithSeenBucket again, such as OpenSeenBucket on the same connection.
// The worker calls it when claims fail because the server has lost the
// bucket, as a nats-server that restarted without its store has. Without
// it the hooks would wait until the worker restarted.
func WithSeenBucketRestore(restore func(context.Context) error) Option {
	return func(w *Worker) { w.seenRestore = restore }
}

// seenBucketRestoreEvery is how often claims that fail on a lost bucket
// call the restore function of WithSeenBucketRestore.
const seenBucketRestoreEvery = 5 * time.Second

// bucketGone reports whether err from a key-value operation means that
// the bucket's stream is missing on the server.
func bucketGone(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrBucketNotFound) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrNoResponders)
}

// WithSeenGroup makes the worker keep its claims under the scope of the
// worker group group in the bucket of WithSeenBucket. Workers of one
// group share the scope and run each event once between them, while each
// other group, and each worker without a group, has its own scope and
// runs every event too. Without a scope (neither WithSeenGroup nor
// WithSeenWorker), claims are keyed by event id alone, as before scopes
// existed, and every worker on the bucket shares them.
func WithSeenGroup(group string) Option {
	return func(w *Worker) { w.seenScope = claimScope("g", group) }
}

// WithSeenWorker makes the worker keep its claims under the scope of a
// worker without a group, named by id, which must stay the same across
// restarts so that a restarted worker finds its claims again.
func WithSeenWorker(id string) Option {
	return func(w *Worker) { w.seenScope = claimScope("w", id) }
}

// maxPlainScopeLen is the longest group or worker id that claimScope
// uses unchanged.
const maxPlainScopeLen = 64

// claimScope returns the key prefix of the claims of a group (kind "g")
// or of a worker without a group (kind "w"): "g_farm." for group farm. A
// name outside the key alphabet, or longer than maxPlainScopeLen, is
// hashed: "g=<hex>.". The kind keeps a group apart from a worker id of
// the same text, and '=' keeps a hashed name apart from a plain one. The
// '.' ends the scope: unscoped keys (an event id or "h=<hex>") have no
// '.', so they never equal a scoped key.
func claimScope(kind, name string) string {
	if name == "" {
		return ""
	}
	if isKeyName(name, maxPlainScopeLen) {
		return kind + "_" + name + "."
	}
	sum := sha256.Sum256([]byte(name))
	return kind + "=" + hex.EncodeToString(sum[:16]) + "."
}

// WithClaimLease sets how long a claim may go without a refresh before
// another worker takes it over, DefaultClaimLease when not set.
func WithClaimLease(d time.Duration) Option {
	return func(w *Worker) { w.claimLease = d }
}

// claimValue is the JSON value of a claim key.
type claimValue struct {
	State   string    `json:"state"`
	Worker  string    `json:"worker"`
	Printer string    `json:"printer"`
	Event   string    `json:"event"`
	Seq     uint64    `json:"seq,omitempty"`
	Time    time.Time `json:"time"`
	// Hooks are the start records of the event's system hooks, written
	// before each hook's process may run. A worker that takes the claim
	// over keeps them and starts none of these hooks again.
	Hooks []hookStart `json:"hooks,omitempty"`
}

// claim is an event this worker claimed and has not completed.
type claim struct {
	key     string
	eventID string
	value   claimValue
	// prior are the hook start records that the claim had when this
	// worker took it over.
	prior priorStarts

	mu    sync.Mutex // guards rev, ended and value.Hooks
	rev   uint64
	ended bool
}

// inherit makes the hook start records of a claim taken over this claim's.
func (c *claim) inherit(from claimValue) {
	c.value.Hooks = append([]hookStart(nil), from.Hooks...)
	c.prior = newPriorStarts(from.Hooks)
}

// claimStore runs the claim protocol on a key-value bucket:
//
//   - A worker claims an event by creating its key, which succeeds for
//     one worker only. It then runs the hooks and writes state "done".
//   - While it runs them, it rewrites the key every lease/3, so the
//     key's revision keeps changing.
//   - A worker that finds the key with state "done" drops the event. One
//     that finds it running watches it for one lease: if the revision
//     changes or the state becomes "done", the owner is alive and the
//     event is dropped. If nothing changes, the owner is taken to be dead,
//     and the worker takes the claim over with a compare-and-set on the
//     revision it watched, so of several waiting workers one wins.
type claimStore struct {
	kv       jetstream.KeyValue
	lease    time.Duration
	instance string
	// scope is the key prefix of claimScope, "" for unscoped keys.
	scope   string
	log     *slog.Logger
	metrics *Metrics
	// restore creates the bucket again (WithSeenBucketRestore), or nil.
	restore func(context.Context) error

	mu   sync.Mutex // guards open and lastRestore
	open map[string]*claim
	// lastRestore is when restore was last called.
	lastRestore time.Time
}

func newClaimStore(kv jetstream.KeyValue, lease time.Duration, instance, scope string, log *slog.Logger, m *Metrics) *claimStore {
	if lease <= 0 {
		lease = DefaultClaimLease
	}
	return &claimStore{kv: kv, lease: lease, instance: instance, scope: scope, log: log, metrics: m,
		open: map[string]*claim{}}
}

// workerInstanceID names this worker process in its claims: host, pid
// and a random part, because a pid is reused after a restart.
func workerInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// claimKey maps an event id to a key. Ids outside the key alphabet of
// JetStream (or longer than 128 bytes) are hashed.
func claimKey(eventID string) string {
	if isKeyName(eventID, maxPlainKeyLen) {
		return eventID
	}
	sum := sha256.Sum256([]byte(eventID))
	return "h=" + hex.EncodeToString(sum[:])
}

// acquire claims env. It returns the claim when this worker is to run the
// event's hooks, and nil when another worker ran them or is running them.
// It retries while the bucket does not respond, and returns nil only
// when ctx ends first.
func (s *claimStore) acquire(ctx context.Context, env *bridge.Envelope) *claim {
	c := &claim{key: s.scope + claimKey(env.ID), eventID: env.ID, value: claimValue{State: claimRunning, Worker: s.instance,
		Printer: env.Printer, Event: env.Event, Seq: env.Seq}}
	attrs := []any{"printer", env.Printer, "event", env.Event, "event_id", env.ID, "bucket", s.kv.Bucket(), "key", c.key}
	wait := 250 * time.Millisecond
	var failingSince time.Time
	var lastLog time.Time
	for {
		got, err := s.tryAcquire(ctx, c, attrs)
		if err == nil {
			if !failingSince.IsZero() {
				s.log.Info("claiming the event succeeded after retries", append(attrs, "failing_for", time.Since(failingSince).Round(time.Millisecond))...)
			}
			return got
		}
		s.metrics.errors.WithLabelValues(opSeenStore).Inc()
		if bucketGone(err) {
			s.restoreBucket(ctx)
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		if time.Since(lastLog) >= claimRetryLogEvery {
			lastLog = time.Now()
			s.log.Warn("claiming the event in the seen-events bucket failed; retrying, and its hooks wait",
				append(attrs, "error", err, "retry_in", wait)...)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, claimRetryMax)
	}
}

// restoreBucket calls restore, at most every seenBucketRestoreEvery.
func (s *claimStore) restoreBucket(ctx context.Context) {
	if s.restore == nil {
		return
	}
	s.mu.Lock()
	due := time.Since(s.lastRestore) >= seenBucketRestoreEvery
	if due {
		s.lastRestore = time.Now()
	}
	s.mu.Unlock()
	if !due {
		return
	}
	s.log.Info("claims fail because the seen-events bucket may be missing; opening it again", "bucket", s.kv.Bucket())
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.restore(rctx); err != nil {
		s.log.Error("creating the seen-events bucket again failed; the next failed claim tries again", "bucket", s.kv.Bucket(), "error", err)
	}
}

// tryAcquire makes one attempt of acquire. An error means the bucket
// did not respond or returned an unexpected error.
func (s *claimStore) tryAcquire(ctx context.Context, c *claim, attrs []any) (*claim, error) {
	for {
		c.value.Time = time.Now().UTC()
		data, err := json.Marshal(c.value)
		if err != nil {
			return nil, fmt.Errorf("encode claim: %w", err)
		}
		opCtx, cancel := context.WithTimeout(ctx, kvOpTimeout)
		rev, err := s.kv.Create(opCtx, c.key, data)
		cancel()
		if err == nil {
			c.rev = rev
			s.track(c)
			s.metrics.claims.WithLabelValues(claimResultClaimed).Inc()
			return c, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("create key %s: %w", c.key, err)
		}
		entry, value, err := s.get(ctx, c.key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired or released in between
		}
		if err != nil {
			return nil, err
		}
		switch {
		case value.State == claimDone:
			s.metrics.claims.WithLabelValues(claimResultDone).Inc()
			s.log.Debug("event already handled by a worker sharing the bucket; hooks not run again",
				append(attrs, "owner", value.Worker)...)
			return nil, nil
		case value.State == claimReleased:
			got, retry, err := s.takeOver(ctx, c, entry.Revision(), value, append(attrs, "owner", value.Worker))
			if err != nil || !retry {
				return got, err
			}
			continue
		case value.Worker == s.instance && s.isOpen(c.key):
			s.metrics.claims.WithLabelValues(claimResultRunning).Inc()
			return nil, nil
		case value.Worker == s.instance:
			// An earlier Create of this process was stored, but its
			// response was lost.
			c.inherit(value)
			c.rev = entry.Revision()
			s.track(c)
			s.metrics.claims.WithLabelValues(claimResultClaimed).Inc()
			return c, nil
		}
		got, retry, err := s.watchOwner(ctx, c, entry, value, attrs)
		if err != nil || !retry {
			return got, err
		}
	}
}

// watchOwner watches the claim of another worker for one lease and takes
// it over when the owner did not refresh it. retry means the key went
// away while watching, so acquire starts again.
func (s *claimStore) watchOwner(ctx context.Context, c *claim, seen jetstream.KeyValueEntry, owner claimValue, attrs []any) (*claim, bool, error) {
	attrs = append(attrs, "owner", owner.Worker)
	s.log.Info("event claimed by another worker; waiting one lease to see whether it is alive",
		append(attrs, "lease", s.lease)...)
	deadline := time.Now().Add(s.lease)
	poll := max(s.lease/10, 10*time.Millisecond)
	for {
		select {
		case <-ctx.Done():
			return nil, false, nil
		case <-time.After(poll):
		}
		entry, value, err := s.get(ctx, c.key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		if value.State == claimDone {
			s.metrics.claims.WithLabelValues(claimResultDone).Inc()
			s.log.Debug("event handled by another worker while waiting; hooks not run again", attrs...)
			return nil, false, nil
		}
		if entry.Revision() != seen.Revision() {
			s.metrics.claims.WithLabelValues(claimResultRunning).Inc()
			s.log.Info("event is being handled by another worker that is alive; hooks not run here", attrs...)
			return nil, false, nil
		}
		if time.Now().Before(deadline) {
			continue
		}
		return s.takeOver(ctx, c, seen.Revision(), value, attrs)
	}
}

// takeOver replaces the claim of a dead or stopped owner, read at
// revision seenRev, with a compare-and-set, and keeps the owner's hook
// start records. retry means another worker wrote first.
func (s *claimStore) takeOver(ctx context.Context, c *claim, seenRev uint64, owner claimValue, attrs []any) (*claim, bool, error) {
	c.inherit(owner)
	c.value.Time = time.Now().UTC()
	data, err := json.Marshal(c.value)
	if err != nil {
		return nil, false, fmt.Errorf("encode claim: %w", err)
	}
	opCtx, cancel := context.WithTimeout(ctx, kvOpTimeout)
	rev, err := s.kv.Update(opCtx, c.key, data, seenRev)
	cancel()
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		// Another worker wrote first; look again.
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("take over key %s: %w", c.key, err)
	}
	c.rev = rev
	s.track(c)
	s.metrics.claims.WithLabelValues(claimResultTakenOver).Inc()
	attrs = append(attrs, "claimed_at", owner.Time, "owner_state", owner.State,
		"hooks_started_before", len(owner.Hooks))
	if owner.State == claimReleased {
		s.log.Info("took over the claim that a stopped worker released; running the event's hooks that never started", attrs...)
	} else {
		s.log.Warn("took over the claim of a worker that stopped refreshing it; running the event's hooks that never started", attrs...)
	}
	return c, false, nil
}

func (s *claimStore) get(ctx context.Context, key string) (jetstream.KeyValueEntry, claimValue, error) {
	opCtx, cancel := context.WithTimeout(ctx, kvOpTimeout)
	defer cancel()
	entry, err := s.kv.Get(opCtx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, claimValue{}, err
		}
		return nil, claimValue{}, fmt.Errorf("get key %s: %w", key, err)
	}
	var v claimValue
	if err := json.Unmarshal(entry.Value(), &v); err != nil {
		// A value this code did not write: treat it as a claim whose
		// owner may be alive, so the lease decides.
		v = claimValue{State: claimRunning, Worker: "unknown"}
	}
	return entry, v, nil
}

func (s *claimStore) isOpen(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[key] != nil
}

func (s *claimStore) track(c *claim) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open[c.key] = c
	s.metrics.claimsOpen.Set(float64(len(s.open)))
}

func (s *claimStore) untrack(c *claim) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, c.key)
	s.metrics.claimsOpen.Set(float64(len(s.open)))
}

// refreshLoop rewrites every open claim each lease/3 until ctx ends, so
// that workers watching a claim see its owner alive.
func (s *claimStore) refreshLoop(ctx context.Context) {
	t := time.NewTicker(max(s.lease/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		open := make([]*claim, 0, len(s.open))
		for _, c := range s.open {
			open = append(open, c)
		}
		s.mu.Unlock()
		for _, c := range open {
			s.refresh(ctx, c)
		}
	}
}

func (s *claimStore) refresh(ctx context.Context, c *claim) {
	// A claim that complete or release holds needs no refresh, and
	// waiting for it would delay the refresh of the other claims.
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	data, err := json.Marshal(c.value)
	if err != nil {
		return
	}
	opCtx, cancel := context.WithTimeout(ctx, kvOpTimeout)
	rev, err := s.kv.Update(opCtx, c.key, data, c.rev)
	cancel()
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		own, _, ours, getErr := s.ownRevision(ctx, c)
		if getErr != nil {
			// The next refresh reads the key again.
			s.metrics.errors.WithLabelValues(opSeenStore).Inc()
			s.log.Debug("reading a claim after a rejected refresh failed; retrying at the next refresh",
				"event_id", c.eventID, "key", c.key, "error", getErr)
			return
		}
		if ours {
			c.rev = own
			return
		}
	}
	lost := errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound)
	if lost && s.rewriteMissing(ctx, c, data) {
		return
	}
	switch {
	case err == nil:
		c.rev = rev
	case lost:
		c.ended = true
		s.untrack(c)
		s.metrics.claims.WithLabelValues(claimResultLost).Inc()
		s.log.Warn("lost the claim on an event to another worker; its hooks may run twice",
			"printer", c.value.Printer, "event", c.value.Event, "event_id", c.eventID, "key", c.key, "error", err)
	case ctx.Err() == nil:
		s.metrics.errors.WithLabelValues(opSeenStore).Inc()
		s.log.Debug("refreshing a claim failed; retrying at the next refresh", "event_id", c.eventID, "key", c.key, "error", err)
	}
}

// ownRevision reads the claim's key after a write was rejected for a
// revision mismatch. When the key still contains this worker's claim, the
// server stored an earlier write and stopped before it replied, so the
// claim is still this worker's at the revision returned.
// rewriteMissing writes data as a new key for c when c's key is gone,
// and reports whether it did. A key vanishes with a seen-events bucket
// that the server lost and this or another worker made again, or when
// it outlived the bucket's TTL. It is still this worker's claim, unless
// another worker created the key meanwhile.
func (s *claimStore) rewriteMissing(ctx context.Context, c *claim, data []byte) bool {
	if _, _, err := s.get(ctx, c.key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		return false
	}
	opCtx, cancel := context.WithTimeout(ctx, kvOpTimeout)
	rev, err := s.kv.Create(opCtx, c.key, data)
	cancel()
	if err != nil {
		return false
	}
	c.rev = rev
	s.log.Info("the claim was missing from the seen-events bucket (made again after a loss, or past its TTL); wrote it again",
		"printer", c.value.Printer, "event", c.value.Event, "event_id", c.eventID, "key", c.key)
	return true
}

func (s *claimStore) ownRevision(ctx context.Context, c *claim) (rev uint64, state string, ours bool, err error) {
	entry, value, err := s.get(ctx, c.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, "", false, nil
	}
	if err != nil {
		return 0, "", false, err
	}
	if value.Worker != s.instance {
		return 0, "", false, nil
	}
	s.log.Info("the server had stored a claim write whose reply was lost; the claim is still this worker's",
		"printer", c.value.Printer, "event", c.value.Event, "event_id", c.eventID, "key", c.key,
		"revision", entry.Revision(), "state", value.State)
	return entry.Revision(), value.State, true, nil
}

// complete writes state "done". It retries while the bucket does not
// answer, until ctx ends, because another worker takes a claim left
// running over after a lease, and logs an interrupted hook for each
// start record not marked ended.
func (s *claimStore) complete(ctx context.Context, c *claim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.ended = true
	defer s.untrack(c)
	attrs := []any{"printer", c.value.Printer, "event", c.value.Event, "event_id", c.eventID, "key", c.key}
	done := c.value
	done.State = claimDone
	done.Time = time.Now().UTC()
	data, err := json.Marshal(done)
	if err != nil {
		return
	}
	wait := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		// The attempt itself outlives ctx, so hooks that ended just as
		// the worker stops still get recorded.
		opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kvOpTimeout)
		rev, err := s.kv.Update(opCtx, c.key, data, c.rev)
		cancel()
		if err == nil {
			c.rev = rev
			return
		}
		mismatch := errors.Is(err, jetstream.ErrKeyRevisionMismatch)
		if mismatch {
			own, state, ours, getErr := s.ownRevision(context.WithoutCancel(ctx), c)
			switch {
			case getErr != nil:
				err, mismatch = getErr, false // retried below
			case ours && state == claimDone:
				return
			case ours:
				c.rev = own
				continue
			}
		}
		if mismatch || errors.Is(err, jetstream.ErrKeyNotFound) {
			if s.rewriteMissing(context.WithoutCancel(ctx), c, data) {
				return
			}
			s.metrics.claims.WithLabelValues(claimResultLost).Inc()
			s.log.Warn("the claim was taken over while the hooks ran; they may have run twice", append(attrs, "error", err)...)
			return
		}
		s.metrics.errors.WithLabelValues(opSeenStore).Inc()
		if bucketGone(err) {
			s.restoreBucket(context.WithoutCancel(ctx))
		}
		if attempt == 0 {
			s.log.Warn("recording the event as done failed; retrying", append(attrs, "error", err)...)
		}
		select {
		case <-ctx.Done():
			s.log.Warn("the worker stopped before it could record the event as done; a redelivery runs its hooks again",
				append(attrs, "error", err)...)
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, claimRetryMax)
	}
}

// errClaimLost is a hook start that was not recorded because another
// worker took the claim over; the hook does not run here.
var errClaimLost = errors.New("the claim on the event was taken over by another worker, which runs its hooks")

// recordHook writes the claim with rec added to its hook start records,
// and returns once the bucket has stored it. It retries while the bucket
// does not respond, until ctx ends, because the hook must not run before
// its start is recorded. On an error rec is dropped again, so the hook
// counts as not started in every later write of this worker.
func (s *claimStore) recordHook(ctx context.Context, c *claim, rec hookStart) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return errClaimLost
	}
	attrs := []any{"printer", c.value.Printer, "event", c.value.Event, "event_id", c.eventID, "key", c.key,
		"hook", rec.Name, "command", rec.Command}
	c.value.Hooks = upsertStart(c.value.Hooks, rec)
	err := s.writeLocked(ctx, c, attrs)
	if err != nil {
		c.value.Hooks = removeStart(c.value.Hooks, rec.Hook)
	}
	return err
}

// writeLocked stores c.value at the claim's revision, retrying while the
// bucket does not respond until ctx ends. The caller holds c.mu.
func (s *claimStore) writeLocked(ctx context.Context, c *claim, attrs []any) error {
	wait := 100 * time.Millisecond
	var failingSince time.Time
	for {
		c.value.Time = time.Now().UTC()
		data, err := json.Marshal(c.value)
		if err != nil {
			return fmt.Errorf("encode claim: %w", err)
		}
		opCtx, cancel := context.WithTimeout(ctx, kvOpTimeout)
		rev, err := s.kv.Update(opCtx, c.key, data, c.rev)
		cancel()
		if err == nil {
			c.rev = rev
			if !failingSince.IsZero() {
				s.log.Info("recording the hook start succeeded after retries",
					append(attrs, "failing_for", time.Since(failingSince).Round(time.Millisecond))...)
			}
			return nil
		}
		mismatch := errors.Is(err, jetstream.ErrKeyRevisionMismatch)
		if mismatch {
			own, _, ours, getErr := s.ownRevision(ctx, c)
			switch {
			case getErr != nil:
				err, mismatch = getErr, false // retried below
			case ours:
				c.rev = own
				continue
			}
		}
		if (mismatch || errors.Is(err, jetstream.ErrKeyNotFound)) && s.rewriteMissing(ctx, c, data) {
			return nil
		}
		if mismatch || errors.Is(err, jetstream.ErrKeyNotFound) {
			c.ended = true
			s.untrack(c)
			s.metrics.claims.WithLabelValues(claimResultLost).Inc()
			s.log.Warn("lost the claim on an event to another worker before a hook started; the hook does not run here",
				append(attrs, "error", err)...)
			return errClaimLost
		}
		s.metrics.errors.WithLabelValues(opSeenStore).Inc()
		if bucketGone(err) {
			s.restoreBucket(ctx)
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
			s.log.Warn("recording the hook start in the seen-events bucket failed; retrying, and the hook waits",
				append(attrs, "error", err)...)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("record the hook start: %w", ErrStopped)
		case <-time.After(wait):
		}
		wait = min(2*wait, claimRetryMax)
	}
}

// abortHook drops the start record of a hook whose gate was closed before
// command number command ran. A hook whose earlier commands ran keeps its
// record, marked ended, because those commands must not run again.
func (s *claimStore) abortHook(c *claim, hook, command int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if command <= 1 {
		c.value.Hooks = removeStart(c.value.Hooks, hook)
		return
	}
	markEnded(c.value.Hooks, hook)
}

// endHook marks the start record of hook as ended. The mark is written
// with the claim's next write (a refresh, done or release), so a worker
// killed before that leaves the hook recorded as started.
func (s *claimStore) endHook(c *claim, hook int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	markEnded(c.value.Hooks, hook)
}

// release gives up a claim whose hooks did not run to the end (dropped
// from a full queue, or cut short by a stop), so a redelivery runs them
// at once instead of after a lease. A claim without hook start records is
// deleted. One with records is written with state "released", so the
// next worker keeps the records and starts none of those hooks again.
func (s *claimStore) release(ctx context.Context, c *claim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.ended = true
	defer s.untrack(c)
	opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kvOpTimeout)
	defer cancel()
	if len(c.value.Hooks) > 0 {
		s.releaseWithHooksLocked(opCtx, c)
		return
	}
	if err := s.kv.Delete(opCtx, c.key, jetstream.LastRevision(c.rev)); err != nil {
		s.metrics.errors.WithLabelValues(opSeenStore).Inc()
		s.log.Warn("releasing the claim failed; a redelivery waits one lease before it runs the hooks",
			"printer", c.value.Printer, "event", c.value.Event, "event_id", c.eventID, "key", c.key, "error", err)
		return
	}
	s.metrics.claims.WithLabelValues(claimResultReleased).Inc()
}

// releaseWithHooksLocked writes state "released" with the hook start
// records. The caller holds c.mu.
func (s *claimStore) releaseWithHooksLocked(ctx context.Context, c *claim) {
	released := c.value
	released.State = claimReleased
	released.Time = time.Now().UTC()
	data, err := json.Marshal(released)
	if err != nil {
		return
	}
	_, err = s.kv.Update(ctx, c.key, data, c.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		if own, _, ours, getErr := s.ownRevision(ctx, c); getErr == nil && ours {
			_, err = s.kv.Update(ctx, c.key, data, own)
		}
	}
	if err != nil {
		s.metrics.errors.WithLabelValues(opSeenStore).Inc()
		s.log.Warn("releasing the claim failed; a redelivery waits one lease, then starts only the hooks recorded as not started",
			"printer", c.value.Printer, "event", c.value.Event, "event_id", c.eventID, "key", c.key, "error", err)
		return
	}
	s.metrics.claims.WithLabelValues(claimResultReleased).Inc()
}
