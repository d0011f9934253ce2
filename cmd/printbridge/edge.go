package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/edge"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
	"github.com/printbridge/printbridge/bridge/outbox"
	"github.com/printbridge/printbridge/printer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func init() {
	register("edge", "connect a serial printer to MQTT and/or NATS", runEdge)
}

// busOptions selects and configures the brokers of a process.
type busOptions struct {
	mqttURL      string
	mqttUser     string
	mqttPassword string
	natsURL      string
	natsUser     string
	natsPassword string
	natsToken    string
	jetStream    bool
	baseTopic    string
	clientID     string
	// clientIDClashAdvice is mqtt.Config.ClientIDClashAdvice.
	clientIDClashAdvice string
	// maxAckPending is the MaxAckPending of the worker's JetStream
	// consumers; 0 leaves the bus default.
	maxAckPending int
	// workerID names a worker without a group on JetStream, which then
	// has a consumer of its own (natsbus.Config.WorkerID).
	workerID string
	// eventPendingMessages and eventPendingBytes are the pending limits
	// of the worker's core NATS event subscriptions, 0 for the nats.go
	// defaults. onEventsDropped counts the events dropped beyond them.
	eventPendingMessages int
	eventPendingBytes    int
	onEventsDropped      func(n int)
	// persistentSession asks the MQTT broker to keep the subscriptions and
	// queue QoS 1 messages while the client is away (needs a fixed id).
	persistentSession bool
	// printer sets the MQTT last will on its availability topic.
	printer string
	// onReconnect, if set, hears that the broker connection of the bus
	// called bus came back after it dropped.
	onReconnect func(bus string)
	// onConnectivity, if set, hears each broker connection come up
	// (true) or drop (false), by bus name (mqtt, nats).
	onConnectivity func(bus string, up bool)
	// onRetry, if set, is called after each failed connection attempt
	// while no broker has taken the connection.
	onRetry func()
	// onAttach, if set, hears of a bus whose broker came up after
	// connectBus returned (see bridge.Pending).
	onAttach func(bridge.Bus)
	// onLateError, if set, hears that such a bus could not make the
	// subscriptions requested before it came up.
	onLateError func(error)
	// secrets are the credential files and TLS flags (secrets.go).
	secrets secretOptions
}

func (o *busOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.mqttURL, "mqtt", "", "MQTT broker URL, such as tcp://127.0.0.1:1883 (ssl:// for TLS)")
	fs.StringVar(&o.mqttUser, "mqtt-username", "", "MQTT username")
	fs.StringVar(&o.mqttPassword, "mqtt-password", "", "MQTT password (prefer PRINTBRIDGE_MQTT_PASSWORD over the command line)")
	fs.StringVar(&o.natsURL, "nats", "", "NATS server URL, such as nats://127.0.0.1:4222")
	fs.StringVar(&o.natsUser, "nats-user", "", "NATS user")
	fs.StringVar(&o.natsPassword, "nats-password", "", "NATS password (prefer PRINTBRIDGE_NATS_PASSWORD)")
	fs.StringVar(&o.natsToken, "nats-token", "", "NATS token (prefer PRINTBRIDGE_NATS_TOKEN)")
	fs.BoolVar(&o.jetStream, "jetstream", false, "store events in a NATS JetStream stream (needs --nats, and the server must have JetStream enabled)")
	fs.StringVar(&o.baseTopic, "base-topic", bridge.DefaultBase, "first level of every MQTT topic and NATS subject")
	o.secrets.register(fs)
}

