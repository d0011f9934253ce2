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

// BenchmarkEnvelopeEncode compares the encoders of the ZChange envelope
// of BenchmarkEnvelopeMarshal: the old Payload and Context MarshalJSON
// methods under json.Marshal, json.Marshal over the new methods, and
// AppendJSON into a reused buffer and into a new one, as the edge calls it.
func BenchmarkEnvelopeEncode(b *testing.B) {
	env := sampleEnvelope()
	b.Run("old-json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := referenceMarshal(env)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := json.Marshal(env)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
		}
	})
	b.Run("AppendJSON-nil", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := env.AppendJSON(nil)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
		}
	})
	b.Run("AppendJSON-reused", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = env.AppendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(buf)))
		}
	})
}

// BenchmarkEnvelopeDecode compares encoding/json alone with
// DecodeEnvelope's fast path on the same ZChange envelope.
func BenchmarkEnvelopeDecode(b *testing.B) {
	data, err := sampleEnvelope().AppendJSON(nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bench := range []struct {
		name   string
		decode func([]byte) (*Envelope, error)
	}{
		{"old-encoding-json", decodeEnvelopeJSON},
		{"DecodeEnvelope", DecodeEnvelope},
	} {
		b.Run(bench.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := bench.decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
