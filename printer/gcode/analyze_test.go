package gcode

import (
	"math"
	"strings"
	"testing"

	"github.com/printbridge/printbridge/bridge"
)

// analyzeString runs Analyze over src and fails the test on an error.
func analyzeString(t testing.TB, src string, opts Options) *Result {
	t.Helper()
	r, err := Analyze(strings.NewReader(src), opts)
	if err != nil {
		t.Fatalf("Analyze: %v", err)
	}
	return r
}

// fastLimits makes moves take exactly length / feed: accelerations and
// jerk so high that speed changes cost no time.
func fastLimits() *Limits {
	l := MarlinDefaults()
	l.MaxAcceleration = [4]float64{1e9, 1e9, 1e9, 1e9}
	l.PrintAcceleration, l.TravelAcceleration, l.RetractAcceleration = 1e9, 1e9, 1e9
	l.MaxFeedrate = [4]float64{1e6, 1e6, 1e6, 1e6}
	l.Jerk = [4]float64{1e6, 1e6, 1e6, 1e6}
	return &l
}

func near(got, want, tolerance float64) bool {
	return math.Abs(got-want) <= tolerance
}

func TestFilamentExtrusionModes(t *testing.T) {
	cases := []struct {
		name string
		src  string
		// want is the filament length per tool, tool0 first.
		want []float64
	}{
		{"absolute E with G92 reset", "M82\nG1 X10 E5\nG92 E0\nG1 X20 E3\n", []float64{8}},
		{"relative E with M83", "M83\nG1 X10 E5\nG1 X20 E3\n", []float64{8}},
		{"retract and unretract count once", "M83\nG1 X10 E5\nG1 E-2\nG1 E2\nG1 X20 E1\n", []float64{6}},
		{"absolute retract counts once", "M82\nG1 X10 E5\nG1 E3\nG1 E5\nG1 X20 E6\n", []float64{6}},
		{"trailing retract is not subtracted", "M83\nG1 X10 E5\nG1 E-4\n", []float64{5}},
		{"G91 makes E relative as in Marlin", "G91\nG1 X10 E5\nG1 X10 E5\n", []float64{10}},
		{"G90 after M83 makes E absolute", "M83\nG90\nG1 X10 E5\nG1 X20 E5\n", []float64{5}},
		{"M82 after G91 keeps XYZ relative", "G91\nM82\nG1 X10 E5\nG1 X10 E5\n", []float64{5}},
		{"negative G92 E start", "M82\nG92 E-3\nG1 E0\nG1 X10 E5\n", []float64{8}},
		{"M221 flow scales filament", "M83\nM221 S50\nG1 X10 E10\n", []float64{5}},
		{"M221 for another tool", "M83\nM221 T1 S50\nG1 X10 E10\nT1\nG1 X20 E10\n", []float64{10, 5}},
		{"tool changes split filament", "M83\nT0\nG1 X10 E5\nT1\nG1 X20 E3\nT0\nG1 X30 E1\n", []float64{6, 3}},
		{"unused tool below highest is zero", "M83\nG1 X10 E5\nT2\nG1 X20 E3\n", []float64{5, 0, 3}},
		{"tool out of range ignored", "M83\nT99\nG1 X10 E5\n", []float64{5}},
		{"firmware retraction nets to zero", "M83\nG1 X10 E5\nG10\nG1 X20\nG11\nG1 X30 E5\n", []float64{10}},
		{"G10 with P is a tool offset", "M83\nG10 P0 S200\nG1 X10 E5\n", []float64{5}},
		{"inches", "G20\nM83\nG1 X1 E1\n", []float64{25.4}},
		{"line numbers and checksums", "N10 M83*12\nN11 G1 X10 E5*77\nN12 G1 X20 E5*76\n", []float64{10}},
		{"lower case and comments", "m83\ng1 x10 e5 ; E100 in a comment\n", []float64{5}},
		{"no spaces between words", "M83\nG1X10Y5E2.5\n", []float64{2.5}},
		{"text of M117 is not parsed", "M83\nM117 E99 X5\nG1 X10 E1\n", []float64{1}},
		{"arc extrusion", "M83\nG1 X10 Y0\nG3 X0 Y10 I-10 J0 E4\n", []float64{4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := analyzeString(t, tc.src, Options{})
			if len(r.Filament) != len(tc.want) {
				t.Fatalf("filament has %d tools (%v), want %d", len(r.Filament), r.Filament, len(tc.want))
			}
			for i, want := range tc.want {
				got := r.Filament[toolKey(i)].Length
				if !near(got, want, 1e-9) {
					t.Errorf("tool%d length = %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestFilamentVolume(t *testing.T) {
	cases := []struct {
		name       string
		src        string
		opts       Options
		wantLength float64
		wantVolume float64 // cm³
		volumetric bool
	}{
		{"default 1.75 mm", "M83\nG1 X10 E100\n", Options{}, 100, 100 * math.Pi * 0.875 * 0.875 / 1000, false},
		{"caller diameter", "M83\nG1 X10 E100\n", Options{FilamentDiameter: 2.85}, 100, 100 * math.Pi * 1.425 * 1.425 / 1000, false},
		{"slicer diameter", "; filament_diameter = 2.85\nM83\nG1 X10 E100\n", Options{}, 100, 100 * math.Pi * 1.425 * 1.425 / 1000, false},
		{"M200 D makes E cubic mm", "M83\nM200 D1.75\nG1 X10 E2405.2819\n", Options{}, 1000, 2.4052819, true},
		{"M200 D0 switches back", "M83\nM200 D1.75\nM200 D0\nG1 X10 E10\n", Options{}, 10, 10 * math.Pi * 0.875 * 0.875 / 1000, false},
		{"UltiGCode E is cubic mm", ";FLAVOR:UltiGCode\nM82\nG1 X10 E6379.4\n", Options{}, 1000, 6.3794, true},
		{"UltiGCode with caller diameter", ";FLAVOR:UltiGCode\nM82\nG1 X10 E2405.2819\n", Options{FilamentDiameter: 1.75}, 1000, 2.4052819, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := analyzeString(t, tc.src, tc.opts)
			f := r.Filament["tool0"]
			if !near(f.Length, tc.wantLength, tc.wantLength*1e-4) {
				t.Errorf("length = %v mm, want %v", f.Length, tc.wantLength)
			}
			if !near(f.Volume, tc.wantVolume, tc.wantVolume*1e-4) {
				t.Errorf("volume = %v cm³, want %v", f.Volume, tc.wantVolume)
			}
			if r.VolumetricExtrusion != tc.volumetric {
				t.Errorf("VolumetricExtrusion = %v, want %v", r.VolumetricExtrusion, tc.volumetric)
			}
		})
	}
}

func TestAreasPrintedAndTravel(t *testing.T) {
	src := "G28\nG1 Z5 F600\nG1 X-5 Y200\nG1 Z0.2\nM83\nG1 X10 Y10\nG1 X20 Y10 E1\nG1 X20 Y30 E1\nG1 Z10\nG1 X100 Y100\n"
	r := analyzeString(t, src, Options{})
	if r.PrintingArea == nil || r.TravelArea == nil {
		t.Fatalf("areas missing: printing %v travel %v", r.PrintingArea, r.TravelArea)
	}
	wantPrint := Area{MinX: 10, MinY: 10, MinZ: 0.2, MaxX: 20, MaxY: 30, MaxZ: 0.2}
	if *r.PrintingArea != wantPrint {
		t.Errorf("printingArea = %+v, want %+v", *r.PrintingArea, wantPrint)
	}
	wantTravel := Area{MinX: -5, MinY: 0, MinZ: 0, MaxX: 100, MaxY: 200, MaxZ: 10}
	if *r.TravelArea != wantTravel {
		t.Errorf("travelArea = %+v, want %+v", *r.TravelArea, wantTravel)
	}
	wantDim := Dimensions{Width: 10, Depth: 20, Height: 0}
	if *r.Dimensions != wantDim {
		t.Errorf("dimensions = %+v, want %+v", *r.Dimensions, wantDim)
	}
	if r.TravelDimensions.Width != 105 || r.TravelDimensions.Depth != 200 {
		t.Errorf("travelDimensions = %+v, want width 105 depth 200", *r.TravelDimensions)
	}
}

// TestAreasStartPointAfterPositionChange covers the start points that a
// move adds to the boxes after the position changed without a move that
// added it: a G92, or an extruder-only move that turns X+0 into X-0.
// box.add orders -0 before +0, so each start point still widens MinX to
// -0 here.
func TestAreasStartPointAfterPositionChange(t *testing.T) {
	cases := []struct{ name, src string }{
		{"extruder-only move", "M83\nG1 Y1 E1\nG1 X-0 E1\nG1 X5 Y5 E1\n"},
		{"G92", "M83\nG1 X5 Y1 E1\nG92 X-0\nG1 X5 Y5 E1\n"},
		{"arc after G92", "M83\nG1 X5 Y1 E1\nG92 X-0\nG3 X2 Y3 I2 J0 E1\n"},
	}
	for _, tc := range cases {
		r := analyzeString(t, tc.src, Options{})
		if r.TravelArea == nil || r.PrintingArea == nil {
			t.Fatalf("%s: areas missing: travel %v printing %v", tc.name, r.TravelArea, r.PrintingArea)
		}
		if !math.Signbit(r.TravelArea.MinX) || r.TravelArea.MinX != 0 {
			t.Errorf("%s: travelArea.MinX = %v (sign bit %v), want -0", tc.name, r.TravelArea.MinX, math.Signbit(r.TravelArea.MinX))
		}
		if !math.Signbit(r.PrintingArea.MinX) || r.PrintingArea.MinX != 0 {
			t.Errorf("%s: printingArea.MinX = %v (sign bit %v), want -0", tc.name, r.PrintingArea.MinX, math.Signbit(r.PrintingArea.MinX))
		}
	}
}

func TestAreasEmptyWithoutExtrusion(t *testing.T) {
	r := analyzeString(t, "G1 X10 Y10\nG1 E-1\n", Options{})
	if r.PrintingArea != nil || r.Dimensions != nil {
		t.Errorf("printingArea = %v, dimensions = %v, want nil without extrusion", r.PrintingArea, r.Dimensions)
	}
	if r.TravelArea == nil {
		t.Fatal("travelArea is nil after a move")
	}
}

func TestG92ShiftsCoordinates(t *testing.T) {
	// After G92 X100 at X10, X105 is 5 mm further along, not 95.
	r := analyzeString(t, "M83\nG1 X10\nG92 X100\nG1 X105 E1\n", Options{Limits: fastLimits()})
	if r.PrintingArea.MinX != 100 || r.PrintingArea.MaxX != 105 {
		t.Errorf("printed X = %v..%v, want 100..105", r.PrintingArea.MinX, r.PrintingArea.MaxX)
	}
	if want := 15 / defaultFeed; !near(r.EstimatedPrintTime, want, 1e-6) {
		t.Errorf("EstimatedPrintTime = %v, want %v for 15 mm of moves", r.EstimatedPrintTime, want)
	}
}

func TestRelativeG91Moves(t *testing.T) {
	r := analyzeString(t, "G1 X10 Y10\nG91\nG1 X5 Y-20\nG1 X5\nG90\nG1 X0\n", Options{})
	want := Area{MinX: 0, MinY: -10, MaxX: 20, MaxY: 10}
	if *r.TravelArea != want {
		t.Errorf("travelArea = %+v, want %+v", *r.TravelArea, want)
	}
}

func TestLayerCount(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want int
	}{
		{"two layers", "M83\nG1 Z0.2\nG1 X10 E1\nG1 Z0.4\nG1 X0 E1\n", 2},
		{"z hop is not a layer", "M83\nG1 Z0.2\nG1 X10 E1\nG1 Z0.6\nG1 Z0.2\nG1 X0 E1\nG1 Z0.4\nG1 X10 E1\n", 2},
		{"travel only has no layer", "G1 Z0.2\nG1 X10\nG1 Z0.4\n", 0},
		{"retraction at a height is no layer", "M83\nG1 Z0.2\nG1 X10 E1\nG1 Z5\nG1 E-1\nG1 E1\n", 1},
		{"second object reuses heights", "M83\nG1 Z0.2\nG1 X10 E1\nG1 Z0.4\nG1 X0 E1\nG1 Z0.2\nG1 X50 E1\nG1 Z0.4\nG1 X60 E1\n", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := analyzeString(t, tc.src, Options{}).LayerCount; got != tc.want {
				t.Errorf("LayerCount = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestArcs(t *testing.T) {
	const r10 = 10.0
	cases := []struct {
		name   string
		src    string
		length float64 // mm, from the time at 10 mm/s
		area   Area
	}{
		{"G3 quarter with I J", "G1 X10 Y0\nG3 X0 Y10 I-10 J0 F600\n", math.Pi / 2 * r10,
			Area{MinX: 0, MinY: 0, MaxX: 10, MaxY: 10}},
		{"G2 three quarters with I J", "G1 X10 Y0\nG2 X0 Y10 I-10 J0 F600\n", 3 * math.Pi / 2 * r10,
			Area{MinX: -10, MinY: -10, MaxX: 10, MaxY: 10}},
		{"G2 full circle", "G1 X10 Y0\nG2 X10 Y0 I-10 J0 F600\n", 2 * math.Pi * r10,
			Area{MinX: -10, MinY: -10, MaxX: 10, MaxY: 10}},
		{"G3 full circle without end", "G1 X10 Y0\nG3 I-10 F600\n", 2 * math.Pi * r10,
			Area{MinX: -10, MinY: -10, MaxX: 10, MaxY: 10}},
		{"G2 minor arc with R", "G2 X5 Y5 R5 F600\n", math.Pi / 2 * 5,
			Area{MinX: 0, MinY: 0, MaxX: 5, MaxY: 5}},
		{"G2 major arc with negative R", "G2 X5 Y5 R-5 F600\n", 3 * math.Pi / 2 * 5,
			Area{MinX: -5, MinY: 0, MaxX: 5, MaxY: 10}},
		{"helical arc", "G1 X10 Y0\nG3 X10 Y0 Z6.283185 I-10 J0 F600\n", math.Hypot(2*math.Pi*r10, 2*math.Pi),
			Area{MinX: -10, MinY: -10, MaxX: 10, MaxY: 10, MaxZ: 2 * math.Pi}},
		{"relative arc", "G1 X10 Y0\nG91\nG3 X-10 Y10 I-10 J0 F600\n", math.Pi / 2 * r10,
			Area{MinX: 0, MinY: 0, MaxX: 10, MaxY: 10}},
		{"G18 arc in the ZX plane", "G1 X10 Y0\nG18\nG2 X0 Z10 I-10 K0 F600\n", math.Pi / 2 * r10,
			Area{MinX: 0, MinZ: 0, MaxX: 10, MaxZ: 10}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The lead-in G1 runs at the default feed rate; time only the arc.
			lead := analyzeString(t, firstLineOf(tc.src), Options{Limits: fastLimits()})
			r := analyzeString(t, tc.src, Options{Limits: fastLimits()})
			if r.Arcs != 1 {
				t.Fatalf("Arcs = %d, want 1", r.Arcs)
			}
			arcTime := r.EstimatedPrintTime - lead.EstimatedPrintTime
			if !strings.HasPrefix(tc.src, "G1") {
				arcTime = r.EstimatedPrintTime
			}
			// The planner moves along chords of at most 1 mm, as Marlin
			// does, which are shorter than the arc by less than 0.2% here.
			if got := arcTime * 10; !near(got, tc.length, tc.length*0.002) {
				t.Errorf("arc length from time = %.5f mm, want %.5f", got, tc.length)
			}
			if !areaNear(*r.TravelArea, tc.area, 1e-6) {
				t.Errorf("travelArea = %+v, want %+v", *r.TravelArea, tc.area)
			}
		})
	}
}

func firstLineOf(src string) string {
	if !strings.HasPrefix(src, "G1") {
		return ""
	}
	return src[:strings.IndexByte(src, '\n')+1]
}

func areaNear(a, b Area, tolerance float64) bool {
	for i := range 6 {
		if !near(*a.field(i), *b.field(i), tolerance) {
			return false
		}
	}
	return true
}

func TestArcWithoutCentreIgnored(t *testing.T) {
	r := analyzeString(t, "G1 X10 Y0\nG2 X0 Y10\nG2 X0 Y10 I0 J0\n", Options{})
	if r.Arcs != 0 {
		t.Errorf("Arcs = %d, want 0 for arcs without I, J or R", r.Arcs)
	}
	if r.TravelArea.MaxY != 0 {
		t.Errorf("travel max Y = %v, want 0: a rejected arc does not move", r.TravelArea.MaxY)
	}
	if !containsNote(r.Notes, noteBadArc) {
		t.Errorf("notes = %q, want %q", r.Notes, noteBadArc)
	}
}

func containsNote(notes []string, want string) bool {
	for _, n := range notes {
		if n == want {
			return true
		}
	}
	return false
}

func TestArcPrintedAreaIncludesBulge(t *testing.T) {
	// A G2 from (0,0) to (10,0) of radius 5 bulges up to Y=5.
	r := analyzeString(t, "M83\nG2 X10 Y0 R5 E3\n", Options{})
	if r.PrintingArea == nil {
		t.Fatal("printingArea is nil after an extruding arc")
	}
	if !near(r.PrintingArea.MaxY, 5, 1e-9) || !near(r.PrintingArea.MinY, 0, 1e-9) {
		t.Errorf("printed Y = %v..%v, want 0..5", r.PrintingArea.MinY, r.PrintingArea.MaxY)
	}
}

func TestSlicerHeaders(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	i := func(v int) *int { return &v }
	cases := []struct {
		name string
		src  string
		want Slicer
	}{
		{"PrusaSlicer", "; generated by PrusaSlicer 2.8.1 on 2024-10-21 at 06:38:01 UTC\n" +
			"; filament used [mm] = 400.85, 0, 98.63\n; filament used [cm3] = 0.96, 0, 0.24\n" +
			"; filament used [g] = 1.20, 0, 0.29\n; estimated printing time (normal mode) = 1d 2h 10m 32s\n" +
			"; estimated printing time (silent mode) = 10m 43s\n; gcode_flavor = marlin2\n; filament_diameter = 1.75,1.75\n; layer_height = 0.2\n",
			Slicer{Generator: "PrusaSlicer 2.8.1", Flavor: "marlin2", EstimatedPrintTime: f(86400 + 7200 + 632),
				FilamentLength: []float64{400.85, 0, 98.63}, FilamentVolume: []float64{0.96, 0, 0.24},
				FilamentWeight: []float64{1.2, 0, 0.29}, FilamentDiameter: f(1.75), LayerHeight: f(0.2)}},
		{"Cura", ";FLAVOR:Marlin\n;TIME:2738\n;Filament used: 0.380645m\n;Layer height: 0.1\n" +
			";MINX:93.32\n;MINY:23.32\n;MINZ:0.28\n;MAXX:129.68\n;MAXY:189.68\n;MAXZ:4.08\n" +
			";Generated with Cura_SteamEngine 5.0.0\n;LAYER_COUNT:418\n;TIME_ELAPSED:12.5\n",
			Slicer{Generator: "Cura_SteamEngine 5.0.0", Flavor: "Marlin", EstimatedPrintTime: f(2738),
				FilamentLength: []float64{380.645}, LayerHeight: f(0.1), LayerCount: i(418),
				PrintingArea: &Area{MinX: 93.32, MinY: 23.32, MinZ: 0.28, MaxX: 129.68, MaxY: 189.68, MaxZ: 4.08}}},
		{"Cura UltiGCode", ";FLAVOR:UltiGCode\n;TIME:5622\n;MATERIAL:18720\n;MATERIAL2:0\n",
			Slicer{Flavor: "UltiGCode", EstimatedPrintTime: f(5622), FilamentVolume: []float64{18.72, 0}}},
		{"Simplify3D", "; G-Code generated by Simplify3D(R) Version 4.1.2\n;   layerHeight,0.24\n" +
			";   filamentDiameters,1.75|1.75|1.75\n;   Build time: 1 hour 31 minutes\n;   Filament length: 4375.5 mm (4.38 m)\n" +
			";   Plastic volume: 10524.38 mm^3 (10.52 cc)\n;   Plastic weight: 13.16 g (0.03 lb)\n",
			Slicer{Generator: "Simplify3D(R) Version 4.1.2", EstimatedPrintTime: f(3600 + 31*60),
				FilamentLength: []float64{4375.5}, FilamentVolume: []float64{10.52438}, FilamentWeight: []float64{13.16},
				FilamentDiameter: f(1.75), LayerHeight: f(0.24)}},
		{"ideaMaker", ";Sliced by ideaMaker 5.1.0.8435, 2024-08-26 14:12:23 UTC+0200\n;Filament Diameter #1: 1.750\n" +
			";Firmware: Klipper\n;Bounding Box: 111.041 138.959 111.110 138.959 0.000 20.050\n" +
			";Print Time: 1192\n;Material#1 Used: 1328.5\n;Material#2 Used: 0.0\n",
			Slicer{Generator: "ideaMaker 5.1.0.8435", Flavor: "Klipper", EstimatedPrintTime: f(1192),
				FilamentLength: []float64{1328.5, 0}, FilamentDiameter: f(1.75),
				PrintingArea: &Area{MinX: 111.041, MaxX: 138.959, MinY: 111.11, MaxY: 138.959, MinZ: 0, MaxZ: 20.05}}},
		{"BambuStudio", "; HEADER_BLOCK_START\n; BambuStudio 01.09.07.52\n; estimated printing time (normal mode) = 34s\n" +
			"; total layer number: 5\n; total filament length [mm] : 19.37\n; total filament volume [cm^3] : 46.58\n" +
			"; total filament weight [g] : 0.00\n; filament_diameter: 1.75\n",
			Slicer{Generator: "BambuStudio 01.09.07.52", EstimatedPrintTime: f(34), LayerCount: i(5),
				FilamentLength: []float64{19.37}, FilamentVolume: []float64{46.58}, FilamentWeight: []float64{0},
				FilamentDiameter: f(1.75)}},
		{"BambuStudio model and total time", "; model printing time: 23s; total estimated time: 6m 12s\n",
			Slicer{EstimatedPrintTime: f(372)}},
		{"Orca", "; generated by Orca-Flashforge 1.3.0 on 2025-05-04 at 17:53:29\n; total layers count = 10\n",
			Slicer{Generator: "Orca-Flashforge 1.3.0", LayerCount: i(10)}},
		{"first statement wins", ";TIME:100\n;TIME:200\n", Slicer{EstimatedPrintTime: f(100)}},
		{"unknown comments ignored", "; some note: 12\n;TYPE:WALL-OUTER\n;LAYER:3\n", Slicer{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := analyzeString(t, tc.src, Options{}).Slicer
			compareSlicer(t, got, tc.want)
		})
	}
}

func compareSlicer(t *testing.T, got, want Slicer) {
	t.Helper()
	if got.Generator != want.Generator {
		t.Errorf("Generator = %q, want %q", got.Generator, want.Generator)
	}
	if got.Flavor != want.Flavor {
		t.Errorf("Flavor = %q, want %q", got.Flavor, want.Flavor)
	}
	compareFloatPtr(t, "EstimatedPrintTime", got.EstimatedPrintTime, want.EstimatedPrintTime)
	compareFloatPtr(t, "FilamentDiameter", got.FilamentDiameter, want.FilamentDiameter)
	compareFloatPtr(t, "LayerHeight", got.LayerHeight, want.LayerHeight)
	compareList(t, "FilamentLength", got.FilamentLength, want.FilamentLength)
	compareList(t, "FilamentVolume", got.FilamentVolume, want.FilamentVolume)
	compareList(t, "FilamentWeight", got.FilamentWeight, want.FilamentWeight)
	switch {
	case (got.LayerCount == nil) != (want.LayerCount == nil):
		t.Errorf("LayerCount = %v, want %v", got.LayerCount, want.LayerCount)
	case got.LayerCount != nil && *got.LayerCount != *want.LayerCount:
		t.Errorf("LayerCount = %d, want %d", *got.LayerCount, *want.LayerCount)
	}
	switch {
	case (got.PrintingArea == nil) != (want.PrintingArea == nil):
		t.Errorf("PrintingArea = %v, want %v", got.PrintingArea, want.PrintingArea)
	case got.PrintingArea != nil && !areaNear(*got.PrintingArea, *want.PrintingArea, 1e-9):
		t.Errorf("PrintingArea = %+v, want %+v", *got.PrintingArea, *want.PrintingArea)
	}
}

func compareFloatPtr(t *testing.T, name string, got, want *float64) {
	t.Helper()
	switch {
	case (got == nil) != (want == nil):
		t.Errorf("%s = %v, want %v", name, got, want)
	case got != nil && !near(*got, *want, 1e-9):
		t.Errorf("%s = %v, want %v", name, *got, *want)
	}
}

func compareList(t *testing.T, name string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s = %v, want %v", name, got, want)
		return
	}
	for i := range got {
		if !near(got[i], want[i], 1e-9) {
			t.Errorf("%s[%d] = %v, want %v", name, i, got[i], want[i])
		}
	}
}

func TestParseNumber(t *testing.T) {
	cases := []struct {
		in   string
		want float64
		used int
		ok   bool
	}{
		{"12", 12, 2, true},
		{"-1.5", -1.5, 4, true},
		{"+.25", 0.25, 4, true},
		{".013", 0.013, 4, true},
		{"0.000001", 1e-6, 8, true},
		{"10E5", 10, 2, true},
		{"3.", 3, 2, true},
		{"1234567890123456789012", 1.234567890123456789012e21, 22, true},
		{"-", 0, 0, false},
		{".", 0, 0, false},
		{"-.", 0, 0, false},
		{"X1", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tc := range cases {
		v, used, ok := parseNumber([]byte(tc.in))
		if ok != tc.ok || used != tc.used || (ok && !near(v, tc.want, math.Abs(tc.want)*1e-15)) {
			t.Errorf("parseNumber(%q) = %v, %d, %v; want %v, %d, %v", tc.in, v, used, ok, tc.want, tc.used, tc.ok)
		}
	}
}

func TestParseCommand(t *testing.T) {
	cases := []struct {
		in     string
		ok     bool
		letter byte
		code   int
		sub    int
		params map[byte]float64
	}{
		{"G1 X10 Y-2.5 E.3 F1200", true, 'G', 1, -1, map[byte]float64{'X': 10, 'Y': -2.5, 'E': 0.3, 'F': 1200}},
		{"G01 X1", true, 'G', 1, -1, map[byte]float64{'X': 1}},
		{"N42 G28 X Y*99", true, 'G', 28, -1, map[byte]float64{'X': 0, 'Y': 0}},
		{"M862.3 P \"MK4S\"", true, 'M', 862, 3, map[byte]float64{'P': 0}},
		{"T2", true, 'T', 2, -1, map[byte]float64{}},
		{"  \t", false, 0, 0, -1, nil},
		{"X10", false, 0, 0, -1, nil},
		{"T?", false, 0, 0, -1, nil},
		{"G1 X1e9999", true, 'G', 1, -1, map[byte]float64{'E': 9999, 'X': 1}},
		{"G1 X2000000000", true, 'G', 1, -1, map[byte]float64{}},
	}
	var c command
	for _, tc := range cases {
		ok := parseCommand([]byte(tc.in), &c)
		if ok != tc.ok {
			t.Errorf("parseCommand(%q) ok = %v, want %v", tc.in, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if c.letter != tc.letter || c.code != tc.code || c.sub != tc.sub {
			t.Errorf("parseCommand(%q) = %c%d.%d, want %c%d.%d", tc.in, c.letter, c.code, c.sub, tc.letter, tc.code, tc.sub)
		}
		for letter := byte('A'); letter <= 'Z'; letter++ {
			got, present := c.param(letter)
			want, wantPresent := tc.params[letter]
			if present != wantPresent || got != want {
				t.Errorf("parseCommand(%q) %c = %v (present %v), want %v (present %v)", tc.in, letter, got, present, want, wantPresent)
			}
		}
	}
}

func TestKlipperExtendedCommand(t *testing.T) {
	var c command
	if !parseCommand([]byte("SET_VELOCITY_LIMIT ACCEL=5000 SQUARE_CORNER_VELOCITY=7.5"), &c) {
		t.Fatal("SET_VELOCITY_LIMIT not parsed")
	}
	if string(c.extended) != "SET_VELOCITY_LIMIT" {
		t.Errorf("extended = %q", c.extended)
	}
	if v, ok := c.extendedParam("ACCEL"); !ok || v != 5000 {
		t.Errorf("ACCEL = %v, %v; want 5000", v, ok)
	}
	if v, ok := c.extendedParam("square_corner_velocity"); !ok || v != 7.5 {
		t.Errorf("SQUARE_CORNER_VELOCITY = %v, %v; want 7.5", v, ok)
	}
	if _, ok := c.extendedParam("VELOCITY"); ok {
		t.Error("VELOCITY reported present")
	}
}

func TestKlipperLimits(t *testing.T) {
	// 400 mm at 500 mm/s with 5000 mm/s²: 0.1 s to accelerate over 25 mm,
	// the same to stop, and 350 mm cruising. Marlin's default 300 mm/s
	// X cap does not apply to a Klipper file.
	r := analyzeString(t, "SET_VELOCITY_LIMIT ACCEL=5000\nG1 X400 F30000\n", Options{})
	if !near(r.EstimatedPrintTime, 0.9, 1e-9) {
		t.Errorf("EstimatedPrintTime = %v, want 0.9", r.EstimatedPrintTime)
	}
	// The same move with Marlin's defaults: 300 mm/s at 3000 mm/s², and
	// a start at the 10 mm/s jerk speed.
	r = analyzeString(t, "G1 X400 F30000\n", Options{})
	want := 290.0/3000 + 300.0/3000 + (400-(300*300-100)/6000.0-300*300/6000.0)/300
	if !near(r.EstimatedPrintTime, want, 1e-9) {
		t.Errorf("Marlin EstimatedPrintTime = %v, want %v", r.EstimatedPrintTime, want)
	}
}

func TestResultPayloadShape(t *testing.T) {
	r := analyzeString(t, "; generated by PrusaSlicer 2.8.1 on x\nM83\nG1 Z0.2\nG1 X10 E1\nT1\nG1 X20 E2\n", Options{})
	p := r.Payload()
	wantKeys := []string{"estimatedPrintTime", "filament", "printingArea", "dimensions", "travelArea", "travelDimensions", "layerCount", "slicer"}
	for i, k := range wantKeys {
		if p[i].Key != k {
			t.Errorf("payload key %d = %q, want %q", i, p[i].Key, k)
		}
	}
	filament, _ := p.Get("filament")
	tools, ok := filament.(bridge.Payload)
	if !ok || len(tools) != 2 || tools[0].Key != "tool0" || tools[1].Key != "tool1" {
		t.Fatalf("filament = %#v, want tool0 and tool1 in order", filament)
	}
	tool1 := tools[1].Value.(bridge.Payload)
	if length, _ := tool1.Get("length"); length != 2.0 {
		t.Errorf("tool1 length = %#v, want 2.0", length)
	}
	data, err := p.MarshalJSON()
	if err != nil {
		t.Fatalf("MarshalJSON: %v", err)
	}
	if !strings.Contains(string(data), `"tool1":{"length":2.0,"volume":`) {
		t.Errorf("JSON %s lacks tool1 with a float length", data)
	}
	event := bridge.Payload{{Key: "name", Value: "a.gcode"}, {Key: "path", Value: "a.gcode"}, {Key: "origin", Value: "local"}, {Key: "result", Value: p}}
	if err := bridge.ValidatePayload("MetadataAnalysisFinished", event); err != nil {
		t.Errorf("MetadataAnalysisFinished payload invalid: %v", err)
	}
}

func TestResultPayloadNullAreas(t *testing.T) {
	p := analyzeString(t, "M105\n", Options{}).Payload()
	for _, key := range []string{"printingArea", "dimensions", "travelArea", "travelDimensions"} {
		if v, ok := p.Get(key); !ok || v != nil {
			t.Errorf("%s = %#v (present %v), want null", key, v, ok)
		}
	}
}

func TestLongLineIsCut(t *testing.T) {
	long := "; " + strings.Repeat("x", 200*1024) + "\n"
	r := analyzeString(t, "M83\n"+long+"G1 X10 E5\n", Options{})
	if got := r.Filament["tool0"].Length; got != 5 {
		t.Errorf("length after a long line = %v, want 5", got)
	}
	if r.Lines != 3 {
		t.Errorf("Lines = %d, want 3", r.Lines)
	}
	if want := int64(len("M83\n") + len(long) + len("G1 X10 E5\n")); r.Bytes != want {
		t.Errorf("Bytes = %d, want %d", r.Bytes, want)
	}
	if !containsNote(r.Notes, noteLongLine) {
		t.Errorf("notes = %q, want the long line note", r.Notes)
	}
}

func TestLastLineWithoutNewline(t *testing.T) {
	r := analyzeString(t, "M83\nG1 X10 E5", Options{})
	if r.Lines != 2 || r.Filament["tool0"].Length != 5 {
		t.Errorf("Lines = %d, length = %v; want 2 lines and 5 mm", r.Lines, r.Filament["tool0"].Length)
	}
}

func TestHugeArcBoundedWork(t *testing.T) {
	// A half circle of radius 1000 km is cut into at most 64 chords.
	const r = 1e6
	src := "G1 X1000000 F6000\nG3 X-1000000 Y0 I-1000000 J0\n"
	lead := analyzeString(t, "G1 X1000000 F6000\n", Options{Limits: fastLimits()})
	res := analyzeString(t, src, Options{Limits: fastLimits()})
	length := (res.EstimatedPrintTime - lead.EstimatedPrintTime) * 100
	if !near(length, math.Pi*r, math.Pi*r*0.0005) {
		t.Errorf("arc length from time = %v mm, want %v within 0.05%%", length, math.Pi*r)
	}
	if res.TravelArea.MaxY != r {
		t.Errorf("travel max Y = %v, want %v", res.TravelArea.MaxY, r)
	}
}
