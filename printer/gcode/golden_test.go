package gcode

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden file of the analysis results")

// goldenPath holds one JSON line per file and variant. encoding/json
// writes each float64 in the shortest form that parses back to the same
// bits, so an equal line means a bit-identical result.
var goldenPath = filepath.Join("..", "..", "testdata", "golden", "gcode-analysis.jsonl")

// goldenVariant is one way of analysing a file: the options, and a
// rewrite of the input that exercises other parser paths on the same
// moves.
type goldenVariant struct {
	name    string
	opts    func() Options
	rewrite func([]byte) []byte
}

var goldenVariants = []goldenVariant{
	{name: "default", opts: func() Options { return Options{} }},
	{name: "blocks-1", opts: func() Options { return Options{PlannerBlocks: 1} }},
	{name: "blocks-1024", opts: func() Options { return Options{PlannerBlocks: 1024} }},
	{name: "junction-deviation", opts: func() Options {
		l := MarlinDefaults()
		l.Junction = JunctionDeviation
		return Options{Limits: &l}
	}},
	{name: "klipper", opts: func() Options {
		l := MarlinDefaults()
		l.Junction = JunctionKlipper
		return Options{Limits: &l}
	}},
	{name: "diameter-2.85", opts: func() Options { return Options{FilamentDiameter: 2.85} }},
	{name: "numbered-lowercase-crlf", opts: func() Options { return Options{} }, rewrite: numberLowercaseCRLF},
}

// numberLowercaseCRLF rewrites every line as a host sends it to Marlin
// with line numbers and checksums (N<n> <code>*<checksum>), in lower
// case, with CRLF line ends, and keeps the comment after the checksum.
func numberLowercaseCRLF(data []byte) []byte {
	var out bytes.Buffer
	lines := strings.SplitAfter(string(data), "\n")
	for i, line := range lines {
		line = strings.TrimRight(line, "\r\n")
		code, comment, hasComment := strings.Cut(line, ";")
		code = strings.ToLower(strings.TrimSpace(code))
		if code != "" {
			numbered := fmt.Sprintf("n%d %s", i+1, code)
			checksum := byte(0)
			for j := range len(numbered) {
				checksum ^= numbered[j]
			}
			fmt.Fprintf(&out, "%s*%d", numbered, checksum)
		}
		if hasComment {
			out.WriteString(";" + comment)
		}
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// goldenPrograms cover what the real files leave out: arcs by radius
// and in the G18 and G19 planes, helical arcs, inches, Klipper commands,
// volumetric E, firmware retraction and tool changes.
var goldenPrograms = []struct{ name, src string }{
	{"arcs-radius-planes", "G21\nG90\nM83\nG1 X10 Y10 F3000\nG2 X20 Y10 R5 E1\nG3 X10 Y10 R-5 E1\n" +
		"G2 X10 Y10 I5 J5 E2\nG18\nG2 X20 Z5 R8 E0.5\nG19\nG3 Y20 Z0 J5 K-2 E0.5\nG17\n" +
		"G2 X30 Y30 Z2 I10 J0 E3 F1200\nG3 X0 Y0 I-15 J-15\nG2 X1 Y1\n"},
	{"inches-relative", "G20\nG91\nG1 X1 Y1 E0.1 F60\nG1 Z0.01\nG90\nG21\nG1 X10 Y10 E5\nG92 X0 Y0 E0\nG1 X5 E1\n"},
	{"klipper", "SET_VELOCITY_LIMIT ACCEL=5000 VELOCITY=400 SQUARE_CORNER_VELOCITY=8\nG28\n" +
		"G1 X50 Y50 F12000\nG1 X60 Y50 E1\nG1 X60 Y60 E1\nM204 S2000\nG1 X50 Y60 E1\nG4 S2\n"},
	{"volumetric-retract-tools", "M200 D1.75\nM83\nG1 X10 E5 F1800\nG10\nG1 X20\nG11\nG1 X30 E5\n" +
		"M200 D0\nT1\nM221 S90\nG1 X40 E2\nT3\nG1 X50 E1\nM205 J0.02\nG1 X60 Y5 E1\nG1 X70 E1\nM400\n"},
	{"settings", "M201 X500 Y500 Z50 E2000\nM203 X100 Y100 Z3 E20\nM204 P800 R1000 T1500\nM205 X5 Y5 Z0.2 E2 S1 T2\n" +
		"M207 S2 F1800\nM208 F600\nM220 S150\nM566 X600 Y600\nG1 X10 Y10 E1 F6000\nG1 X20 Y0 E1\nG29\nM109 S200\nM600\n"},
}

// goldenLine is one line of the golden file.
type goldenLine struct {
	File    string  `json:"file"`
	Variant string  `json:"variant"`
	Result  *Result `json:"result"`
}

// TestAnalyzeGolden pins every field of the result (all but the
// wall-clock AnalysisSeconds) for each real file and variant, so that
// an optimisation that changes any computed value fails here.
func TestAnalyzeGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(realDir, "*.gcode"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no G-code files in %s", realDir)
	}
	var got bytes.Buffer
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range goldenVariants {
			in := data
			if v.rewrite != nil {
				in = v.rewrite(data)
			}
			r, err := Analyze(bytes.NewReader(in), v.opts())
			if err != nil {
				t.Fatalf("Analyze %s (%s): %v", path, v.name, err)
			}
			r.AnalysisSeconds = 0
			line, err := json.Marshal(goldenLine{File: filepath.Base(path), Variant: v.name, Result: r})
			if err != nil {
				t.Fatal(err)
			}
			got.Write(line)
			got.WriteByte('\n')
		}
	}

	for _, p := range goldenPrograms {
		r, err := Analyze(strings.NewReader(p.src), Options{})
		if err != nil {
			t.Fatalf("Analyze %s: %v", p.name, err)
		}
		r.AnalysisSeconds = 0
		line, err := json.Marshal(goldenLine{File: p.name, Variant: "default", Result: r})
		if err != nil {
			t.Fatal(err)
		}
		got.Write(line)
		got.WriteByte('\n')
	}

	if *update {
		if err := os.WriteFile(goldenPath, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("read golden file: %v (run with -update to create it)", err)
	}
	gotLines := strings.Split(strings.TrimSuffix(got.String(), "\n"), "\n")
	wantLines := strings.Split(strings.TrimSuffix(string(want), "\n"), "\n")
	if len(gotLines) != len(wantLines) {
		t.Fatalf("%d results, %s has %d (run with -update if the change is intended)", len(gotLines), goldenPath, len(wantLines))
	}
	for i := range gotLines {
		if gotLines[i] != wantLines[i] {
			t.Errorf("result %d differs from %s:\n got: %s\nwant: %s\n(run with -update if the change is intended)", i+1, goldenPath, gotLines[i], wantLines[i])
		}
	}
}
