package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/natsbus"
	"github.com/printbridge/printbridge/hooks"
)

func init() {
	register("worker", "run the event hooks of an OctoPrint config.yaml for events from MQTT and/or NATS", runWorker)
}

// listFlag collects a repeatable flag whose values may also be
// comma-separated lists.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, hooks.SplitList(v)...)
	return nil
}

// optionalString is a string flag that records whether it was given, so
// that an empty value can mean "disabled" instead of "not given".
type optionalString struct {
	value string
	set   bool
}

func (s *optionalString) String() string { return s.value }

func (s *optionalString) Set(v string) error {
	s.value, s.set = v, true
	return nil
}

// boundedInt is an integer flag that rejects values outside [min, max]
// when it is set, so a bad value from the command line or from a
// PRINTBRIDGE_ variable is reported with the flag or variable that gave
// it. It records whether it was given, so that a flag without a default
// of its own can leave the config file's setting in place. max 0 means
// no upper bound.
type boundedInt struct {
	value    int
	min, max int
	set      bool
}

func (b *boundedInt) String() string {
	if b == nil {
		return "0"
	}
	return strconv.Itoa(b.value)
}

func (b *boundedInt) Set(v string) error {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return errors.New("want a whole number")
	}
	if n < b.min || (b.max > 0 && n > b.max) {
		if b.max > 0 {
			return fmt.Errorf("give %d to %d", b.min, b.max)
		}
		return fmt.Errorf("give %d or more", b.min)
	}
	b.value, b.set = n, true
	return nil
}

// boundedDuration is a duration flag that rejects negative values, and
// zero unless zeroAllowed, when it is set. Like boundedInt it records
// whether it was given.
type boundedDuration struct {
	value       time.Duration
	zeroAllowed bool
	set         bool
}

func (b *boundedDuration) String() string {
	if b == nil || (!b.set && b.value == 0) {
		return ""
	}
	return b.value.String()
}

func (b *boundedDuration) Set(v string) error {
	v = strings.TrimSpace(v)
	d, err := time.ParseDuration(v)
	if seconds, perr := strconv.ParseFloat(v, 64); err != nil && perr == nil && !math.IsInf(seconds, 0) && math.Abs(seconds) < 1e9 {
		// A bare number is seconds, as in the config file's printbridge:
		// section, so `--hook-timeout 30` means what `hook_timeout: 30`
		// means.
		d, err = time.Duration(seconds*float64(time.Second)), nil
	}
	switch {
	case b.zeroAllowed && (err != nil || d < 0):
		return errors.New("give a duration such as 90s, or 0 for none")
	case !b.zeroAllowed && (err != nil || d <= 0):
		return errors.New("give a positive duration such as 24h")
	}
	b.value, b.set = d, true
	return nil
}

// workerOptions are the worker's flags. Empty values leave the setting of
// the config file's printbridge: section in place.
type workerOptions struct {
	config             string
	configFromEnv      bool // config came from PRINTBRIDGE_CONFIG, so its errors name the variable
	printers           listFlag
	group              string
	hookTimeout        boundedDuration
	gcodeMaxAge        boundedDuration
	maxConcurrentHooks boundedInt
	maxInFlight        boundedInt
	natsMaxPending     boundedInt
	metricsListen      optionalString
	logFormat          string
	logLevel           string
	dataDir            string
	mqttClientID       string
	mqttPersistent     bool
	seenStore          string
	seenBucket         string
	seenTTL            boundedDuration
	bus                busOptions
}

// defaultMaxInFlight is the default of --max-in-flight. It lets a few
// printers' hooks run at once while a slow hook holds events, and keeps
// the number of events that a killed worker leaves to redeliver small.
const defaultMaxInFlight = 32

// defaultNATSMaxPending is the default of --nats-max-pending: one
// printer's hook queue. The queue drops what the worker cannot run
// anyway, and nats.go's own default of 512Ki events let an unpaced
// burst grow the worker by tens of MB. Four queues' worth raised the
// peak of a 100,000-event burst by up to 3 MiB over one queue's worth,
// and ran fewer hooks, because the larger list kept the GC busy
// (docs/benchmarks.md).
const defaultNATSMaxPending = hooks.DefaultQueueSize

