package edge

import (
	"slices"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/outbox"
	"github.com/printbridge/printbridge/printer"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the edge's Prometheus metrics.
type Metrics struct {
	EventsPublished *prometheus.CounterVec
	EventsDropped   *prometheus.CounterVec
	PublishErrors   prometheus.Counter
	QueueDepth      prometheus.Gauge
	// Per-bus delivery metrics, labelled with the bus name (mqtt, nats).
	// Each bus delivers the events from its own position, so with two
	// buses one may lag behind the other.
	BusEventsPublished *prometheus.CounterVec
	BusPublishErrors   *prometheus.CounterVec
	BusEventsLost      *prometheus.CounterVec
	BusLastSeq         *prometheus.GaugeVec
	// Outbox metrics; depth and age are refreshed by the publisher at
	// least once a second.
	OutboxDropped     *prometheus.CounterVec
	OutboxDepth       prometheus.Gauge
	OutboxOldestAge   prometheus.Gauge
	OutboxWriteErrors prometheus.Counter
	Commands          *prometheus.CounterVec
	CommandResults    *prometheus.CounterVec
	RepliesDropped    *prometheus.CounterVec
	LinesSent         prometheus.Counter
	LinesReceived     prometheus.Counter
	Resends           prometheus.Counter
	ChecksumErrors    prometheus.Counter
	Timeouts          prometheus.Counter
	Garbage           prometheus.Counter
	Overlong          prometheus.Counter
	StrayOKs          prometheus.Counter
	OKLatency         prometheus.Histogram
	Temperature       *prometheus.GaugeVec
	TargetTemp        *prometheus.GaugeVec
	Progress          prometheus.Gauge
	State             *prometheus.GaugeVec
	// StateChanges counts the printer's entries into each state, from
	// PrinterStateChanged, so that a state shorter than a scrape
	// interval (ERROR lasts until the port closes) still shows.
	StateChanges *prometheus.CounterVec
	// Suppressed counts lines not sent (CommandSuppressed), and
	// ScriptErrors GCODE scripts that failed to load or render.
	Suppressed   prometheus.Counter
	ScriptErrors prometheus.Counter
	// JobRecordErrors counts failures to write, read or decode the
	// running print record in the data directory.
	JobRecordErrors prometheus.Counter
	// DuplicateEdges counts the presence messages of other live edges of
	// this printer id, by kind (probe, running). See presence.go.
	DuplicateEdges *prometheus.CounterVec
	// CommandsStopped is 1 while this edge rejects commands because an
	// older edge of its printer id runs.
	CommandsStopped prometheus.Gauge
	// PresenceInvalid counts messages on the presence topic that are not
	// valid presence messages of this printer.
	PresenceInvalid prometheus.Counter
	// Info is 1 for the printer id and version of this edge
	// (printbridge_edge_info), so that alert rules and dashboards can
	// join it on instance to name the printer when several edges run on
	// one host.
	Info      *prometheus.GaugeVec
	printerID string
	lastState string
	// heaters are the heater labels of the temperature gauges.
	heaters map[string]bool
}

// NewMetrics registers the edge metrics on reg (a private registry when
// nil). printbridge_edge_info has no series until SetPrinter is called.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		heaters: map[string]bool{},
		EventsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "printbridge_events_published_total",
			Help: "Events acknowledged by the broker, by event name. With MQTT and NATS both, each bus counts its own, so an event counts twice."}, []string{"event"}),
		EventsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "printbridge_events_dropped_total",
			Help: "Events dropped before delivery outside the outbox, by reason (queue_full, encode, stopped, not_started)."}, []string{"reason"}),
		PublishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_event_publish_errors_total",
			Help: "Failed event publish attempts; each is retried."}),
		BusEventsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "printbridge_bus_events_published_total",
			Help: "Events acknowledged by the broker, by bus."}, []string{"bus"}),
		BusPublishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "printbridge_bus_event_publish_errors_total",
			Help: "Failed event publish attempts, by bus; each is retried."}, []string{"bus"}),
		BusEventsLost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "printbridge_bus_events_lost_total",
			Help: "Events that a bus never got, because the outbox limits or the memory queue dropped them before that bus took them, by bus."}, []string{"bus"}),
		BusLastSeq: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "printbridge_bus_last_seq",
			Help: "Seq of the last event the broker of a bus acknowledged, by bus; 0 before the first of this run."}, []string{"bus"}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "printbridge_event_queue_depth",
			Help: "Events waiting for the broker in memory, because there is no data directory or the outbox write failed."}),
		OutboxDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "printbridge_outbox_dropped_total",
			Help: "Undelivered events dropped from the outbox, by reason (max_bytes, max_age, corrupt)."}, []string{"reason"}),
		OutboxDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "printbridge_outbox_depth",
			Help: "Events in the on-disk outbox not yet acknowledged by the broker."}),
		OutboxOldestAge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "printbridge_outbox_oldest_age_seconds",
			Help: "Age of the oldest unacknowledged event in the outbox; 0 when it is empty."}),
		OutboxWriteErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_outbox_write_errors_total",
			Help: "Events the outbox failed to store, which were then held in memory."}),
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "printbridge_commands_total",
			Help: "Command messages received, by kind and first outcome (accepted, rejected, retained, expired, dropped, empty)."}, []string{"kind", "outcome"}),
		RepliesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "printbridge_replies_dropped_total",
			Help: "Command replies never published, by reason (reply_queue_full, publish_failed, encode)."}, []string{"reason"}),
		CommandResults: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "printbridge_command_results_total",
			Help: "Final command replies, by kind and status (done, failed, rejected)."}, []string{"kind", "status"}),
		LinesSent: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_serial_lines_sent_total",
			Help: "Lines written to the serial port, resends included."}),
		LinesReceived: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_serial_lines_received_total",
			Help: "Lines read from the serial port."}),
		Resends: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_serial_resends_total",
			Help: "Resend requests from the firmware."}),
		ChecksumErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_serial_checksum_errors_total",
			Help: "Checksum and line-number errors reported by the firmware."}),
		Timeouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_serial_timeouts_total",
			Help: "Communication timeouts waiting for ok."}),
		Garbage: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_serial_garbage_lines_total",
			Help: "Received lines ignored as corrupt: bytes that are not printable ASCII, resend requests without a valid line number, and oks naming a line never sent."}),
		Overlong: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_serial_overlong_lines_total",
			Help: "Received lines longer than 8 times --max-line-length (768 bytes by default), of which only the end was read."}),
		StrayOKs: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_serial_stray_oks_total",
			Help: "oks from the firmware that acknowledged no line in flight, and were ignored."}),
		OKLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "printbridge_serial_ok_latency_seconds",
			Help:    "Time from writing a line to its ok.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60}}),
		Temperature: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "printbridge_printer_temperature_celsius",
			Help: "Heater temperature as reported by the firmware."}, []string{"heater"}),
		TargetTemp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "printbridge_printer_target_temperature_celsius",
			Help: "Heater target temperature."}, []string{"heater"}),
		Progress: prometheus.NewGauge(prometheus.GaugeOpts{Name: "printbridge_print_progress_ratio",
			Help: "Progress of the selected file, 0 to 1."}),
		State: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "printbridge_printer_state",
			Help: "1 for the current OctoPrint state id, 0 for the others seen."}, []string{"state"}),
		StateChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "printbridge_printer_state_changes_total",
			Help: "Entries of the printer into each OctoPrint state id (PrinterStateChanged events)."}, []string{"state"}),
		Suppressed: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_commands_suppressed_total",
			Help: "G-code lines not sent to the printer because they were blocked, ignored or did not fit the printer profile (CommandSuppressed)."}),
		ScriptErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_gcode_script_errors_total",
			Help: "GCODE scripts not sent because they failed to load or render."}),
		JobRecordErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_job_record_errors_total",
			Help: "Failures to write, read or decode the running print record (DATA-DIR/<printer>.job.json)."}),
		DuplicateEdges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "printbridge_duplicate_edge_messages_total",
			Help: "Presence messages received from another live edge with this printer id, by kind: probe (it was starting) or running."}, []string{"kind"}),
		CommandsStopped: prometheus.NewGauge(prometheus.GaugeOpts{Name: "printbridge_commands_stopped",
			Help: "1 while this edge rejects every command because another running edge with this printer id started first, 0 otherwise."}),
		PresenceInvalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "printbridge_presence_messages_invalid_total",
			Help: "Messages on the printer's presence topic that are not valid presence messages of this printer."}),
		Info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "printbridge_edge_info",
			Help: "1 for the edge's printer id and printbridge version; join it on instance to name the printer in alerts."}, []string{"printer", "version"}),
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(m.EventsPublished, m.EventsDropped, m.PublishErrors, m.QueueDepth, m.Commands, m.CommandResults, m.RepliesDropped,
		m.OutboxDropped, m.OutboxDepth, m.OutboxOldestAge, m.OutboxWriteErrors,
		m.BusEventsPublished, m.BusPublishErrors, m.BusEventsLost, m.BusLastSeq,
		m.LinesSent, m.LinesReceived, m.Resends, m.ChecksumErrors, m.Timeouts, m.Garbage, m.Overlong, m.StrayOKs, m.OKLatency, m.Temperature, m.TargetTemp,
		m.Progress, m.State, m.StateChanges, m.Suppressed, m.ScriptErrors, m.JobRecordErrors,
		m.DuplicateEdges, m.CommandsStopped, m.PresenceInvalid, m.Info)
	// Both kinds are exported from the start, so an alert can compare
	// with 0.
	m.DuplicateEdges.WithLabelValues("probe")
	m.DuplicateEdges.WithLabelValues("running")
	// ERROR and OFFLINE (PrinterStateChanged has no CLOSED_WITH_ERROR) are
	// exported at 0, so an alert on their increase fires on the first one.
	for _, state := range []printer.State{printer.StateError, printer.StateOffline} {
		m.StateChanges.WithLabelValues(string(state))
	}
	m.initLabelValues()
	return m
}

