package natsbus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// restoreTimeout bounds one restoreJetStream.
	restoreTimeout = 10 * time.Second
	// restoreEvery is the pause before a restore that failed runs again.
	restoreEvery = 5 * time.Second
	// restoreDebounce is the wait between a request for a restore and
	// the restore (see restoreLoop).
	restoreDebounce = time.Second
)

// jetStreamCheckEvery is how often a bus checks its stream, bucket and
// consumers while nothing fails (see watchJetStream). Tests shorten it.
var jetStreamCheckEvery = 30 * time.Second

// consumerSpec is a durable consumer that the bus consumes from.
type consumerSpec struct {
	cfg   jetstream.ConsumerConfig
	owner consumerOwner
	// consume starts consuming from the consumer with the bus's handler.
	consume func(jetstream.Consumer) (jetstream.ConsumeContext, error)
	// index is the position of the consume context in Bus.consumers.
	index int
	// lastSeq is the stream sequence of the last event delivered here,
	// where a consumer that is created again resumes.
	lastSeq atomic.Uint64
	// stopped is set when nats.go stopped consuming because the
	// consumer was deleted.
	stopped atomic.Bool
	// failed is set at a consumer error and cleared by the next event
	// delivered, which logs that the consumer works again.
	failed atomic.Bool
}

// ensureStream creates the event stream or updates it to want. A stream
// that already has this configuration is left alone: every edge and
// worker starts here, and nats-server 2.15.3 has a data race between a
// stream update and a consumer being created on it.
// It returns the stream's creation time, which distinguishes a stream
// made again after a loss from the one this bus found.
func (b *Bus) ensureStream(ctx context.Context, want jetstream.StreamConfig) (time.Time, error) {
	s, err := b.js.Stream(ctx, b.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// Create, never update, what was missing: two edges that start
		// at once both find no stream, and nats-server 2.9.10 crashed
		// (nil pointer in a stream update) when the second one updated
		// the stream that the first had just made.
		s, err = b.js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = b.js.Stream(ctx, b.stream)
		}
	}
	if err == nil && !streamConfigured(s.CachedInfo().Config, want) {
		s, err = b.js.UpdateStream(ctx, want)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("create or update JetStream stream %s on %s failed: %w; check that JetStream is enabled on the server and that no other stream takes these subjects", b.stream, want.Subjects[0], err)
	}
	return s.CachedInfo().Created, nil
}

// bucketStream is the stream behind the state bucket. Its creation time
// distinguishes a bucket made again from the one this bus found.
const bucketStream = "KV_" + StateBucket

// bucketCreatedAt returns when the state bucket was created, or the zero
// time when that cannot be read, which the next restore then corrects.
func (b *Bus) bucketCreatedAt(ctx context.Context) time.Time {
	s, err := b.js.Stream(ctx, bucketStream)
	if err != nil {
		return time.Time{}
	}
	return s.CachedInfo().Created
}

// watchJetStream starts a restore every interval of every until the bus
// is closed. An edge whose state does not change stores nothing, so
// without it a deleted state bucket went unnoticed.
func (b *Bus) watchJetStream(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.connClosed:
			return
		case <-t.C:
			if b.Connected() {
				b.startRestore()
			}
		}
	}
}

// ensureBucket opens the state bucket, or creates it when it is missing.
func (b *Bus) ensureBucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := b.js.KeyValue(ctx, StateBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// Created, never updated, for the reason in ensureStream.
		kv, err = b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      StateBucket,
			Description: "printbridge state and availability by printer",
			History:     1,
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = b.js.KeyValue(ctx, StateBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open or create JetStream key-value bucket %s failed: %w", StateBucket, err)
	}
	return kv, nil
}

