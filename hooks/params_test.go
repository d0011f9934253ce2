package hooks

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

func decodeEnvelope(tb testing.TB, text string) *bridge.Envelope {
	tb.Helper()
	env, err := bridge.DecodeEnvelope([]byte(text))
	if err != nil {
		tb.Fatalf("DecodeEnvelope: %v", err)
	}
	return env
}

func TestPlaceholdersBuiltins(t *testing.T) {
	env := decodeEnvelope(t, `{"schema":1,"id":"e1","seq":7,"printer":"mk3s-1","event":"PrintDone",
		"time":"2026-12-03T21:00:00Z",
		"payload":{"name":"benchy.gcode","path":"folder/benchy.gcode","origin":"local","size":1234567,"time":1234.5678901,"owner":"ünï"},
		"context":{"currentZ":10.0,"progress":100.0,"file":{"name":"benchy.gcode","path":"folder/benchy.gcode","origin":"local"}}}`)
	now := time.Date(2026, 12, 3, 22, 1, 2, 345678912, time.Local)
	p := Placeholders(env, now)
	want := map[string]string{
		"__eventname":  "PrintDone",
		"__now":        "2026-12-03T22:01:02.345678",
		"__currentZ":   "10.0",
		"__progress":   "100",
		"__filename":   "benchy.gcode",
		"__filepath":   "folder/benchy.gcode",
		"__fileorigin": "local",
		"__data":       "{'name': 'benchy.gcode', 'path': 'folder/benchy.gcode', 'origin': 'local', 'size': 1234567, 'time': 1234.5678901, 'owner': 'ünï'}",
		"__json":       `{"name": "benchy.gcode", "path": "folder/benchy.gcode", "origin": "local", "size": 1234567, "time": 1234.5678901, "owner": "\u00fcn\u00ef"}`,
		"name":         "benchy.gcode",
		"size":         "1234567",
		"time":         "1234.5678901",
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("{%s} = %q, want %q", k, p[k], v)
		}
	}
}

func TestPlaceholdersWithoutFileOrPayload(t *testing.T) {
	env := decodeEnvelope(t, `{"schema":1,"id":"e2","printer":"mk3s-1","event":"Home","payload":null,
		"context":{"currentZ":null,"progress":55.5,"file":null}}`)
	p := Placeholders(env, time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local))
	want := map[string]string{
		"__now": "2026-01-02T03:04:05", "__currentZ": "-1", "__progress": "0", "__filename": "NO FILE",
		"__filepath": "NO PATH", "__data": "None", "__json": "{}",
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("{%s} = %q, want %q", k, p[k], v)
		}
	}
	if _, ok := p["__fileorigin"]; ok {
		t.Errorf("__fileorigin exists without a selected file")
	}
	_, err := Format("{__fileorigin}", p)
	var fe *FormatError
	if !errors.As(err, &fe) || !fe.UnknownPlaceholder() {
		t.Errorf("{__fileorigin} without a file: %v, want an unknown placeholder", err)
	}
	env.Payload = bridge.Payload{}
	if got := Placeholders(env, time.Now())["__json"]; got != "{}" {
		t.Errorf("__json of an empty payload = %q, want {}", got)
	}
	if got := Placeholders(env, time.Now())["__data"]; got != "{}" {
		t.Errorf("__data of an empty payload = %q, want {}", got)
	}
}

func TestPlaceholdersProgressRoundsHalfEven(t *testing.T) {
	cases := map[float64]string{2.5: "2", 3.5: "4", 0.4: "0", -0.4: "0", 99.5: "100", 50.49: "50", -100: "-100"}
	for progress, want := range cases {
		progress := progress
		env := &bridge.Envelope{ID: "e", Printer: "p", Event: "ZChange",
			Context: bridge.Context{Progress: &progress, File: &bridge.FileRef{Name: "a.gcode", Path: "a.gcode", Origin: "local"}}}
		if got := Placeholders(env, time.Now())["__progress"]; got != want {
			t.Errorf("__progress of %v = %q, want %q", progress, got, want)
		}
	}
}

func TestPlaceholdersPayloadWins(t *testing.T) {
	env := &bridge.Envelope{ID: "e", Printer: "p", Event: "PrintDone",
		Payload: bridge.Payload{{Key: "__eventname", Value: "from payload"}, {Key: "old", Value: nil}, {Key: "effective_print", Value: true}}}
	p := Placeholders(env, time.Now())
	if p["__eventname"] != "from payload" || p["old"] != "None" || p["effective_print"] != "True" {
		t.Errorf("placeholders = %v", p)
	}
}

func TestPlaceholdersPositionRepr(t *testing.T) {
	env := decodeEnvelope(t, `{"schema":1,"id":"e3","printer":"p","event":"PrintCancelled",
		"payload":{"position":{"x":10.0,"y":20.5,"z":0.2,"e":null,"t":0,"f":3000}}}`)
	p := Placeholders(env, time.Now())
	if want := "{'x': 10.0, 'y': 20.5, 'z': 0.2, 'e': None, 't': 0, 'f': 3000}"; p["position"] != want {
		t.Errorf("{position} = %q, want %q", p["position"], want)
	}
	var back map[string]any
	if err := json.Unmarshal([]byte(p["__json"]), &back); err != nil {
		t.Errorf("__json is not JSON: %v", err)
	}
}

