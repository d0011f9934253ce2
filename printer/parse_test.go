package printer

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestChecksumKnownLines(t *testing.T) {
	cases := map[string]string{
		"M110 N0": "N0 M110 N0*125",
		"M115":    "N1 M115*39",
		"M105":    "N2 M105*37",
		"G28":     "N3 G28*16",
	}
	n := 0
	for _, cmd := range []string{"M110 N0", "M115", "M105", "G28"} {
		if got := FormatNumbered(n, cmd); got != cases[cmd] {
			t.Errorf("FormatNumbered(%d, %q) = %q, want %q", n, cmd, got, cases[cmd])
		}
		n++
	}
}

func TestParseTemperatures(t *testing.T) {
	target := func(v float64) *float64 { return &v }
	cases := []struct {
		line string
		want map[string]Temperature
	}{
		{"ok T:21.30 /0.00 B:21.30 /0.00 @:64 B@:0", map[string]Temperature{"T0": {21.3, target(0)}, "B": {21.3, target(0)}}},
		{" T:200.00 /210.00 B:60.00 /60.00 @:127 B@:0 W:3", map[string]Temperature{"T0": {200, target(210)}, "B": {60, target(60)}}},
		{"T:210.0 E:0 W:?", map[string]Temperature{"T0": {210, nil}}},
		{"ok T:23.0/220.0 T0:23.0/220.0 T1:50.2/210.0 B:60.0", map[string]Temperature{"T0": {23, target(220)}, "T1": {50.2, target(210)}, "B": {60, nil}}},
		{"ok T:25.9 /0.0 B:25.5 /0.0 T0:25.9 /0.0 @:0 B@:0", map[string]Temperature{"T0": {25.9, target(0)}, "B": {25.5, target(0)}}},
	}
	for _, c := range cases {
		got := ParseTemperatures(c.line)
		if len(got) != len(c.want) {
			t.Errorf("%q: got %d sensors %v, want %d", c.line, len(got), got, len(c.want))
			continue
		}
		for k, w := range c.want {
			g, ok := got[k]
			if !ok || g.Actual != w.Actual || !floatPtrEqual(g.Target, w.Target) {
				t.Errorf("%q: sensor %s = %+v, want %+v", c.line, k, g, w)
			}
		}
	}
}

func TestIsTemperatureLineSkipsM114(t *testing.T) {
	if IsTemperatureLine("X:0.00 Y:220.00 Z:22.80 E:-1.00 Count A:17666 B:-17666 Z:36480") {
		t.Error("M114 Count line taken for a temperature report")
	}
	if !IsTemperatureLine("T:21.3 /0.0") {
		t.Error("plain T report not recognised")
	}
}

func TestParsePosition(t *testing.T) {
	cases := []struct {
		line string
		want Position
	}{
		{"X:0.00 Y:220.00 Z:22.80 E:-1.00 Count X:17666 Y:-17666 Z:36480", Position{0, 220, 22.8, -1}},
		{"ok X:62.417 Y:64.781 Z:0.2 E:2.72328 Count: A:6241 B:6478 C:20", Position{62.417, 64.781, 0.2, 2.72328}},
		{"X:150.0 Y:150.0 Z:  0.7 E:  0.0", Position{150, 150, 0.7, 0}},
	}
	for _, c := range cases {
		got, ok := ParsePosition(c.line)
		if !ok || got != c.want {
			t.Errorf("ParsePosition(%q) = %+v, %v; want %+v", c.line, got, ok, c.want)
		}
	}
	if _, ok := ParsePosition("X:1 Y:2 Z:3"); ok {
		t.Error("position without E accepted")
	}
}