// connectBus connects to every configured broker, retrying with backoff
// until ctx ends, so an edge that boots before its broker still starts.
// With both --mqtt and --nats it returns as soon as either broker has
// taken the connection. The other is then a bridge.Pending bus that goes
// on connecting in the background, so one broker that is down does not
// hold up the other. onAttach hears when it is up.
func connectBus(ctx context.Context, o busOptions, log *slog.Logger) (bridge.Bus, error) {
	if err := o.checkConfig(); err != nil {
		return nil, err
	}
	if err := o.resolveSecrets(log); err != nil {
		return nil, err
	}
	dials := o.dialers(ctx, log)
	if len(dials) == 1 {
		d := dials[0]
		b, err := retryDial(ctx, d, log, o.onRetry)
		if err != nil {
			return nil, err
		}
		o.busUp(d.name, true)
		return b, nil
	}

	// onRetry means that no broker has taken the connection yet, so it is
	// called only once every bus has failed and none is up.
	var (
		mu       sync.Mutex
		failed   = map[string]bool{}
		up       bool
		returned bool
	)
	onRetry := func(name string) {
		mu.Lock()
		failed[name] = true
		call := !up && len(failed) == len(dials)
		mu.Unlock()
		if call && o.onRetry != nil {
			o.onRetry()
		}
	}
	// connectBus waits for the first attempt of every bus, so that on a
	// normal start both buses are up before it returns, and then for the
	// first bus that is up. Once one is up, it waits at most
	// otherBusWait for the other, so a broker host that drops packets
	// (a connect that times out after 10s) does not hold up the start.
	firstResult := make(chan struct{}, len(dials))
	connected := make(chan struct{}, len(dials))
	pending := make([]bridge.Bus, len(dials))
	for i, d := range dials {
		p := bridge.NewPending(d.name)
		pending[i] = p
		go func() {
			var once sync.Once
			settle := func() { once.Do(func() { firstResult <- struct{}{} }) }
			b, err := retryDial(ctx, d, log, func() {
				onRetry(d.name)
				settle()
			})
			if err != nil {
				return
			}
			if err := p.Attach(b); err != nil {
				if ctx.Err() == nil && !errors.Is(err, bridge.ErrBusClosed) {
					log.Error("subscribing on a broker that came up after the others failed", "bus", d.name, "error", err)
					if o.onLateError != nil {
						o.onLateError(fmt.Errorf("%s connected after the start, but %w", d.name, err))
					}
				}
				return
			}
			mu.Lock()
			up = true
			late := returned
			mu.Unlock()
			o.busUp(d.name, true)
			settle()
			connected <- struct{}{}
			if late {
				log.Info("broker connection up; this bus takes part from now on", "bus", d.name)
				if o.onAttach != nil {
					o.onAttach(p)
				}
			}
		}()
	}
	results, anyUp := 0, false
	var otherTimeout <-chan time.Time
wait:
	for results < len(dials) || !anyUp {
		select {
		case <-firstResult:
			results++
		case <-connected:
			if !anyUp {
				anyUp = true
				otherTimeout = time.After(otherBusWait)
			}
		case <-otherTimeout:
			break wait
		case <-ctx.Done():
			for _, p := range pending {
				_ = p.Close()
			}
			return nil, fmt.Errorf("connect to %s: %w", strings.Join(o.busNames(), " and "), ctx.Err())
		}
	}
	mu.Lock()
	returned = true
	mu.Unlock()
	return bridge.NewMulti(pending...), nil
}

// otherBusWait is how long connectBus waits for the first attempt of
// the other bus once one bus is up.
const otherBusWait = time.Second

// busDialer connects one bus once.
type busDialer struct {
	name string
	dial func() (bridge.Bus, error)
}

// busNames names the configured buses.
func (o busOptions) busNames() []string {
	var names []string
	if o.mqttURL != "" {
		names = append(names, "mqtt")
	}
	if o.natsURL != "" {
		names = append(names, "nats")
	}
	return names
}

// busUp passes a change of a broker connection to onConnectivity.
func (o busOptions) busUp(name string, up bool) {
	if o.onConnectivity != nil {
		o.onConnectivity(name, up)
	}
}