// restoreJetStream creates the event stream, the state bucket and this
// bus's durable consumers again where the server has lost them. A server
// that restarted without its store loses them (a container without a
// volume, a new node in place of the old one), and so does an operator's
// delete. Without this the edge's events failed with "no response from
// stream" until the edge restarted, and a worker pulled from a consumer
// that no longer existed. What a lost stream held is gone.
//
// It reports whether everything is in place, so restoreLoop tries again
// when not, and whether it created the stream or the state bucket, after
// which the edge publishes its info, availability and state again.
func (b *Bus) restoreJetStream(ctx context.Context) (ok, created bool) {
	if !b.jetStreamReady.Load() || b.isClosed() {
		return true, false
	}
	b.restoring.Lock()
	defer b.restoring.Unlock()

	stream, err := b.js.Stream(ctx, b.stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && !b.missingAfterPause(ctx, b.stream):
		// Made again meanwhile, or the lookup failed: the next run checks
		// again.
		return false, false
	case errors.Is(err, jetstream.ErrStreamNotFound):
		b.log.Warn("the NATS server has lost the JetStream event stream, as after a restart without its store; creating it again (the events it held are gone)", "stream", b.stream)
		if b.streamCreated, err = b.ensureStream(ctx, b.streamConfig); err != nil {
			b.log.Error("restoring the JetStream event stream failed; trying again", "stream", b.stream, "error", err)
			return false, false
		}
		created = true
		// Sequences of the lost stream mean nothing in the new one.
		b.resetConsumerPositions()
	case err != nil:
		b.log.Warn("checking the JetStream event stream failed; trying again", "stream", b.stream, "error", err)
		return false, false
	case !stream.CachedInfo().Created.Equal(b.streamCreated):
		// Another edge or worker made the stream again first.
		b.streamCreated = stream.CachedInfo().Created
		b.resetConsumerPositions()
	}

	ok = true
	bucket, err := b.js.Stream(ctx, bucketStream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && !b.missingAfterPause(ctx, bucketStream):
		ok = false
	case errors.Is(err, jetstream.ErrStreamNotFound):
		b.log.Warn("the NATS server has lost the JetStream state bucket; creating it again", "bucket", StateBucket)
		if _, err := b.ensureBucket(ctx); err != nil {
			b.log.Error("restoring the JetStream state bucket failed; trying again", "bucket", StateBucket, "error", err)
			ok = false
			break
		}
		created = true
		b.bucketCreated = b.bucketCreatedAt(ctx)
	case err != nil:
		b.log.Warn("checking the JetStream state bucket failed; trying again", "bucket", StateBucket, "error", err)
		ok = false
	case !bucket.CachedInfo().Created.Equal(b.bucketCreated):
		// Another edge, a worker or `printbridge publish` made the bucket
		// again first, without this bus's keys.
		b.log.Warn("the JetStream state bucket was made again since this bus last saw it", "bucket", StateBucket)
		b.bucketCreated = bucket.CachedInfo().Created
		created = true
	}

	b.mu.Lock()
	specs := append([]*consumerSpec(nil), b.consumerSpecs...)
	b.mu.Unlock()
	for _, spec := range specs {
		if !b.restoreConsumer(ctx, spec) {
			ok = false
		}
	}
	return ok, created
}

// resetConsumerPositions makes every consumer that is created again
// start at the first event of the stream.
func (b *Bus) resetConsumerPositions() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, spec := range b.consumerSpecs {
		spec.lastSeq.Store(0)
	}
}

// missingAfterPause reports whether the stream called name is still
// missing restoreDebounce after a lookup did not find it. nats-server
// 2.9.10 left a stream or bucket broken ("msgs/1.blk: no such file or
// directory") when it was created again at once after a delete, also
// when the delete came just before this bus's periodic check.
func (b *Bus) missingAfterPause(ctx context.Context, name string) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(restoreDebounce):
	}
	_, err := b.js.Stream(ctx, name)
	return errors.Is(err, jetstream.ErrStreamNotFound)
}

