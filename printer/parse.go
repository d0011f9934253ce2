package printer

import (
	"strconv"
	"strings"

	"github.com/printbridge/printbridge/bridge/lazy"
)

// Temperature is one heater reading. Target is nil when the report has
// none.
type Temperature struct {
	Actual float64
	Target *float64
}

var tempToken = lazy.Regexp{Expr: `(?:^|\s)(B|C|T\d*|[A-Za-z]\w*):\s*(-?\d+(?:\.\d+)?)(?:\s*/\s*(-?\d+(?:\.\d+)?))?`}

// IsTemperatureLine reports whether line is a temperature report by
// OctoPrint's test: a T, T0 or B token, and no `A:` (which would be the
// `Count A: B: C:` part of an M114 reply).
func IsTemperatureLine(line string) bool {
	has := func(tok string) bool {
		return strings.HasPrefix(line, tok) || strings.Contains(line, " "+tok)
	}
	if has("T:") || has("T0:") {
		return true
	}
	return has("B:") && !strings.Contains(line, "A:")
}

// ParseTemperatures reads every `name:actual[ /target]` token of a report
// such as `ok T:210.0 /210.0 B:60.0 /60.0 @:127 B@:0 W:3`. Only the first
// occurrence of each sensor counts; `@` tokens never match, and values
// that are not numbers (`W:?`) are skipped. A lone `T` with no `T0` is
// returned as T0; a `T` beside numbered tools is dropped, because it only
// repeats the current tool.
func ParseTemperatures(line string) map[string]Temperature {
	out := map[string]Temperature{}
	for _, m := range tempToken.Get().FindAllStringSubmatch(line, -1) {
		name := m[1]
		if _, seen := out[name]; seen {
			continue
		}
		actual, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		t := Temperature{Actual: actual}
		if m[3] != "" {
			if target, err := strconv.ParseFloat(m[3], 64); err == nil {
				t.Target = &target
			}
		}
		out[name] = t
	}
	if t, ok := out["T"]; ok {
		delete(out, "T")
		if _, numbered := out["T0"]; !numbered {
			out["T0"] = t
		}
	}
	for _, ignored := range []string{"W", "E", "ok"} {
		delete(out, ignored)
	}
	return out
}

// Position is a parsed position report.
type Position struct {
	X, Y, Z, E float64
}

// positionPattern accepts values glued to the next key, as old Creality
// builds print them (`X:100.00Y:0.00Z:0.00E:0.00`).
var positionPattern = lazy.Regexp{Expr: `X:\s*(-?\d+(?:\.\d+)?)\s*Y:\s*(-?\d+(?:\.\d+)?)\s*Z:\s*(-?\d+(?:\.\d+)?)\s*E0?:\s*(-?\d+(?:\.\d+)?)`}

// ParsePosition reads an M114-shaped report. Only the first match counts,
// so the `Count X:` part of Marlin's reply is ignored.
func ParsePosition(line string) (Position, bool) {
	m := positionPattern.Get().FindStringSubmatch(line)
	if m == nil {
		return Position{}, false
	}
	var v [4]float64
	for i := range v {
		v[i], _ = strconv.ParseFloat(m[i+1], 64)
	}
	return Position{X: v[0], Y: v[1], Z: v[2], E: v[3]}, true
}

var firmwareKey = lazy.Regexp{Expr: `(?:^|\s)([A-Z][A-Z0-9_]*):`}

// ParseFirmwareLine splits an M115 reply into its KEY:value pairs. Values
// may contain spaces, colons and URLs, so a value runs up to the next
// upper-case key.
func ParseFirmwareLine(line string) map[string]string {
	out := map[string]string{}
	idx := firmwareKey.Get().FindAllStringSubmatchIndex(line, -1)
	for i, m := range idx {
		key := line[m[2]:m[3]]
		end := len(line)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		out[key] = strings.TrimSpace(line[m[1]:end])
	}
	return out
}

// ParseCapability reads `Cap:NAME:0|1`.
func ParseCapability(line string) (name string, enabled, ok bool) {
	if len(line) < 4 || !strings.EqualFold(line[:4], "cap:") {
		return "", false, false
	}
	parts := strings.Split(line[4:], ":")
	if len(parts) != 2 || (parts[1] != "0" && parts[1] != "1") {
		return "", false, false
	}
	return strings.ToUpper(strings.TrimSpace(parts[0])), parts[1] == "1", true
}

// resendNumber takes nothing after the number of Marlin's "Resend:" but
// a glued ok, and text after a space for "rs" (`rs 12 expected checksum
// 109`).
var resendNumber = lazy.Regexp{Expr: `(?i)^(?:resend[:\s]*N?:?\s*(-?\d+)(?:ok)?$|rs[:\s]*N?:?\s*(-?\d+)(?:ok)?(?:\s|$))`}

// ParseResend reads a resend request: `Resend: 12`, `Resend:N12`,
// `rs N:12`, `rs 12 expected checksum 109`, and `Resend: 12ok` whose ok
// lost its line feed. The number keeps its sign, so a corrupt negative
// request is seen as such instead of as a valid line. A number followed
// by anything else, such as the `1` of `Resend: 1\x8b49` or `Resend: 1 49`
// with a byte that line noise changed, is no line number.
func ParseResend(line string) (int, bool) {
	m := resendNumber.Get().FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1] + m[2])
	if err != nil {
		return 0, false
	}
	return n, true
}