// SetPrinter sets printbridge_edge_info to 1 for printerID and Version.
// It replaces the series of an earlier printer id, so the gauge always has
// one series.
func (m *Metrics) SetPrinter(printerID string) {
	if printerID == m.printerID {
		return
	}
	m.Info.Reset()
	m.Info.WithLabelValues(printerID, Version).Set(1)
	m.printerID = printerID
}

// Label values of the edge's counters, exported at 0 from the start (see
// initLabelValues).
var (
	eventDropReasons  = []string{"queue_full", "encode", "stopped", "not_started"}
	outboxDropReasons = []string{outbox.DropMaxBytes, outbox.DropMaxAge, outbox.DropCorrupt}
	replyDropReasons  = []string{"reply_queue_full", "publish_failed", "encode"}
	commandOutcomes   = []string{"accepted", "rejected", "retained", "expired", "dropped", "empty"}
	commandStatuses   = []string{bridge.ReplyDone, bridge.ReplyFailed, bridge.ReplyRejected}
)

// initLabelValues creates every known series of the labelled counters at
// 0. A series appears in /metrics only once it exists, so without this a
// dashboard panel or an alert on a counter that never rose finds no data
// instead of 0.
// InitBus creates the series of the bus named name (such as "mqtt" or
// "nats") at 0, so that a dashboard shows 0 rather than no data before
// the first publish, error or loss. The edge calls it for each bus once
// it is connected, and a command calls it earlier, when the metrics endpoint
// may be scraped before the broker connection is up.
func (m *Metrics) InitBus(name string) {
	m.BusEventsPublished.WithLabelValues(name)
	m.BusPublishErrors.WithLabelValues(name)
	m.BusEventsLost.WithLabelValues(name)
	m.BusLastSeq.WithLabelValues(name)
}

