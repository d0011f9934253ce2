package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/printbridge/printbridge/printer/gcode"
)

// AnalysisResult compares printer/gcode.Analyze with Printrun's gcoder
// on one file. Both read the file from memory, and each is repeated
// until it has run for the minimum time.
type AnalysisResult struct {
	File  string
	Bytes int64
	// GoPerRun and GcoderPerRun are the mean times of one analysis.
	GoPerRun, GcoderPerRun time.Duration
	// What each computed, to show they did comparable work: layer count,
	// filament length in mm and estimated print time in seconds.
	GoLayers, GcoderLayers     int
	GoFilament, GcoderFilament float64
	GoEstimate, GcoderEstimate float64
}

// GoMBPerSecond is Analyze's throughput in MB (10⁶ bytes) per second.
func (r AnalysisResult) GoMBPerSecond() float64 {
	return float64(r.Bytes) / 1e6 / r.GoPerRun.Seconds()
}

// GcoderMBPerSecond is gcoder's throughput in MB per second.
func (r AnalysisResult) GcoderMBPerSecond() float64 {
	return float64(r.Bytes) / 1e6 / r.GcoderPerRun.Seconds()
}

// gcoderDriver times gcoder.GCode, which splits the lines, builds the
// layers, and computes the duration estimate and filament length, on a
// list of lines read before timing. It prints one JSON object.
const gcoderDriver = `
import json, sys, time
from printrun import gcoder
path, min_seconds = sys.argv[1], float(sys.argv[2])
with open(path, errors="replace") as f:
    lines = f.readlines()
runs, total = 0, 0.0
while runs == 0 or total < min_seconds:
    start = time.perf_counter()
    g = gcoder.GCode(lines)
    layers, duration = g.estimate_duration()
    total += time.perf_counter() - start
    runs += 1
print(json.dumps({"seconds_per_run": total / runs, "layers": layers,
                  "filament": g.filament_length, "estimate": duration.total_seconds()}))
`

// MeasureAnalysis runs both analysers on file for at least minTime each.
func MeasureAnalysis(ctx context.Context, file string, minTime time.Duration) (AnalysisResult, error) {
	res := AnalysisResult{File: filepath.Base(file)}
	data, err := os.ReadFile(file)
	if err != nil {
		return res, fmt.Errorf("read G-code file: %w", err)
	}
	res.Bytes = int64(len(data))

	var last *gcode.Result
	runs, total := 0, time.Duration(0)
	for runs == 0 || total < minTime {
		start := time.Now()
		last, err = gcode.Analyze(bytes.NewReader(data), gcode.Options{})
		total += time.Since(start)
		if err != nil {
			return res, fmt.Errorf("analyze %s: %w", file, err)
		}
		runs++
	}
	res.GoPerRun = total / time.Duration(runs)
	res.GoLayers, res.GoFilament, res.GoEstimate = last.LayerCount, last.TotalFilamentLength(), last.EstimatedPrintTime

	if err := checkPrintrun(ctx); err != nil {
		return res, err
	}
	cmd := exec.CommandContext(ctx, python3, "-c", gcoderDriver, file, strconv.FormatFloat(minTime.Seconds(), 'f', 3, 64))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("gcoder on %s: %w\n%s", file, err, tail(stderr.String(), 20))
	}
	var out struct {
		SecondsPerRun float64 `json:"seconds_per_run"`
		Layers        int     `json:"layers"`
		Filament      float64 `json:"filament"`
		Estimate      float64 `json:"estimate"`
	}
	if err := json.Unmarshal(lastLine(stdout.Bytes()), &out); err != nil {
		return res, fmt.Errorf("gcoder driver output %q: %w", stdout.String(), err)
	}
	res.GcoderPerRun = time.Duration(out.SecondsPerRun * float64(time.Second))
	res.GcoderLayers, res.GcoderFilament, res.GcoderEstimate = out.Layers, out.Filament, out.Estimate
	return res, nil
}
