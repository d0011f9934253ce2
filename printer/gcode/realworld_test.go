package gcode

import (
	"bufio"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const realDir = "../../testdata/gcode"

// realExpectation is what the analysis of one real slicer file must
// match beyond the common bounds (time within 15%, filament within 2% of
// the slicer's header).
type realExpectation struct {
	// filamentGap is the measured deviation in percent of a file whose
	// header counts filament differently. The test holds the analysis to
	// it within half a percentage point, and gapReason gives the cause.
	filamentGap *float64
	gapReason   string
	// volumeOnly marks a header that states volume, not length.
	volumeOnly bool
	// volumeInCubicMM marks a header whose "cm³" volume is in fact mm³.
	volumeInCubicMM bool
}

func gap(v float64) *float64 { return &v }

var realExpectations = map[string]realExpectation{
	"bambustudio-1.9.7.52_square-ring_tiny.gcode": {volumeInCubicMM: true},
	"cura-5.0.0_ultigcode_um2_fw-retract.gcode":   {volumeOnly: true},
	"cura-master_marlin_dsf-unittest.gcode":       {},
	"ideamaker-5.1.0_calibration-cube.gcode":      {},
	"orca-flashforge-1.3.0_ad5m-pro.gcode": {filamentGap: gap(2.28),
		gapReason: "the header leaves out the 27.8 mm purge line of the start G-code (1247.66 − 27.8 = 1219.86)"},
	"prusaslicer-2.5.0_mk3s-mmu2s_multitool.gcode": {filamentGap: gap(32.03),
		gapReason: "the header leaves out the 120 mm initial load of the start G-code and the 60 mm load after the change to T2, and does not apply M221 S95 to tool 0 (500.82 = 120 + 0.95 × 400.85, 158.63 = 98.63 + 60)"},
	"prusaslicer-2.7.4_ender3v2_arcs_screw.gcode": {},
	"prusaslicer-2.8.1_mk4s_mini-cube.gcode":      {},
	"simplify3d-4.1.2_ormerod2.gcode":             {},
}

func analyzeFile(t testing.TB, path string) *Result {
	t.Helper()
	return analyzeFileWith(t, path, Options{}, false)
}

// analyzeFileWith analyses a file; with noFileLimits it drops the
// file's motion settings (M201 to M205, M566, SET_VELOCITY_LIMIT) so
// that opts.Limits alone apply.
func analyzeFileWith(t testing.TB, path string, opts Options, noFileLimits bool) *Result {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	var in io.Reader = f
	if noFileLimits {
		in = dropLines(f, "M201", "M202", "M203", "M204", "M205", "M566", "SET_VELOCITY_LIMIT")
	}
	r, err := Analyze(in, opts)
	if err != nil {
		t.Fatalf("Analyze %s: %v", path, err)
	}
	return r
}

func percent(got, want float64) float64 { return (got/want - 1) * 100 }

func TestRealSlicerFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(realDir, "*.gcode"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < len(realExpectations) {
		t.Fatalf("found %d G-code files in %s, want at least %d", len(files), realDir, len(realExpectations))
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			want, ok := realExpectations[name]
			if !ok {
				t.Fatalf("no expectation for %s: add it to realExpectations after checking its header", name)
			}
			r := analyzeFile(t, path)
			checkRealTime(t, r)
			checkRealFilament(t, r, want)
			checkRealLayers(t, r)
			checkRealModel(t, path, r)
		})
	}
}

func checkRealTime(t *testing.T, r *Result) {
	t.Helper()
	stated := r.Slicer.EstimatedPrintTime
	if stated == nil {
		t.Fatalf("header states no print time; generator %q", r.Slicer.Generator)
	}
	dev := percent(r.EstimatedPrintTime, *stated)
	t.Logf("time: analysis %.0f s, slicer %.0f s, deviation %+.1f%% (moves %.0f s, dwell %.0f s, homing %.1f s)",
		r.EstimatedPrintTime, *stated, dev, r.Time.Moves, r.Time.Dwell, r.Time.Homing)
	if math.Abs(dev) > 15 {
		t.Errorf("print time %.0f s deviates %+.1f%% from the slicer's %.0f s, want within 15%%", r.EstimatedPrintTime, dev, *stated)
	}
}

