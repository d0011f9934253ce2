package bridge

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleEnvelope is a ZChange envelope as the edge emits it mid-print.
func sampleEnvelope() *Envelope {
	z, progress := 0.4, 12.5
	return &Envelope{
		Schema: SchemaVersion, ID: "0190a4b2-7c1e-7a3b-9c2d-1e2f3a4b5c6d", Seq: 1234, Printer: "printer1", Event: EventZChange,
		Time:    time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		Payload: Payload{{Key: "new", Value: 0.4}, {Key: "old", Value: 0.2}},
		Context: Context{CurrentZ: &z, Progress: &progress, State: "PRINTING",
			File: &FileRef{Name: "cube.gcode", Path: "cube.gcode", Origin: "local"}},
	}
}

// checkEncoding fails t unless AppendJSON writes what the old encoder
// and json.Marshal write for env, or fails with the same error.
func checkEncoding(t *testing.T, env *Envelope) {
	t.Helper()
	want, wantErr := referenceMarshal(env)
	prefix := []byte("prefix")
	got, err := env.AppendJSON(prefix)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("AppendJSON error = %v, old encoder error = %v", err, wantErr)
	}
	if err != nil {
		if err.Error() != wantErr.Error() {
			t.Fatalf("AppendJSON error = %q, old encoder error = %q", err, wantErr)
		}
		if string(got) != "prefix" {
			t.Fatalf("AppendJSON left %q in dst after an error, want only the prefix", got)
		}
		return
	}
	if string(got[:len(prefix)]) != "prefix" {
		t.Fatalf("AppendJSON overwrote dst: %q", got)
	}
	if string(got[len(prefix):]) != string(want) {
		t.Fatalf("AppendJSON wrote\n%s\nold encoder wrote\n%s", got[len(prefix):], want)
	}
	marshaled, err := json.Marshal(env)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	if string(marshaled) != string(want) {
		t.Fatalf("json.Marshal wrote\n%s\nold encoder wrote\n%s", marshaled, want)
	}
}

