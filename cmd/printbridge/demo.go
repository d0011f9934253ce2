package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/natsbus"
	"github.com/printbridge/printbridge/bridge/policy"
	"github.com/printbridge/printbridge/deploy"
	"github.com/printbridge/printbridge/hooks"
	"github.com/printbridge/printbridge/printer/virtual"
)

func init() {
	register("demo", "run the whole chain on embedded defaults and print a real G-code file", runDemo)
}

const demoPrinter = "demo"

// maxDemoSeqs is the number of event ids whose seq the demo keeps for
// its hook lines: all events of a print of the built-in file (about 160).
// A hook that ends after 1024 newer events prints without the seq.
const maxDemoSeqs = 1024

type demoOptions struct {
	file        string
	config      string
	speed       float64
	keepRunning bool
	timeout     time.Duration
	logLevel    string
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.Usage = func() { printCommandUsage(fs) }
	var o demoOptions
	fs.StringVar(&o.file, "file", "", "G-code file to print (default: "+deploy.DemoGcodeName+", built into the binary)")
	fs.StringVar(&o.config, "config", "", "OctoPrint config.yaml whose events: hooks the worker runs (default: "+deploy.DemoConfigName+", built into the binary)")
	fs.Float64Var(&o.speed, "speed", 20, "virtual printer time factor: 1 is real time, 0 no waiting. "+
		"The demo's edge multiplies its command rate limits by a factor above 1 and turns them off at 0, so the hooks keep up with the faster print")
	fs.BoolVar(&o.keepRunning, "keep-running", false, "keep everything running after the print and print the broker addresses")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "give up when the print has not finished after this long")
	fs.StringVar(&o.logLevel, "log-level", "warn", "level of the components' logs on stderr: debug, info, warn or error")
	if err := parseFlags(fs, args, stderr, false); err != nil {
		return err
	}
	log, err := newLogger(stderr, "text", o.logLevel)
	if err != nil {
		return err
	}
	return demo(ctx, o, stdout, log)
}

// demoRun collects what the demo prints.
type demoRun struct {
	out     io.Writer
	start   time.Time
	printer string

	// mu guards everything below and serialises output lines.
	mu     sync.Mutex
	counts map[string]int
	// seqs maps the ids of the latest events to their seq, so a hook
	// result, which carries the event id, can name the seq that the
	// event's line showed. idOrder bounds it to maxDemoSeqs ids.
	seqs      map[string]uint64
	idOrder   []string
	hooksOK   int
	hooksFail int
	lastSeq   uint64
	// finishedAt is the time that the line of the first PrintDone or
	// PrintFailed event showed.
	finishedAt time.Duration
	finished   chan string
	doneOnce   sync.Once
	connected  chan struct{}
	connOnce   sync.Once
}

func (d *demoRun) printf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, format, args...)
}

// loadDemoConfig reads the hook config at path, or the built-in demo
// config when path is empty, and returns the name to show for it.
func loadDemoConfig(path string) (string, *hooks.Config, []hooks.Problem, error) {
	if path == "" {
		cfg, problems, err := hooks.ParseConfig(deploy.DemoConfigName, deploy.DemoConfig)
		if err != nil {
			return "", nil, nil, fmt.Errorf("built-in hook config %s: %w", deploy.DemoConfigName, err)
		}
		return deploy.DemoConfigName + " (built in)", cfg, problems, nil
	}
	cfg, problems, err := hooks.LoadConfig(path)
	if err != nil {
		return "", nil, nil, fmt.Errorf("load hook config: %w (check the --config path, or leave it out to use the built-in config)", err)
	}
	return path, cfg, problems, nil
}

// reportDemoProblems prints the warnings of the hook config and returns
// an error that lists its errors, if any. The demo runs only a config
// without errors, so that every hook the file defines takes part.
func reportDemoProblems(stdout io.Writer, configName string, problems []hooks.Problem) error {
	var errorLines []string
	for _, p := range problems {
		if p.Severity == hooks.SeverityError {
			errorLines = append(errorLines, p.String())
			continue
		}
		fmt.Fprintln(stdout, "config:", p.String())
	}
	if len(errorLines) == 0 {
		return nil
	}
	return fmt.Errorf("hook config %s has %s, so the demo does not start:\n  %s\n"+
		"Fix them and run 'printbridge check-config %s' to check the file again. Outside the demo, %s",
		configName, count(len(errorLines), "error"), strings.Join(errorLines, "\n  "), configName, workerVerdict(problems))
}

