package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/printbridge/printbridge/bridge"
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

// workerOptions are the worker's flags. Empty values leave the setting of
// the config file's printbridge: section in place.
type workerOptions struct {
	config             string
	printers           listFlag
	group              string
	hookTimeout        string
	maxConcurrentHooks int
	logFormat          string
	logLevel           string
	bus                busOptions
}

func (o *workerOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.config, "config", "", "OctoPrint config.yaml whose events: hooks to run (required); its printbridge: section holds the worker's settings")
	fs.Var(&o.printers, "printer", "printer id to serve, repeatable or comma-separated (default: the config's printbridge.printers, else all printers)")
	fs.StringVar(&o.group, "group", "", "NATS queue group or MQTT shared subscription that workers share the load by (default: printbridge.group, else none)")
	fs.StringVar(&o.hookTimeout, "hook-timeout", "", "maximum run time of one hook, such as 90s; 0 for none (default: printbridge.hook_timeout, else 60s)")
	fs.IntVar(&o.maxConcurrentHooks, "max-concurrent-hooks", 0, "system hooks running at once (default: printbridge.max_concurrent_hooks, else 4)")
	fs.StringVar(&o.logFormat, "log-format", "", "log format, text or json (default: printbridge.log_format, else text)")
	fs.StringVar(&o.logLevel, "log-level", "", "log level: debug, info, warn or error (default: printbridge.log_level, else info)")
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
	if o.hookTimeout != "" {
		d, err := time.ParseDuration(o.hookTimeout)
		if err != nil || d < 0 {
			return fmt.Errorf("invalid --hook-timeout %q: give a duration such as 90s, or 0 for none", o.hookTimeout)
		}
		s.HookTimeout = d
	}
	if o.maxConcurrentHooks < 0 {
		return fmt.Errorf("invalid --max-concurrent-hooks %d: give 1 or more", o.maxConcurrentHooks)
	}
	if o.maxConcurrentHooks > 0 {
		s.MaxConcurrentHooks = o.maxConcurrentHooks
	}
	if o.logFormat != "" {
		s.LogFormat = o.logFormat
	}
	if o.logLevel != "" {
		s.LogLevel = o.logLevel
	}
	return nil
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	var o workerOptions
	o.register(fs)
	// false: --config is the OctoPrint file, not a file of flag values.
	if err := parseFlags(fs, args, stderr, false); err != nil {
		return err
	}
	if o.config == "" {
		fmt.Fprintln(stderr, "missing --config: give the OctoPrint config.yaml whose events: hooks the worker runs")
		fs.Usage()
		return errUsage
	}
	cfg, problems, err := hooks.LoadConfig(o.config)
	if err != nil {
		return err
	}
	if err := o.apply(&cfg.Settings); err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.Settings.LogFormat, cfg.Settings.LogLevel)
	if err != nil {
		return err
	}
	if err := logProblems(ctx, log, problems); err != nil {
		return fmt.Errorf("config %s: %w", o.config, err)
	}

	if cfg.Settings.MQTT == "" && cfg.Settings.NATS == "" {
		return fmt.Errorf("no broker configured: give --mqtt URL or --nats URL, or set printbridge.mqtt or printbridge.nats in %s", o.config)
	}
	busOpts := o.bus
	busOpts.mqttURL, busOpts.natsURL, busOpts.baseTopic = cfg.Settings.MQTT, cfg.Settings.NATS, cfg.Settings.BaseTopic
	busOpts.clientID = workerClientID()
	bus, err := connectBus(ctx, busOpts, log)
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
	return hooks.NewWorker(cfg, bus, log).Run(ctx)
}

// logProblems logs every config problem and fails when the printbridge:
// section has an error, because the worker would run with settings the
// user did not ask for. Entries with errors are only skipped, as in
// OctoPrint.
func logProblems(ctx context.Context, log *slog.Logger, problems []hooks.Problem) error {
	var settingsErrors int
	for _, p := range problems {
		level := slog.LevelWarn
		if p.Severity == hooks.SeverityError {
			level = slog.LevelError
			if strings.HasPrefix(p.Key, "printbridge") {
				settingsErrors++
			}
		}
		log.Log(ctx, level, "config problem", "problem", p.String())
	}
	if settingsErrors > 0 {
		return fmt.Errorf("%d errors in the printbridge: section (logged above); fix them or override them with flags", settingsErrors)
	}
	return nil
}

// workerClientID is unique per process, because an MQTT broker
// disconnects the older of two clients with the same id.
func workerClientID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	return fmt.Sprintf("printbridge-worker-%s-%d", host, os.Getpid())
}