func TestEnvelopeAppendJSONMatchesOldEncoder(t *testing.T) {
	type custom struct {
		A int    `json:"a"`
		B string `json:"b,omitempty"`
	}
	cases := []struct {
		name   string
		change func(*Envelope)
	}{
		{"edge ZChange", func(*Envelope) {}},
		{"zero envelope", func(e *Envelope) { *e = Envelope{} }},
		{"nil payload", func(e *Envelope) { e.Payload = nil }},
		{"empty payload", func(e *Envelope) { e.Payload = Payload{} }},
		{"empty context", func(e *Envelope) { e.Context = Context{} }},
		{"empty file ref", func(e *Envelope) { e.Context.File = &FileRef{} }},
		{"HTML and quotes in strings", func(e *Envelope) {
			e.ID, e.Printer, e.Event = `<script>&"'`, `a\b`, "tab\there"
			e.Context.State = "<&>"
			e.Context.File = &FileRef{Name: "a<b>.gcode", Path: "dir/&/a.gcode", Origin: "sd\"card"}
			e.Payload = Payload{{Key: "<key>&", Value: "</script>"}}
		}},
		{"control characters", func(e *Envelope) {
			e.Payload = Payload{{Key: "\x00\x01\x1f", Value: "\b\f\n\r\t\x7f\x0b"}}
		}},
		{"line and paragraph separators", func(e *Envelope) {
			e.Payload = Payload{{Key: "sep\u2028", Value: "a\u2029b\u2027\u202a"}}
		}},
		{"invalid UTF-8", func(e *Envelope) {
			e.Event = "bad\xffevent"
			e.Payload = Payload{{Key: "\xc3", Value: "\xed\xa0\x80 surrogate, \xf4\x90\x80\x80 too large"}}
			e.Context.File = &FileRef{Name: "\xfe.gcode"}
		}},
		{"non-ASCII text", func(e *Envelope) {
			e.Payload = Payload{{Key: "Düse", Value: "温度 🌡️ 210°C"}}
		}},
		{"float formats", func(e *Envelope) {
			e.Payload = Payload{{Key: "int", Value: 10.0}, {Key: "small", Value: 1e-7}, {Key: "large", Value: 1e21},
				{Key: "neg", Value: -0.0}, {Key: "max", Value: math.MaxFloat64}, {Key: "tiny", Value: 5e-324},
				{Key: "nan", Value: math.NaN()}, {Key: "inf", Value: math.Inf(-1)}, {Key: "f32", Value: float32(0.1)},
				{Key: "f32int", Value: float32(3)}}
		}},
		{"context floats", func(e *Envelope) {
			nan, big := math.NaN(), 1e300
			e.Context.CurrentZ, e.Context.Progress = &nan, &big
		}},
		{"integer types", func(e *Envelope) {
			e.Schema, e.Seq = -1, math.MaxUint64
			e.Payload = Payload{{Key: "int", Value: -42}, {Key: "int64", Value: int64(math.MinInt64)},
				{Key: "uint64", Value: uint64(math.MaxUint64)}, {Key: "int8", Value: int8(-8)}, {Key: "uint16", Value: uint16(65535)}}
		}},
		{"bool and null", func(e *Envelope) {
			e.Payload = Payload{{Key: "t", Value: true}, {Key: "f", Value: false}, {Key: "n", Value: nil}}
		}},
		{"json.Number", func(e *Envelope) {
			e.Payload = Payload{{Key: "a", Value: json.Number("1E+5")}, {Key: "b", Value: json.Number("-0.5e-3")},
				{Key: "zero value", Value: json.Number("")}}
		}},
		{"invalid json.Number", func(e *Envelope) {
			e.Payload = Payload{{Key: "ok", Value: 1}, {Key: "bad", Value: json.Number("1.")}}
		}},
		{"nested values", func(e *Envelope) {
			e.Payload = Payload{
				{Key: "obj", Value: Payload{{Key: "x", Value: 1.5}, {Key: "deep", Value: Payload{{Key: "y", Value: []any{1, "two", nil}}}}}},
				{Key: "arr", Value: []any{Payload{{Key: "k", Value: "v"}}, []any{}, []any{[]any{2.0}}}},
				{Key: "strings", Value: []string{"a", "<b>", ""}},
				{Key: "nil payload", Value: Payload(nil)}, {Key: "nil array", Value: []any(nil)}, {Key: "nil strings", Value: []string(nil)},
			}
		}},
		{"duplicate payload keys", func(e *Envelope) {
			e.Payload = Payload{{Key: "a", Value: 1}, {Key: "a", Value: 2}}
		}},
		{"types through json.Marshal", func(e *Envelope) {
			e.Payload = Payload{{Key: "duration", Value: 1500 * time.Millisecond}, {Key: "map", Value: map[string]any{"b": 1, "a": "<"}},
				{Key: "struct", Value: custom{A: 1}}, {Key: "pointer", Value: &custom{B: "&"}}, {Key: "nil pointer", Value: (*custom)(nil)},
				{Key: "raw", Value: json.RawMessage(" { \"a\" : [ 1 , 2 ] } ")}, {Key: "time", Value: time.Unix(0, 0).UTC()},
				{Key: "bytes", Value: []byte("hi")}, {Key: "ints", Value: []int{1, 2}}, {Key: "named string", Value: namedString("x<y")}}
		}},
		{"unsupported value", func(e *Envelope) {
			e.Payload = Payload{{Key: "outer", Value: Payload{{Key: "ch", Value: make(chan int)}}}}
		}},
		{"NaN through json.Marshal", func(e *Envelope) {
			e.Payload = Payload{{Key: "m", Value: map[string]float64{"x": math.NaN()}}}
		}},
		{"time with nanoseconds and zone", func(e *Envelope) {
			e.Time = time.Date(2026, 7, 8, 9, 10, 11, 123456789, time.FixedZone("CEST", 2*3600))
		}},
		{"time with whole seconds", func(e *Envelope) { e.Time = time.Date(2026, 7, 8, 9, 10, 11, 0, time.UTC) }},
		{"time with trailing zeros", func(e *Envelope) { e.Time = time.Date(2026, 7, 8, 9, 10, 11, 120000000, time.UTC) }},
		{"time with monotonic reading", func(e *Envelope) { e.Time = time.Now() }},
		{"zero time", func(e *Envelope) { e.Time = time.Time{} }},
		{"time year 10000", func(e *Envelope) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"time year -1", func(e *Envelope) { e.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"time zone offset 24h", func(e *Envelope) { e.Time = time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 24*3600)) }},
		{"time zone offset seconds", func(e *Envelope) { e.Time = time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600+30)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := sampleEnvelope()
			tc.change(env)
			checkEncoding(t, env)
		})
	}
}