func checkRealFilament(t *testing.T, r *Result, want realExpectation) {
	t.Helper()
	if want.volumeOnly {
		stated, ok := r.Slicer.TotalFilamentVolume()
		if !ok {
			t.Fatal("header states no filament volume")
		}
		dev := percent(r.TotalFilamentVolume(), stated)
		t.Logf("volume: analysis %.3f cm³, slicer %.3f cm³, deviation %+.2f%% (volumetric %v, length %.1f mm at %.2f mm)",
			r.TotalFilamentVolume(), stated, dev, r.VolumetricExtrusion, r.TotalFilamentLength(), r.FilamentDiameter)
		if math.Abs(dev) > 2 {
			t.Errorf("filament volume deviates %+.2f%%, want within 2%%", dev)
		}
		return
	}
	stated, ok := r.Slicer.TotalFilamentLength()
	if !ok {
		t.Fatal("header states no filament length")
	}
	dev := percent(r.TotalFilamentLength(), stated)
	t.Logf("filament: analysis %.2f mm, slicer %.2f mm, deviation %+.2f%%; per tool %v, slicer %v",
		r.TotalFilamentLength(), stated, dev, r.Filament, r.Slicer.FilamentLength)
	switch {
	case want.filamentGap != nil:
		t.Logf("known gap of %+.2f%%: %s", *want.filamentGap, want.gapReason)
		if math.Abs(dev-*want.filamentGap) > 0.5 {
			t.Errorf("filament deviates %+.2f%%, want the documented %+.2f%% (%s)", dev, *want.filamentGap, want.gapReason)
		}
	case math.Abs(dev) > 2:
		t.Errorf("filament %.2f mm deviates %+.2f%% from the slicer's %.2f mm, want within 2%%", r.TotalFilamentLength(), dev, stated)
	}
	if want.volumeInCubicMM {
		volume, _ := r.Slicer.TotalFilamentVolume()
		if dev := percent(r.TotalFilamentVolume()*1000, volume); math.Abs(dev) > 2 {
			t.Errorf("header volume %.2f is not the analysis volume %.4f cm³ in mm³ (deviation %+.2f%%)", volume, r.TotalFilamentVolume(), dev)
		}
	}
}

func checkRealLayers(t *testing.T, r *Result) {
	t.Helper()
	t.Logf("layers: analysis %d, slicer %v; printing area %+v", r.LayerCount, intOrNil(r.Slicer.LayerCount), r.PrintingArea)
	if r.Slicer.LayerCount != nil && *r.Slicer.LayerCount != r.LayerCount {
		t.Errorf("LayerCount = %d, slicer states %d", r.LayerCount, *r.Slicer.LayerCount)
	}
	box := r.Slicer.PrintingArea
	if box == nil {
		return
	}
	t.Logf("slicer printing area %+v", *box)
	if r.PrintingArea == nil {
		t.Fatal("printingArea is nil but the slicer states one")
	}
	// ideaMaker states the model's Z range from 0, so only X, Y and the
	// top are compared.
	got := r.PrintingArea
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"minX", got.MinX, box.MinX}, {"maxX", got.MaxX, box.MaxX}, {"minY", got.MinY, box.MinY}, {"maxY", got.MaxY, box.MaxY}, {"maxZ", got.MaxZ, box.MaxZ}} {
		if !near(c.got, c.want, 0.01) {
			t.Errorf("printingArea %s = %v, slicer states %v", c.name, c.got, c.want)
		}
	}
}

// checkRealModel measures how the estimate depends on the model. More
// look-ahead can only make a plan faster, and a constant-speed estimate
// (every move at its F, no acceleration) is a lower bound.
func checkRealModel(t *testing.T, path string, r *Result) {
	t.Helper()
	stated := *r.Slicer.EstimatedPrintTime
	blocks := []int{1, 16, 64, 1024}
	times := make([]float64, len(blocks))
	for i, n := range blocks {
		times[i] = analyzeFileWith(t, path, Options{PlannerBlocks: n}, false).EstimatedPrintTime
	}
	constant := analyzeFileWith(t, path, Options{Limits: fastLimits()}, true).EstimatedPrintTime
	jd := MarlinDefaults()
	jd.Junction = JunctionDeviation
	deviation := analyzeFileWith(t, path, Options{Limits: &jd}, false).EstimatedPrintTime
	t.Logf("model: look-ahead 1/16/64/1024 blocks %+.1f%%/%+.1f%%/%+.1f%%/%+.1f%%, constant speed %+.1f%%, junction deviation 0.013 mm %+.1f%%",
		percent(times[0], stated), percent(times[1], stated), percent(times[2], stated), percent(times[3], stated),
		percent(constant, stated), percent(deviation, stated))
	for i := 1; i < len(times); i++ {
		if times[i] > times[i-1]*(1+1e-9) {
			t.Errorf("%d blocks plan %.1f s, slower than %d blocks (%.1f s)", blocks[i], times[i], blocks[i-1], times[i-1])
		}
	}
	if constant > r.EstimatedPrintTime {
		t.Errorf("constant-speed estimate %.1f s exceeds the planned %.1f s", constant, r.EstimatedPrintTime)
	}
}

// dropLines filters out lines that start with one of the prefixes.
func dropLines(r io.Reader, prefixes ...string) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		w := bufio.NewWriter(pw)
		for sc.Scan() {
			line := sc.Text()
			drop := false
			for _, p := range prefixes {
				if strings.HasPrefix(line, p) {
					drop = true
				}
			}
			if !drop {
				w.WriteString(line)
				w.WriteByte('\n')
			}
		}
		if err := sc.Err(); err != nil {
			pw.CloseWithError(err)
			return
		}
		pw.CloseWithError(w.Flush())
	}()
	return pr
}

func intOrNil(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}