func (m *Metrics) initLabelValues() {
	// The Error event's series starts at 0, so that increase() in an
	// alert counts the first Error of a run. Without it, that Error would
	// create the series at 1, with no earlier sample to compare with.
	m.EventsPublished.WithLabelValues(bridge.EventError)
	for _, reason := range eventDropReasons {
		m.EventsDropped.WithLabelValues(reason)
	}
	for _, reason := range outboxDropReasons {
		m.OutboxDropped.WithLabelValues(reason)
	}
	for _, reason := range replyDropReasons {
		m.RepliesDropped.WithLabelValues(reason)
	}
	kinds := append(slices.Clone(bridge.CommandKinds), "unknown")
	for _, kind := range kinds {
		for _, outcome := range commandOutcomes {
			m.Commands.WithLabelValues(kind, outcome)
		}
		for _, status := range commandStatuses {
			m.CommandResults.WithLabelValues(kind, status)
		}
	}
}

// PrinterMetrics returns the counters the serial side feeds.
func (m *Metrics) PrinterMetrics() printer.Metrics {
	return printer.Metrics{
		LineSent:     m.LinesSent.Inc,
		LineReceived: m.LinesReceived.Inc,
		Resend:       m.Resends.Inc,
		Timeout:      m.Timeouts.Inc,
		ChecksumErr:  m.ChecksumErrors.Inc,
		OKLatency:    func(d time.Duration) { m.OKLatency.Observe(d.Seconds()) },
		Garbage:      m.Garbage.Inc,
		Overlong:     m.Overlong.Inc,
		StrayOK:      m.StrayOKs.Inc,
		Suppressed:   m.Suppressed.Inc,
		ScriptError:  m.ScriptErrors.Inc,
	}
}

func (m *Metrics) observeSnapshot(s *printer.Snapshot) {
	// A heater missing from the snapshot (all of them once the printer is
	// disconnected) has no reading, so its gauges go rather than keep the
	// last value.
	for heater := range m.heaters {
		if _, ok := s.Temperatures[heater]; !ok {
			m.Temperature.DeleteLabelValues(heater)
			m.TargetTemp.DeleteLabelValues(heater)
			delete(m.heaters, heater)
		}
	}
	for heater, t := range s.Temperatures {
		m.heaters[heater] = true
		m.Temperature.WithLabelValues(heater).Set(t.Actual)
		if t.Target != nil {
			m.TargetTemp.WithLabelValues(heater).Set(*t.Target)
		}
	}
	if s.Job != nil {
		m.Progress.Set(s.Job.Progress / 100)
	} else {
		m.Progress.Set(0)
	}
	if m.lastState != s.State {
		if m.lastState != "" {
			m.State.WithLabelValues(m.lastState).Set(0)
		}
		m.State.WithLabelValues(s.State).Set(1)
		m.lastState = s.State
	}
}
