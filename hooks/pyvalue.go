package hooks

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"

	"github.com/printbridge/printbridge/bridge"
)

// pythonStr converts a payload value the way Python's str() converts the
// value OctoPrint would hold: None, True/False, int, float repr, and dicts
// and lists as their Python repr. JSON numbers with '.', 'e' or 'E' are
// floats, all others ints, matching Python's json module.
func pythonStr(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return pythonRepr(v)
}

// pythonRepr is Python's repr() of a payload value.
func pythonRepr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return pyReprString(x)
	case json.Number:
		if isJSONFloat(x) {
			return pyFloatRepr(jsonFloat(x))
		}
		return pyIntString(x.String())
	case float64:
		return pyFloatRepr(x)
	case float32:
		return pyFloatRepr(float64(x))
	case int:
		return strconv.Itoa(x)
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x)
	case bridge.Payload:
		parts := make([]string, len(x))
		for i, f := range x {
			parts[i] = pyReprString(f.Key) + ": " + pythonRepr(f.Value)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case map[string]any:
		// NOTE: Go maps have no order, so keys are sorted; OctoPrint would
		// use insertion order. Decoded payloads are bridge.Payload, which
		// keeps the order.
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = pyReprString(k) + ": " + pythonRepr(x[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		parts := make([]string, len(x))
		for i := range x {
			parts[i] = pythonRepr(x[i])
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case []string:
		parts := make([]string, len(x))
		for i := range x {
			parts[i] = pyReprString(x[i])
		}
		return "[" + strings.Join(parts, ", ") + "]"
	default:
		return pyReprString(fmt.Sprint(x))
	}
}

func isJSONFloat(n json.Number) bool {
	return strings.ContainsAny(string(n), ".eE")
}

// jsonFloat parses a JSON float; out-of-range values become ±inf or 0 as
// in Python's float().
func jsonFloat(n json.Number) float64 {
	f, _ := strconv.ParseFloat(string(n), 64)
	return f
}

// pyIntString normalises a JSON integer literal to Python's str(int):
// JSON allows "-0", which Python reads as 0.
func pyIntString(s string) string {
	if strings.Trim(s, "-0") == "" && s != "" {
		return "0"
	}
	return s
}

// pyFloatRepr is Python's repr(float).
func pyFloatRepr(f float64) string { return bridge.PythonFloatRepr(f) }

// pyReprString is Python 3's repr() of a str.
func pyReprString(s string) string {
	quote := '\''
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		quote = '"'
	}
	var b strings.Builder
	b.WriteRune(quote)
	for _, r := range s {
		switch {
		case r == quote || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x7f:
			b.WriteRune(r)
		case unicode.IsPrint(r):
			// Go's IsPrint (L, M, N, P, S and U+0020) is the same set as
			// Python's str.isprintable, up to the Unicode version.
			b.WriteRune(r)
		default:
			writePyEscape(&b, r)
		}
	}
	b.WriteRune(quote)
	return b.String()
}

// pyASCII escapes every non-ASCII rune of a repr, as Python's ascii().
func pyASCII(repr string) string {
	var b strings.Builder
	for _, r := range repr {
		if r < 0x80 {
			b.WriteRune(r)
			continue
		}
		writePyEscape(&b, r)
	}
	return b.String()
}

func writePyEscape(b *strings.Builder, r rune) {
	switch {
	case r <= 0xff:
		fmt.Fprintf(b, `\x%02x`, r)
	case r <= 0xffff:
		fmt.Fprintf(b, `\u%04x`, r)
	default:
		fmt.Fprintf(b, `\U%08x`, r)
	}
}

// pythonJSON is Python's json.dumps(v) with its defaults: ", " and ": "
// separators, ensure_ascii (\uXXXX escapes, surrogate pairs above U+FFFF)
// and NaN, Infinity and -Infinity as bare words.
func pythonJSON(v any) (string, error) {
	var b strings.Builder
	if err := writePyJSON(&b, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

func writePyJSON(b *strings.Builder, v any) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case string:
		writePyJSONString(b, x)
	case json.Number:
		if isJSONFloat(x) {
			b.WriteString(pyJSONFloat(jsonFloat(x)))
		} else {
			b.WriteString(pyIntString(x.String()))
		}
	case float64:
		b.WriteString(pyJSONFloat(x))
	case float32:
		b.WriteString(pyJSONFloat(float64(x)))
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		fmt.Fprint(b, x)
	case bridge.Payload:
		b.WriteByte('{')
		for i, f := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writePyJSONString(b, f.Key)
			b.WriteString(": ")
			if err := writePyJSON(b, f.Value); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			writePyJSONString(b, k)
			b.WriteString(": ")
			if err := writePyJSON(b, x[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := writePyJSON(b, x[i]); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case []string:
		b.WriteByte('[')
		for i := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writePyJSONString(b, x[i])
		}
		b.WriteByte(']')
	default:
		return fmt.Errorf("value of type %T is not JSON serializable", v)
	}
	return nil
}

func pyJSONFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return pyFloatRepr(f)
}

func writePyJSONString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r >= ' ' && r <= '~':
				b.WriteRune(r)
			case r > 0xffff:
				hi, lo := utf16.EncodeRune(r)
				fmt.Fprintf(b, `\u%04x\u%04x`, hi, lo)
			default:
				fmt.Fprintf(b, `\u%04x`, r)
			}
		}
	}
	b.WriteByte('"')
}
