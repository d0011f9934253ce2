package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// TestBenchSmoke runs every measurement once on tiny inputs, so the
// benchmark code cannot rot. It checks that each measurement produced
// complete results; it asserts nothing about how fast anything was.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts brokers, printcore and the virtual printer; skipped with -short")
	}
	root, err := FindRepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := NewOptions(ProfileSmoke, root)
	if err != nil {
		t.Fatal(err)
	}
	opts.WorkDir = t.TempDir()
	opts.ComponentLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	report, res, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkStreams(t, opts, res)
	checkMemory(t, res)
	checkEvents(t, opts, res)
	checkAnalysisAndStartup(t, opts, res)

	md := report.Markdown()
	for _, title := range []string{"Against the targets", "Serial streaming", "Peak memory", "Event pipeline throughput",
		"Serial line to hook G-code latency", "G-code analysis", "Start-up", "Go micro-benchmarks"} {
		if !strings.Contains(md, "### "+title+"\n") {
			t.Errorf("report has no %q table", title)
		}
	}
	if strings.Contains(md, "This measurement failed") {
		t.Errorf("report names a failed measurement:\n%s", md)
	}
}

func checkStreams(t *testing.T, opts Options, res *Results) {
	t.Helper()
	want := 4 * len(opts.Bauds) * len(opts.Speeds)
	if len(res.Streams) != want {
		t.Fatalf("%d streaming results, want %d", len(res.Streams), want)
	}
	for _, s := range res.Streams {
		if s.Lines == 0 || s.WireBytes <= s.Lines {
			t.Errorf("%s: %d lines in %d wire bytes", s.Host, s.Lines, s.WireBytes)
		}
		if s.Elapsed <= 0 {
			t.Errorf("%s: elapsed %s", s.Host, s.Elapsed)
		}
		if s.Executed < s.Lines {
			t.Errorf("%s: simulator executed %d commands for %d job lines", s.Host, s.Executed, s.Lines)
		}
		if s.Resends != 0 {
			t.Errorf("%s: %d resends on a clean line", s.Host, s.Resends)
		}
	}
}

func checkMemory(t *testing.T, res *Results) {
	t.Helper()
	if m := res.EdgeMemory; m == nil {
		t.Error("no edge memory result")
	} else {
		checkEdgeMemory(t, "edge", m)
		if m.VirtualPeakRSS <= 0 {
			t.Errorf("virtual printer peak RSS = %d, want a positive size", m.VirtualPeakRSS)
		}
	}
	if m := res.LeanEdgeMemory; m == nil {
		t.Errorf("no edge memory result of the -tags %s build", LeanBuildTag)
	} else {
		checkEdgeMemory(t, "edge, -tags "+LeanBuildTag, m)
	}
	if len(res.WorkerMemory) != 2 {
		t.Fatalf("%d worker memory results, want a paced and an unpaced one", len(res.WorkerMemory))
	}
	for _, m := range res.WorkerMemory {
		checkWorkerMemory(t, fmt.Sprintf("worker at %d events/s", m.Rate), &m)
	}
	if len(res.LeanWorkerMemory) != 2 {
		t.Fatalf("%d worker memory results of the -tags %s build, want a paced and an unpaced one", len(res.LeanWorkerMemory), LeanBuildTag)
	}
	for _, m := range res.LeanWorkerMemory {
		checkWorkerMemory(t, fmt.Sprintf("worker at %d events/s, -tags %s", m.Rate, LeanBuildTag), &m)
	}
}

func checkEdgeMemory(t *testing.T, name string, m *EdgeMemoryResult) {
	t.Helper()
	if m.Lines == 0 {
		t.Errorf("%s: no job lines", name)
	}
	checkRSS(t, name, m.EdgeIdleRSS, m.EdgePeakRSS, m.EdgeEnd)
}

func checkWorkerMemory(t *testing.T, name string, m *WorkerMemoryResult) {
	t.Helper()
	if m.Results == 0 {
		t.Errorf("%s: no hook results for %d events", name, m.Events)
	}
	checkRSS(t, name, m.IdleRSS, m.PeakRSS, m.End)
}

// checkRSS checks the memory readings of one process. The peak includes
// every VmRSS read of the process, so it is at least the idle and end
// readings even where the kernel's VmHWM is lower than them.
func checkRSS(t *testing.T, name string, idle, peak int64, end RSSKinds) {
	t.Helper()
	if idle <= 0 {
		t.Errorf("%s: idle RSS = %d, want a positive size", name, idle)
	}
	if end.Anon <= 0 {
		t.Errorf("%s: RssAnon at the end = %d, want a positive size", name, end.Anon)
	}
	if end.File <= 0 {
		t.Errorf("%s: RssFile at the end = %d, want a positive size", name, end.File)
	}
	if peak < idle {
		t.Errorf("%s: peak RSS %d is below the idle RSS %d", name, peak, idle)
	}
	if peak < end.Anon+end.File {
		t.Errorf("%s: peak RSS %d is below the RSS at the end, %d anonymous + %d file", name, peak, end.Anon, end.File)
	}
}