func demo(ctx context.Context, o demoOptions, stdout io.Writer, log *slog.Logger) error {
	started := time.Now()
	configName, cfg, problems, err := loadDemoConfig(o.config)
	if err != nil {
		return err
	}
	if err := reportDemoProblems(stdout, configName, problems); err != nil {
		return err
	}
	jobName, gcode := deploy.DemoGcodeName, deploy.DemoGcode
	if o.file != "" {
		if gcode, err = os.ReadFile(o.file); err != nil {
			return fmt.Errorf("read G-code file: %w (check the --file path, or leave it out to print the built-in file)", err)
		}
		jobName = filepath.Base(o.file)
	}

	dataDir, err := os.MkdirTemp("", "printbridge-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	filesDir := filepath.Join(dataDir, "files")
	if err := os.MkdirAll(filesDir, 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(filesDir, jobName), gcode, 0o640); err != nil {
		return err
	}

	// 1. The broker: NATS with JetStream and its MQTT listener.
	emb, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{MQTT: true, StoreDir: filepath.Join(dataDir, "nats")}, log.With("component", "nats-server"))
	if err != nil {
		return fmt.Errorf("start embedded NATS server: %w", err)
	}
	defer emb.Shutdown()

	// 2. The virtual printer on a pseudo-terminal.
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = o.speed
	vcfg.RecordPath = filepath.Join(dataDir, "record.gcode")
	vp, err := virtual.New(vcfg, log)
	if err != nil {
		return fmt.Errorf("start virtual printer: %w", err)
	}
	vpCtx, stopVP := context.WithCancel(context.Background())
	vpDone := make(chan error, 1)
	go func() { vpDone <- vp.Run(vpCtx) }()
	defer func() {
		stopVP()
		<-vpDone
		_ = vp.Close()
	}()

	fmt.Fprintf(stdout, "printbridge demo: NATS %s, MQTT %s, virtual printer %s\n", emb.NATSURL(), emb.MQTTURL(), vp.Path())
	fmt.Fprintf(stdout, "printing %s (%d bytes) with the hooks of %s\n", jobName, len(gcode), configName)
	policyPath := filepath.Join(dataDir, "command-policy.yaml")
	rates, err := writeDemoPolicy(policyPath, o.speed)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "command rate limits of the edge: %s\n", rates)
	limit := cfg.Settings.MaxConcurrentHooks
	if limit <= 0 {
		limit = hooks.DefaultMaxConcurrentHooks
	}
	fmt.Fprintf(stdout, "each hook line names its event's #seq and prints when the hook ends; up to %d system hooks run at once, so hook lines can come out of event order\n\n", limit)

	run := &demoRun{out: stdout, start: started, printer: demoPrinter, counts: map[string]int{}, seqs: map[string]uint64{},
		finished: make(chan string, 1), connected: make(chan struct{})}

	// 3. The worker, on NATS. Its events come from the edge's MQTT
	// publishes, which the NATS server maps onto NATS subjects.
	workerBus, err := natsbus.New(ctx, natsbus.Config{URL: emb.NATSURL(), Name: "printbridge-demo-worker"}, log.With("component", "worker", "bus", "nats"))
	if err != nil {
		return err
	}
	defer workerBus.Close()
	if err := workerBus.SubscribeEvents(ctx, demoPrinter, "", run.onEvent); err != nil {
		return err
	}
	if err := workerBus.SubscribeReplies(ctx, demoPrinter, run.onReply); err != nil {
		return err
	}
	w := hooks.NewWorker(cfg, workerBus, log, hooks.OnResult(run.onResult))
	workerCtx, stopWorker := context.WithCancel(context.Background())
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(workerCtx) }()

	// 4. The edge, on MQTT.
	edgeOpts := edgeOptions{
		port: vp.Path(), baud: 115200, printerID: demoPrinter, filesDir: filesDir, dataDir: filepath.Join(dataDir, "edge"),
		maxLineLength: 96, autoConnect: true, commandPolicy: policyPath,
		bus: busOptions{mqttURL: emb.MQTTURL(), baseTopic: bridge.DefaultBase},
	}
	edgeCtx, stopEdge := context.WithCancel(context.Background())
	edgeDone := make(chan error, 1)
	go func() { edgeDone <- runEdgeWith(edgeCtx, edgeOpts, log, nil) }()

	stopAll := func() {
		stopEdge()
		if err := <-edgeDone; err != nil {
			log.Warn("edge stopped with an error", "error", err)
		}
		// The worker gets a moment for the Shutdown event's hooks.
		time.Sleep(300 * time.Millisecond)
		stopWorker()
		<-workerDone
	}

	deadline := time.NewTimer(o.timeout)
	defer deadline.Stop()
	select {
	case <-run.connected:
	case <-deadline.C:
		stopAll()
		return errors.New("the edge did not connect to the virtual printer in time")
	case <-ctx.Done():
		stopAll()
		return ctx.Err()
	}

	// 5. Start the print the way a user would: a job command on the bus.
	start, _ := json.Marshal(bridge.Command{ID: "demo-start", Action: bridge.ActionStart, Path: jobName, Source: "demo"})
	if err := workerBus.PublishCommand(ctx, demoPrinter, bridge.CommandJob, start); err != nil {
		stopAll()
		return fmt.Errorf("publish start command: %w", err)
	}

	var outcome string
	select {
	case outcome = <-run.finished:
	case <-deadline.C:
		outcome = "timeout"
	case <-ctx.Done():
		outcome = "interrupted"
	}
	if outcome == bridge.EventPrintDone {
		// The hooks of PrintDone run after the event; give them a moment.
		waitQuiet(run, 2*time.Second, 15*time.Second)
	}

	if o.keepRunning && outcome == bridge.EventPrintDone {
		fmt.Fprintf(stdout, "\nprint done; everything keeps running. Broker addresses:\n")
		fmt.Fprintf(stdout, "  MQTT  %s   mosquitto_sub -h 127.0.0.1 -p %s -t 'printbridge/#' -v\n", emb.MQTTURL(), portOf(emb.MQTTURL()))
		fmt.Fprintf(stdout, "  NATS  %s   nats sub -s %s 'printbridge.>'\n", emb.NATSURL(), emb.NATSURL())
		fmt.Fprintf(stdout, "  send: mosquitto_pub -h 127.0.0.1 -p %s -t printbridge/%s/command/gcode -m '{\"id\":\"g1\",\"commands\":[\"M105\"]}'\n",
			portOf(emb.MQTTURL()), demoPrinter)
		fmt.Fprintf(stdout, "  files: the files folder %s is temporary and holds only %s; send any other file before a job command names it:\n", filesDir, jobName)
		fmt.Fprintf(stdout, "    mosquitto_pub -h 127.0.0.1 -p %s -t printbridge/%s/command/file -m '{\"id\":\"f1\",\"action\":\"add\",\"path\":\"hello.gcode\",\"data\":\"G28\\nM117 hello\\n\",\"print\":true}'\n",
			portOf(emb.MQTTURL()), demoPrinter)
		fmt.Fprintf(stdout, "    a sliced print, over 64 KiB: printbridge upload --nats %s --printer %s --file FILE --print\n", emb.NATSURL(), demoPrinter)
		fmt.Fprintf(stdout, "    or copy it into the files folder, where the edge finds it within seconds\n")
		fmt.Fprintf(stdout, "Press Ctrl-C to stop.\n")
		<-ctx.Done()
	}
	stopAll()
	run.summary(outcome, vp.Executed())
	if outcome != bridge.EventPrintDone {
		return fmt.Errorf("print did not complete: %s", outcome)
	}
	return nil
}