// namedString is a string type that appendValue does not switch on, so
// json.Marshal encodes it.
type namedString string

func TestPayloadAndContextMarshalJSON(t *testing.T) {
	env := sampleEnvelope()
	got, err := env.Payload.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"new":0.4,"old":0.2}`; string(got) != want {
		t.Errorf("Payload.MarshalJSON = %s, want %s", got, want)
	}

	got, err = Payload(nil).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "null" {
		t.Errorf("nil Payload.MarshalJSON = %s, want null", got)
	}

	got, err = env.Context.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"currentZ":0.4,"progress":12.5,"file":{"name":"cube.gcode","path":"cube.gcode","origin":"local"},"state":"PRINTING"}`
	if string(got) != want {
		t.Errorf("Context.MarshalJSON = %s, want %s", got, want)
	}

	got, err = Context{}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"currentZ":null,"progress":null,"file":null}`; string(got) != want {
		t.Errorf("empty Context.MarshalJSON = %s, want %s", got, want)
	}
}

func TestEnvelopeAppendJSONErrorText(t *testing.T) {
	env := sampleEnvelope()
	env.Payload = Payload{{Key: "ch", Value: make(chan int)}}
	_, err := env.AppendJSON(nil)
	want := `json: error calling MarshalJSON for type bridge.Payload: key "ch": json: unsupported type: chan int`
	if err == nil || err.Error() != want {
		t.Errorf("AppendJSON error = %v, want %s", err, want)
	}
	env = sampleEnvelope()
	env.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err = env.AppendJSON(nil)
	want = "json: error calling MarshalJSON for type time.Time: Time.MarshalJSON: year outside of range [0,9999]"
	if err == nil || err.Error() != want {
		t.Errorf("AppendJSON error = %v, want %s", err, want)
	}
}

// checkDecoding fails t unless DecodeEnvelope returns what encoding/json
// alone returns for data, and unless the fast path took data exactly when
// wantFast is true.
func checkDecoding(t *testing.T, data []byte, wantFast bool) {
	t.Helper()
	_, fast := scanEnvelope(data)
	if fast != wantFast {
		t.Errorf("scanEnvelope took %s: %v, want %v", data, fast, wantFast)
	}
	compareDecoders(t, data)
}

// compareDecoders fails t unless DecodeEnvelope and decodeEnvelopeJSON
// agree on data, and unless the fast path, where it decodes data, builds
// the Envelope that json.Unmarshal builds.
func compareDecoders(t *testing.T, data []byte) {
	t.Helper()
	want, wantErr := decodeEnvelopeJSON(data)
	got, err := DecodeEnvelope(data)
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("DecodeEnvelope(%q) error = %v, encoding/json error = %v", data, err, wantErr)
	case err != nil && err.Error() != wantErr.Error():
		t.Fatalf("DecodeEnvelope(%q) error = %q, encoding/json error = %q", data, err, wantErr)
	case err == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("DecodeEnvelope(%q) = %#v, encoding/json = %#v", data, got, want)
	}
	scanned, ok := scanEnvelope(data)
	if !ok {
		return
	}
	var plain Envelope
	if err := json.Unmarshal(data, &plain); err != nil {
		t.Fatalf("scanEnvelope decoded %q, which json.Unmarshal rejects: %v", data, err)
	}
	if !reflect.DeepEqual(scanned, &plain) {
		t.Fatalf("scanEnvelope(%q) = %#v, json.Unmarshal = %#v", data, scanned, &plain)
	}
}

func TestDecodeEnvelopeFastPath(t *testing.T) {
	edge, err := sampleEnvelope().AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	const head = `{"schema":1,"id":"i","seq":1,"printer":"p","event":"e","time":"2026-01-02T03:04:05.000006Z",`
	cases := []struct {
		name string
		json string
		fast bool
	}{
		{"edge output", string(edge), true},
		{"nil payload and empty context", head + `"payload":null,"context":{"currentZ":null,"progress":null,"file":null}}`, true},
		{"keys in another order", `{"context":{"state":"X","file":null},"payload":{},"event":"e","printer":"p","seq":2,"id":"i","schema":1}`, true},
		{"missing keys", `{"id":"i","event":"e","printer":"p"}`, true},
		{"empty object", `{}`, true},
		{"whitespace everywhere", " \t\n{ \"id\" : \"i\" ,\r\n\"event\":\"e\", \"printer\" :\"p\", \"payload\" : { \"a\" : [ 1 , { } , [ ] ] } , \"context\" : { } } \n", true},
		{"string escapes", head + `"payload":{"s":"\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac"},"context":{}}`, true},
		{"surrogate pair", head + `"payload":{"emoji":"\ud83d\ude00","upper":"\uD83D\uDE00"},"context":{}}`, true},
		{"lone high surrogate", head + `"payload":{"s":"a\ud83dz","end":"\ud83d"},"context":{}}`, true},
		{"lone low surrogate", head + `"payload":{"s":"\ude00\ude00"},"context":{}}`, true},
		{"high surrogate before non-surrogate escape", head + `"payload":{"s":"\ud83d\u0041"},"context":{}}`, true},
		{"two high surrogates then low", head + `"payload":{"s":"\ud83d\ud83d\ude00"},"context":{}}`, true},
		{"escaped U+FFFD", head + `"payload":{"s":"\ufffd"},"context":{}}`, true},
		{"escape in top-level string", `{"id":"a\"b\u00e9","event":"e\n","printer":"p\\"}`, true},
		{"non-ASCII text", head + `"payload":{"Düse":"温度 🌡️"},"context":{"state":"é"}}`, true},
		{"numbers", head + `"payload":{"a":0,"b":-0,"c":1.5e+10,"d":-2E-3,"e":123456789012345678901234567890,"f":0.0},"context":{"currentZ":-0.0,"progress":1e2}}`, true},
		{"literals", head + `"payload":{"t":true,"f":false,"n":null,"arr":[true,false,null]},"context":{}}`, true},
		{"duplicate payload keys", head + `"payload":{"a":1,"b":2,"a":3,"b":{"c":1},"c":[]},"context":{}}`, true},
		{"duplicate nested keys", head + `"payload":{"o":{"x":1,"x":"two"}},"context":{}}`, true},
		{"empty file ref", head + `"payload":{},"context":{"file":{}}}`, true},
		{"large seq", `{"id":"i","event":"e","printer":"p","seq":18446744073709551615,"schema":-5}`, true},
		{"time with zone offset", `{"id":"i","event":"e","printer":"p","time":"2026-07-08T09:10:11.5+02:00"}`, true},
		{"required fields empty", `{"id":"","event":"e","printer":"p"}`, true},

		{"uppercase key", `{"ID":"i","event":"e","printer":"p"}`, false},
		{"mixed-case key", `{"id":"i","Event":"e","printer":"p"}`, false},
		{"mixed-case context key", `{"id":"i","event":"e","printer":"p","context":{"currentz":1.0}}`, false},
		{"mixed-case file key", `{"id":"i","event":"e","printer":"p","context":{"file":{"Name":"a"}}}`, false},
		{"unknown key", `{"id":"i","event":"e","printer":"p","extra":1}`, false},
		{"escaped key", `{"\u0069d":"i","event":"e","printer":"p"}`, false},
		{"duplicate top-level key", `{"id":"i","id":"j","event":"e","printer":"p"}`, false},
		{"duplicate context", `{"id":"i","event":"e","printer":"p","context":{"state":"A"},"context":{"currentZ":1}}`, false},
		{"duplicate context key", `{"id":"i","event":"e","printer":"p","context":{"state":"A","state":"B"}}`, false},
		{"duplicate file key", `{"id":"i","event":"e","printer":"p","context":{"file":{"name":"a","name":"b"}}}`, false},
		{"null string field", `{"id":"i","event":"e","printer":null}`, false},
		{"null time", `{"id":"i","event":"e","printer":"p","time":null}`, false},
		{"null context", `{"id":"i","event":"e","printer":"p","context":null}`, false},
		{"null state", `{"id":"i","event":"e","printer":"p","context":{"state":null}}`, false},
		{"float schema", `{"schema":1.0,"id":"i","event":"e","printer":"p"}`, false},
		{"negative seq", `{"seq":-1,"id":"i","event":"e","printer":"p"}`, false},
		{"seq overflow", `{"seq":18446744073709551616,"id":"i","event":"e","printer":"p"}`, false},
		{"schema overflow", `{"schema":9223372036854775808,"id":"i","event":"e","printer":"p"}`, false},
		{"currentZ overflow", `{"id":"i","event":"e","printer":"p","context":{"currentZ":1e400}}`, false},
		{"string for number", `{"seq":"1","id":"i","event":"e","printer":"p"}`, false},
		{"number for string", `{"id":1,"event":"e","printer":"p"}`, false},
		{"array payload", `{"id":"i","event":"e","printer":"p","payload":[1]}`, false},
		{"string payload", `{"id":"i","event":"e","printer":"p","payload":"x"}`, false},
		{"invalid time", `{"id":"i","event":"e","printer":"p","time":"yesterday"}`, false},
		{"escaped time", `{"id":"i","event":"e","printer":"p","time":"2026-01-02T03:04:05\u005a"}`, false},
		{"invalid UTF-8 in value", "{\"id\":\"i\xff\",\"event\":\"e\",\"printer\":\"p\"}", false},
		{"invalid UTF-8 in payload", "{\"id\":\"i\",\"event\":\"e\",\"printer\":\"p\",\"payload\":{\"k\":\"\xed\xa0\x80\"}}", false},
		{"control character in string", "{\"id\":\"i\tj\",\"event\":\"e\",\"printer\":\"p\"}", false},
		{"invalid escape", `{"id":"i\x","event":"e","printer":"p"}`, false},
		{"short unicode escape", `{"id":"\u12","event":"e","printer":"p"}`, false},
		{"leading zero", `{"id":"i","event":"e","printer":"p","payload":{"n":012}}`, false},
		{"bare minus", `{"id":"i","event":"e","printer":"p","payload":{"n":-}}`, false},
		{"missing fraction digits", `{"id":"i","event":"e","printer":"p","payload":{"n":1.}}`, false},
		{"missing exponent digits", `{"id":"i","event":"e","printer":"p","payload":{"n":1e+}}`, false},
		{"trailing comma", `{"id":"i","event":"e","printer":"p",}`, false},
		{"trailing comma in payload", `{"id":"i","event":"e","printer":"p","payload":{"a":1,}}`, false},
		{"trailing data", `{"id":"i","event":"e","printer":"p"} {}`, false},
		{"truncated", `{"id":"i","event":"e","printer":"p","payload":{"a":[1,2`, false},
		{"misspelled literal", `{"id":"i","event":"e","printer":"p","payload":{"a":tru}}`, false},
		{"top-level null", `null`, false},
		{"top-level array", `[]`, false},
		{"empty input", ``, false},
		{"byte order mark", "\xef\xbb\xbf{\"id\":\"i\",\"event\":\"e\",\"printer\":\"p\"}", false},
		{"deep nesting", head + `"payload":` + strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70) + `,"context":{}}`, false},
		{"deep arrays", head + `"payload":{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `},"context":{}}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkDecoding(t, []byte(tc.json), tc.fast)
		})
	}
}

func TestDecodeEnvelopeFastPathValues(t *testing.T) {
	data := []byte(`{"schema":1,"id":"i","seq":9,"printer":"p","event":"e","time":"2026-01-02T03:04:05.000006Z",` +
		`"payload":{"n":1.50,"s":"\ud83d\ude00\ud83d","o":{"x":[1,"a",true,null]},"n":2},` +
		`"context":{"currentZ":0.2,"progress":null,"file":{"name":"a.gcode","path":"d/a.gcode","origin":"sdcard"},"state":"PRINTING"}}`)
	env, ok := scanEnvelope(data)
	if !ok {
		t.Fatal("scanEnvelope rejected the input")
	}
	wantPayload := Payload{{Key: "n", Value: json.Number("2")}, {Key: "s", Value: "😀\ufffd"},
		{Key: "o", Value: Payload{{Key: "x", Value: []any{json.Number("1"), "a", true, nil}}}}}
	if !reflect.DeepEqual(env.Payload, wantPayload) {
		t.Errorf("payload = %#v, want %#v", env.Payload, wantPayload)
	}
	if env.Context.CurrentZ == nil || *env.Context.CurrentZ != 0.2 {
		t.Errorf("currentZ = %v, want 0.2", env.Context.CurrentZ)
	}
	if env.Context.Progress != nil {
		t.Errorf("progress = %v, want nil", *env.Context.Progress)
	}
	if want := (FileRef{Name: "a.gcode", Path: "d/a.gcode", Origin: "sdcard"}); env.Context.File == nil || *env.Context.File != want {
		t.Errorf("file = %+v, want %+v", env.Context.File, want)
	}
	if want := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC); !env.Time.Equal(want) || env.Time.Location() != time.UTC {
		t.Errorf("time = %v, want %v", env.Time, want)
	}
}

// codecSeeds are the fuzz corpus of FuzzEnvelopeCodec: the edge's form
// and inputs near each fallback.
var codecSeeds = []string{
	`{"schema":1,"id":"0190a4b2-7c1e-7a3b-9c2d-1e2f3a4b5c6d","seq":1234,"printer":"printer1","event":"ZChange","time":"2026-01-02T03:04:05.000006Z","payload":{"new":0.4,"old":0.2},"context":{"currentZ":0.4,"progress":12.5,"file":{"name":"cube.gcode","path":"cube.gcode","origin":"local"},"state":"PRINTING"}}`,
	`{"schema":1,"id":"i","seq":1,"printer":"p","event":"plugin_bench_warmup","time":"2026-01-02T03:04:05Z","payload":null,"context":{"currentZ":null,"progress":null,"file":null}}`,
	`{"id":"i","event":"e","printer":"p","payload":{"a":[1,-2.5e-3,"x",true,false,null,{"b":{}}],"a":"\ud83d\ude00\ud83d\u0041\"\\\/\b\f\n\r\t"}}`,
	`{"ID":"i","Event":"e","printer":"p","context":{"CurrentZ":1}}`,
	`{"id":"i","id":"j","event":"e","printer":"p","time":"2026-07-08T09:10:11.5+02:00"}`,
	"{\"id\":\"\xff\",\"event\":\"e\",\"printer\":\"p\",\"payload\":{\"\u2028<&>\":1}}",
	`{"seq":-1,"schema":1.0,"id":"i","event":"e","printer":"p","payload":[1]}`,
	` { "id" : "i" , "event" : "e" , "printer" : "p" , "payload" : { } , "context" : { "file" : { } } } `,
	`null`,
	`{"a":{"b":[1,2,{"c":"\u00e9"}]},"a":null}`,
	`\ud83d\ude00 \" <&> \u2028`,
}

// FuzzEnvelopeCodec checks on arbitrary input that DecodeEnvelope agrees
// with encoding/json alone, and that AppendJSON writes what the old
// encoder writes for every envelope json.Unmarshal decodes, in a form
// that the fast path decodes back to the same envelope. Each input is
// tried as a whole envelope, as the payload and as the text of a payload
// string, because most mutations of a whole envelope are invalid JSON
// that never reaches the fast path's value decoding.
func FuzzEnvelopeCodec(f *testing.F) {
	for _, seed := range codecSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const head = `{"schema":1,"id":"i","seq":1,"printer":"p","event":"e","time":"2026-01-02T03:04:05Z","payload":`
		asPayload := append([]byte(head), data...)
		asPayload = append(asPayload, `,"context":{}}`...)
		asString := append([]byte(head+`{"s":"`), data...)
		asString = append(asString, `"}}`...)
		for _, input := range [][]byte{data, asPayload, asString} {
			checkCodec(t, input)
		}
	})
}

func checkCodec(t *testing.T, data []byte) {
	t.Helper()
	compareDecoders(t, data)
	var env Envelope
	if json.Unmarshal(data, &env) != nil {
		return
	}
	checkEncoding(t, &env)
	encoded, err := env.AppendJSON(nil)
	if err != nil {
		return
	}
	again, ok := scanEnvelope(encoded)
	if !ok {
		t.Fatalf("scanEnvelope rejected AppendJSON's output %s", encoded)
	}
	if !reflect.DeepEqual(again, &env) {
		t.Fatalf("AppendJSON then scanEnvelope = %#v, want %#v", again, &env)
	}
}
