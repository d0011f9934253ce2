package bridge

import (
	"encoding/json"
	"testing"
	"time"
)

// BenchmarkEnvelopeMarshal encodes a ZChange envelope with a full
// context, the event the edge emits once per layer.
func BenchmarkEnvelopeMarshal(b *testing.B) {
	z, progress := 0.4, 12.5
	env := &Envelope{
		Schema: SchemaVersion, ID: NewEventID(time.Now()), Seq: 1234, Printer: "printer1", Event: EventZChange,
		Time:    time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		Payload: Payload{{Key: "new", Value: 0.4}, {Key: "old", Value: 0.2}},
		Context: Context{CurrentZ: &z, Progress: &progress, State: "PRINTING",
			File: &FileRef{Name: "cube.gcode", Path: "cube.gcode", Origin: "local"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		data, err := json.Marshal(env)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
	}
}
