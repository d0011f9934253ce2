package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/edge"
	"github.com/printbridge/printbridge/hooks"
	"github.com/printbridge/printbridge/printer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const (
	benchPrinter = "bench"
	// warmupEvent primes the chain, so the measured events find every
	// subscription in place.
	warmupEvent = "plugin_bench_warmup"
	// stallTimeout ends a pipeline run when no hook result arrived for
	// this long: the rest was dropped on the way.
	stallTimeout = 10 * time.Second
)

// pipelineHooks is the worker config of the pipeline runs. Each event has
// one gcode hook whose template renders to an empty line, through a
// zero-precision format spec. So the worker builds the placeholders,
// renders the template and publishes a result for every event, but sends
// no command.
const pipelineHooks = `events:
  enabled: true
  subscriptions:
  - event: ZChange
    name: bench-zchange
    type: gcode
    command: "{new:.0}"
  - event: ` + warmupEvent + `
    name: bench-warmup
    type: gcode
    command: "{__eventname:.0}"
`

// PipelineResult is one burst of events from the edge to the worker.
type PipelineResult struct {
	Broker string
	// Events were emitted; Results is the number of hook results the
	// worker produced for them.
	Events, Results int
	// EmitElapsed is the time the Emit calls took (the edge's outbox
	// appends), PublishElapsed the time until the broker had taken the
	// last of them, and Elapsed the time until the last hook result, all
	// from the first Emit.
	EmitElapsed, PublishElapsed, Elapsed time.Duration
}

// EventsPerSecond is the end-to-end rate.
func (r PipelineResult) EventsPerSecond() float64 { return float64(r.Results) / r.Elapsed.Seconds() }

// EmitPerSecond is the rate at which the edge took events.
func (r PipelineResult) EmitPerSecond() float64 { return float64(r.Events) / r.EmitElapsed.Seconds() }

// PublishPerSecond is the rate at which the edge's publisher had the
// broker take them.
func (r PipelineResult) PublishPerSecond() float64 {
	return float64(r.Events) / r.PublishElapsed.Seconds()
}

// MeasurePipeline emits events ZChange events through bridge/edge's Emit
// (outbox, publisher) on brokerName, and counts the worker's hook results
// for them.
func MeasurePipeline(ctx context.Context, workDir, brokerName string, events int, log *slog.Logger) (PipelineResult, error) {
	res := PipelineResult{Broker: brokerName, Events: events}
	dir, err := os.MkdirTemp(workDir, "pipeline-")
	if err != nil {
		return res, err
	}
	br, err := startBroker(ctx, brokerName, dir, log)
	if err != nil {
		return res, err
	}
	defer br.stop()

	var (
		results  atomic.Int64
		warmed   = make(chan struct{})
		warmOnce sync.Once
		lastAt   atomic.Int64
	)
	onResult := func(r hooks.Result) {
		switch r.Event {
		case warmupEvent:
			warmOnce.Do(func() { close(warmed) })
		case bridge.EventZChange:
			results.Add(1)
			lastAt.Store(time.Now().UnixNano())
		}
	}
	stopWorker, err := startWorker(ctx, br, pipelineHooks, events, onResult, log)
	if err != nil {
		return res, err
	}
	defer stopWorker()
	metrics := edge.NewMetrics(prometheus.NewRegistry())
	e, stopEdge, err := startEdge(ctx, br, dir, nil, metrics, log)
	if err != nil {
		return res, err
	}
	defer stopEdge()

	if err := warmUp(ctx, e, warmed); err != nil {
		return res, err
	}
	published := metrics.EventsPublished.WithLabelValues(bridge.EventZChange)
	publishDone := make(chan time.Time, 1)
	go watchCounter(ctx, published, float64(events), publishDone)
	start := time.Now()
	for i := range events {
		z := 0.2 * float64(i+1)
		e.Emit(bridge.EventZChange, bridge.Payload{{Key: "new", Value: z}, {Key: "old", Value: z - 0.2}},
			bridge.Context{CurrentZ: &z, State: "PRINTING"})
	}
	res.EmitElapsed = time.Since(start)
	if err := waitCount(ctx, &results, int64(events)); err != nil {
		log.Warn("pipeline run ended before every event had its hook result", "broker", brokerName, "error", err)
	}
	res.Results = int(results.Load())
	if res.Results == 0 {
		return res, fmt.Errorf("%s: no hook result for %d events", brokerName, events)
	}
	res.Elapsed = time.Unix(0, lastAt.Load()).Sub(start)
	select {
	case at := <-publishDone:
		res.PublishElapsed = at.Sub(start)
	case <-time.After(stallTimeout):
		return res, fmt.Errorf("%s: the edge's published counter did not reach %d", brokerName, events)
	}
	return res, nil
}