// retryDial runs d until it connects, waiting longer after each failure
// (up to 30s) and calling onRetry after each, until ctx ends.
func retryDial(ctx context.Context, d busDialer, log *slog.Logger, onRetry func()) (bridge.Bus, error) {
	for attempt := 0; ; attempt++ {
		b, err := d.dial()
		if err == nil {
			return b, nil
		}
		if ctx.Err() != nil {
			// The process is stopping: nothing is retried.
			return nil, fmt.Errorf("connect to %s: %w", d.name, err)
		}
		wait := min(time.Duration(1<<min(attempt, 5))*time.Second, 30*time.Second)
		log.Warn("broker connection failed, retrying", "bus", d.name, "error", err, "retry_in", wait)
		if onRetry != nil {
			onRetry()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to %s: %w", d.name, err)
		case <-time.After(wait):
		}
	}
}

// dialers returns a dialer for each configured broker, MQTT first.
func (o busOptions) dialers(ctx context.Context, log *slog.Logger) []busDialer {
	topics := bridge.Topics{Base: o.baseTopic}
	var dials []busDialer
	if o.mqttURL != "" {
		dials = append(dials, busDialer{"mqtt", func() (bridge.Bus, error) {
			var mqttConnected atomic.Bool
			return mqtt.New(ctx, mqtt.Config{
				URL: o.mqttURL, ClientID: o.clientID, Username: o.mqttUser, Password: o.mqttPassword, TLS: o.secrets.mqttTLS(),
				Topics: topics, Printer: o.printer, ConnectTimeout: 10 * time.Second,
				OnConnect: func() {
					o.busUp("mqtt", true)
					// paho calls OnConnect after the first connect
					// too; connectBus and the late-bus path announce
					// that one.
					if mqttConnected.Swap(true) && o.onReconnect != nil {
						o.onReconnect("mqtt")
					}
				},
				OnConnectionLost:    func(error) { o.busUp("mqtt", false) },
				PersistentSession:   o.persistentSession,
				ClientIDClashAdvice: o.clientIDClashAdvice,
			}, log.With("bus", "mqtt"))
		}})
	}
	if o.natsURL != "" {
		dials = append(dials, busDialer{"nats", func() (bridge.Bus, error) {
			return natsbus.New(ctx, natsbus.Config{
				URL: o.natsURL, Name: o.clientID, User: o.natsUser, Password: o.natsPassword, Token: o.natsToken,
				NKeySeedFile: o.secrets.natsNKeyFile, CredsFile: o.secrets.natsCredsFile, TLS: o.secrets.natsTLS(),
				Topics: topics, JetStream: o.jetStream, MaxAckPending: o.maxAckPending, WorkerID: o.workerID,
				EventPendingMessages: o.eventPendingMessages, EventPendingBytes: o.eventPendingBytes,
				OnEventsDropped: o.onEventsDropped,
				OnDisconnect:    func(error) { o.busUp("nats", false) },
				OnReconnect: func() {
					o.busUp("nats", true)
					if o.onReconnect != nil {
						o.onReconnect("nats")
					}
				},
				// A state bucket made again holds none of the edge's
				// keys, so they are published again as after a reconnect.
				OnRestored: func() {
					if o.onReconnect != nil {
						o.onReconnect("nats")
					}
				},
			}, log.With("bus", "nats"))
		}})
	}
	return dials
}

// checkConfig checks the bus options that need no broker to check: that
// a broker is given, that --jetstream comes with --nats, the broker URLs
// and the base topic.
func (o busOptions) checkConfig() error {
	if o.mqttURL == "" && o.natsURL == "" {
		return errors.New("no broker configured: give --mqtt URL, --nats URL or both")
	}
	// JetStream is a NATS feature, so without --nats the flag would
	// otherwise be ignored and the user would believe events are stored.
	if o.jetStream && o.natsURL == "" {
		return errors.New("--jetstream needs a NATS server: give --nats URL as well, or drop --jetstream (and PRINTBRIDGE_JETSTREAM); over MQTT alone there is no JetStream")
	}
	if err := validateBrokerURLs(o); err != nil {
		return err
	}
	if err := (bridge.Topics{Base: o.baseTopic}).Validate(); err != nil {
		return fmt.Errorf("--base-topic: %w", err)
	}
	return nil
}

