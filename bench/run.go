package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/printbridge/printbridge/printer"
)

// Profiles of Options.
const (
	// ProfileFull is the profile of `make bench` and docs/benchmarks.md.
	ProfileFull = "full"
	// ProfileSmoke runs every measurement once on tiny inputs, for CI.
	ProfileSmoke = "smoke"
)

// Options selects the inputs and sizes of a Run.
type Options struct {
	Profile  string
	RepoRoot string
	// Binary is the printbridge binary; Run builds one when empty.
	Binary string
	// LeanBinary is a build with the tag noembeddedbroker, whose memory
	// the memory section measures too. Run builds one when both it and
	// Binary are empty.
	LeanBinary string
	// WorkDir holds every temporary file; a new temporary directory
	// when empty.
	WorkDir string

	// StreamFile is printed at every baud of Bauds and every virtual
	// printer speed of Speeds, by each host.
	StreamFile string
	Bauds      []int
	Speeds     []float64

	// EdgeMemorySource is repeated into a file of EdgeMemoryBytes.
	EdgeMemorySource string
	EdgeMemoryBytes  int64
	// WorkerEvents are published to the worker once at WorkerRate events
	// per second and once as fast as the broker takes them.
	WorkerEvents int
	WorkerRate   int

	PipelineEvents int
	Brokers        []string
	LatencySamples int
	StartupRuns    int

	AnalysisFiles   []string
	AnalysisMinTime time.Duration

	GoBenchTime     string
	GoBenchPackages []string

	// Only, when not empty, names the sections to measure (such as
	// "Serial streaming"); the others are left out of the report.
	Only []string

	// Log receives the progress of Run; ComponentLog is handed to the
	// printer, edge, worker and bus adapters under test.
	Log, ComponentLog *slog.Logger
}

// Virtual printer settings of the streaming runs: Marlin's BUFSIZE, the
// AVR receive buffer, a time per command for parsing and planning, and
// EMERGENCY_PARSER, which the windowed sender needs to go on behind
// long-running commands (see printer's windowBehind).
//
// NOTE: streamProcessingTime is an estimate for an 8-bit board, not a
// measurement of one. The simulator waits for it with a Go timer, which
// on a loaded machine can end up to a millisecond later.
const (
	streamBufSize         = 4
	streamRXBufferSize    = 128
	streamProcessingTime  = 500 * time.Microsecond
	streamEmergencyParser = true
)

// NewOptions returns the options of profile for the checkout at
// repoRoot.
func NewOptions(profile, repoRoot string) (Options, error) {
	gcodeDir := filepath.Join(repoRoot, "testdata", "gcode")
	o := Options{
		Profile:          profile,
		RepoRoot:         repoRoot,
		Brokers:          []string{BrokerNATS, BrokerJetStream, BrokerMosquitto, BrokerMosquittoNoDelay, BrokerMosquittoNoQuickAck},
		EdgeMemorySource: filepath.Join(gcodeDir, "cura-master_marlin_dsf-unittest.gcode"),
		GoBenchPackages:  []string{"./printer", "./hooks", "./bridge"},
		Log:              slog.New(slog.DiscardHandler),
		ComponentLog:     slog.New(slog.DiscardHandler),
	}
	switch profile {
	case ProfileFull:
		o.StreamFile = filepath.Join(gcodeDir, "prusaslicer-2.8.1_mk4s_mini-cube.gcode")
		o.Bauds = []int{115200, 250000}
		o.Speeds = []float64{0, 100}
		o.EdgeMemoryBytes = 50 << 20
		o.WorkerEvents = 100_000
		o.WorkerRate = 5000
		o.PipelineEvents = 50_000
		o.LatencySamples = 1000
		o.StartupRuns = 10
		o.AnalysisMinTime = time.Second
		o.GoBenchTime = "1s"
	case ProfileSmoke:
		o.StreamFile = filepath.Join(gcodeDir, "bambustudio-1.9.7.52_square-ring_tiny.gcode")
		o.Bauds = []int{250000}
		o.Speeds = []float64{0}
		o.EdgeMemoryBytes = 256 << 10
		o.WorkerEvents = 500
		o.WorkerRate = 5000
		o.PipelineEvents = 200
		o.LatencySamples = 5
		o.StartupRuns = 1
		o.GoBenchTime = "1x"
	default:
		return o, fmt.Errorf("unknown profile %q: use %s or %s", profile, ProfileFull, ProfileSmoke)
	}
	files, err := filepath.Glob(filepath.Join(gcodeDir, "*.gcode"))
	if err != nil || len(files) == 0 {
		return o, fmt.Errorf("no G-code files in %s", gcodeDir)
	}
	if profile == ProfileSmoke {
		files = []string{o.StreamFile}
	}
	o.AnalysisFiles = files
	return o, nil
}