// natsMaxPendingBytes bounds the same list in bytes, for events with
// large payloads. An envelope of a layer change is about 250 bytes.
const natsMaxPendingBytes = 8 << 20

// Values of --seen-store.
const (
	seenStoreAuto = "auto"
	seenStoreFile = "file"
	seenStoreKV   = "kv"
)

func (o *workerOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.config, "config", "", "OctoPrint config.yaml whose events: hooks to run (required; or PRINTBRIDGE_CONFIG); its printbridge: section holds the worker's settings, and SIGHUP reloads it")
	fs.Var(&o.printers, "printer", "printer id to serve, repeatable or comma-separated (default: the config's printbridge.printers, else all printers)")
	fs.StringVar(&o.group, "group", "", "name under which workers share the events: NATS queue group, MQTT shared subscription, or JetStream consumer name; with the same --printer list on every worker and --max-in-flight 1, JetStream keeps each printer's order across workers (docs/delivery.md) (default: printbridge.group, else none)")
	o.hookTimeout = boundedDuration{zeroAllowed: true}
	fs.Var(&o.hookTimeout, "hook-timeout", "maximum run time (a `duration`) of one hook, such as 90s; 0 for none (default: printbridge.hook_timeout, else 60s)")
	o.gcodeMaxAge = boundedDuration{zeroAllowed: true}
	fs.Var(&o.gcodeMaxAge, "gcode-max-age", "G-code hooks of an event are not sent once a newer event of its printer is this `duration` newer, such as after a broker delivered a backlog; 0 sends them always (default: printbridge.gcode_max_age, else 2m)")
	o.maxConcurrentHooks = boundedInt{min: 1}
	o.maxInFlight = boundedInt{value: defaultMaxInFlight, min: 1, max: hooks.DefaultQueueSize}
	o.natsMaxPending = boundedInt{value: defaultNATSMaxPending, min: 1}
	fs.Var(&o.maxConcurrentHooks, "max-concurrent-hooks", "`number` of system hooks running at once, 1 or more (default: printbridge.max_concurrent_hooks, else 4)")
	fs.Var(&o.maxInFlight, "max-in-flight", "`number` of events handed to the worker before their hooks have ended and they are acknowledged: the MaxAckPending of a JetStream consumer (one per printer with --printer, else one for all printers), shared by the workers of a group; 1 keeps each printer's order across workers and after a worker is killed (docs/delivery.md). On MQTT the broker's max_inflight_messages sets this limit")
	fs.Var(&o.natsMaxPending, "nats-max-pending", "`number` of events the NATS client holds for the worker while it falls behind, without --jetstream (and at most 8 MiB of them); beyond that the client drops events, which are counted in printbridge_worker_events_dropped_by_client_total and logged, and core NATS does not deliver them again")
	fs.Var(&o.metricsListen, "metrics-listen", "`address` of the Prometheus /metrics endpoint, host:port; empty disables it (default: printbridge.metrics_listen, else "+hooks.DefaultMetricsListen+")")
	fs.StringVar(&o.logFormat, "log-format", "", "log format, text or json (default: printbridge.log_format, else text)")
	fs.StringVar(&o.logLevel, "log-level", "", "log level: debug, info, warn or error (default: printbridge.log_level, else info)")
	fs.StringVar(&o.mqttClientID, "mqtt-client-id", "", "MQTT client id (default: one per process; with --mqtt-persistent-session, printbridge-worker-HOST-GROUP). The replies to G-code hooks come on a second connection whose id has -replies appended")
	fs.BoolVar(&o.mqttPersistent, "mqtt-persistent-session", false, "keep the MQTT session across restarts, so the broker queues events while the worker is away (docs/delivery.md); every worker needs its own --mqtt-client-id")
	fs.StringVar(&o.dataDir, "data-dir", filepath.Join(defaultDataDir(), "worker"), "folder for the worker's state: the recent event ids and the markers of started hooks, so a redelivery after a restart runs no hook twice; empty keeps the ids in memory only")
	fs.StringVar(&o.seenStore, "seen-store", seenStoreAuto, "where the worker keeps the ids of handled events: kv (a JetStream key-value bucket that workers share, so two workers never both run an event's hooks; needs --nats and --jetstream), file (the --data-dir of this worker), or auto (kv with --jetstream, else file)")
	fs.StringVar(&o.seenBucket, "seen-bucket", hooks.DefaultSeenBucket, "JetStream key-value `bucket` of --seen-store kv; workers that share it run each event's hooks once between them. Created at start when missing")
	o.seenTTL = boundedDuration{value: hooks.DefaultSeenTTL}
	fs.Var(&o.seenTTL, "seen-ttl", "how long (a `duration`) the --seen-store kv bucket keeps an event id after its last write, such as 24h; applies only when the worker creates the bucket")
	o.bus.register(fs)
	// An empty base topic means "not given", so the config file's
	// printbridge.base_topic can apply.
	if f := fs.Lookup("base-topic"); f != nil {
		_ = f.Value.Set("")
		f.DefValue = ""
		f.Usage += " (default: printbridge.base_topic, else printbridge)"
	}
}