// edgeOptions are the edge's own settings.
type edgeOptions struct {
	port          string
	baud          int
	printerID     string
	filesDir      string
	dataDir       string
	maxLineLength int
	flow          string
	rxBuffer      int
	importDir     string
	commandPolicy string
	watchInterval time.Duration
	autoConnect   bool
	metricsListen string
	logFormat     string
	logLevel      string
	bus           busOptions
	integrations  integrationOptions
	settings      settingsOptions
	// reparse reads the configuration again for a reload, and flags are
	// the flag values at start; runEdge sets both.
	reparse func() (edgeOptions, map[string]string, error)
	flags   map[string]string

	outboxMaxMiB        int
	outboxMaxAge        time.Duration
	outboxFsync         string
	outboxFsyncInterval time.Duration

	// presenceWait and presenceInterval set the check for another edge
	// of the printer id (edge.PresenceConfig). Options built in code
	// leave presenceWait 0, so they do not wait at start.
	presenceWait     time.Duration
	presenceInterval time.Duration
}

func (o *edgeOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.port, "port", "/dev/ttyACM0", "serial port of the printer, or a virtual printer's --link path")
	fs.IntVar(&o.baud, "baud", 115200, "serial baud rate")
	fs.StringVar(&o.printerID, "printer", "printer1", "printer id used in topics: letters, digits, '-' and '_'")
	fs.StringVar(&o.filesDir, "files", "", "folder of G-code files that job commands name (default DATA-DIR/files)")
	fs.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "folder for the edge's state (event sequence and outbox)")
	fs.IntVar(&o.maxLineLength, "max-line-length", 96, "firmware MAX_CMD_SIZE: longest line in bytes, line number and checksum included")
	checkedStringVar(fs, &o.flow, "flow", printer.FlowAuto, "flow control `mode`: auto (windowed for Marlin), ping-pong (one line in flight) or window", printer.ValidateFlow)
	fs.StringVar(&o.commandPolicy, "command-policy", "", "YAML file with the G-code command policy (docs/security.md); empty uses the defaults, which block M0/M1 and guard a running print")
	fs.StringVar(&o.importDir, "import-dir", "", "folder that command/file may add files \"from\" by path; empty allows only inline data")
	fs.DurationVar(&o.watchInterval, "watch-interval", 2*time.Second, "how often the files directory is scanned for changes made from outside")
	fs.IntVar(&o.rxBuffer, "rx-buffer", 128, "firmware serial RX buffer in bytes; windowed sending never has more unacknowledged bytes in flight")
	fs.BoolVar(&o.autoConnect, "auto-connect", true, "connect at start and reconnect when the port is lost")
	fs.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9464", "address of the Prometheus /metrics endpoint; empty disables it")
	checkedStringVar(fs, &o.logFormat, "log-format", "text", "log `format`: text or json", checkLogFormat)
	checkedStringVar(fs, &o.logLevel, "log-level", "info", "log `level`: debug, info, warn or error", checkLogLevel)
	o.bus.register(fs)
	o.integrations.register(fs)
	o.settings.register(fs)
	fs.IntVar(&o.outboxMaxMiB, "outbox-max-mib", 64, "maximum size of the on-disk event outbox in MiB; when full, the oldest undelivered events are dropped")
	fs.DurationVar(&o.outboxMaxAge, "outbox-max-age", outbox.DefaultMaxAge, "undelivered events older than this are dropped from the outbox; 0 keeps events of any age")
	checkedStringVar(fs, &o.outboxFsync, "outbox-fsync", "batch", "outbox fsync `policy`: batch (fsync appended events every --outbox-fsync-interval) or every (fsync each event)",
		func(v string) error { _, err := outbox.ParseFsyncPolicy(v); return err })
	fs.DurationVar(&o.outboxFsyncInterval, "outbox-fsync-interval", outbox.DefaultFsyncInterval, "fsync interval of --outbox-fsync batch")
	fs.DurationVar(&o.presenceWait, "presence-wait", edge.DefaultPresenceWait, "longest time the edge waits at start for another edge with the same --printer to answer on the presence topic before it takes commands; the wait ends 250ms after the edge's own probe comes back through the broker. 0 does not wait, and a later answer then stops this edge's commands")
	fs.DurationVar(&o.presenceInterval, "presence-interval", edge.DefaultPresenceInterval, "how often a running edge announces itself on the presence topic, so that two edges with one --printer find each other after a network partition")
}

