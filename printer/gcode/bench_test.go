package gcode

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// BenchmarkAnalyze runs Analyze from memory on every real file, as
// pbbench's G-code analysis section does.
func BenchmarkAnalyze(b *testing.B) {
	files, err := filepath.Glob(filepath.Join(realDir, "*.gcode"))
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(filepath.Base(path), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Analyze(bytes.NewReader(data), Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// repeatReader yields data over and over until size bytes are read,
// without holding more than one copy.
type repeatReader struct {
	data []byte
	off  int
	left int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if r.off == len(r.data) {
		r.off = 0
	}
	n := copy(p, r.data[r.off:])
	n = int(min(int64(n), r.left))
	r.off += n
	r.left -= int64(n)
	return n, nil
}

func TestAnalyzeBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("analyses 50 MB")
	}
	data, err := os.ReadFile(filepath.Join(realDir, "prusaslicer-2.7.4_ender3v2_arcs_screw.gcode"))
	if err != nil {
		t.Fatal(err)
	}
	const size = 50 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := Analyze(&repeatReader{data: data, left: size}, Options{})
	if err != nil {
		t.Fatalf("Analyze: %v", err)
	}
	runtime.ReadMemStats(&after)
	if r.Bytes != size {
		t.Errorf("Bytes = %d, want %d", r.Bytes, size)
	}
	// The read buffer (64 KiB), the planner ring and the result are all
	// that is allocated; loading the file would allocate 50 MB.
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("50 MB analysed in %.2f s with %d bytes allocated in %d allocations", r.AnalysisSeconds, allocated, after.Mallocs-before.Mallocs)
	if allocated > 1<<20 {
		t.Errorf("analysis of 50 MB allocated %d bytes, want under 1 MiB", allocated)
	}
}
