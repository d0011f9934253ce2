package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
)

// WithLogLevel lets Reload apply printbridge.log_level to level, the
// level of the logger the worker was given. Without it a changed
// log_level takes effect only at the next start.
func WithLogLevel(level *slog.LevelVar) Option { return func(w *Worker) { w.logLevel = level } }

// Reload makes cfg the config for the events the worker receives from
// now on. Events already queued keep the config they arrived with, and
// running hooks go on. hook_timeout, max_concurrent_hooks and, with
// WithLogLevel, log_level apply at once. The settings that the broker
// connection and the bus subscriptions were made from (mqtt, nats,
// base_topic, printers, group, log_format, metrics_listen) keep their
// running values, with a warning for each one that changed.
//
// A cfg whose file is empty or has no events.subscriptions list is
// rejected while the running config has hooks, so that a file caught
// while an editor rewrites it does not drop every hook.
//
// When cfg has the first gcode hook and Run is running, Reload first
// subscribes to command replies. If that fails, the old config stays in
// force and the error is returned. Reload publishes no event, because
// OctoPrint fires SettingsUpdated only when its own settings are saved.
func (w *Worker) Reload(cfg *Config) error {
	if cfg == nil {
		err := errors.New("reload with a nil config")
		w.rejectReload(err)
		return err
	}
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()

	old := w.cfg.Load()
	if cfg.EventsMissing && len(old.Subscriptions) > 0 {
		err := fmt.Errorf("%w: %s is empty or has no events.subscriptions list, while %d hooks are loaded; "+
			"to remove all hooks on purpose, write \"events: {subscriptions: []}\" or \"events: {enabled: false}\" and send SIGHUP again",
			ErrEventsMissing, cfg.Path, len(old.Subscriptions))
		w.rejectReload(err)
		return err
	}
	next := *cfg
	w.keepRunningSettings(&next.Settings, old.Settings)
	if hasGcodeHooks(&next) && w.runCtx != nil && !w.repliesSubscribed {
		if err := w.subscribeReplies(w.runCtx); err != nil {
			err = fmt.Errorf("reload %s: %w", next.Path, err)
			w.rejectReload(err)
			return err
		}
	}
	level := w.applyLogLevel(next.Settings.LogLevel, old.Settings.LogLevel)
	if level == "" {
		next.Settings.LogLevel = old.Settings.LogLevel
	}
	w.slots.setLimit(concurrency(next.Settings))
	w.cfg.Store(&next)

	w.metrics.observeReload(true)
	w.metrics.observeConfig(&next)
	limit, _ := w.slots.current()
	w.log.Info("config reloaded", "config", next.Path, "subscriptions", len(next.Subscriptions),
		"events_enabled", next.EventsEnabled, "hook_timeout", next.Settings.HookTimeout,
		"gcode_max_age", next.Settings.GcodeMaxAge, "max_concurrent_hooks", limit, "log_level", next.Settings.LogLevel)
	return nil
}

// ErrEventsMissing is returned by Reload for a config without hooks
// whose file has no events.subscriptions list while the running config
// has hooks.
var ErrEventsMissing = errors.New("config reload rejected")

// ReloadFrom calls load and reloads the config it returns. When load
// fails, the running config stays in force, and the failure is logged
// and counted. The CLI's load reads the file and rejects a config with
// errors.
func (w *Worker) ReloadFrom(load func() (*Config, error)) error {
	cfg, err := load()
	if err != nil {
		w.rejectReload(err)
		return err
	}
	return w.Reload(cfg)
}

func (w *Worker) rejectReload(err error) {
	w.metrics.observeReload(false)
	w.log.Error("config reload failed; the running config stays in force", "error", err)
}

// keepRunningSettings copies the settings that need a restart from
// running into next and warns about each one that next changes.
func (w *Worker) keepRunningSettings(next *Settings, running Settings) {
	keep := func(key string, changed bool, restore func()) {
		if !changed {
			return
		}
		w.log.Warn("config reload: a changed setting takes effect only after a restart; the running value stays", "key", "printbridge."+key)
		restore()
	}
	keep("mqtt", next.MQTT != running.MQTT, func() { next.MQTT = running.MQTT })
	keep("nats", next.NATS != running.NATS, func() { next.NATS = running.NATS })
	keep("base_topic", next.BaseTopic != running.BaseTopic, func() { next.BaseTopic = running.BaseTopic })
	keep("printers", !slices.Equal(next.Printers, running.Printers), func() { next.Printers = running.Printers })
	keep("group", next.Group != running.Group, func() { next.Group = running.Group })
	keep("log_format", next.LogFormat != running.LogFormat, func() { next.LogFormat = running.LogFormat })
	keep("metrics_listen", next.MetricsListen != running.MetricsListen, func() { next.MetricsListen = running.MetricsListen })
}

// applyLogLevel sets the logger's level to next and returns the level in
// force afterwards, or "" when it cannot change without WithLogLevel.
func (w *Worker) applyLogLevel(next, running string) string {
	if next == running {
		return next
	}
	if w.logLevel == nil {
		w.log.Warn("config reload: a changed setting takes effect only after a restart; the running value stays", "key", "printbridge.log_level")
		return ""
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(next)); err != nil {
		// The loader accepts only valid levels, so this is a Config
		// built by hand.
		w.log.Warn("config reload: invalid log level ignored", "key", "printbridge.log_level", "value", next, "error", err)
		return ""
	}
	w.logLevel.Set(level)
	return next
}

// LogProblems logs each config problem once, errors at ERROR and warnings
// at WARN, with the problem as FILE:LINE:COL text and its setting key.
func LogProblems(ctx context.Context, log *slog.Logger, problems []Problem) {
	for _, p := range problems {
		level := slog.LevelWarn
		if p.Severity == SeverityError {
			level = slog.LevelError
		}
		attrs := []any{"problem", p.String()}
		if p.Key != "" {
			attrs = append(attrs, "key", p.Key)
		}
		log.Log(ctx, level, "config problem", attrs...)
	}
}
