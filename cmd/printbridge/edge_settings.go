package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/edge"
	"github.com/printbridge/printbridge/bridge/policy"
	"github.com/printbridge/printbridge/printer"
	"github.com/prometheus/client_golang/prometheus"
)

// settingsOptions are the edge flags that a reload (SIGHUP) applies
// without a restart.
type settingsOptions struct {
	scriptsDir      string
	profilePath     string
	blockedCommands blockedList
	ignoredCommands string
}

// blockedList is the --blocked-commands value. Unset (as in an
// edgeOptions built in code) it is OctoPrint's default, M0 and M1; set to
// the empty string it blocks nothing.
type blockedList struct {
	value string
	set   bool
}

func (b *blockedList) String() string {
	if b == nil || !b.set {
		return strings.Join(printer.DefaultBlockedCommands, ",")
	}
	return b.value
}

func (b *blockedList) Set(v string) error {
	if _, err := printer.ParseCommandList(v); err != nil {
		return err
	}
	b.value, b.set = v, true
	return nil
}

// reloadableFlags are the flags a reload applies; a change to any other
// flag is logged as needing a restart.
var reloadableFlags = []string{"scripts", "printer-profile", "blocked-commands", "ignored-commands", "command-policy"}

func (o *settingsOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.scriptsDir, "scripts", "", "folder of OctoPrint GCODE scripts, files named like beforePrintStarted (docs/scripts.md; default DATA-DIR/scripts)")
	fs.StringVar(&o.profilePath, "printer-profile", "", "YAML printer profile (build volume, extruders, heated bed and chamber); empty uses OctoPrint's default profile")
	fs.Var(&o.blockedCommands, "blocked-commands", "G-code codes never sent to the printer, from any source (OctoPrint's serial.blockedCommands); empty blocks none")
	fs.StringVar(&o.ignoredCommands, "ignored-commands", "", "G-code codes dropped silently (CommandSuppressed with severity info), as OctoPrint's serial.ignoredCommands")
}

// printerSettings builds the printer settings from the options, and
// checks every script so a template error shows now rather than mid-print.
func printerSettings(o edgeOptions, log *slog.Logger) (printer.Settings, error) {
	s := o.settings
	var st printer.Settings
	var err error
	if st.Profile, err = printer.LoadProfile(s.profilePath); err != nil {
		return st, fmt.Errorf("--printer-profile: %w", err)
	}
	if st.BlockedCommands, err = printer.ParseCommandList(s.blockedCommands.String()); err != nil {
		return st, fmt.Errorf("--blocked-commands: %w", err)
	}
	if st.IgnoredCommands, err = printer.ParseCommandList(s.ignoredCommands); err != nil {
		return st, fmt.Errorf("--ignored-commands: %w", err)
	}
	st.ScriptsDir = s.scriptsDir
	if st.ScriptsDir == "" {
		st.ScriptsDir = filepath.Join(o.dataDir, "scripts")
	}
	scripts, unknown, err := printer.LoadScripts(st.ScriptsDir)
	st.Scripts = scripts
	if err != nil {
		return st, fmt.Errorf("--scripts: %w", err)
	}
	if len(unknown) > 0 {
		log.Warn("files in the scripts folder that are not GCODE scripts the edge runs; check their names", "scripts", st.ScriptsDir,
			"files", unknown, "names", printer.ScriptNames)
	}
	return st, nil
}

func commandPolicy(o edgeOptions) (*policy.Policy, error) {
	if o.commandPolicy == "" {
		return policy.Default(), nil
	}
	pol, err := policy.LoadFile(o.commandPolicy, o.printerID)
	if err != nil {
		return nil, fmt.Errorf("--command-policy: %w", err)
	}
	return pol, nil
}

// flagValues returns every flag's value as text, to tell which flags a
// reload changed.
func flagValues(fs *flag.FlagSet) map[string]string {
	out := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { out[f.Name] = f.Value.String() })
	return out
}

// settingsReloader owns the settings that change at run time: it applies
// a reloaded configuration, watches the printer profile file, and fires
// SettingsUpdated and PrinterProfileModified.
type settingsReloader struct {
	log     *slog.Logger
	printer *printer.Printer
	edge    *edge.Edge
	// reparse reads the configuration again (YAML file, environment and
	// the original command line); nil disables reloading.
	reparse  func() (edgeOptions, map[string]string, error)
	interval time.Duration
	reloads  *prometheus.CounterVec

	mu       sync.Mutex
	opts     edgeOptions
	flags    map[string]string
	settings printer.Settings
	// stopWatch stops the profile watcher of the current profile path.
	stopWatch func()
}

