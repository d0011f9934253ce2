package hooks

import (
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

func benchEnvelope() *bridge.Envelope {
	z, progress := 0.4, 12.5
	return &bridge.Envelope{
		Schema: bridge.SchemaVersion, ID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Seq: 1234, Printer: "printer1",
		Event: bridge.EventZChange, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Payload: bridge.Payload{{Key: "new", Value: 0.4}, {Key: "old", Value: 0.2}},
		Context: bridge.Context{CurrentZ: &z, Progress: &progress, State: "PRINTING",
			File: &bridge.FileRef{Name: "cube.gcode", Path: "cube.gcode", Origin: "local"}},
	}
}

func BenchmarkPlaceholders(b *testing.B) {
	env := benchEnvelope()
	now := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.Local)
	b.ReportAllocs()
	for b.Loop() {
		if p := Placeholders(env, now); p["new"] != "0.4" {
			b.Fatalf("new = %q, want 0.4", p["new"])
		}
	}
}

func BenchmarkFormat(b *testing.B) {
	params := Placeholders(benchEnvelope(), time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local))
	const template = "M117 {__filename} at Z={new} ({__progress}%) {__eventname:>10}"
	const want = "M117 cube.gcode at Z=0.4 (12%)    ZChange"
	b.ReportAllocs()
	for b.Loop() {
		got, err := Format(template, params)
		if err != nil {
			b.Fatal(err)
		}
		if got != want {
			b.Fatalf("Format = %q, want %q", got, want)
		}
	}
}
