package gcode

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// DefaultFilamentDiameter is the filament diameter in mm when neither
// the caller nor the file gives one.
const DefaultFilamentDiameter = 1.75

// ultiGCodeFilamentDiameter is the filament of the Ultimaker 2 family,
// the printers that read Cura's UltiGCode flavour.
const ultiGCodeFilamentDiameter = 2.85

// maxTools bounds the tools tracked (T0 to T15), so that a T999999 in a
// damaged file cannot grow memory.
const maxTools = 16

// readBufferSize is the read buffer, and so the longest line that is
// parsed whole: longer lines (no firmware accepts them) are cut there.
const readBufferSize = 64 * 1024

// buffers is the memory of an analysis that holds no result: the read
// buffer and the planner ring. Allocating and zeroing them per call, with
// the garbage collections that follow, took a third of the time of
// analysing the 25 KB BambuStudio test file (BenchmarkAnalyze on a
// 2-core AMD EPYC), so a pool hands them from one analysis to the next.
// Nothing of one analysis reaches the next: Reset discards what the
// reader buffered, and the planner writes each ring slot before it reads
// it.
type buffers struct {
	reader *bufio.Reader
	ring   []block
}

var bufferPool = sync.Pool{New: func() any { return &buffers{reader: bufio.NewReaderSize(nil, readBufferSize)} }}

// ringOf returns a planner ring of n blocks from buf, growing it if
// needed.
func (buf *buffers) ringOf(n int) []block {
	if cap(buf.ring) < n {
		buf.ring = make([]block, n)
	}
	return buf.ring[:n]
}

// Options tune an analysis.
type Options struct {
	// FilamentDiameter in mm converts between filament length and volume.
	// When zero, the file's M200 D or slicer comment decides, else 2.85
	// for Cura's UltiGCode flavour, else DefaultFilamentDiameter.
	FilamentDiameter float64
	// Limits are the printer's motion settings at the start of the file;
	// MarlinDefaults when nil.
	Limits *Limits
	// PlannerBlocks is the planner's look-ahead in moves, as the
	// firmware's BLOCK_BUFFER_SIZE; DefaultPlannerBlocks when zero, at
	// most 4096.
	PlannerBlocks int
}

// Area is a bounding box in mm, with OctoPrint's key names.
type Area struct {
	MinX float64 `json:"minX"`
	MinY float64 `json:"minY"`
	MinZ float64 `json:"minZ"`
	MaxX float64 `json:"maxX"`
	MaxY float64 `json:"maxY"`
	MaxZ float64 `json:"maxZ"`
}

// field returns the coordinate by index: MinX, MinY, MinZ, MaxX, MaxY,
// MaxZ.
func (a *Area) field(i int) *float64 {
	return [6]*float64{&a.MinX, &a.MinY, &a.MinZ, &a.MaxX, &a.MaxY, &a.MaxZ}[i]
}

// Dimensions is the size of an Area in mm, with OctoPrint's key names.
type Dimensions struct {
	Width  float64 `json:"width"`
	Depth  float64 `json:"depth"`
	Height float64 `json:"height"`
}

// Filament is the use of one tool.
type Filament struct {
	// Length is the filament pushed into the nozzle in mm: the highest
	// net extruder position reached, so that a retraction followed by the
	// same unretraction counts once, as in OctoPrint.
	Length float64 `json:"length"`
	// Volume is Length times the filament's cross-section, in cm³.
	Volume float64 `json:"volume"`
}

// TimeBreakdown splits EstimatedPrintTime by cause, in seconds.
type TimeBreakdown struct {
	Moves  float64 `json:"moves"`
	Dwell  float64 `json:"dwell"`
	Homing float64 `json:"homing"`
}