// apply overrides the file's settings with the flags that were given.
func (o *workerOptions) apply(s *hooks.Settings) error {
	if o.bus.mqttURL != "" {
		s.MQTT = o.bus.mqttURL
	}
	if o.bus.natsURL != "" {
		s.NATS = o.bus.natsURL
	}
	if o.bus.baseTopic != "" {
		s.BaseTopic = o.bus.baseTopic
	}
	if len(o.printers) > 0 {
		for _, id := range o.printers {
			if err := bridge.ValidatePrinterID(id); err != nil {
				return fmt.Errorf("invalid --printer: %w", err)
			}
		}
		s.Printers = o.printers
	}
	if o.group != "" {
		s.Group = o.group
	}
	if o.hookTimeout.set {
		s.HookTimeout = o.hookTimeout.value
	}
	if o.gcodeMaxAge.set {
		s.GcodeMaxAge = o.gcodeMaxAge.value
	}
	if o.maxConcurrentHooks.set {
		s.MaxConcurrentHooks = o.maxConcurrentHooks.value
	}
	if o.metricsListen.set {
		s.MetricsListen = o.metricsListen.value
	}
	if o.logFormat != "" {
		s.LogFormat = o.logFormat
	}
	if o.logLevel != "" {
		s.LogLevel = o.logLevel
	}
	return nil
}

// overridingFlag returns the flag that replaces the printbridge: setting
// key, or "" when none was given.
func (o *workerOptions) overridingFlag(key string) string {
	flagGiven := map[string]bool{
		"printbridge.mqtt":                 o.bus.mqttURL != "",
		"printbridge.nats":                 o.bus.natsURL != "",
		"printbridge.base_topic":           o.bus.baseTopic != "",
		"printbridge.printers":             len(o.printers) > 0,
		"printbridge.group":                o.group != "",
		"printbridge.hook_timeout":         o.hookTimeout.set,
		"printbridge.max_concurrent_hooks": o.maxConcurrentHooks.set,
		"printbridge.metrics_listen":       o.metricsListen.set,
		"printbridge.log_format":           o.logFormat != "",
		"printbridge.log_level":            o.logLevel != "",
	}
	if !flagGiven[key] {
		return ""
	}
	return strings.ReplaceAll(strings.TrimPrefix(key, "printbridge."), "_", "-")
}