// watchCounter polls c every millisecond and sends the time it first
// reached want.
func watchCounter(ctx context.Context, c prometheus.Counter, want float64, reached chan<- time.Time) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		var m dto.Metric
		if err := c.Write(&m); err == nil && m.GetCounter().GetValue() >= want {
			reached <- time.Now()
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// startWorker runs a hooks.Worker with the config text on its own bus
// connection and returns the function that stops it.
func startWorker(ctx context.Context, br *broker, config string, queue int, onResult func(hooks.Result), log *slog.Logger) (func(), error) {
	cfg, problems, err := hooks.ParseConfig("bench-hooks.yaml", []byte(config))
	if err != nil {
		return nil, err
	}
	if hooks.HasErrors(problems) {
		return nil, fmt.Errorf("bench hook config: %v", problems)
	}
	bus, err := br.connect(ctx, "bench-worker")
	if err != nil {
		return nil, fmt.Errorf("connect the worker to %s: %w", br.name, err)
	}
	// The queue holds a whole burst, so the run measures the worker's
	// rate instead of its drop policy.
	w := hooks.NewWorker(cfg, bus, log, hooks.OnResult(onResult), hooks.WithQueueSize(max(queue, hooks.DefaultQueueSize)))
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			log.Warn("worker stopped with an error", "error", err)
		}
		_ = bus.Close()
	}, nil
}

// startEdge runs a bridge/edge.Edge with its outbox in dir. With p nil
// the edge gets a printer that never connects, because the pipeline runs
// only use its event path.
func startEdge(ctx context.Context, br *broker, dir string, p *printer.Printer, metrics *edge.Metrics, log *slog.Logger) (*edge.Edge, func(), error) {
	bus, err := br.connect(ctx, "bench-edge")
	if err != nil {
		return nil, nil, fmt.Errorf("connect the edge to %s: %w", br.name, err)
	}
	e, err := edge.New(edge.Config{PrinterID: benchPrinter, DataDir: dir}, bus, log, metrics)
	if err != nil {
		_ = bus.Close()
		return nil, nil, err
	}
	if p == nil {
		p = printer.New(printer.Config{Port: "/nonexistent/bench-printer"}, log, e.Emit, printer.Metrics{})
	}
	e.Attach(p)
	ectx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ectx) }()
	return e, func() {
		cancel()
		if err := <-done; err != nil {
			log.Warn("edge stopped with an error", "error", err)
		}
		_ = bus.Close()
	}, nil
}

