// Package natsbus implements bridge.Bus on NATS through nats.go, with
// optional JetStream for events, and starts an embedded nats-server for
// the demo and for tests.
//
// Subjects are the topics of bridge.Topics with '.' between tokens. NATS
// has no retained messages, so state and availability are plain publishes.
// With JetStream they are also stored in the key-value bucket
// printbridge_state, where a late reader finds the last value.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/printbridge/printbridge/bridge"
)

const (
	// DefaultStream is the JetStream stream of events when Config.Stream
	// is empty.
	DefaultStream = "PRINTBRIDGE_EVENTS"
	// StateBucket is the key-value bucket of state and availability.
	StateBucket = "printbridge_state"
	// DefaultDurable is the durable consumer name of workers without a
	// group.
	DefaultDurable = "printbridge-worker"

	defaultName           = "printbridge"
	defaultConnectTimeout = 10 * time.Second
	reconnectWait         = time.Second
	// flushTimeout bounds a flush when the caller's ctx has no deadline,
	// because nats.go requires one.
	flushTimeout = 10 * time.Second
	// drainTimeout bounds Close's wait for handlers to finish pending
	// messages.
	drainTimeout = 10 * time.Second
	// closeWait bounds Close's wait for the connection's drain when the
	// bus has no JetStream consumers.
	closeWait = time.Second
	// ackWait is how long JetStream waits for an ack before delivering a
	// message again.
	ackWait = 30 * time.Second
	// inProgressEvery is how often a deferred event that is not yet acked
	// tells JetStream it is still being worked on, which restarts its
	// ack wait.
	inProgressEvery = ackWait / 3

	// NOTE: the stream limits are guesses for a few printers. Events older
	// than streamMaxAge are gone for a worker that was away longer, and an
	// outbox replayed after streamDuplicates is not deduplicated by the
	// server, only by the worker's event id memory.
	streamMaxAge     = 24 * time.Hour
	streamDuplicates = time.Hour
)

// ErrClosed is returned by the methods of a Bus after Close.
var ErrClosed = errors.New("NATS bus is closed")

// Config configures one NATS connection.
type Config struct {
	// URL is the server, as nats://host:4222, or a comma-separated list.
	URL string
	// Name is the connection name shown by the server, "printbridge" when
	// empty.
	Name     string
	User     string
	Password string
	Token    string
	// NKeySeedFile is a file with the user's NKey seed, and CredsFile a
	// .creds file (user JWT and seed) for servers in operator mode. At
	// most one of User, Token, NKeySeedFile and CredsFile may be set.
	NKeySeedFile string
	CredsFile    string
	// TLS configures TLS; see TLSOptions.
	TLS    TLSOptions
	Topics bridge.Topics
	// JetStream publishes events to a stream, deduplicated by event id,
	// and makes SubscribeEvents consume with a durable consumer.
	JetStream bool
	// Stream is the JetStream stream of events, DefaultStream when empty.
	Stream string
	// ConnectTimeout bounds the first connection, 10s when zero.
	ConnectTimeout time.Duration
	// OnDisconnect and OnReconnect are called when the connection drops
	// and when nats.go has made it again. They run on nats.go's callback
	// goroutine and must not block.
	OnDisconnect func(error)
	OnReconnect  func()
	// OnRestored is called when the bus created the event stream or the
	// state bucket again after the server lost it while the connection
	// stayed up (after a reconnect, OnReconnect follows instead). It runs
	// on the bus's restore goroutine and must not block.
	OnRestored func()
	// MaxAckPending is how many events a JetStream consumer of
	// SubscribeEvents hands out before it waits for an ack, 1 when zero.
	// Workers that share a consumer share this limit.
	MaxAckPending int
	// WorkerID names a worker without a group on JetStream. It must stay
	// the same across restarts. When set, SubscribeEvents with group ""
	// uses a consumer of this worker alone, "printbridge-worker-<id>", so
	// that every worker without a group gets every event. When empty, it
	// uses DefaultDurable, which all workers without a group share and
	// split the events of.
	WorkerID string
	// EventPendingMessages and EventPendingBytes bound the events that
	// nats.go holds for a core SubscribeEvents handler that falls behind.
	// Beyond either limit nats.go drops events, which the bus logs and
	// passes to OnEventsDropped. Zero keeps the nats.go default (512Ki
	// messages and 64 MiB in nats.go 1.56), which a burst of events can
	// fill with tens of MB. JetStream consumers are bounded by
	// MaxAckPending instead.
	EventPendingMessages int
	EventPendingBytes    int
	// OnEventsDropped is called with the number of events that nats.go
	// dropped from a core event subscription. It runs on the
	// subscription's delivery goroutine and must not block.
	OnEventsDropped func(n int)
}