func newSettingsReloader(o edgeOptions, st printer.Settings, p *printer.Printer, e *edge.Edge, reg prometheus.Registerer, log *slog.Logger) *settingsReloader {
	r := &settingsReloader{log: log, printer: p, edge: e, reparse: o.reparse, interval: o.watchInterval, opts: o, flags: o.flags, settings: st,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "printbridge_config_reloads_total",
			Help: "Configuration reloads by trigger (sighup, or profile_change when the watched printer profile file changed) and outcome (applied, failed)."}, []string{"trigger", "outcome"})}
	reg.MustRegister(r.reloads)
	// Every series exists from the start, so a failed-reload alert
	// compares with 0 instead of finding no data.
	for _, trigger := range []string{"sighup", "profile_change"} {
		for _, outcome := range []string{"applied", "failed"} {
			r.reloads.WithLabelValues(trigger, outcome)
		}
	}
	return r
}

// run watches the profile and reloads on SIGHUP until ctx ends.
func (r *settingsReloader) run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	r.mu.Lock()
	r.watchProfile(ctx, r.opts.settings.profilePath)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.stopWatch()
		r.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.log.Info("SIGHUP received; reloading the configuration")
			if err := r.reload(ctx); err != nil {
				r.reloads.WithLabelValues("sighup", "failed").Inc()
				r.log.Error("configuration reload failed; the previous settings stay in force", "error", err)
			}
		}
	}
}

// watchProfile starts a watcher for path; r.mu must be held.
func (r *settingsReloader) watchProfile(ctx context.Context, path string) {
	if r.stopWatch != nil {
		r.stopWatch()
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	w := printer.NewProfileWatcher(path, r.interval, r.log)
	go func() {
		defer close(done)
		w.Run(wctx, r.profileChanged, func(err error) {
			r.reloads.WithLabelValues("profile_change", "failed").Inc()
			r.log.Error("printer profile file is invalid; the previous profile stays in force until it is fixed", "path", path, "error", err)
		})
	}()
	r.stopWatch = func() {
		cancel()
		<-done
	}
}

func (r *settingsReloader) profileChanged(p printer.Profile) {
	r.mu.Lock()
	r.settings.Profile = p
	st := r.settings
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.printer.ApplySettings(ctx, st); err != nil {
		r.reloads.WithLabelValues("profile_change", "failed").Inc()
		r.log.Error("applying the changed printer profile failed", "profile", p.ID, "error", err)
		return
	}
	r.reloads.WithLabelValues("profile_change", "applied").Inc()
}

// reload reads the configuration again and applies its reloadable parts:
// scripts folder, printer profile, blocked and ignored commands and the
// command policy. Other changed flags are logged, because they need a
// restart. SettingsUpdated fires once the new settings are in force.
func (r *settingsReloader) reload(ctx context.Context) error {
	if r.reparse == nil {
		return errors.New("this edge was started without a reloadable configuration")
	}
	n, flags, err := r.reparse()
	if err != nil {
		return err
	}
	st, err := printerSettings(n, r.log)
	if err != nil {
		return err
	}
	pol, err := commandPolicy(n)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.printer.ApplySettings(actx, st); err != nil {
		return fmt.Errorf("apply the printer settings: %w", err)
	}
	r.edge.SetPolicy(pol)

	r.mu.Lock()
	var restart []string
	for name, v := range flags {
		if r.flags[name] != v && !slices.Contains(reloadableFlags, name) {
			restart = append(restart, name)
		}
	}
	profileMoved := n.settings.profilePath != r.opts.settings.profilePath
	r.settings = st
	if profileMoved {
		r.watchProfile(ctx, n.settings.profilePath)
	}
	// The flags that need a restart keep their old values, so the next
	// reload reports them again until the edge restarts.
	for _, name := range reloadableFlags {
		r.flags[name] = flags[name]
	}
	r.opts.settings, r.opts.commandPolicy = n.settings, n.commandPolicy
	r.mu.Unlock()

	slices.Sort(restart)
	if len(restart) > 0 {
		r.log.Warn("configuration changes that need a restart were not applied", "flags", restart)
	}
	r.reloads.WithLabelValues("sighup", "applied").Inc()
	r.log.Info("configuration reloaded", "scripts", st.ScriptsDir, "profile", st.Profile.ID,
		"blocked_commands", st.BlockedCommands, "ignored_commands", st.IgnoredCommands, "command_policy", n.commandPolicy)
	return r.printer.FireEvent(actx, bridge.EventSettingsUpdated, nil)
}

// reparseEdgeFlags returns a func that parses args again into fresh edge
// options, with the YAML file and environment read anew.
func reparseEdgeFlags(args []string) func() (edgeOptions, map[string]string, error) {
	return func() (edgeOptions, map[string]string, error) {
		fs := flag.NewFlagSet("edge", flag.ContinueOnError)
		var o edgeOptions
		o.register(fs)
		if err := parseFlags(fs, args, io.Discard, true); err != nil {
			return o, nil, fmt.Errorf("read the configuration: %w", err)
		}
		if err := checkFlagRanges(fs, edgeFlagRanges); err != nil {
			return o, nil, fmt.Errorf("read the configuration: %w", err)
		}
		return o, flagValues(fs), nil
	}
}