// Results are the raw numbers of a Run.
type Results struct {
	Streams      []StreamResult
	EdgeMemory   *EdgeMemoryResult
	WorkerMemory []WorkerMemoryResult
	// LeanEdgeMemory and LeanWorkerMemory are the edge and the worker
	// runs, paced and unpaced, of the build without the embedded broker.
	LeanEdgeMemory   *EdgeMemoryResult
	LeanWorkerMemory []WorkerMemoryResult
	Pipelines        []PipelineResult
	WorkerAlone      []PipelineResult
	Latencies        []LatencyResult
	Analyses         []AnalysisResult
	Startups         []StartupResult
	GoBenchmarks     []GoBenchmark
}

// Run takes every measurement of opts in turn. A measurement that fails
// is reported in its table and in the returned error, and the others
// still run.
func Run(ctx context.Context, opts Options) (*Report, *Results, error) {
	report := &Report{Machine: ReadMachine(), Started: time.Now(), Profile: opts.Profile}
	res := &Results{}
	log := opts.Log
	if opts.WorkDir == "" {
		dir, err := os.MkdirTemp("", "pbbench-")
		if err != nil {
			return nil, nil, err
		}
		defer os.RemoveAll(dir)
		opts.WorkDir = dir
	}
	if opts.Binary == "" {
		log.Info("building printbridge")
		bin, err := BuildBinary(ctx, opts.RepoRoot, opts.WorkDir)
		if err != nil {
			return nil, nil, err
		}
		opts.Binary = bin
		if opts.LeanBinary == "" {
			lean, err := BuildBinary(ctx, opts.RepoRoot, opts.WorkDir, LeanBuildTag)
			if err != nil {
				return nil, nil, err
			}
			opts.LeanBinary = lean
		}
	}

	var errs []error
	section := func(name string, measure func() (Table, error)) {
		if len(opts.Only) > 0 && !slices.Contains(opts.Only, name) {
			return
		}
		log.Info("measuring", "section", name)
		start := time.Now()
		t, err := measure()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			t.Notes = append(t.Notes, "**This measurement failed:** "+firstLine(err.Error()))
			log.Error("measurement failed", "section", name, "error", err)
		}
		if t.Title == "" {
			t.Title = name
		}
		report.Tables = append(report.Tables, t)
		log.Info("measured", "section", name, "duration", time.Since(start).Round(time.Millisecond))
	}
	section("Serial streaming", func() (Table, error) { return measureStreaming(ctx, opts, res) })
	section("Peak memory", func() (Table, error) { return measureMemory(ctx, opts, res) })
	section("Event pipeline throughput", func() (Table, error) { return measurePipelines(ctx, opts, res) })
	section("Serial line to hook G-code latency", func() (Table, error) { return measureLatencies(ctx, opts, res) })
	section("G-code analysis", func() (Table, error) { return measureAnalyses(ctx, opts, res) })
	section("Start-up", func() (Table, error) { return measureStartups(ctx, opts, res) })
	section("Go micro-benchmarks", func() (Table, error) { return measureGoBenchmarks(ctx, opts, res) })
	report.Tables = append([]Table{targetTable(res)}, report.Tables...)
	report.Duration = time.Since(report.Started)
	return report, res, errors.Join(errs...)
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