// restoreConsumer creates spec's consumer again when the server has lost
// it, and consumes from it again when nats.go stopped consuming. It
// reports whether the consumer is in place and consumed from.
func (b *Bus) restoreConsumer(ctx context.Context, spec *consumerSpec) bool {
	consumer, err := b.js.Consumer(ctx, b.stream, spec.cfg.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		cfg := spec.cfg
		// The start that the first consumer had may be that of a lost
		// stream; the last event delivered here is a better one. A
		// worker of a group that took more than this one ran may run
		// some of those events again.
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverAllPolicy, 0
		if seq := spec.lastSeq.Load(); seq > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
		}
		b.log.Warn("the NATS server has lost this worker's JetStream consumer; creating it again", "consumer", cfg.Durable, "start_seq", cfg.OptStartSeq)
		// Just after a delete the server may still report the old
		// consumer as existing; the next try gets past that.
		if consumer, err = b.ensureConsumer(ctx, cfg, spec.owner); err != nil {
			b.log.Warn("restoring the JetStream consumer failed; trying again", "consumer", cfg.Durable, "error", err)
			return false
		}
	case err != nil:
		b.log.Warn("checking the JetStream consumer failed; trying again", "consumer", spec.cfg.Durable, "error", err)
		return false
	case !spec.stopped.Load():
		return true
	}

	cc, err := spec.consume(consumer)
	if err != nil {
		b.log.Error("consuming from the restored JetStream consumer failed; trying again", "consumer", spec.cfg.Durable, "error", err)
		return false
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		cc.Stop()
		return true
	}
	old := b.consumers[spec.index]
	b.consumers[spec.index] = cc
	spec.stopped.Store(false)
	b.mu.Unlock()
	old.Stop()
	b.log.Info("consuming events again", "consumer", spec.cfg.Durable)
	return true
}

// restoreAfterError starts restoreJetStream when err means that no stream
// took a publish: a stream deleted while the connection stayed up, or one
// that the reconnect found missing but could not create yet.
func (b *Bus) restoreAfterError(err error) {
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		b.startRestore()
	}
}

// restoreAfterConsumerError starts restoreJetStream when a consumer
// error means that the consumer or its stream is gone.
func (b *Bus) restoreAfterConsumerError(spec *consumerSpec, err error) {
	switch {
	case errors.Is(err, jetstream.ErrConsumerDeleted):
		// nats.go stops consuming after this error.
		spec.stopped.Store(true)
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, nats.ErrNoResponders):
	default:
		return
	}
	b.startRestore()
}

// startRestore requests a restoreJetStream on the bus's restore
// goroutine, which it starts when none runs. Requests that come while a
// restore waits or runs are served by one more run after it, so none is
// lost: a stopped consumer reports no further error that would ask again.
func (b *Bus) startRestore() {
	if !b.jetStreamReady.Load() {
		return
	}
	b.restoreMu.Lock()
	b.restoreRequested = true
	running := b.restoreRunning
	b.restoreRunning = true
	b.restoreMu.Unlock()
	if !running {
		go b.restoreLoop()
	}
}

// restoreLoop runs restoreJetStream while restores are asked for, and
// every restoreEvery until one puts everything in place or the bus is
// closed. It waits restoreDebounce before each run: nats-server 2.9.10
// left a stream broken ("msgs/1.blk: no such file or directory") when a
// worker created it again 2 ms after an operator deleted it, and the
// wait also lets one run serve a burst of consumer errors.
func (b *Bus) restoreLoop() {
	for {
		select {
		case <-b.connClosed:
			b.restoreMu.Lock()
			b.restoreRunning = false
			b.restoreMu.Unlock()
			return
		case <-time.After(restoreDebounce):
		}
		b.restoreMu.Lock()
		if !b.restoreRequested {
			b.restoreRunning = false
			b.restoreMu.Unlock()
			return
		}
		b.restoreRequested = false
		b.restoreMu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), restoreTimeout)
		ok, created := b.restoreJetStream(ctx)
		cancel()
		if created && b.cfg.OnRestored != nil {
			b.cfg.OnRestored()
		}
		if ok {
			continue
		}
		b.restoreMu.Lock()
		b.restoreRequested = true
		b.restoreMu.Unlock()
		select {
		case <-b.connClosed:
		case <-time.After(restoreEvery):
		}
	}
}