var _ bridge.Bus = (*Bus)(nil)

// Bus is one NATS connection. It is safe for concurrent use.
type Bus struct {
	cfg    Config
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream // nil without JetStream
	kv     jetstream.KeyValue  // nil without JetStream
	stream string

	connClosed chan struct{} // closed by nats.go's ClosedHandler

	mu        sync.Mutex
	closed    bool
	consumers []jetstream.ConsumeContext
	// eventSubs are the core event subscriptions, whose dropped events
	// Close reports once more.
	eventSubs []*dropReporter

	// metadataWarning logs once that the server keeps no consumer
	// metadata (see warnWithoutMetadata).
	metadataWarning sync.Once

	// streamConfig is the event stream's configuration, which
	// restoreJetStream creates again when the server has lost it.
	streamConfig jetstream.StreamConfig
	// streamCreated and bucketCreated are when the event stream and the
	// state bucket were created, guarded by restoring after New.
	streamCreated time.Time
	bucketCreated time.Time
	// jetStreamReady is set once New has set up js, kv and streamConfig,
	// which restoreJetStream reads from nats.go's callback goroutine.
	jetStreamReady atomic.Bool
	// restoring is held while restoreJetStream runs. restoreMu guards
	// restoreRequested, a restore asked for since the last one started, and
	// restoreRunning, whether restoreLoop runs.
	restoring        sync.Mutex
	restoreMu        sync.Mutex
	restoreRequested bool
	restoreRunning   bool
	// commands learns whether a command reached a subscriber.
	commands commandWatch

	// consumerSpecs are the durable consumers that this bus consumes
	// from, guarded by mu, for restoreJetStream; consumers holds their
	// consume contexts at the same index.
	consumerSpecs []*consumerSpec
}

// New connects to the server and, with JetStream, creates or updates the
// event stream and the state bucket. After the first connection nats.go
// reconnects without limit.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = slog.Default()
	}
	if cfg.URL == "" {
		return nil, errors.New("missing NATS URL: set it as nats://host:4222")
	}
	servers := redactURLs(cfg.URL)
	b := &Bus{
		cfg:        cfg,
		log:        log.With("server", servers),
		stream:     cfg.Stream,
		connClosed: make(chan struct{}),
	}
	if b.stream == "" {
		b.stream = DefaultStream
	}

	nc, err := b.connect(ctx, servers)
	if err != nil {
		return nil, err
	}
	b.nc = nc
	b.log.Info("connected to NATS server", "server_url", redactURLs(nc.ConnectedUrl()))

	if cfg.JetStream {
		if err := b.setupJetStream(ctx); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return b, nil
}

func (b *Bus) connect(ctx context.Context, servers string) (*nats.Conn, error) {
	name := b.cfg.Name
	if name == "" {
		name = defaultName
	}
	timeout := b.cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = defaultConnectTimeout
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.DrainTimeout(drainTimeout),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("disconnected from NATS server; reconnecting", "error", err)
			}
			if b.cfg.OnDisconnect != nil {
				b.cfg.OnDisconnect(err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("reconnected to NATS server", "server_url", redactURLs(nc.ConnectedUrl()), "reconnects", nc.Stats().Reconnects)
			// Before OnReconnect, so what the edge publishes again
			// after a reconnect finds the stream and the bucket.
			rctx, cancel := context.WithTimeout(context.Background(), restoreTimeout)
			if ok, _ := b.restoreJetStream(rctx); !ok {
				b.startRestore()
			}
			cancel()
			if b.cfg.OnReconnect != nil {
				b.cfg.OnReconnect()
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			b.log.Debug("reconnect to NATS server failed", "error", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				b.log.Warn("NATS connection closed", "error", err)
			} else {
				b.log.Info("NATS connection closed")
			}
			close(b.connClosed)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			// nats.go reports a slow consumer once at the start of each
			// run of drops. The drop reporter of an event subscription
			// counts all of them and logs at most every dropLogInterval.
			if r := b.dropReporterOf(sub); r != nil && errors.Is(err, nats.ErrSlowConsumer) {
				r.check()
				return
			}
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			// A slow consumer error means nats.go dropped messages
			// beyond the subscription's pending limit.
			b.log.Error("NATS asynchronous error", "subject", subject, "error", err)
		}),
	}
	authOpts, err := b.cfg.authOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, authOpts...)

	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(b.cfg.URL, opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to NATS server %s failed: %w; check the URL, the credentials and that the server is running", servers, r.err)
		}
		return r.nc, nil
	case <-ctx.Done():
		// nats.Connect gives up within the timeout. A connection it still
		// makes is closed again.
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("connect to NATS server %s: %w", servers, ctx.Err())
	}
}