func measureStreaming(ctx context.Context, opts Options, res *Results) (Table, error) {
	cmds, err := jobCommands(opts.StreamFile)
	if err != nil {
		return Table{}, err
	}
	wire := wireBytes(cmds)
	t := Table{
		Title:   "Serial streaming",
		Columns: []string{"Baud", "Virtual printer speed", "Host", "Lines/s", "Share of wire ceiling", "Share of flood rate", "vs printcore", "Resends"},
	}
	for _, baud := range opts.Bauds {
		for _, speed := range opts.Speeds {
			v := VirtualConfig{Baud: baud, Speed: speed, BufSize: streamBufSize, RXBufferSize: streamRXBufferSize,
				ProcessingTime: streamProcessingTime, EmergencyParser: streamEmergencyParser}
			runs := []func() (StreamResult, error){
				func() (StreamResult, error) { return StreamFlood(ctx, opts.Binary, opts.WorkDir, opts.StreamFile, v) },
				func() (StreamResult, error) {
					return StreamPrintbridge(ctx, opts.Binary, opts.WorkDir, opts.StreamFile, printer.FlowPingPong, v, opts.ComponentLog)
				},
				func() (StreamResult, error) {
					return StreamPrintbridge(ctx, opts.Binary, opts.WorkDir, opts.StreamFile, printer.FlowWindow, v, opts.ComponentLog)
				},
				func() (StreamResult, error) {
					return StreamPrintcore(ctx, opts.Binary, opts.WorkDir, opts.StreamFile, v)
				},
			}
			var group []StreamResult
			for _, run := range runs {
				r, err := run()
				if err != nil {
					return t, err
				}
				group = append(group, r)
			}
			res.Streams = append(res.Streams, group...)
			flood, pc := group[0], group[len(group)-1]
			for _, r := range group {
				t.Rows = append(t.Rows, []string{
					fmt.Sprint(baud), speedLabel(speed), r.Host, formatRate(r.LinesPerSecond()), formatPercent(r.CeilingShare()),
					formatPercent(r.LinesPerSecond() / flood.LinesPerSecond()), formatRatio(r.LinesPerSecond() / pc.LinesPerSecond()),
					fmt.Sprint(r.Resends),
				})
			}
		}
	}
	var ceilings []string
	for _, baud := range opts.Bauds {
		ceilings = append(ceilings, fmt.Sprintf("%d lines/s at %d baud", int(float64(len(cmds))/wireSeconds(wire, baud)), baud))
	}
	t.Notes = append(t.Notes, fmt.Sprintf("File %s: %d job lines, %d bytes as numbered lines with checksum and line feed. "+
		"Wire ceiling: %s. The virtual printer runs with BUFSIZE %d and a %d-byte receive buffer.",
		filepath.Base(opts.StreamFile), len(cmds), wire, strings.Join(ceilings, ", "), streamBufSize, streamRXBufferSize))
	return t, nil
}

func formatRSSKinds(k RSSKinds) string {
	return formatMiB(k.Anon) + " + " + formatMiB(k.File)
}

func speedLabel(speed float64) string {
	if speed == 0 {
		return "0 (no waiting)"
	}
	return fmt.Sprintf("%g (moves take 1/%g of real time)", speed, speed)
}

// keepStartupPagesEnv makes the edge and the worker keep the
// executable's pages that start-up touched (printbridge's memory.go).
const keepStartupPagesEnv = "PRINTBRIDGE_KEEP_STARTUP_PAGES"

