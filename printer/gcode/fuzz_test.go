package gcode

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func FuzzAnalyze(f *testing.F) {
	seeds := []string{
		"G1 X10 Y10 E1 F1200\n",
		"M83\nG2 X10 Y0 R5 E3\nG3 X0 Y0 I-5 J0\n",
		"G91\nG1 X-1e9 Y1e9\nG90\nG92 E-3\n",
		"M200 D1.75\nG1 X1 E1\nT15\nT16\nM221 S0\n",
		";FLAVOR:UltiGCode\n;TIME:12\nG10\nG11\nG28\nG4 P100\n",
		"SET_VELOCITY_LIMIT ACCEL=0 VELOCITY=-5\nM204 S0\nM203 X0\nM201 X0\nG1 X1 F0\n",
		"N1 G1 X1*5\nG2 X0 Y0 I0 J0\nG18\nG2 X1 Z1 R0.1\nG20\nG1 X1\n",
		"; estimated printing time (normal mode) = 1d 2h 3m 4s\n; filament used [mm] = 1,2,3\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	if data, err := os.ReadFile(filepath.Join(realDir, "prusaslicer-2.8.1_mk4s_mini-cube.gcode")); err == nil {
		f.Add(data[:min(len(data), 8192)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Analyze(bytes.NewReader(data), Options{})
		if err != nil {
			t.Fatalf("Analyze: %v", err)
		}
		if r.Bytes != int64(len(data)) {
			t.Errorf("Bytes = %d, want %d", r.Bytes, len(data))
		}
		if want := int64(bytes.Count(data, []byte("\n"))); r.Lines < want || r.Lines > want+1 {
			t.Errorf("Lines = %d, want %d or %d", r.Lines, want, want+1)
		}
		checkFinite(t, "EstimatedPrintTime", r.EstimatedPrintTime)
		if r.EstimatedPrintTime < 0 || r.Time.Moves < 0 || r.Time.Dwell < 0 || r.Time.Homing < 0 {
			t.Errorf("negative time %v (%+v)", r.EstimatedPrintTime, r.Time)
		}
		if len(r.Filament) == 0 || len(r.Filament) > maxTools {
			t.Errorf("filament has %d tools", len(r.Filament))
		}
		for tool, fil := range r.Filament {
			checkFinite(t, tool+" length", fil.Length)
			checkFinite(t, tool+" volume", fil.Volume)
			if fil.Length < 0 || fil.Volume < 0 {
				t.Errorf("%s negative filament %+v", tool, fil)
			}
		}
		if _, err := r.Payload().MarshalJSON(); err != nil {
			t.Errorf("Payload().MarshalJSON: %v", err)
		}
	})
}

func checkFinite(t *testing.T, name string, v float64) {
	t.Helper()
	if math.IsNaN(v) || math.IsInf(v, 0) {
		t.Errorf("%s = %v, want a finite number", name, v)
	}
}