// warmUp emits the warm-up event every 200ms until its hook result
// arrives, which shows that the worker's subscription is in place.
func warmUp(ctx context.Context, e *edge.Edge, warmed <-chan struct{}) error {
	deadline := time.After(readyTimeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		e.Emit(warmupEvent, nil, bridge.Context{})
		select {
		case <-warmed:
			return nil
		case <-tick.C:
		case <-deadline:
			return errors.New("the worker produced no hook result for the warm-up event within " + readyTimeout.String())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitCount waits until counter reaches want, or until it stops growing
// for stallTimeout.
func waitCount(ctx context.Context, counter *atomic.Int64, want int64) error {
	last, lastChange := counter.Load(), time.Now()
	for {
		n := counter.Load()
		if n >= want {
			return nil
		}
		if n != last {
			last, lastChange = n, time.Now()
		}
		if time.Since(lastChange) > stallTimeout {
			return fmt.Errorf("%d of %d after no progress for %s", n, want, stallTimeout)
		}
		if err := sleepContext(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
}

// workerPublishers is the number of goroutines that publish to the worker
// in MeasureWorker. Each publish waits for the broker, so several in
// parallel keep the worker's input ahead of the worker.
const workerPublishers = 4

// MeasureWorker feeds events ZChange envelopes to a worker through
// brokerName from workerPublishers publishers on their own connection,
// bypassing the edge, and returns the worker's rate of hook results.
func MeasureWorker(ctx context.Context, workDir, brokerName string, events int, log *slog.Logger) (PipelineResult, error) {
	res := PipelineResult{Broker: brokerName, Events: events}
	dir, err := os.MkdirTemp(workDir, "worker-")
	if err != nil {
		return res, err
	}
	br, err := startBroker(ctx, brokerName, dir, log)
	if err != nil {
		return res, err
	}
	defer br.stop()
	var (
		results  atomic.Int64
		lastAt   atomic.Int64
		warmed   = make(chan struct{})
		warmOnce sync.Once
	)
	stopWorker, err := startWorker(ctx, br, pipelineHooks, events, func(r hooks.Result) {
		switch r.Event {
		case warmupEvent:
			warmOnce.Do(func() { close(warmed) })
		case bridge.EventZChange:
			results.Add(1)
			lastAt.Store(time.Now().UnixNano())
		}
	}, log)
	if err != nil {
		return res, err
	}
	defer stopWorker()
	pub, err := br.connect(ctx, "bench-publisher")
	if err != nil {
		return res, err
	}
	defer pub.Close()

	warm := time.After(readyTimeout)
	for seq := uint64(1); ; seq++ {
		if err := publishEnvelope(ctx, pub, warmupEvent, seq, nil); err != nil {
			return res, err
		}
		select {
		case <-warmed:
		case <-time.After(200 * time.Millisecond):
			continue
		case <-warm:
			return res, errors.New("the worker produced no hook result for the warm-up event within " + readyTimeout.String())
		}
		break
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workerPublishers)
	for w := range workerPublishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < events; i += workerPublishers {
				z := 0.2 * float64(i+1)
				if err := publishEnvelope(ctx, pub, bridge.EventZChange, uint64(1000+i), bridge.Payload{{Key: "new", Value: z}, {Key: "old", Value: z - 0.2}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	res.PublishElapsed = time.Since(start)
	res.EmitElapsed = res.PublishElapsed
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	if err := waitCount(ctx, &results, int64(events)); err != nil {
		log.Warn("worker run ended before every event had its hook result", "broker", brokerName, "error", err)
	}
	res.Results = int(results.Load())
	if res.Results == 0 {
		return res, fmt.Errorf("%s: no hook result for %d events", brokerName, events)
	}
	res.Elapsed = time.Unix(0, lastAt.Load()).Sub(start)
	return res, nil
}

// publishEnvelope publishes one event of the bench printer as the edge
// would encode it.
func publishEnvelope(ctx context.Context, bus bridge.Bus, name string, seq uint64, payload bridge.Payload) error {
	now := time.Now().UTC()
	env := &bridge.Envelope{Schema: bridge.SchemaVersion, ID: bridge.NewEventID(now), Seq: seq, Printer: benchPrinter,
		Event: name, Time: now, Payload: payload}
	data, err := env.AppendJSON(nil)
	if err != nil {
		return err
	}
	return bus.PublishEvent(ctx, env, data)
}