func measureMemory(ctx context.Context, opts Options, res *Results) (Table, error) {
	t := Table{Title: "Peak memory", Columns: []string{"Process", "Build", "Workload", "RSS when idle", "Peak RSS (VmHWM)",
		"RSS at the end: anonymous + file", "Target"}}
	builds := []struct{ name, bin string }{{"default", opts.Binary}}
	if opts.LeanBinary != "" {
		builds = append(builds, struct{ name, bin string }{"-tags " + LeanBuildTag, opts.LeanBinary})
	}
	for i, b := range builds {
		edgeMem, err := MeasureEdgeMemory(ctx, b.bin, opts.WorkDir, opts.EdgeMemorySource, opts.EdgeMemoryBytes, opts.ComponentLog)
		if err != nil {
			return t, err
		}
		if i == 0 {
			res.EdgeMemory = &edgeMem
		} else {
			res.LeanEdgeMemory = &edgeMem
		}
		t.Rows = append(t.Rows,
			[]string{"printbridge edge", b.name, fmt.Sprintf("prints a %.1f MB file (%d lines, layers of %s) in %s, %s lines/s, unpaced",
				float64(edgeMem.FileBytes)/1e6, edgeMem.Lines, filepath.Base(opts.EdgeMemorySource), formatDuration(edgeMem.Elapsed),
				formatRate(float64(edgeMem.Lines)/edgeMem.Elapsed.Seconds())), formatMiB(edgeMem.EdgeIdleRSS), formatMiB(edgeMem.EdgePeakRSS),
				formatRSSKinds(edgeMem.EdgeEnd), "≤ 20 MiB"})
		if i == 0 {
			t.Rows = append(t.Rows, []string{"printbridge virtual-printer (not counted)", b.name, "the same print; it keeps every executed command", "",
				formatMiB(edgeMem.VirtualPeakRSS), "", ""})
		}
	}
	type workerRun struct {
		build, bin string
		rate       int
		lean       bool
		// keepPages runs the worker with the executable's start-up pages
		// kept, for comparison: it is not a target row.
		keepPages bool
	}
	runs := []workerRun{{"default", opts.Binary, opts.WorkerRate, false, false}, {"default", opts.Binary, 0, false, false}}
	if opts.LeanBinary != "" {
		runs = append(runs, workerRun{"-tags " + LeanBuildTag, opts.LeanBinary, opts.WorkerRate, true, false},
			workerRun{"-tags " + LeanBuildTag, opts.LeanBinary, 0, true, false},
			workerRun{"-tags " + LeanBuildTag + ", " + keepStartupPagesEnv + "=1", opts.LeanBinary, opts.WorkerRate, true, true})
	}
	for _, run := range runs {
		var env []string
		target := "≤ 15 MiB"
		if run.keepPages {
			env = []string{keepStartupPagesEnv + "=1"}
			target = "(comparison)"
		}
		workerMem, err := MeasureWorkerMemory(ctx, run.bin, opts.WorkDir, opts.WorkerEvents, run.rate, env, opts.ComponentLog)
		if err != nil {
			return t, err
		}
		switch {
		case run.keepPages:
		case run.lean:
			res.LeanWorkerMemory = append(res.LeanWorkerMemory, workerMem)
		default:
			res.WorkerMemory = append(res.WorkerMemory, workerMem)
		}
		pace := fmt.Sprintf("at %d events/s", run.rate)
		if run.rate == 0 {
			pace = "as fast as NATS takes them"
		}
		workload := fmt.Sprintf("%d events from %d publishers %s, every %dth a Home with a system hook; %d hook results in %s",
			workerMem.Events, workerPublishers, pace, homeEvery, workerMem.Results, formatDuration(workerMem.Elapsed))
		if workerMem.Results < workerMem.Events {
			workload += fmt.Sprintf(", %d events dropped by its full hook queue or NATS pending list", workerMem.Events-workerMem.Results)
		}
		t.Rows = append(t.Rows, []string{"printbridge worker", run.build, workload, formatMiB(workerMem.IdleRSS), formatMiB(workerMem.PeakRSS),
			formatRSSKinds(workerMem.End), target})
	}
	return t, nil
}

func measurePipelines(ctx context.Context, opts Options, res *Results) (Table, error) {
	t := Table{Title: "Event pipeline throughput",
		Columns: []string{"Broker", "Events", "Edge Emit calls/s", "Edge published/s", "Edge to worker hook results/s", "Worker alone hook results/s"}}
	for _, b := range opts.Brokers {
		p, err := MeasurePipeline(ctx, opts.WorkDir, b, opts.PipelineEvents, opts.ComponentLog)
		if err != nil {
			return t, err
		}
		w, err := MeasureWorker(ctx, opts.WorkDir, b, opts.PipelineEvents, opts.ComponentLog)
		if err != nil {
			return t, err
		}
		res.Pipelines = append(res.Pipelines, p)
		res.WorkerAlone = append(res.WorkerAlone, w)
		t.Rows = append(t.Rows, []string{b, fmt.Sprint(p.Events), formatRate(p.EmitPerSecond()), formatRate(p.PublishPerSecond()),
			formatRate(p.EventsPerSecond()) + resultsNote(p), formatRate(w.EventsPerSecond()) + resultsNote(w)})
	}
	return t, nil
}