var lastLineNumber = lazy.Regexp{Expr: `(?i)last line:\s*(\d+)\s*$`}

// ParseLastLine reads the line number at the end of a Marlin line error,
// such as 5 in `Error:checksum mismatch, Last Line: 5`: the last line
// that the firmware took.
func ParseLastLine(line string) (int, bool) {
	m := lastLineNumber.Get().FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, false
	}
	return n, true
}

// ErrorClass is how the host reacts to a firmware `Error:` line.
type ErrorClass int

// Error classes, following OctoPrint's handling of firmware errors.
const (
	// ErrorRecoverable lost a line without a resend request; the host
	// acts as if it got an ok so the next line provokes a proper resend.
	ErrorRecoverable ErrorClass = iota
	// ErrorResendFollows is a checksum or line-number error; a Resend
	// line follows.
	ErrorResendFollows
	// ErrorIgnored covers SD-card and unknown-command errors.
	ErrorIgnored
	// ErrorFatal ends the connection: kill, thermal runaway, MINTEMP and
	// anything not known to be harmless.
	ErrorFatal
)

// IsErrorLine reports whether line is a firmware error report.
func IsErrorLine(line string) bool {
	return len(line) >= 6 && strings.EqualFold(line[:6], "error:") || strings.HasPrefix(line, "!!")
}

// ClassifyError sorts an error line by the first matching substring, in
// OctoPrint's order.
func ClassifyError(line string) ErrorClass {
	l := strings.ToLower(line)
	switch {
	case strings.Contains(l, "no line number with checksum"), strings.Contains(l, "missing linenumber"):
		return ErrorRecoverable
	case strings.Contains(l, "line number"), strings.Contains(l, "linenumber"), strings.Contains(l, "checksum"),
		strings.Contains(l, "format error"), strings.Contains(l, "expected line"),
		// Every Marlin line error ends with "Last Line: <n>"; the field
		// still identifies one when line noise garbled the words before it.
		strings.Contains(l, "last line:"):
		return ErrorResendFollows
	case strings.Contains(l, "volume.init"), strings.Contains(l, "openroot"), strings.Contains(l, "workdir"),
		strings.Contains(l, "error writing to file"), strings.Contains(l, "cannot open"), strings.Contains(l, "open failed"),
		strings.Contains(l, "cannot enter"), strings.Contains(l, "unknown command"):
		return ErrorIgnored
	}
	return ErrorFatal
}

// ErrorFAQ returns OctoPrint's FAQ tag for a fatal firmware error, or "".
func ErrorFAQ(line string) string {
	l := strings.ToLower(line)
	switch {
	case strings.Contains(l, "mintemp"):
		return "firmware-mintemp"
	case strings.Contains(l, "maxtemp"):
		return "firmware-maxtemp"
	case strings.Contains(l, "runaway"):
		return "firmware-thermal-runaway"
	case strings.Contains(l, "heating failed"):
		return "firmware-heating-failed"
	case strings.Contains(l, "probing failed"):
		return "firmware-probing-failed"
	}
	return ""
}

var zPattern = lazy.Regexp{Expr: `(?:^|[^A-Za-z])[Zz]([-+]?[0-9]*\.?[0-9]+)`}

// ParseZ returns the Z of a G0/G1 line by OctoPrint's rule: the line must
// contain an upper-case Z or F, and the value is the first Z (either
// case) not preceded by a letter.
func ParseZ(line string) (float64, bool) {
	if !strings.ContainsAny(line, "ZF") {
		return 0, false
	}
	m := zPattern.Get().FindStringSubmatch(line)
	if m == nil {
		return 0, false
	}
	z, err := strconv.ParseFloat(m[1], 64)
	return z, err == nil
}

var paramPattern = lazy.Regexp{Expr: `(?:^|\s)([A-Z])(-?\d*\.?\d+)`}

// Param returns the numeric value of parameter letter in a G-code line.
func Param(line string, letter byte) (float64, bool) {
	for _, m := range paramPattern.Get().FindAllStringSubmatch(line, -1) {
		if m[1][0] == letter {
			v, err := strconv.ParseFloat(m[2], 64)
			return v, err == nil
		}
	}
	return 0, false
}

var killCausePattern = lazy.Regexp{Expr: `(?i)Heating failed|Thermal Runaway|Thermal Malfunction|MAXTEMP triggered|MINTEMP triggered|Invalid extruder number|Watchdog barked|KILL caused`}
var errorNumberPattern = lazy.Regexp{Expr: `(?i)^error:\s*\d+\s*$`}

// ErrorContinues reports whether an error line only starts a report that
// the next line finishes: the old `Error:0` style of min/max temperature
// errors, and Marlin's kill causes, which name the heater on a second
// line. OctoPrint joins the two with " - ".
func ErrorContinues(line string) bool {
	return errorNumberPattern.Get().MatchString(line) || killCausePattern.Get().MatchString(line)
}

// JoinErrorLines joins an error line with the line that completes it.
func JoinErrorLines(first, next string) string {
	next = strings.TrimSpace(next)
	if len(next) >= 6 && strings.EqualFold(next[:6], "error:") {
		next = strings.TrimSpace(next[6:])
	}
	next = strings.TrimSpace(strings.TrimPrefix(next, ":"))
	return strings.TrimSpace(first) + " - " + next
}