// edgeFlagRanges are the ranges of the edge's numeric flags. Zero is out
// of range where the code behind the flag would take a default for it,
// so that a value given on purpose is never silently replaced.
var edgeFlagRanges = []flagRange{
	atLeast("baud", 1, "give the printer's serial baud rate, such as 115200 or 250000"),
	atLeast("max-line-length", 1, "give the firmware's MAX_CMD_SIZE in bytes, line number and checksum included (96 in Marlin's default configuration)"),
	atLeast("rx-buffer", 1, "give the firmware's serial receive buffer in bytes, such as 128"),
	atLeast("watch-interval", time.Nanosecond.Seconds(), "give a positive duration, such as 2s"),
	atLeast("outbox-max-mib", 1, "give the maximum outbox size in MiB, 1 or more (64 by default)"),
	atLeast("outbox-max-age", 0, "give a positive duration such as 168h, or 0 to keep events of any age"),
	atLeast("outbox-fsync-interval", time.Nanosecond.Seconds(), "give a positive duration such as 100ms, or set --outbox-fsync every to fsync each event"),
	atLeast("presence-wait", 0, "give a duration such as 2s, or 0 to start without waiting for answers"),
	atLeast("presence-interval", time.Nanosecond.Seconds(), "give a positive duration such as 30s"),
}

// outboxOptions converts the outbox flags; zero values take the defaults,
// except a zero max age, which keeps events of any age.
func (o *edgeOptions) outboxOptions() (outbox.Options, error) {
	policy, err := outbox.ParseFsyncPolicy(o.outboxFsync)
	if err != nil {
		return outbox.Options{}, fmt.Errorf("invalid --outbox-fsync: %w", err)
	}
	if o.outboxMaxMiB < 0 {
		return outbox.Options{}, fmt.Errorf("invalid --outbox-max-mib %d: give 1 or more", o.outboxMaxMiB)
	}
	if o.outboxMaxAge < 0 {
		return outbox.Options{}, fmt.Errorf("invalid --outbox-max-age %s: give a positive duration such as 168h, or 0 to keep events of any age", o.outboxMaxAge)
	}
	if o.outboxFsyncInterval < 0 {
		return outbox.Options{}, fmt.Errorf("invalid --outbox-fsync-interval %s: give a positive duration such as 100ms", o.outboxFsyncInterval)
	}
	opts := outbox.Options{MaxBytes: int64(o.outboxMaxMiB) << 20, MaxAge: o.outboxMaxAge, Fsync: policy, FsyncInterval: o.outboxFsyncInterval}
	if opts.MaxAge == 0 {
		opts.MaxAge = -1
	}
	return opts, nil
}

func defaultDataDir() string {
	if dir, err := os.UserConfigDir(); err == nil {
		return filepath.Join(dir, "printbridge")
	}
	return "printbridge-data"
}

func runEdge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	dropStartupPages(slog.New(slog.DiscardHandler))
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.Usage = func() { printCommandUsage(fs) }
	var o edgeOptions
	o.register(fs)
	if err := parseFlags(fs, args, stderr, true); err != nil {
		return err
	}
	if err := checkFlagRanges(fs, edgeFlagRanges); err != nil {
		return err
	}
	log, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	o.flags = flagValues(fs)
	o.reparse = reparseEdgeFlags(args)
	return runEdgeWith(ctx, o, log, nil)
}

