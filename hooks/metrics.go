package hooks

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/printbridge/printbridge/bridge"
)

// Values of the result label of printbridge_hook_runs_total.
const (
	ResultOK        = "ok"
	ResultFailed    = "failed"
	ResultTimeout   = "timeout"
	ResultLoopGuard = "loop_guard"
	ResultSkipped   = "skipped"
	// ResultInterrupted is a hook that a killed worker had started; it
	// was not started again (see ErrInterrupted).
	ResultInterrupted = "interrupted"
	// ResultStale is a G-code hook whose event came too late (ErrStale).
	ResultStale = "stale"
	// ResultOffline is a G-code hook not sent because the edge of its
	// printer is offline (ErrOffline).
	ResultOffline = "offline"
)

// otherEvent is the event label of names that are neither in the
// catalogue nor one of OctoPrint's generated names, so a publisher that
// sends random names cannot grow the label set without bound.
const otherEvent = "other"

// Metrics are the worker's Prometheus metrics. One Metrics belongs to one
// Worker; register it on a private registry.
type Metrics struct {
	hookRuns       *prometheus.CounterVec
	hookDuration   *prometheus.HistogramVec
	eventsReceived *prometheus.CounterVec
	duplicates     prometheus.Counter
	invalid        prometheus.Counter
	queueDepth     prometheus.Gauge
	dropped        prometheus.Counter
	clientDropped  prometheus.Counter
	errors         *prometheus.CounterVec
	reloads        *prometheus.CounterVec
	reloadOK       prometheus.Gauge
	entriesSkipped prometheus.Gauge
	configErrors   prometheus.Gauge
	subscriptions  prometheus.Gauge
	claims         *prometheus.CounterVec
	claimsOpen     prometheus.Gauge
	interrupted    *prometheus.CounterVec
}

// Values of the operation label of printbridge_worker_errors_total.
const (
	opPublishResult = "publish_result"
	opEncodeResult  = "encode_result"
	opInvalidReply  = "invalid_reply"
	opSeenFile      = "seen_file"
	opSeenStore     = "seen_store"
)

// NewMetrics creates the worker's metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		hookRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "printbridge_hook_runs_total",
			Help: "Hook runs by printer, subscription name, event, hook type and result (ok, failed, timeout, loop_guard, skipped, interrupted, stale, offline).",
		}, []string{"printer", "hook", "event", "type", "result"}),
		hookDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "printbridge_hook_duration_seconds",
			Help:    "Run time of hooks that ran: all commands of a system hook, or a G-code hook from publishing to the edge's final reply.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"type"}),
		eventsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "printbridge_worker_events_received_total",
			Help: "Valid event envelopes received for the served printers, by printer and event, redeliveries included; names outside the catalogue count as event=\"other\".",
		}, []string{"printer", "event"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "printbridge_worker_events_duplicate_total",
			Help: "Received events whose event id was already handled, so their hooks did not run again.",
		}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "printbridge_worker_events_invalid_total",
			Help: "Received messages that are not a valid event envelope.",
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "printbridge_worker_queue_depth",
			Help: "Events waiting in the printers' hook queues.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "printbridge_worker_events_dropped_total",
			Help: "Events dropped because their printer's hook queue was full.",
		}),
		clientDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "printbridge_worker_events_dropped_by_client_total",
			Help: "Events that the worker's NATS client dropped before the worker received them, because its pending list was full (core NATS only, which does not deliver them again).",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "printbridge_worker_errors_total",
			Help: "Errors the worker logged and went on after, by operation (publish_result, encode_result, invalid_reply, seen_file, seen_store).",
		}, []string{"operation"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "printbridge_worker_config_reloads_total",
			Help: "Config reloads by result (ok, failed); a failed reload keeps the running config.",
		}, []string{"result"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "printbridge_worker_config_last_reload_successful",
			Help: "1 when the last config reload succeeded or none was tried, 0 when it failed.",
		}),
		entriesSkipped: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "printbridge_worker_config_entries_skipped",
			Help: "Entries of events.subscriptions in the running config that were skipped because of an error, so their hooks never run; the config problems logged at start name them.",
		}),
		configErrors: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "printbridge_worker_config_errors",
			Help: "Errors in the running config, as printbridge check-config counts them: entries with errors, which are skipped, and errors outside entries, such as an unknown key under events:, which keep hooks from loading. The config problems logged at start name them.",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "printbridge_worker_subscriptions",
			Help: "Subscriptions of the running config that loaded and are enabled.",
		}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "printbridge_worker_seen_claims_total",
			Help: "Claims on events in the JetStream seen-events bucket by result: claimed, done (another worker ran the hooks), running_elsewhere, taken_over (from a worker that stopped refreshing), lost (taken over from this worker) and released.",
		}, []string{"result"}),
		claimsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "printbridge_worker_seen_claims_open",
			Help: "Events this worker claimed in the seen-events bucket whose hooks have not finished.",
		}),
		interrupted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "printbridge_worker_hooks_interrupted_total",
			Help: "System hooks that a killed worker had started, found on a redelivery and not started again, by resolution: waited (its process still ran on this host and the worker waited for it) or unknown (it had ended or ran on another host).",
		}, []string{"resolution"}),
	}
	m.reloadOK.Set(1)
	for _, op := range []string{opPublishResult, opEncodeResult, opInvalidReply, opSeenFile, opSeenStore} {
		m.errors.WithLabelValues(op)
	}
	for _, result := range claimResults {
		m.claims.WithLabelValues(result)
	}
	for _, result := range []string{"ok", "failed"} {
		m.reloads.WithLabelValues(result)
	}
	for _, resolution := range []string{interruptedWaited, interruptedUnknown} {
		m.interrupted.WithLabelValues(resolution)
	}
	reg.MustRegister(m.hookRuns, m.hookDuration, m.eventsReceived, m.duplicates, m.invalid, m.queueDepth, m.dropped,
		m.clientDropped, m.errors, m.reloads, m.reloadOK, m.entriesSkipped, m.configErrors, m.subscriptions, m.claims, m.claimsOpen, m.interrupted)
	return m
}