func TestParseResend(t *testing.T) {
	cases := map[string]int{
		"Resend:23": 23, "Resend: N23": 23, "Resend: N:23": 23, "rs 23": 23, "rs N23": 23,
		"rs N23 expected checksum 109": 23, "Resend: -5": -5, "resend: 7": 7, "Resend: 149ok": 149,
	}
	for line, want := range cases {
		got, ok := ParseResend(line)
		if !ok || got != want {
			t.Errorf("ParseResend(%q) = %d, %v; want %d", line, got, ok, want)
		}
	}
	for _, line := range []string{"Resend: 1\u008b49", "Resend: 1 49", "Resend: 12x", "Resend: abc", "Resend:"} {
		if got, ok := ParseResend(line); ok {
			t.Errorf("ParseResend(%q) = %d, want no line number", line, got)
		}
	}
}

func TestParseLastLine(t *testing.T) {
	for line, want := range map[string]int{
		"Error:checksum mismatch, Last Line: 5":                       5,
		"Error:Line Number is not Last Line Number+1, Last Line: 148": 148,
		"Error:No Checksum with line number, Last Line: 0":            0,
	} {
		if got, ok := ParseLastLine(line); !ok || got != want {
			t.Errorf("ParseLastLine(%q) = %d, %v; want %d", line, got, ok, want)
		}
	}
	for _, line := range []string{"Error:Printer halted. kill() called!", "Error:checksum mismatch, Last Line: 5x", ""} {
		if got, ok := ParseLastLine(line); ok {
			t.Errorf("ParseLastLine(%q) = %d, want no line number", line, got)
		}
	}
}

func TestClassifyError(t *testing.T) {
	cases := map[string]ErrorClass{
		"Error: Line Number is not Last Line Number+1, Last Line: 1": ErrorResendFollows,
		"Error: Expected Line 1 got 2":                               ErrorResendFollows,
		"!! expected line 1 got 2":                                   ErrorResendFollows,
		"Error: No Line Number with checksum, Last Line: 1":          ErrorRecoverable,
		"Error:checksum mismatch, Last Line: 9":                      ErrorResendFollows,
		"Error: No Checksum with line number, Last Line: 1":          ErrorResendFollows,
		"Error: Printer on fire":                                     ErrorFatal,
		"Error:Thermal Runaway, system stopped! Heater_ID: bed":      ErrorFatal,
		"Error:Printer halted. kill() called!":                       ErrorFatal,
		"echo:Unknown command: \"M9999\"":                            ErrorIgnored,
	}
	for line, want := range cases {
		if got := ClassifyError(line); got != want {
			t.Errorf("ClassifyError(%q) = %d, want %d", line, got, want)
		}
	}
}

