package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// GoBenchmark is one line of `go test -bench` output with -benchmem.
type GoBenchmark struct {
	Package     string
	Name        string
	Iterations  int64
	NsPerOp     float64
	MBPerSecond float64 // 0 when the benchmark sets no bytes
	BytesPerOp  int64
	AllocsPerOp int64
}

// RunGoBenchmarks runs the Go benchmarks of packages (import paths or
// ./dir patterns relative to repoRoot) with -benchmem and benchtime
// (such as "1s" or "1x"), and parses their results.
func RunGoBenchmarks(ctx context.Context, repoRoot, benchtime string, packages []string) ([]GoBenchmark, error) {
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "1", "-benchtime", benchtime}, packages...)
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = repoRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	results := parseGoBench(stdout.String())
	if len(results) == 0 {
		return nil, fmt.Errorf("go %s printed no benchmark results:\n%s", strings.Join(args, " "), stdout.String())
	}
	return results, nil
}

// parseGoBench reads the benchmark lines of go test output; the pkg:
// lines name the package of the lines that follow.
func parseGoBench(out string) []GoBenchmark {
	var results []GoBenchmark
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		b := GoBenchmark{Package: pkg, Name: fields[0]}
		b.Iterations, _ = strconv.ParseInt(fields[1], 10, 64)
		for i := 2; i+1 < len(fields); i += 2 {
			value, unit := fields[i], fields[i+1]
			switch unit {
			case "ns/op":
				b.NsPerOp, _ = strconv.ParseFloat(value, 64)
			case "MB/s":
				b.MBPerSecond, _ = strconv.ParseFloat(value, 64)
			case "B/op":
				b.BytesPerOp, _ = strconv.ParseInt(value, 10, 64)
			case "allocs/op":
				b.AllocsPerOp, _ = strconv.ParseInt(value, 10, 64)
			}
		}
		results = append(results, b)
	}
	return results
}