func (b *Bus) setupJetStream(ctx context.Context) error {
	js, err := jetstream.New(b.nc)
	if err != nil {
		return fmt.Errorf("set up JetStream on the NATS connection: %w", err)
	}
	subjects := b.cfg.Topics.NATSEvent("*", ">")
	want := jetstream.StreamConfig{
		Name:        b.stream,
		Description: "printbridge events, deduplicated by event id",
		Subjects:    []string{subjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      streamMaxAge,
		Duplicates:  streamDuplicates,
		Discard:     jetstream.DiscardOld,
	}
	b.js = js
	created, err := b.ensureStream(ctx, want)
	if err != nil {
		return err
	}
	b.streamCreated = created
	kv, err := b.ensureBucket(ctx)
	if err != nil {
		return err
	}
	b.streamConfig = want
	b.kv = kv
	b.bucketCreated = b.bucketCreatedAt(ctx)
	b.jetStreamReady.Store(true)
	go b.watchJetStream(jetStreamCheckEvery)
	b.log.Info("JetStream ready", "stream", b.stream, "subjects", subjects, "bucket", StateBucket)
	return nil
}

// streamConfigured reports whether have has every setting of want that
// setupJetStream sets.
func streamConfigured(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.Retention == want.Retention && have.Storage == want.Storage && have.MaxAge == want.MaxAge &&
		have.Duplicates == want.Duplicates && have.Discard == want.Discard
}

// Name returns "nats".
func (b *Bus) Name() string { return "nats" }

// Connected reports whether the connection to the server is up.
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// Conn returns the underlying connection, for request-reply clients and
// tests.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Stream returns the JetStream stream of events, or an error without
// JetStream.
func (b *Bus) Stream(ctx context.Context) (jetstream.Stream, error) {
	if b.js == nil {
		return nil, errors.New("JetStream is off on this NATS bus: set JetStream in the config")
	}
	return b.js.Stream(ctx, b.stream)
}

// Close drains the JetStream consumers and the core subscriptions, so
// that their handlers finish the messages already received, and closes the
// connection.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	consumers := b.consumers
	eventSubs := b.eventSubs
	b.mu.Unlock()

	// Drain hands the messages a consumer has buffered to the handler
	// before it stops. A handler that does not handle them any more (a
	// stopped worker) naks them, and JetStream delivers them at once to
	// the next worker that pulls. Stop would drop them, and JetStream
	// would deliver them again only after the ack wait.
	// Without a connection nothing can be handed back or flushed, and a
	// drain would only wait for its timeout, so a worker stopped while
	// the server is down closes at once. JetStream delivers the
	// unacknowledged messages again after the ack wait.
	connected := b.nc.IsConnected()
	for _, cc := range consumers {
		if connected {
			cc.Drain()
		} else {
			cc.Stop()
		}
	}
	// Only JetStream consumers need the long wait. The connection's own
	// drain flushes what is buffered, which takes milliseconds on a live
	// server, so a server that hangs does not hold up the stop for long.
	wait := closeWait
	if len(consumers) > 0 {
		wait = drainTimeout + time.Second
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for _, cc := range consumers {
		select {
		case <-cc.Closed():
		case <-timer.C:
			b.log.Warn("JetStream consumer did not stop in time")
		}
	}

	var err error
	if connected {
		err = b.nc.Drain()
	}
	if !connected || err != nil {
		b.nc.Close()
	}
	select {
	case <-b.connClosed:
	case <-timer.C:
		b.nc.Close()
		err = errors.Join(err, errors.New("draining the NATS connection timed out"))
	}
	for _, r := range eventSubs {
		r.logUnlogged()
	}
	if err != nil {
		return fmt.Errorf("close NATS connection: %w", err)
	}
	return nil
}

// dropReporterOf returns the drop reporter of an event subscription, or
// nil.
func (b *Bus) dropReporterOf(sub *nats.Subscription) *dropReporter {
	if sub == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.eventSubs {
		if r.sub.Load() == sub {
			return r
		}
	}
	return nil
}

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// flush waits until the server has processed what was published, bounded
// by ctx, or by flushTimeout when ctx has no deadline.
func (b *Bus) flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, flushTimeout)
		defer cancel()
	}
	return b.nc.FlushWithContext(ctx)
}

// redactURLs returns the comma-separated server list without passwords
// or tokens.
func redactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		if err != nil {
			// nats.go also takes host:port without a scheme, which
			// url.Parse rejects.
			if at := strings.LastIndex(p, "@"); at >= 0 {
				p = "redacted" + p[at:]
			}
			parts[i] = p
			continue
		}
		if u.User == nil {
			parts[i] = p
			continue
		}
		if _, hasPassword := u.User.Password(); !hasPassword {
			// nats://token@host carries the token as the user name.
			u.User = url.User("redacted")
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}