// load reads the config file and applies the flags. An error in a
// printbridge: setting that a flag replaces becomes a warning, because
// the worker does not use the file's value.
func (o *workerOptions) load() (*hooks.Config, []hooks.Problem, error) {
	cfg, problems, err := hooks.LoadConfig(o.config)
	if err != nil {
		if o.configFromEnv {
			err = fmt.Errorf("PRINTBRIDGE_CONFIG: %w", err)
		}
		return nil, nil, err
	}
	if err := o.apply(&cfg.Settings); err != nil {
		return nil, nil, err
	}
	for i := range problems {
		p := &problems[i]
		if p.Severity != hooks.SeverityError {
			continue
		}
		if name := o.overridingFlag(p.Key); name != "" {
			p.Severity = hooks.SeverityWarning
			p.Message += fmt.Sprintf("; --%s replaces it", name)
		}
	}
	cfg.Errors = hooks.CountErrors(problems)
	return cfg, problems, nil
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	dropStartupPages(slog.New(slog.DiscardHandler))
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.Usage = func() { printCommandUsage(fs) }
	var o workerOptions
	o.register(fs)
	// false: --config is the OctoPrint file, not a file of flag values.
	if err := parseFlags(fs, args, stderr, false); err != nil {
		return err
	}
	if o.config == "" {
		o.config = os.Getenv("PRINTBRIDGE_CONFIG")
		o.configFromEnv = o.config != ""
	}
	if o.config == "" {
		fmt.Fprintln(stderr, "missing --config: give the OctoPrint config.yaml whose events: hooks the worker runs")
		fs.Usage()
		return errUsage
	}
	// SIGHUP is caught from here on, because its default action would
	// end the process during the broker connection.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, problems, err := o.load()
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	log, err := newWorkerLogger(stderr, cfg.Settings.LogFormat, cfg.Settings.LogLevel, level)
	if err != nil {
		return err
	}
	warnIfRoot(log, os.Geteuid())
	hooks.LogProblems(ctx, log, problems)
	if n := settingsErrors(problems); n > 0 {
		return fmt.Errorf("config %s: %s in the printbridge: section (logged above); fix them, or give a flag in place of an invalid value (an unknown or misspelled key has no flag that replaces it)", o.config, count(n, "error"))
	}

	if cfg.Settings.MQTT == "" && cfg.Settings.NATS == "" {
		return fmt.Errorf("no broker configured: give --mqtt URL or --nats URL, or set printbridge.mqtt or printbridge.nats in %s", o.config)
	}
	busOpts := o.bus
	busOpts.mqttURL, busOpts.natsURL, busOpts.baseTopic = cfg.Settings.MQTT, cfg.Settings.NATS, cfg.Settings.BaseTopic
	busOpts.clientID = workerClientID()
	busOpts.clientIDClashAdvice = "such as a second worker with the same --mqtt-client-id, or with --mqtt-persistent-session on the same host and group: give each worker its own --mqtt-client-id"
	busOpts.maxAckPending = o.maxInFlight.value
	busOpts.eventPendingMessages, busOpts.eventPendingBytes = o.natsMaxPending.value, natsMaxPendingBytes
	if o.mqttClientID != "" || o.mqttPersistent {
		// A persistent session is only found again under the same id, so
		// it needs an id that survives a restart.
		busOpts.clientID = o.mqttClientID
		if busOpts.clientID == "" {
			busOpts.clientID = stableWorkerClientID(o.group)
		}
		busOpts.persistentSession = o.mqttPersistent
	}
	if busOpts.persistentSession && busOpts.mqttURL != "" && cfg.Settings.Group != "" {
		// Mosquitto keeps an absent member's session in the group and
		// goes on queueing its share of the events there.
		log.Info("MQTT shared subscription with a persistent session: while this worker is down, the broker keeps its share of the group's events for it; restart it under the same --mqtt-client-id, or leave out --mqtt-persistent-session so the other members take over",
			"group", cfg.Settings.Group, "client_id", busOpts.clientID)
	}
	// Checked before the metrics endpoint and the seen-events lock, so a
	// bad broker setting leaves no port open and nothing in --data-dir.
	if err := busOpts.checkConfig(); err != nil {
		return err
	}
	store, err := o.resolveSeenStore(busOpts.natsURL != "" && busOpts.jetStream)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := hooks.NewMetrics(reg)
	stopMetrics, err := serveMetrics(cfg.Settings.MetricsListen, reg, log, nil)
	if err != nil {
		return err
	}
	defer stopMetrics()
	busOpts.onEventsDropped = metrics.AddClientDropped

	if cfg.Settings.Group == "" && busOpts.natsURL != "" && busOpts.jetStream {
		// Without a group every worker runs every event, so on JetStream
		// each one needs a consumer and a seen-events scope of its own.
		busOpts.workerID, err = stableWorkerID(o.dataDir)
		if err != nil {
			return err
		}
	}
	var seenLock *hooks.SeenFileLock
	if store == seenStoreFile && o.dataDir != "" {
		// Taken before the broker connection, so a second worker with the
		// same --data-dir stops at once instead of after connecting.
		seenLock, err = hooks.LockSeenFile(filepath.Join(o.dataDir, "seen-events"))
		if err != nil {
			return err
		}
		defer seenLock.Close()
	}
	// After a NATS reconnect, and after the bus made the stream again,
	// the seen-events bucket is checked too, so the first claims after a
	// server that lost its store do not wait for a claim to fail.
	var seenRestore atomic.Pointer[func(context.Context) error]
	busOpts.onReconnect = func(bus string) {
		restore := seenRestore.Load()
		if bus != "nats" || restore == nil {
			return
		}
		go func() {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := (*restore)(rctx); err != nil {
				log.Warn("checking the seen-events bucket after a reconnect failed; the next failed claim tries again", "bucket", o.seenBucket, "error", err)
			}
		}()
	}
	bus, natsBus, err := connectWorkerBus(ctx, busOpts, store == seenStoreKV, log)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	defer func() {
		if err := bus.Close(); err != nil {
			log.Warn("closing the broker connection failed", "error", err)
		}
	}()

	workerOpts := []hooks.Option{hooks.WithMetrics(metrics), hooks.WithLogLevel(level)}
	switch {
	case store == seenStoreKV:
		kv, restore, err := openSeenBucket(ctx, natsBus, o.seenBucket, o.seenTTL.value, log)
		if err != nil {
			return err
		}
		workerOpts = append(workerOpts, hooks.WithSeenBucket(kv), hooks.WithSeenBucketRestore(restore))
		seenRestore.Store(&restore)
		if group := cfg.Settings.Group; group != "" {
			workerOpts = append(workerOpts, hooks.WithSeenGroup(group))
		} else {
			workerOpts = append(workerOpts, hooks.WithSeenWorker(busOpts.workerID))
		}
		if o.dataDir != "" {
			// The gate markers tell a worker restarted on this host
			// whether a hook recorded in the bucket as started ran.
			workerOpts = append(workerOpts, hooks.WithHookMarkerDir(filepath.Join(o.dataDir, "hook-starts")))
		}
		log.Info("keeping handled event ids in a JetStream key-value bucket", "seen_store", store, "bucket", o.seenBucket,
			"group", cfg.Settings.Group, "worker_id", busOpts.workerID)
	case seenLock != nil:
		workerOpts = append(workerOpts, hooks.WithSeenFileLock(seenLock))
		log.Info("keeping handled event ids in a file", "seen_store", store, "path", filepath.Join(o.dataDir, "seen-events"))
	default:
		log.Info("keeping handled event ids in memory only, because --data-dir is empty", "seen_store", store)
	}
	if group := cfg.Settings.Group; group != "" {
		order := groupOrder(busOpts.mqttURL != "", busOpts.natsURL != "" && busOpts.jetStream,
			len(cfg.Settings.Printers) > 0, o.maxInFlight.value)
		log.Info("sharing events with the other workers of the group", "group", group, "order_across_workers", order)
	}
	w := hooks.NewWorker(cfg, bus, log, workerOpts...)
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-hup:
				reloadWorker(runCtx, &o, w, log)
			}
		}
	}()
	dropStartupPages(log)
	err = w.Run(runCtx)
	stop()
	wg.Wait()
	return err
}