func TestRenderGcodeLines(t *testing.T) {
	sub := testSub(t, `{event: ZChange, type: gcode, command: ["M117 Layer Z={new}", "  ", "M117 {name}"]}`)
	lines, err := renderGcode(sub, "ZChange", mapLookup(map[string]string{"new": "0.2", "name": "ok"}))
	if err != nil {
		t.Fatalf("renderGcode: %v", err)
	}
	if strings.Join(lines, "|") != "M117 Layer Z=0.2|M117 ok" {
		t.Errorf("lines = %q", lines)
	}
	_, err = renderGcode(sub, "ZChange", mapLookup(map[string]string{"new": "0.2", "name": "x\nG28"}))
	if err == nil || !strings.Contains(err.Error(), "line break") {
		t.Errorf("a value with a newline: err = %v, want a line break error", err)
	}
	_, err = renderGcode(sub, "ZChange", mapLookup(map[string]string{"new": "0.2", "name": "x\rM112"}))
	if err == nil {
		t.Errorf("a value with a carriage return was sent")
	}
}

func TestLoopGuardAtRunTime(t *testing.T) {
	cases := []struct {
		event, line string
		loops       bool
	}{
		{"Home", "G28", true}, {"Home", "g28 X0", true}, {"Home", "N12 G28*99", true}, {"Home", "G280", false},
		{"Home", "M117 G28", false}, {"Alert", "M300 S440 P200", true}, {"Dwelling", "G4 P100", true},
		{"Dwelling", "G04 P100", true}, {"Waiting", "M0", true}, {"Waiting", "M226", true}, {"Cooling", "M245", true},
		{"Conveyor", "M240", true}, {"Eject", "M40", true}, {"EStop", "M112", true}, {"PowerOn", "M80", true},
		{"PowerOff", "M81", true}, {"FilamentChange", "M600", true}, {"FilamentChange", "M702", true},
		{"ZChange", "G1 Z0.4", true}, {"ZChange", "G0 X1 Z+2", true}, {"ZChange", "G1 X10 Y10", false},
		{"ZChange", "M117 Z=0.2", false}, {"ZChange", "G1 F300 ; Z later", false}, {"ToolChange", "T0", true},
		{"PositionUpdate", "M114", true}, {"FirmwareData", "M115", true}, {"Connected", "M115", false},
		{"PrintDone", "G28", false},
	}
	for _, c := range cases {
		sub := testSub(t, `{event: `+c.event+`, type: gcode, command: "{line}"}`)
		_, err := renderGcode(sub, c.event, mapLookup(map[string]string{"line": c.line}))
		if got := errors.Is(err, ErrLoopGuard); got != c.loops {
			t.Errorf("%s sending %q: loop guard %v, want %v (err %v)", c.event, c.line, got, c.loops, err)
		}
	}
}

// TestPlaceholderSetMatchesMap checks that the worker's on-demand lookup
// gives every value of the map that Placeholders builds, and nothing else.
func TestPlaceholderSetMatchesMap(t *testing.T) {
	envelopes := []string{
		`{"schema":1,"id":"e1","printer":"p","event":"PrintDone","payload":{"name":"a.gcode","time":12.5,"size":3},
			"context":{"currentZ":0.2,"progress":99.5,"file":{"name":"a.gcode","path":"d/a.gcode","origin":"local"}}}`,
		`{"schema":1,"id":"e2","printer":"p","event":"Home","payload":null,"context":{"currentZ":null,"progress":null,"file":null}}`,
		`{"schema":1,"id":"e3","printer":"p","event":"ZChange","payload":{},"context":{"progress":40.0}}`,
		// Payload keys that shadow built-ins, nested values and a key
		// given twice.
		`{"schema":1,"id":"e4","printer":"p","event":"plugin_x","payload":{"__now":"mine","__eventname":1,"__fileorigin":null,
			"nested":{"a":[1,2.0,"x",true,null]},"k":"first","k":"second"},"context":{"file":{"name":"n","path":"p","origin":"sdcard"}}}`,
	}
	now := time.Date(2026, 12, 3, 22, 1, 2, 345678912, time.Local)
	for _, text := range envelopes {
		env := decodeEnvelope(t, text)
		want := Placeholders(env, now)
		set := newPlaceholderSet(env, now)
		for name, value := range want {
			// Twice, so a cached value is checked too.
			for range 2 {
				got, ok := set.lookup(name)
				if !ok || got != value {
					t.Errorf("%s: lookup(%q) = %q, %v; want %q, true", env.ID, name, got, ok, value)
				}
			}
		}
		for _, name := range []string{PlaceholderFileorigin, "missing", ""} {
			if _, inMap := want[name]; inMap {
				continue
			}
			if got, ok := set.lookup(name); ok {
				t.Errorf("%s: lookup(%q) = %q, true; want no value, as Placeholders has none", env.ID, name, got)
			}
		}
	}
}