// AddClientDropped counts n events that the bus client dropped before
// the worker received them.
func (m *Metrics) AddClientDropped(n int) {
	m.clientDropped.Add(float64(n))
}

// resultLabel classifies a finished run for printbridge_hook_runs_total.
func resultLabel(res Result) string {
	var fe *FormatError
	switch {
	case res.Err == nil:
		return ResultOK
	case errors.Is(res.Err, ErrInterrupted):
		return ResultInterrupted
	case errors.Is(res.Err, ErrTimeout):
		return ResultTimeout
	case errors.Is(res.Err, ErrLoopGuard):
		return ResultLoopGuard
	case errors.Is(res.Err, ErrStale):
		return ResultStale
	case errors.Is(res.Err, ErrOffline):
		return ResultOffline
	case errors.As(res.Err, &fe):
		return ResultSkipped
	default:
		return ResultFailed
	}
}

func (m *Metrics) observeResult(res Result) {
	result := resultLabel(res)
	m.hookRuns.WithLabelValues(res.Printer, res.Hook, res.Event, string(res.Type), result).Inc()
	ran := len(res.Commands) > 0 || res.CommandID != ""
	if ran && result != ResultSkipped && result != ResultLoopGuard && result != ResultStale && result != ResultOffline {
		m.hookDuration.WithLabelValues(string(res.Type)).Observe(res.Duration.Seconds())
	}
}

func (m *Metrics) observeReceived(printer, event string) {
	if _, ok := bridge.LookupEvent(event); !ok && !bridge.IsDynamicEvent(event) {
		event = otherEvent
	}
	m.eventsReceived.WithLabelValues(printer, event).Inc()
}

// observeConfig sets the gauges that describe the config in force.
func (m *Metrics) observeConfig(cfg *Config) {
	m.subscriptions.Set(float64(len(cfg.Subscriptions)))
	m.entriesSkipped.Set(float64(cfg.SkippedEntries))
	m.configErrors.Set(float64(cfg.Errors))
}

func (m *Metrics) observeReload(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
		m.reloadOK.Set(1)
		return
	}
	m.reloads.WithLabelValues("failed").Inc()
	m.reloadOK.Set(0)
}