// groupOrder describes the order that the workers of a group keep
// between the events of one printer (docs/delivery.md), so that the start
// log shows when a farm runs without it.
func groupOrder(mqtt, jetStream, printerList bool, maxInFlight int) string {
	switch {
	case mqtt || !jetStream:
		// $share subscriptions and NATS queue groups hand consecutive
		// events to any member.
		return "none: partition the printers between workers with --printer to keep order"
	case maxInFlight > 1:
		return "none: give every worker --max-in-flight 1 to keep each printer's order"
	case !printerList:
		return "kept, but one event at a time for all printers: give every worker the same --printer list to run printers in parallel"
	default:
		return "kept per printer"
	}
}

// resolveSeenStore checks --seen-store against the brokers and returns
// seenStoreKV or seenStoreFile. jetStream is whether the worker consumes
// from NATS with JetStream.
func (o *workerOptions) resolveSeenStore(jetStream bool) (string, error) {
	switch o.seenStore {
	case seenStoreAuto:
		if jetStream {
			return seenStoreKV, nil
		}
		return seenStoreFile, nil
	case seenStoreKV:
		if !jetStream {
			return "", errors.New("--seen-store kv needs NATS with JetStream: give --nats URL and --jetstream, or use --seen-store file")
		}
		return seenStoreKV, nil
	case seenStoreFile:
		if o.dataDir == "" {
			return "", errors.New("--seen-store file needs a --data-dir to keep the file in")
		}
		return seenStoreFile, nil
	default:
		return "", fmt.Errorf("invalid --seen-store %q: use auto, file or kv", o.seenStore)
	}
}

