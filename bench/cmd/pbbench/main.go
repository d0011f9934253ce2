// Command pbbench runs every printbridge benchmark of package bench and
// writes the tables into docs/benchmarks.md, or prints them.
//
// Usage (from the repository root; `make bench` runs the first line):
//
//	go run ./bench/cmd/pbbench -out docs/benchmarks.md
//	go run ./bench/cmd/pbbench -profile smoke
//	go run ./bench/cmd/pbbench -only "Event pipeline throughput" -cpuprofile cpu.out
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/printbridge/printbridge/bench"
)

func main() {
	os.Exit(run())
}

func run() int {
	profile := flag.String("profile", bench.ProfileFull, "input sizes: full (for docs/benchmarks.md, several minutes) or smoke (tiny inputs, seconds)")
	out := flag.String("out", "", "Markdown file whose generated block (between the pbbench markers) receives the tables; empty prints them")
	binary := flag.String("binary", "", "printbridge binary to measure; built from this checkout when empty")
	leanBinary := flag.String("lean-binary", "", "printbridge binary built with -tags noembeddedbroker, whose memory is measured too; built from this checkout when it and -binary are empty")
	workDir := flag.String("work-dir", "", "directory for temporary files, kept afterwards; a removed temporary directory when empty")
	verbose := flag.Bool("v", false, "log each measurement's progress to stderr")
	only := flag.String("only", "", "comma-separated section titles to measure, such as \"Serial streaming\"; empty measures all. Not allowed with -out, which needs every table")
	cpuProfile := flag.String("cpuprofile", "", "`file` to write a CPU profile of this process to, for go tool pprof; the edge, embedded nats-server and worker of the event pipeline and latency runs run in this process")
	flag.Parse()
	if *only != "" && *out != "" {
		fmt.Fprintln(os.Stderr, "pbbench: -only and -out cannot be combined, because -out rewrites every table; drop one of them")
		return 2
	}

	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pbbench:", err)
			return 1
		}
		defer stop()
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	root, err := bench.FindRepoRoot(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pbbench:", err)
		return 1
	}
	opts, err := bench.NewOptions(*profile, root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pbbench:", err)
		return 2
	}
	opts.Binary, opts.LeanBinary, opts.WorkDir, opts.Log = *binary, *leanBinary, *workDir, log
	if *only != "" {
		opts.Only = strings.Split(*only, ",")
	}
	// The components under test log their own errors only, so their
	// routine lines do not drown the progress.
	opts.ComponentLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report, _, runErr := bench.Run(ctx, opts)
	if report == nil {
		fmt.Fprintln(os.Stderr, "pbbench:", runErr)
		return 1
	}
	generated := report.Markdown()
	if *out == "" {
		fmt.Print(generated)
	} else if err := writeGenerated(*out, generated); err != nil {
		fmt.Fprintln(os.Stderr, "pbbench:", err)
		return 1
	}
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "pbbench: some measurements failed:", runErr)
		return 1
	}
	return 0
}

// startCPUProfile starts a CPU profile into path and returns the function
// that ends it and closes the file.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start CPU profile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "pbbench: close CPU profile:", err)
		}
	}, nil
}

func writeGenerated(path, generated string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	updated, err := bench.ReplaceGenerated(string(doc), generated)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, []byte(updated), 0o644)
}