func checkEvents(t *testing.T, opts Options, res *Results) {
	t.Helper()
	if len(res.Pipelines) != len(opts.Brokers) || len(res.WorkerAlone) != len(opts.Brokers) {
		t.Fatalf("%d pipeline and %d worker results, want %d each", len(res.Pipelines), len(res.WorkerAlone), len(opts.Brokers))
	}
	for i, p := range res.Pipelines {
		// The worker's queue holds the whole burst, so every event must
		// have its result.
		if p.Results != p.Events {
			t.Errorf("%s: %d hook results for %d events", p.Broker, p.Results, p.Events)
		}
		if w := res.WorkerAlone[i]; w.Results != w.Events {
			t.Errorf("%s, worker alone: %d hook results for %d events", w.Broker, w.Results, w.Events)
		}
	}
	if len(res.Latencies) != len(opts.Brokers) {
		t.Errorf("%d latency results, want one per broker", len(res.Latencies))
	}
	for _, l := range res.Latencies {
		if len(l.Samples) != opts.LatencySamples {
			t.Errorf("%s: %d latency samples, want %d", l.Broker, len(l.Samples), opts.LatencySamples)
		}
		for _, d := range l.Samples {
			if d <= 0 {
				t.Errorf("%s: latency sample %s, want a positive time", l.Broker, d)
			}
		}
	}
}

func checkAnalysisAndStartup(t *testing.T, opts Options, res *Results) {
	t.Helper()
	if len(res.Analyses) != len(opts.AnalysisFiles) {
		t.Errorf("%d analysis results, want %d", len(res.Analyses), len(opts.AnalysisFiles))
	}
	for _, a := range res.Analyses {
		if a.GoLayers == 0 || a.GcoderLayers == 0 || a.GoPerRun <= 0 || a.GcoderPerRun <= 0 {
			t.Errorf("analysis of %s = %+v, want layers and times from both analysers", a.File, a)
		}
	}
	if len(res.Startups) != 3 {
		t.Errorf("%d start-up results, want one for NATS and two for mosquitto", len(res.Startups))
	}
	for _, s := range res.Startups {
		if len(s.Runs) != opts.StartupRuns {
			t.Errorf("%s: %d start-up runs, want %d", s.Broker, len(s.Runs), opts.StartupRuns)
		}
	}
	names := map[string]bool{}
	for _, b := range res.GoBenchmarks {
		names[strings.Split(b.Name, "-")[0]] = true
	}
	for _, want := range []string{"BenchmarkLineReader", "BenchmarkFormatNumbered", "BenchmarkParseTemperatures",
		"BenchmarkParsePosition", "BenchmarkEnvelopeMarshal", "BenchmarkPlaceholders", "BenchmarkFormat"} {
		if !names[want] {
			t.Errorf("Go benchmark %s did not run; got %v", want, names)
		}
	}
}

func TestReplaceGenerated(t *testing.T) {
	doc := "# Benchmarks\n\nintro\n\n" + BeginMarker + "\nold table\n" + EndMarker + "\n\nlimits\n"
	got, err := ReplaceGenerated(doc, "new table\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Benchmarks\n\nintro\n\n" + BeginMarker + "\nnew table\n" + EndMarker + "\n\nlimits\n"
	if got != want {
		t.Errorf("ReplaceGenerated = %q, want %q", got, want)
	}
	if _, err := ReplaceGenerated("no markers", "x"); err == nil {
		t.Error("ReplaceGenerated accepted a document without markers")
	}
}

func TestParseGoBench(t *testing.T) {
	out := "goos: linux\npkg: github.com/printbridge/printbridge/printer\n" +
		"BenchmarkLineReader-2   \t    9146\t    130977 ns/op\t 277.54 MB/s\t   98307 B/op\t    4609 allocs/op\n" +
		"BenchmarkFormatNumbered-2   \t 15000000\t        77.48 ns/op\t      98 B/op\t       3 allocs/op\nPASS\n"
	got := parseGoBench(out)
	if len(got) != 2 {
		t.Fatalf("parsed %d results, want 2: %+v", len(got), got)
	}
	want := GoBenchmark{Package: "github.com/printbridge/printbridge/printer", Name: "BenchmarkLineReader-2", Iterations: 9146,
		NsPerOp: 130977, MBPerSecond: 277.54, BytesPerOp: 98307, AllocsPerOp: 4609}
	if got[0] != want {
		t.Errorf("first result = %+v, want %+v", got[0], want)
	}
	if got[1].MBPerSecond != 0 || got[1].AllocsPerOp != 3 {
		t.Errorf("second result = %+v, want no MB/s and 3 allocs/op", got[1])
	}
}

func TestWireBytes(t *testing.T) {
	// N1 G28*18 and N2 M105*37 plus line feeds.
	if got := wireBytes([]string{"G28", "M105"}); got != len("N1 G28*18\n")+len("N2 M105*37\n") {
		t.Errorf("wireBytes = %d, want %d", got, len("N1 G28*18\n")+len("N2 M105*37\n"))
	}
}

func TestLiftZ(t *testing.T) {
	cases := []struct{ in, want string }{
		{"G1 Z0.2 F720\n", "G1 Z10.200 F720\n"},
		{"G1 X1 Y2 E0.5 ; Z in a comment\n", "G1 X1 Y2 E0.5 ; Z in a comment\n"},
		{"M104 S200\n", "M104 S200\n"},
	}
	for _, c := range cases {
		if got := liftZ(c.in, 10); got != c.want {
			t.Errorf("liftZ(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