// connectWorkerBus connects like connectBus and returns the NATS bus for
// the seen-events bucket as well, nil without --nats. With needNATS it
// waits for the NATS connection even when MQTT came up first, because
// the bucket lives on it.
func connectWorkerBus(ctx context.Context, o busOptions, needNATS bool, log *slog.Logger) (bus bridge.Bus, natsBus *natsbus.Bus, err error) {
	bus, err = connectBus(ctx, o, log)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range bridge.Buses(bus) {
		if p, ok := b.(*bridge.Pending); ok {
			if !needNATS || p.Name() != "nats" {
				continue
			}
			log.Info("waiting for the NATS connection, which holds the seen-events bucket", "nats", o.natsURL)
			select {
			case <-p.Ready():
			case <-ctx.Done():
				_ = bus.Close()
				return nil, nil, ctx.Err()
			}
			b = p.Attached()
		}
		if nb, ok := b.(*natsbus.Bus); ok {
			natsBus = nb
		}
	}
	return bus, natsBus, nil
}

// openSeenBucket opens the --seen-bucket on the worker's NATS connection.
// restore opens it again, creating it when the server has lost it.
func openSeenBucket(ctx context.Context, natsBus *natsbus.Bus, bucket string, ttl time.Duration, log *slog.Logger) (kv jetstream.KeyValue, restore func(context.Context) error, err error) {
	if natsBus == nil {
		return nil, nil, errors.New("--seen-store kv needs a NATS connection: give --nats URL and --jetstream")
	}
	if ttl <= 0 {
		return nil, nil, fmt.Errorf("invalid --seen-ttl %s: give a positive duration such as 24h", ttl)
	}
	js, err := jetstream.New(natsBus.Conn())
	if err != nil {
		return nil, nil, fmt.Errorf("set up JetStream for the seen-events bucket: %w", err)
	}
	cfg := hooks.SeenBucketConfig{Bucket: bucket, TTL: ttl}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kv, err = hooks.OpenSeenBucket(openCtx, js, cfg, log)
	if err != nil {
		return nil, nil, fmt.Errorf("--seen-bucket %s: %w", bucket, err)
	}
	restore = func(ctx context.Context) error {
		if _, err := js.KeyValue(ctx, bucket); errors.Is(err, jetstream.ErrBucketNotFound) {
			log.Warn("the seen-events bucket is missing on the NATS server, as after a restart without its store; creating it again (the claims it held are gone)", "bucket", bucket)
		}
		_, err := hooks.OpenSeenBucket(ctx, js, cfg, log)
		return err
	}
	return kv, restore, nil
}

// reloadRereadDelay is the pause before a config without an events:
// section is read again on SIGHUP. An editor's truncate and write take
// far less, and the worker's delivery goes on during the pause.
const reloadRereadDelay = 500 * time.Millisecond