func TestParseFirmwareLine(t *testing.T) {
	line := "FIRMWARE_NAME:Marlin 2.0.7.2 (Nov 27 2020 14:30:11) SOURCE_CODE_URL:https://github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:Ender 5 Pro EXTRUDER_COUNT:1 UUID:cede2a2f-41a2-4748-9b12-c55c62f367ff"
	got := ParseFirmwareLine(line)
	want := map[string]string{
		"FIRMWARE_NAME":    "Marlin 2.0.7.2 (Nov 27 2020 14:30:11)",
		"SOURCE_CODE_URL":  "https://github.com/MarlinFirmware/Marlin",
		"PROTOCOL_VERSION": "1.0",
		"MACHINE_TYPE":     "Ender 5 Pro",
		"EXTRUDER_COUNT":   "1",
		"UUID":             "cede2a2f-41a2-4748-9b12-c55c62f367ff",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestParseZRules(t *testing.T) {
	cases := []struct {
		line string
		z    float64
		ok   bool
	}{
		{"G1 Z0.2 F300", 0.2, true},
		{"G1 X10 Y10 Z.3", 0.3, true},
		{"G1 z5", 0, false},
		{"G1 F300 z5", 5, true},
		{"G0 X1 Y2", 0, false},
		{"G1 Z-0.5", -0.5, true},
	}
	for _, c := range cases {
		z, ok := ParseZ(c.line)
		if ok != c.ok || (ok && z != c.z) {
			t.Errorf("ParseZ(%q) = %v, %v; want %v, %v", c.line, z, ok, c.z, c.ok)
		}
	}
}

func TestCodeOfMatchesOctoPrint(t *testing.T) {
	cases := map[string]string{"G28 X0": "G28", "g28": "", "G028": "G028", "M600": "M600", "T1": "T", "M862.3 P \"MK4S\"": "M862.3", "; comment": ""}
	for line, want := range cases {
		if got := CodeOf(line); got != want {
			t.Errorf("CodeOf(%q) = %q, want %q", line, got, want)
		}
	}
}

func TestLineReaderFraming(t *testing.T) {
	in := "ok\r\nstart\n\x00\x00echo:x\n\xe9t\xe9\nlast"
	lr := NewLineReader(strings.NewReader(in), 64)
	want := []string{"ok", "start", "echo:x", "été", "last"}
	for i, w := range want {
		got, err := lr.ReadLine()
		if err != nil || got != w {
			t.Fatalf("line %d = %q, %v; want %q", i, got, err, w)
		}
	}
	if _, err := lr.ReadLine(); err == nil {
		t.Fatal("no error after the last line")
	}
}

func TestLineReaderCapsLongLine(t *testing.T) {
	lr := NewLineReader(strings.NewReader(strings.Repeat("x", 100)+"\nok\n"), 32)
	first, err := lr.ReadLine()
	// The 32 bytes kept are the line's end, its line feed included.
	if err != nil || first != strings.Repeat("x", 31) {
		t.Fatalf("first line = %d bytes, %v; want its last 31", len(first), err)
	}
	if got := lr.Overlong(); got != 100 {
		t.Errorf("Overlong() = %d after the long line, want 100", got)
	}
	second, err := lr.ReadLine()
	if err != nil || second != "ok" {
		t.Fatalf("second line = %q, %v; want ok", second, err)
	}
	if got := lr.Overlong(); got != 0 {
		t.Errorf("Overlong() = %d after a short line, want 0", got)
	}
}

func TestOverlongMessage(t *testing.T) {
	cases := map[string]string{
		"AAAAok":                         "ok",
		"AAAAok N12 P15 B3":              "ok N12 P15 B3",
		"AAAAok T:21.0 /0.0 B:20.0 /0.0": "ok T:21.0 /0.0 B:20.0 /0.0",
		"AAAAError:checksum mismatch":    "Error:checksum mismatch",
		"AAAAResend: 12":                 "Resend: 12",
		"AAAAok xyz":                     "",
		"AAAAokay":                       "",
		"AAAA":                           "",
		"AAAAstart":                      "",
	}
	for tail, want := range cases {
		if got := overlongMessage(tail); got != want {
			t.Errorf("overlongMessage(%q) = %q, want %q", tail, got, want)
		}
	}
}

func TestNormalizeCommand(t *testing.T) {
	cases := map[string]string{
		"G1 X10 ; move":       "G1 X10",
		"  M117 Hi  ":         "M117 Hi",
		";TYPE:WALL-OUTER":    "",
		`M117 a\;b ; comment`: "M117 a;b",
		"":                    "",
	}
	for in, want := range cases {
		if got := NormalizeCommand(in); got != want {
			t.Errorf("NormalizeCommand(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzLineReader(f *testing.F) {
	f.Add([]byte("ok\r\nT:21.0 /0.0\n\x00start\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lr := NewLineReader(strings.NewReader(string(data)), 96)
		for i := 0; i < len(data)+1; i++ {
			if _, err := lr.ReadLine(); err != nil {
				return
			}
		}
		t.Fatal("more lines than bytes")
	})
}

func FuzzParsers(f *testing.F) {
	f.Add("ok T:21.30 /0.00 B:21.30 /0.00 @:64 B@:0")
	f.Add("X:0.00 Y:220.00 Z:22.80 E:-1.00 Count X:17666")
	f.Add("Resend: N:23")
	f.Fuzz(func(t *testing.T, line string) {
		ParseTemperatures(line)
		ParsePosition(line)
		ParseResend(line)
		ParseFirmwareLine(line)
		ParseCapability(line)
		ClassifyError(line)
		ParseZ(line)
		NormalizeCommand(line)
		CodeOf(line)
	})
}

func TestSplitGluedLines(t *testing.T) {
	cases := map[string][]string{
		"T:22.00 /0.00 B:35.00 /35.00 @:0 B@:17 W:?ok": {"T:22.00 /0.00 B:35.00 /35.00 @:0 B@:17 W:?", "ok"},
		"Cap:CONFIG_EXPORT:0ok":                        {"Cap:CONFIG_EXPORT:0", "ok"},
		"T:22.00 /0.00 B:22start":                      {"T:22.00 /0.00 B:22", "start"},
		"T:1 /0 B:0 /0 @:0 B@:0Error:Line Number is not Last Line Number+1, Last Line: 2": {"T:1 /0 B:0 /0 @:0 B@:0", "Error:Line Number is not Last Line Number+1, Last Line: 2"},
		"X:1.00 Y:2.00 Z:3.00 E:0.00 Count X:80ok N12 P15 B3":                             {"X:1.00 Y:2.00 Z:3.00 E:0.00 Count X:80", "ok N12 P15 B3"},
		`echo:Unknown command: "M486 S0"ok`:                                               {`echo:Unknown command: "M486 S0"`, "ok"},
		"echo:Settings Stored (628 bytes; crc 11947)ok":                                   {"echo:Settings Stored (628 bytes; crc 11947)", "ok"},
		"Done saving file.ok":                                                             {"Done saving file.", "ok"},
		"echo:SD card ok":                                                                 nil,
		"echo:ok":                                                                         nil,
		"echo:start":                                                                      nil,
		"ok":                                                                              nil,
		"ok T:21.0 /0.0":                                                                  nil,
		"echo:Now fresh file: book":                                                       nil,
		"start":                                                                           nil,
		"Error:checksum mismatch, Last Line: 9":                                           nil,
	}
	for line, want := range cases {
		got := splitGlued(line)
		if len(got) != len(want) {
			t.Errorf("splitGlued(%q) = %q, want %q", line, got, want)
			continue
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("splitGlued(%q)[%d] = %q, want %q", line, i, got[i], want[i])
			}
		}
	}
}

func TestLastRunesKeepsCharactersWhole(t *testing.T) {
	// Latin-1 noise decoded as runes of two bytes each in UTF-8.
	noise := CleanLine([]byte("\x89IOT\xe4i\x80\xbf\xbd"))
	got := lastRunes(noise, 4)
	if !utf8.ValidString(got) {
		t.Errorf("lastRunes(%q, 4) = %q, not valid UTF-8", noise, got)
	}
	if want := "i\u0080\u00bf\u00bd"; got != want {
		t.Errorf("lastRunes(%q, 4) = %q, want %q", noise, got, want)
	}
	if got := lastRunes("ok", 40); got != "ok" {
		t.Errorf("lastRunes(\"ok\", 40) = %q, want the whole string", got)
	}
}

func TestDwellOf(t *testing.T) {
	for line, want := range map[string]time.Duration{
		"G4 S0":           0,
		"G4":              0,
		"G4 S2":           2 * time.Second,
		"G4 P500":         500 * time.Millisecond,
		"G4 S1 P500":      time.Second,
		"G4 S1.5":         1500 * time.Millisecond,
		"G4 S99999999999": 24 * time.Hour,
	} {
		got, ok := dwellOf(line)
		if !ok || got != want {
			t.Errorf("dwellOf(%q) = %s, %v; want %s", line, got, ok, want)
		}
	}
	if _, ok := dwellOf("M400"); ok {
		t.Error("dwellOf(\"M400\") reports a dwell")
	}
}
