package hooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

// referenceResultJSON encodes r as Result.MarshalJSON did before
// AppendJSON: json.Marshal of these structs, copied unchanged but for the
// result field, added since.
func referenceResultJSON(r Result) ([]byte, error) {
	type commandJSON struct {
		ExitCode        int     `json:"exit_code"`
		DurationSeconds float64 `json:"duration_seconds"`
	}
	type resultJSON struct {
		Hook            string        `json:"hook"`
		Event           string        `json:"event"`
		EventID         string        `json:"event_id"`
		Printer         string        `json:"printer"`
		Type            HookType      `json:"type"`
		Result          string        `json:"result"`
		ExitCode        int           `json:"exit_code"`
		DurationSeconds float64       `json:"duration_seconds"`
		OutputTail      string        `json:"output_tail"`
		Error           string        `json:"error"`
		Commands        []commandJSON `json:"commands"`
		CommandID       string        `json:"command_id,omitempty"`
	}
	out := resultJSON{
		Hook: r.Hook, Event: r.Event, EventID: r.EventID, Printer: r.Printer, Type: r.Type, Result: resultLabel(r),
		ExitCode: r.ExitCode, DurationSeconds: r.Duration.Seconds(), OutputTail: r.OutputTail,
		Commands: make([]commandJSON, len(r.Commands)), CommandID: r.CommandID,
	}
	if r.Err != nil {
		out.Error = r.Err.Error()
	}
	for i, c := range r.Commands {
		out.Commands[i] = commandJSON{ExitCode: c.ExitCode, DurationSeconds: c.Duration.Seconds()}
	}
	return json.Marshal(out)
}

// checkResultJSON fails t unless AppendJSON and json.Marshal write what
// the old encoder writes for r.
func checkResultJSON(t *testing.T, r Result) {
	t.Helper()
	want, err := referenceResultJSON(r)
	if err != nil {
		t.Fatalf("old encoder: %v", err)
	}
	got, err := r.AppendJSON([]byte("prefix"))
	if err != nil {
		t.Fatalf("AppendJSON: %v", err)
	}
	if string(got) != "prefix"+string(want) {
		t.Fatalf("AppendJSON wrote\n%s\nold encoder wrote\nprefix%s", got, want)
	}
	marshaled, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	if string(marshaled) != string(want) {
		t.Fatalf("json.Marshal wrote\n%s\nold encoder wrote\n%s", marshaled, want)
	}
}

func TestResultAppendJSONMatchesOldEncoder(t *testing.T) {
	cases := []struct {
		name   string
		result Result
	}{
		{"zero result", Result{}},
		{"system hook", Result{Hook: "notify", Event: "PrintDone", EventID: "0190a4b2-7c1e-7a3b-9c2d-1e2f3a4b5c6d",
			Printer: "mk3", Type: TypeSystem, ExitCode: 0, Duration: 1500 * time.Millisecond, OutputTail: "sent\n",
			Commands: []CommandResult{{ExitCode: 0, Duration: time.Second}, {ExitCode: 2, Duration: 500 * time.Millisecond}}}},
		{"gcode hook", Result{Hook: "#0 ZChange", Event: "ZChange", EventID: "e", Printer: "p", Type: TypeGcode,
			Duration: 1234 * time.Microsecond, OutputTail: "ok\n", CommandID: "cmd-7"}},
		{"failed hook", Result{Hook: "h", Type: TypeSystem, ExitCode: -1, Err: fmt.Errorf("run: %w", ErrTimeout),
			Commands: []CommandResult{{ExitCode: -1, Duration: 30 * time.Second}}}},
		{"escapes in output", Result{Hook: "<h>&", OutputTail: "line1\r\nline2\t\"quoted\"\x00\x1b[0m\u2028\u2029 é 🌡️",
			Err: errors.New("exit status 1: <&>")}},
		{"invalid UTF-8 in output", Result{OutputTail: "bad \xff\xfe bytes \xed\xa0\x80"}},
		{"durations across float formats", Result{Duration: time.Nanosecond,
			Commands: []CommandResult{{Duration: 999 * time.Nanosecond}, {Duration: 1000 * time.Nanosecond},
				{Duration: -time.Nanosecond}, {Duration: math.MaxInt64}, {Duration: math.MinInt64}, {Duration: 0}}}},
		{"extreme exit codes", Result{ExitCode: math.MinInt, Commands: []CommandResult{{ExitCode: math.MaxInt}}}},
		{"empty commands", Result{Commands: []CommandResult{}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkResultJSON(t, tc.result)
		})
	}
}

// FuzzResultJSON checks AppendJSON against the old encoder for arbitrary
// strings, exit codes and durations.
func FuzzResultJSON(f *testing.F) {
	f.Add("notify", "PrintDone", "ok\n<&>\u2028", "exit status 1", int64(1500000000), 0, "")
	f.Add("#0 ZChange", "ZChange", "\xff\x00\"\\", "", int64(1), -1, "cmd-1")
	f.Fuzz(func(t *testing.T, hook, event, output, errText string, nanos int64, exitCode int, commandID string) {
		r := Result{Hook: hook, Event: event, EventID: output, Printer: errText, Type: HookType(hook),
			ExitCode: exitCode, Duration: time.Duration(nanos), OutputTail: output, CommandID: commandID,
			Commands: []CommandResult{{ExitCode: exitCode, Duration: time.Duration(nanos / 1000)}}}
		if errText != "" {
			r.Err = errors.New(errText)
		}
		checkResultJSON(t, r)
	})
}

// referenceResult is a Result whose MarshalJSON is the old struct
// encoder, so that json.Marshal of it costs what the worker's
// json.Marshal(res) cost before AppendJSON.
type referenceResult Result

func (r referenceResult) MarshalJSON() ([]byte, error) { return referenceResultJSON(Result(r)) }

// BenchmarkResultEncode compares the worker's old json.Marshal(res) with
// json.Marshal over the new MarshalJSON and with AppendJSON, on the
// result of a gcode hook, the kind the pipeline benchmark makes.
func BenchmarkResultEncode(b *testing.B) {
	r := Result{Hook: "bench-zchange", Event: "ZChange", EventID: "0190a4b2-7c1e-7a3b-9c2d-1e2f3a4b5c6d",
		Printer: "bench", Type: TypeGcode, Duration: 41 * time.Microsecond}
	b.Run("old-json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(referenceResult(r)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.AppendJSON(make([]byte, 0, 256)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