func portOf(url string) string {
	if i := strings.LastIndexByte(url, ':'); i >= 0 {
		return url[i+1:]
	}
	return url
}

// waitQuiet returns once no hook result has arrived for quiet, or after
// max.
func waitQuiet(run *demoRun, quiet, max time.Duration) {
	end := time.Now().Add(max)
	last := -1
	lastChange := time.Now()
	for time.Now().Before(end) {
		run.mu.Lock()
		n := run.hooksOK + run.hooksFail
		run.mu.Unlock()
		if n != last {
			last, lastChange = n, time.Now()
		}
		if time.Since(lastChange) >= quiet {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *demoRun) onEvent(m bridge.EventMessage) {
	env, err := bridge.DecodeEnvelope(m.Data)
	if err != nil {
		d.printf("invalid event from %s: %v\n", m.Source, err)
		return
	}
	d.mu.Lock()
	d.counts[env.Event]++
	d.lastSeq = env.Seq
	d.rememberSeq(env.ID, env.Seq)
	elapsed := time.Since(d.start)
	fmt.Fprintf(d.out, "%7.2fs  #%-4d %-20s %s\n", elapsed.Seconds(), env.Seq, env.Event, describePayload(env.Payload))
	if (env.Event == bridge.EventPrintDone || env.Event == bridge.EventPrintFailed) && d.finishedAt == 0 {
		d.finishedAt = elapsed
	}
	d.mu.Unlock()
	switch env.Event {
	case bridge.EventConnected:
		d.connOnce.Do(func() { close(d.connected) })
	case bridge.EventPrintDone, bridge.EventPrintFailed:
		d.doneOnce.Do(func() { d.finished <- env.Event })
	}
}

func (d *demoRun) onReply(data []byte) {
	var r bridge.Reply
	if err := json.Unmarshal(data, &r); err != nil {
		return
	}
	if strings.HasPrefix(r.ID, "hook-") {
		// Hook results already show the effect of their commands.
		return
	}
	reason := ""
	if r.Reason != "" {
		reason = ": " + r.Reason
	}
	d.printf("%7.2fs        reply %s %s%s\n", time.Since(d.start).Seconds(), r.ID, r.Status, reason)
}

func (d *demoRun) onResult(r hooks.Result) {
	d.mu.Lock()
	defer d.mu.Unlock()
	status := fmt.Sprintf("exit %d", r.ExitCode)
	if r.Err != nil {
		d.hooksFail++
		status += " (" + r.Err.Error() + ")"
	} else {
		d.hooksOK++
	}
	out := strings.TrimSpace(r.OutputTail)
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	if out != "" {
		out = " -> " + out
	}
	// The demo's own subscription can get an event after the worker's
	// did, so a hook may end before its event's seq is known.
	event := r.Event
	if seq, ok := d.seqs[r.EventID]; ok {
		event = fmt.Sprintf("#%d %s", seq, r.Event)
	}
	fmt.Fprintf(d.out, "%7.2fs        hook %q (%s) on %s: %s in %s%s\n", time.Since(d.start).Seconds(), r.Hook, r.Type, event,
		status, r.Duration.Round(time.Millisecond), out)
}

// rememberSeq records the seq of event id; d.mu must be held.
func (d *demoRun) rememberSeq(id string, seq uint64) {
	if _, ok := d.seqs[id]; ok {
		return
	}
	d.seqs[id] = seq
	d.idOrder = append(d.idOrder, id)
	if len(d.idOrder) > maxDemoSeqs {
		delete(d.seqs, d.idOrder[0])
		d.idOrder = d.idOrder[1:]
	}
}

func (d *demoRun) summary(outcome string, executed []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// The event's time is the one its event line showed. The run time is
	// given apart, because the demo keeps running after the print ends for
	// the PrintDone hooks, and with --keep-running until Ctrl-C.
	if outcome == bridge.EventPrintDone || outcome == bridge.EventPrintFailed {
		fmt.Fprintf(d.out, "\nsummary: %s at %.2fs; the demo ran %.1fs\n", outcome, d.finishedAt.Seconds(), time.Since(d.start).Seconds())
	} else {
		fmt.Fprintf(d.out, "\nsummary: %s; the demo ran %.1fs\n", outcome, time.Since(d.start).Seconds())
	}
	names := make([]string, 0, len(d.counts))
	total := 0
	for name, n := range d.counts {
		names = append(names, name)
		total += n
	}
	sort.Strings(names)
	fmt.Fprintf(d.out, "  events received: %d (last seq %d)\n", total, d.lastSeq)
	for _, name := range names {
		fmt.Fprintf(d.out, "    %-22s %d\n", name, d.counts[name])
	}
	fmt.Fprintf(d.out, "  hooks run: %d ok, %d failed (listed above in the order they ended)\n", d.hooksOK, d.hooksFail)
	fmt.Fprintf(d.out, "  G-code lines executed by the virtual printer: %d\n", len(executed))
}

// describePayload renders a payload as short key=value pairs.
func describePayload(p bridge.Payload) string {
	if p == nil {
		return ""
	}
	parts := make([]string, 0, len(p))
	for _, f := range p {
		v, _ := json.Marshal(f.Value)
		s := string(v)
		if len(s) > 60 {
			s = s[:57] + "..."
		}
		parts = append(parts, f.Key+"="+s)
	}
	return strings.Join(parts, " ")
}

// writeDemoPolicy writes the edge's command policy for a virtual printer
// running at speed to path and returns its rate limits for the output.
// The defaults are sized for a printer in real time. The virtual printer
// fires events, and so the hooks' G-code commands, speed times as often,
// so the per-second rates grow by that factor and the bursts stay. At
// speed 0 the print is as fast as the serial line allows, so the limits
// are off.
func writeDemoPolicy(path string, speed float64) (string, error) {
	factor := max(speed, 1)
	rate := policy.RateConfig{LinesPerSecond: policy.DefaultLinesPerSecond * factor, Burst: policy.DefaultBurst}
	total := policy.RateConfig{LinesPerSecond: policy.DefaultTotalLinesPerSecond * factor, Burst: policy.DefaultTotalBurst}
	described := fmt.Sprintf("%g lines/s per source (burst %d), %g lines/s from all sources (burst %d)",
		rate.LinesPerSecond, rate.Burst, total.LinesPerSecond, total.Burst)
	if speed > 1 {
		described += fmt.Sprintf(", the defaults times --speed %g", speed)
	}
	if speed == 0 {
		rate, total = policy.RateConfig{}, policy.RateConfig{}
		described = "off, because --speed 0 prints without waiting"
	}
	data, err := yaml.Marshal(policy.File{Defaults: policy.Config{Rate: &rate, TotalRate: &total}})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("failed to write the demo's command policy %s: %w", path, err)
	}
	return described, nil
}