// Result is the analysis of one G-code file. The first six fields are
// those of OctoPrint's analysis result; the others are printbridge's.
type Result struct {
	// EstimatedPrintTime is the estimate in seconds.
	EstimatedPrintTime float64 `json:"estimatedPrintTime"`
	// Filament maps "tool0", "tool1", ... to the filament of each tool,
	// from tool 0 up to the highest tool the file selects or extrudes
	// with.
	Filament map[string]Filament `json:"filament"`
	// PrintingArea is the bounding box of the moves that extrude, nil
	// when nothing is extruded.
	PrintingArea *Area `json:"printingArea"`
	// Dimensions is the size of PrintingArea.
	Dimensions *Dimensions `json:"dimensions"`
	// TravelArea is the bounding box of every move, nil without moves.
	TravelArea *Area `json:"travelArea"`
	// TravelDimensions is the size of TravelArea.
	TravelDimensions *Dimensions `json:"travelDimensions"`

	// LayerCount is the number of heights at which the file extrudes.
	LayerCount int `json:"layerCount"`
	// Slicer holds the values the slicer's comments state.
	Slicer Slicer `json:"slicer"`
	// Lines and Bytes count what was read.
	Lines int64 `json:"lines"`
	Bytes int64 `json:"bytes"`
	// AnalysisSeconds is the wall-clock time the analysis took.
	AnalysisSeconds float64 `json:"analysisSeconds"`
	// Time splits EstimatedPrintTime by cause.
	Time TimeBreakdown `json:"time"`
	// FilamentDiameter is the diameter in mm used between length and
	// volume.
	FilamentDiameter float64 `json:"filamentDiameter"`
	// VolumetricExtrusion reports E values in mm³ (M200 D>0 or Cura's
	// UltiGCode flavour); Filament still reports mm and cm³.
	VolumetricExtrusion bool `json:"volumetricExtrusion"`
	// Moves counts linear moves, Arcs G2/G3 arcs.
	Moves int64 `json:"moves"`
	Arcs  int64 `json:"arcs"`
	// Notes lists what the estimate leaves out or had to guess, such as
	// G29 probing or heat-up waits: each note once, at most eight.
	Notes []string `json:"notes,omitempty"`
}

// TotalFilamentLength returns the filament of all tools in mm.
func (r *Result) TotalFilamentLength() float64 {
	total := 0.0
	for _, f := range r.Filament {
		total += f.Length
	}
	return total
}

// TotalFilamentVolume returns the filament of all tools in cm³.
func (r *Result) TotalFilamentVolume() float64 {
	total := 0.0
	for _, f := range r.Filament {
		total += f.Volume
	}
	return total
}

// Analyze reads G-code from r and estimates its print time, filament use,
// bounding boxes and layer count, the way OctoPrint's analysis queue does,
// with a look-ahead planner for the time. It streams: memory stays the
// same whatever the file's size. It returns an error only when r fails;
// lines it does not understand are skipped.
func Analyze(r io.Reader, opts Options) (*Result, error) {
	start := time.Now()
	buf := bufferPool.Get().(*buffers)
	defer func() {
		// Drop the caller's reader so that the pool does not keep it alive.
		buf.reader.Reset(nil)
		bufferPool.Put(buf)
	}()
	a := newAnalyzer(opts, buf)
	// As bufio.NewReaderSize does, read through r itself when it is a
	// bufio.Reader with a buffer at least as large.
	br := buf.reader
	if own, ok := r.(*bufio.Reader); ok && own.Size() >= readBufferSize {
		br = own
	} else {
		br.Reset(r)
	}
	for {
		line, err := br.ReadSlice('\n')
		a.bytes += int64(len(line))
		if err == nil {
			// The common case, tested first because errors.Is is a call.
			a.line(line)
			continue
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			a.note(noteLongLine)
			a.line(line)
			if err := skipRestOfLine(br, &a.bytes); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("read G-code: %w", err)
			}
			continue
		}
		if len(line) > 0 {
			a.line(line)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		return nil, fmt.Errorf("read G-code after %d bytes: %w", a.bytes, err)
	}
	res := a.result()
	res.AnalysisSeconds = time.Since(start).Seconds()
	return res, nil
}

func skipRestOfLine(br *bufio.Reader, n *int64) error {
	for {
		chunk, err := br.ReadSlice('\n')
		*n += int64(len(chunk))
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return err
	}
}

// box is a bounding box being built.
type box struct {
	min, max [3]float64
	set      bool
}

// add widens the box to contain the point (x, y, z).
func (b *box) add(x, y, z float64) {
	if !b.set {
		b.min, b.max, b.set = [3]float64{x, y, z}, [3]float64{x, y, z}, true
		return
	}
	b.addAxis(0, x)
	b.addAxis(1, y)
	b.addAxis(2, z)
}

// addAxis widens one axis only; the box must already hold a point.
func (b *box) addAxis(axis int, v float64) {
	// The two comparisons of inside cost less than min and max, which
	// must also order -0 before +0 and pass NaN on.
	if b.inside(axis, v) {
		return
	}
	b.min[axis] = min(b.min[axis], v)
	b.max[axis] = max(b.max[axis], v)
}

// inside reports whether v lies strictly between the bounds of axis, so
// that adding it changes neither.
func (b *box) inside(axis int, v float64) bool {
	return v > b.min[axis] && v < b.max[axis]
}

func (b *box) area() (*Area, *Dimensions) {
	if !b.set {
		return nil, nil
	}
	a := &Area{MinX: b.min[0], MinY: b.min[1], MinZ: b.min[2], MaxX: b.max[0], MaxY: b.max[1], MaxZ: b.max[2]}
	d := &Dimensions{Width: b.max[0] - b.min[0], Depth: b.max[1] - b.min[1], Height: b.max[2] - b.min[2]}
	return a, d
}