// reloadWorker reloads the config file on SIGHUP. Unlike at start, a new
// config with any error is rejected as a whole, because the running
// config is there to fall back to and skipping a broken entry would
// silently drop a hook that was running.
func reloadWorker(ctx context.Context, o *workerOptions, w *hooks.Worker, log *slog.Logger) {
	log.Info("SIGHUP received: reloading the config", "config", o.config)
	_ = w.ReloadFrom(func() (*hooks.Config, error) {
		cfg, problems, err := o.load()
		if err == nil && cfg.EventsMissing {
			// An editor that truncates the file and then writes it can be
			// caught in between, so the file is read once more before
			// Reload rejects it.
			log.Warn("config has no events: section; reading it again in case it was being written",
				"config", o.config, "retry_after", reloadRereadDelay)
			time.Sleep(reloadRereadDelay)
			cfg, problems, err = o.load()
		}
		if err != nil {
			return nil, err
		}
		hooks.LogProblems(ctx, log, problems)
		var errorCount int
		for _, p := range problems {
			if p.Severity == hooks.SeverityError {
				errorCount++
			}
		}
		if errorCount > 0 {
			return nil, fmt.Errorf("%s has %s (logged above); fix them and send SIGHUP again", o.config, count(errorCount, "error"))
		}
		return cfg, nil
	})
}

// settingsErrors counts the errors in the printbridge: section. They stop
// the worker from starting, because it would run with settings the user
// did not ask for. Entries with errors are only skipped, as in OctoPrint.
func settingsErrors(problems []hooks.Problem) int {
	var n int
	for _, p := range problems {
		if p.Severity == hooks.SeverityError && (p.Key == "printbridge" || strings.HasPrefix(p.Key, "printbridge.")) {
			n++
		}
	}
	return n
}

// newWorkerLogger is newLogger with a level that a config reload can
// change.
func newWorkerLogger(w io.Writer, format, level string, levelVar *slog.LevelVar) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid log level %q: use debug, info, warn or error", level)
	}
	levelVar.Set(lvl)
	opts := &slog.HandlerOptions{Level: levelVar}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("invalid log format %q: use text or json", format)
	}
}

// workerClientID is unique per process, because an MQTT broker
// disconnects the older of two clients with the same id.
// stableWorkerClientID is the client id of a persistent session: the same
// after a restart, and different per host and group.
func stableWorkerClientID(group string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	if group == "" {
		group = "all"
	}
	return "printbridge-worker-" + host + "-" + group
}

// workerIDFile is the file in --data-dir that keeps the id of a worker
// without a group.
const workerIDFile = "worker-id"

// stableWorkerID returns the id of a worker without a group on JetStream,
// which names its consumer and its scope in the seen-events bucket. It is
// kept in DATA-DIR/worker-id, made at the first start, so a restart
// resumes the same consumer and finds its claims. Without a --data-dir it
// is the host name: two workers on one host without a --data-dir then
// share a consumer and split its events.
func stableWorkerID(dataDir string) (string, error) {
	if dataDir == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "host"
		}
		return "host-" + host, nil
	}
	path := filepath.Join(dataDir, workerIDFile)
	data, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(data))
		if id == "" {
			return "", fmt.Errorf("worker id file %s is empty; delete it to make a new id", path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read the worker id: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", fmt.Errorf("create --data-dir for the worker id: %w", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	// A temporary file and a link, so that of two workers starting on one
	// --data-dir both end up with the id of the one that linked first.
	tmp, err := os.CreateTemp(dataDir, workerIDFile+".tmp*")
	if err != nil {
		return "", fmt.Errorf("write the worker id: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(id + "\n"); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write the worker id: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write the worker id: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write the worker id: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return stableWorkerID(dataDir)
		}
		return "", fmt.Errorf("write the worker id: %w", err)
	}
	return id, nil
}

func workerClientID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	return fmt.Sprintf("printbridge-worker-%s-%d", host, os.Getpid())
}