// runEdgeWith runs an edge until ctx ends. onEnvelope, if set, sees every
// envelope (the demo uses it).
func runEdgeWith(ctx context.Context, o edgeOptions, log *slog.Logger, onEnvelope func(*bridge.Envelope)) error {
	if err := bridge.ValidatePrinterID(o.printerID); err != nil {
		return err
	}
	if err := printer.ValidateFlow(o.flow); err != nil {
		return fmt.Errorf("--flow: %w", err)
	}
	log = log.With("component", "edge")
	// paho's loggers are package-wide, and the first MQTT client to start
	// would set them to its own logger. Here that is the presence
	// connection, whose attribute would then mark every paho message.
	mqtt.RouteLibraryLogs(log.With("bus", "mqtt"))
	// Everything that can be checked without a broker is checked before
	// the data folder is made and the outbox opened. The outbox would
	// otherwise store Startup and Shutdown of a run that never started,
	// and the next good start would publish them.
	if err := o.bus.checkConfig(); err != nil {
		return err
	}
	// connectBus runs in the background, where an error would go unseen.
	if err := o.bus.resolveSecrets(log); err != nil {
		return err
	}
	outboxOpts, err := o.outboxOptions()
	if err != nil {
		return err
	}
	pol, err := commandPolicy(o)
	if err != nil {
		return err
	}
	if err := checkIntegrations(o, log); err != nil {
		return err
	}
	// The lock comes before anything opens the outbox, seq file or job
	// record and before the broker and serial connections, so a second
	// edge of the same printer and data folder changes nothing of the
	// running one's. Without a data folder the state is in memory only.
	if o.dataDir != "" {
		stateLock, err := edge.LockDataDir(o.dataDir, o.printerID)
		if err != nil {
			log.Error("locking the printer's state in the data folder failed; the edge does not start", "printer", o.printerID,
				"path", edge.LockPath(o.dataDir, o.printerID), "error", err)
			return err
		}
		defer stateLock.Close()
	}
	if o.filesDir == "" {
		o.filesDir = filepath.Join(o.dataDir, "files")
	}
	if err := os.MkdirAll(o.filesDir, 0o750); err != nil {
		return fmt.Errorf("create files directory: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := edge.NewMetrics(reg)
	metrics.SetPrinter(o.printerID)
	if o.bus.mqttURL != "" {
		metrics.InitBus("mqtt")
	}
	if o.bus.natsURL != "" {
		metrics.InitBus("nats")
	}
	presence, err := newPresence(o, log, metrics)
	if err != nil {
		return err
	}
	metricsReady := make(chan struct{})
	stopMetrics, err := serveMetrics(o.metricsListen, reg, log, metricsReady)
	if err != nil {
		return err
	}
	defer stopMetrics()
	// A start that fails before all series exist lets waiting scrapes
	// through, so they do not hold up the endpoint's shutdown.
	markMetricsReady := sync.OnceFunc(func() { close(metricsReady) })
	defer markMetricsReady()

	var (
		edgeMu sync.Mutex
		e      *edge.Edge
	)
	o.bus.printer = o.printerID
	if o.bus.clientID == "" {
		o.bus.clientID = "printbridge-edge-" + o.printerID
	}
	// The edge has no client id flag, because its id is derived from
	// --printer. The presence check stops most second edges before they
	// connect, but not one that connected while the two were cut off
	// from each other.
	o.bus.clientIDClashAdvice = fmt.Sprintf("such as a second edge with --printer %s, whose client id is derived from it: stop the other edge, or give this printer its own --printer id (docs/integrations.md, \"Two edges with one printer id\")", o.printerID)
	o.bus.onReconnect = func(bus string) {
		edgeMu.Lock()
		cur := e
		edgeMu.Unlock()
		if cur != nil {
			go cur.BusReconnected(bus)
		}
	}
	o.bus.onAttach = func(b bridge.Bus) {
		edgeMu.Lock()
		cur := e
		edgeMu.Unlock()
		if cur != nil {
			cur.BusAttached(b)
		}
	}
	log.Info("edge starting", "printer", o.printerID, "port", o.port, "baud", o.baud, "files", o.filesDir)
	settings, err := printerSettings(o, log)
	if err != nil {
		return err
	}
	if o.settings.scriptsDir == "" {
		if err := os.MkdirAll(settings.ScriptsDir, 0o750); err != nil {
			return fmt.Errorf("create GCODE scripts folder: %w", err)
		}
	}
	conn := newConnectivity(o.bus)
	o.bus.onConnectivity = conn.set
	var p *printer.Printer
	files, err := newFileStorage(o, log, func() *edge.Edge { edgeMu.Lock(); defer edgeMu.Unlock(); return e }, func() *printer.Printer { return p })
	if err != nil {
		return err
	}
	newEdge, err := edge.New(edge.Config{PrinterID: o.printerID, Topics: bridge.Topics{Base: o.bus.baseTopic},
		ProtectedTopics: o.integrations.protectedTopics(), DataDir: o.dataDir, Outbox: outboxOpts, OnEnvelope: onEnvelope,
		Files: files, ImportDir: o.importDir, Policy: pol, Presence: presence, WaitForStart: true},
		nil, log, metrics)
	if err != nil {
		return err
	}
	edgeMu.Lock()
	e = newEdge
	edgeMu.Unlock()
	conn.setEmitter(e.Emit)
	// The broker connection comes up in the background. The run starts
	// (Startup) and then the printer once the presence check has let the
	// edge run, or at once when the first connection attempt fails, and
	// its events wait in the outbox until a broker accepts the connection.
	// The presence check comes before the edge's own connection. So an
	// edge that another edge of the printer id keeps from starting has
	// published nothing and subscribed to no command. Unless the broker
	// was down, it has not opened the serial port either, and it leaves
	// no event in the outbox and takes no seq.
	connectCtx, cancelConnect := context.WithCancel(ctx)
	busDone := make(chan bridge.Bus, 1)
	presenceBusDone := make(chan bridge.Bus, 1)
	busFailed := make(chan error, 1)
	// A bus that connects after the start and cannot subscribe to the
	// commands stops the edge, as it would have at the start.
	o.bus.onLateError = func(err error) {
		select {
		case busFailed <- err:
		default:
		}
	}
	printerMayStart := make(chan struct{})
	allowPrinter := sync.OnceFunc(func() {
		e.Start()
		close(printerMayStart)
	})
	go func() {
		fail := func(err error) {
			// connectBus retries connection failures until ctx ends, so
			// an error before that is a configuration error or the
			// presence check's verdict.
			if connectCtx.Err() == nil {
				busFailed <- err
			}
			busDone <- nil
		}
		presenceOpts := presenceBusOptions(o.bus, presence)
		presenceOpts.onRetry = allowPrinter
		presenceBus, err := connectBus(connectCtx, presenceOpts, log.With("connection", "presence"))
		presenceBusDone <- presenceBus
		if err != nil {
			fail(err)
			return
		}
		if err := presence.Start(connectCtx, presenceBus.(bridge.PresenceBus)); err != nil {
			fail(err)
			return
		}
		allowPrinter()
		bus, err := connectBus(connectCtx, o.bus, log)
		if err != nil {
			fail(err)
			return
		}
		e.SetBus(bus)
		busDone <- bus
	}()
	defer func() {
		cancelConnect()
		if bus := <-busDone; bus != nil {
			_ = bus.Close()
		}
		presence.Close()
		if bus := <-presenceBusDone; bus != nil {
			_ = bus.Close()
		}
	}()
	p = printer.New(printer.Config{
		Port: o.port, Baud: o.baud, FilesDir: o.filesDir, MaxLineLength: o.maxLineLength, AutoConnect: o.autoConnect,
		Flow: o.flow, RXBufferSize: o.rxBuffer, Settings: settings,
	}, log.With("printer", o.printerID, "port", o.port), printStatistics(e.Emit, files, log), metrics.PrinterMetrics())
	e.Attach(p)
	stopIntegrations, err := startIntegrations(o, e, metrics, log)
	if err != nil {
		return err
	}
	defer stopIntegrations()
	reloader := newSettingsReloader(o, settings, p, e, reg, log)
	markMetricsReady()
	reloadCtx, stopReload := context.WithCancel(context.Background())
	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		reloader.run(reloadCtx)
	}()
	storageCtx, stopStorage := context.WithCancel(context.Background())
	storageDone := make(chan error, 1)
	go func() { storageDone <- files.Run(storageCtx) }()

	printerCtx, stopPrinter := context.WithCancel(context.Background())
	printerDone := make(chan error, 1)
	go func() {
		select {
		case <-printerMayStart:
		case <-printerCtx.Done():
			printerDone <- nil
			return
		}
		printerDone <- p.Run(printerCtx)
	}()

	edgeCtx, stopEdge := context.WithCancel(context.Background())
	edgeDone := make(chan error, 1)
	go func() { edgeDone <- e.Run(edgeCtx) }()

	dropStartupPages(log)
	var (
		busErr   error
		edgeErr  error
		edgeDead bool
	)
	select {
	case <-ctx.Done():
	case edgeErr = <-e.Failed():
		// The edge goes on publishing events but takes no commands. The
		// process exits with an error, so that a service manager such as
		// systemd (Restart=on-failure) starts it again.
		log.Error("the edge takes no commands; stopping it", "printer", o.printerID, "error", edgeErr)
	case edgeErr = <-edgeDone:
		// Run returns before its ctx ends only on an error. An edge that
		// publishes nothing must not keep the process running.
		edgeDead = true
		if edgeErr == nil {
			edgeErr = errors.New("edge run returned early without an error, which is a printbridge bug: report it with this log")
		}
		log.Error("the edge stopped running; stopping the process", "printer", o.printerID, "error", edgeErr)
	case busErr = <-busFailed:
		var duplicate *edge.DuplicateEdgeError
		if errors.As(busErr, &duplicate) {
			log.Error("another edge of this printer id takes the printer, so this edge stops without taking commands",
				"instance", duplicate.Self.ID, "other_instance", duplicate.Other.ID, "other_host", duplicate.Other.Host,
				"other_pid", duplicate.Other.PID, "other_data_dir", duplicate.Other.DataDir, "other_running", duplicate.OtherRunning)
		} else {
			log.Error("broker setup failed; stopping the edge", "error", busErr)
		}
	}
	log.Info("edge stopping", "printer", o.printerID)
	// The reloader stops before the printer, so no reload waits on a
	// printer that no longer takes requests.
	stopReload()
	<-reloadDone
	// The printer stops first so its last events (Disconnected) are
	// queued before the edge publishes Shutdown.
	stopPrinter()
	perr := <-printerDone
	stopStorage()
	if err := <-storageDone; err != nil {
		log.Warn("file storage stopped with an error", "error", err)
	}
	// Shutdown is the last event of a run, and closing the broker
	// connections is no connectivity change (OctoPrint fires no
	// ConnectivityChanged at shutdown either). So from here on they are
	// only tracked, and a NATS close fires nothing into the stopped edge.
	conn.setEmitter(nil)
	stopEdge()
	if !edgeDead {
		// After a Failed error, Run returns that error again.
		edgeErr = <-edgeDone
	}
	log.Info("edge stopped", "printer", o.printerID)
	return errors.Join(busErr, perr, edgeErr)
}

// metricsStartWait bounds how long a scrape waits for the start, below
// Prometheus's default scrape timeout of 10s.
const metricsStartWait = 5 * time.Second

// serveMetrics starts the Prometheus endpoint; the returned func stops it.
// A scrape waits until ready is closed (nil does not wait), so that the
// first scrape finds every series that the process creates at 0 during
// its start, and a port that is taken still fails the start early.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger, ready <-chan struct{}) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %s: %w (set --metrics-listen to a free address, or empty to disable)", addr, err)
	}
	mux := http.NewServeMux()
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			select {
			case <-ready:
			case <-r.Context().Done():
				return
			case <-time.After(metricsStartWait):
				http.Error(w, "printbridge is still starting; scrape again", http.StatusServiceUnavailable)
				return
			}
		}
		handler.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "error", err)
		}
	}()
	log.Info("metrics endpoint listening", "address", ln.Addr().String())
	warnIfNotLoopback(log, "metrics", ln.Addr())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