func resultsNote(r PipelineResult) string {
	if r.Results < r.Events {
		return fmt.Sprintf(" (%d of %d)", r.Results, r.Events)
	}
	return ""
}

func measureLatencies(ctx context.Context, opts Options, res *Results) (Table, error) {
	t := Table{Title: "Serial line to hook G-code latency", Columns: []string{"Broker", "Samples", "p50", "p99", "Max"}}
	for _, b := range opts.Brokers {
		l, err := MeasureHookLatency(ctx, opts.Binary, opts.WorkDir, b, opts.LatencySamples, opts.ComponentLog)
		if err != nil {
			return t, err
		}
		res.Latencies = append(res.Latencies, l)
		t.Rows = append(t.Rows, []string{b, fmt.Sprint(len(l.Samples)), formatDuration(l.Percentile(50)),
			formatDuration(l.Percentile(99)), formatDuration(l.Percentile(100))})
	}
	return t, nil
}

func measureAnalyses(ctx context.Context, opts Options, res *Results) (Table, error) {
	t := Table{Title: "G-code analysis",
		Columns: []string{"File", "Size", "gcode.Analyze MB/s", "gcoder MB/s", "Ratio", "Layers (Go / gcoder)", "Filament mm (Go / gcoder)", "Estimate s (Go / gcoder)"}}
	for _, f := range opts.AnalysisFiles {
		a, err := MeasureAnalysis(ctx, f, opts.AnalysisMinTime)
		if err != nil {
			return t, err
		}
		res.Analyses = append(res.Analyses, a)
		t.Rows = append(t.Rows, []string{a.File, fmt.Sprintf("%.2f MB", float64(a.Bytes)/1e6), formatRate(a.GoMBPerSecond()),
			formatRate(a.GcoderMBPerSecond()), formatRatio(a.GoMBPerSecond() / a.GcoderMBPerSecond()),
			fmt.Sprintf("%d / %d", a.GoLayers, a.GcoderLayers), fmt.Sprintf("%.0f / %.0f", a.GoFilament, a.GcoderFilament),
			fmt.Sprintf("%.0f / %.0f", a.GoEstimate, a.GcoderEstimate)})
	}
	return t, nil
}

func measureStartups(ctx context.Context, opts Options, res *Results) (Table, error) {
	t := Table{Title: "Start-up", Columns: []string{"Broker", "Runs", "Min", "Median", "Max"}}
	for _, b := range []string{BrokerNATS, BrokerMosquitto, BrokerMosquittoNoDelay} {
		s, err := MeasureStartup(ctx, opts.Binary, opts.WorkDir, b, opts.StartupRuns, opts.ComponentLog)
		if err != nil {
			return t, err
		}
		res.Startups = append(res.Startups, s)
		runs := slices.Clone(s.Runs)
		slices.Sort(runs)
		t.Rows = append(t.Rows, []string{b, fmt.Sprint(len(runs)), formatDuration(runs[0]), formatDuration(runs[len(runs)/2]),
			formatDuration(runs[len(runs)-1])})
	}
	return t, nil
}

func measureGoBenchmarks(ctx context.Context, opts Options, res *Results) (Table, error) {
	t := Table{Title: "Go micro-benchmarks", Columns: []string{"Package", "Benchmark", "ns/op", "MB/s", "B/op", "allocs/op"}}
	results, err := RunGoBenchmarks(ctx, opts.RepoRoot, opts.GoBenchTime, opts.GoBenchPackages)
	if err != nil {
		return t, err
	}
	res.GoBenchmarks = results
	for _, b := range results {
		mbs := ""
		if b.MBPerSecond > 0 {
			mbs = formatRate(b.MBPerSecond)
		}
		t.Rows = append(t.Rows, []string{b.Package, b.Name, formatRate(b.NsPerOp), mbs, fmt.Sprint(b.BytesPerOp), fmt.Sprint(b.AllocsPerOp)})
	}
	return t, nil
}
