package hooks

import (
	"math"
	"strings"
)

// maxFieldWidth caps the width of a format spec, so that a template such
// as {name:999999999} cannot make the worker allocate gigabytes. Python has
// no such limit.
const maxFieldWidth = 1 << 16

// stringSpec is a parsed format spec, as CPython's InternalFormatSpec.
type stringSpec struct {
	fill      rune
	align     rune
	sign      rune
	noNegZero bool
	alternate bool
	width     int64
	separator rune
	precision int64
	kind      rune
}

// formatString applies a format spec to a str value, like CPython's
// _PyUnicode_FormatAdvancedWriter: only fill, alignment, width and
// precision are valid; everything numeric raises a ValueError, which is
// what OctoPrint 1.11.3+ hits with templates such as {time:.1f}.
func formatString(value string, spec []rune) (string, error) {
	sp, err := parseSpec(spec)
	if err != nil {
		return "", err
	}
	if sp.kind != 's' {
		if sp.kind > 32 && sp.kind < 127 {
			return "", valueError("Unknown format code '%c' for object of type 'str'", sp.kind)
		}
		return "", valueError("Unknown format code '\\x%x' for object of type 'str'", sp.kind)
	}

	switch {
	case sp.sign == ' ':
		return "", valueError("Space not allowed in string format specifier")
	case sp.sign != 0:
		return "", valueError("Sign not allowed in string format specifier")
	case sp.noNegZero:
		return "", valueError("Negative zero coercion (z) not allowed in string format specifier")
	case sp.alternate:
		return "", valueError("Alternate form (#) not allowed in string format specifier")
	case sp.align == '=':
		return "", valueError("'=' alignment not allowed in string format specifier")
	}
	if sp.width > maxFieldWidth {
		return "", valueError("width %d exceeds the maximum of %d", sp.width, maxFieldWidth)
	}

	runes := []rune(value)
	n := int64(len(runes))
	if sp.precision >= 0 && n > sp.precision {
		n = sp.precision
		runes = runes[:n]
	}
	if sp.width <= n {
		return string(runes), nil
	}

	pad := sp.width - n
	var left int64
	switch sp.align {
	case '>':
		left = pad
	case '^':
		left = pad / 2
	}
	fill := string(sp.fill)
	var b strings.Builder
	b.WriteString(strings.Repeat(fill, int(left)))
	b.WriteString(string(runes))
	b.WriteString(strings.Repeat(fill, int(pad-left)))
	return b.String(), nil
}

func isAlign(r rune) bool { return r == '<' || r == '>' || r == '=' || r == '^' }

// parseSpec is CPython's parse_internal_render_format_spec with the
// defaults of str: type 's', left alignment.
func parseSpec(spec []rune) (stringSpec, error) {
	sp := stringSpec{fill: ' ', align: '<', width: -1, precision: -1, kind: 's'}
	pos, end := 0, len(spec)
	fillSet := false
	if end-pos >= 2 && isAlign(spec[pos+1]) {
		sp.align, sp.fill = spec[pos+1], spec[pos]
		fillSet = true
		pos += 2
	} else if end-pos >= 1 && isAlign(spec[pos]) {
		sp.align = spec[pos]
		pos++
	}
	if end-pos >= 1 && (spec[pos] == ' ' || spec[pos] == '+' || spec[pos] == '-') {
		sp.sign = spec[pos]
		pos++
	}
	if end-pos >= 1 && spec[pos] == 'z' {
		sp.noNegZero = true
		pos++
	}
	if end-pos >= 1 && spec[pos] == '#' {
		sp.alternate = true
		pos++
	}
	// A leading 0 sets the fill; unlike numbers, str keeps its default
	// '<' alignment (Python 3.10 and later).
	if !fillSet && end-pos >= 1 && spec[pos] == '0' {
		sp.fill = '0'
		pos++
	}
	width, consumed, err := specInteger(spec, &pos)
	if err != nil {
		return sp, err
	}
	if consumed > 0 {
		sp.width = width
	}
	if end-pos > 0 && spec[pos] == ',' {
		sp.separator = ','
		pos++
	}
	if end-pos > 0 && spec[pos] == '_' {
		if sp.separator != 0 {
			return sp, valueError("Cannot specify both ',' and '_'.")
		}
		sp.separator = '_'
		pos++
	}
	if end-pos > 0 && spec[pos] == ',' && sp.separator == '_' {
		return sp, valueError("Cannot specify both ',' and '_'.")
	}
	if end-pos > 0 && spec[pos] == '.' {
		pos++
		precision, consumed, err := specInteger(spec, &pos)
		if err != nil {
			return sp, err
		}
		if consumed == 0 {
			return sp, valueError("Format specifier missing precision")
		}
		sp.precision = precision
	}
	if end-pos > 1 {
		return sp, valueError("Invalid format specifier '%s' for object of type 'str'", string(spec))
	}
	if end-pos == 1 {
		sp.kind = spec[pos]
	}
	if sp.separator != 0 {
		switch sp.kind {
		case 'd', 'e', 'f', 'g', 'E', 'G', '%', 'F', 0:
		case 'b', 'o', 'x', 'X':
			if sp.separator == '_' {
				break
			}
			fallthrough
		default:
			if sp.kind > 32 && sp.kind < 127 {
				return sp, valueError("Cannot specify '%c' with '%c'.", sp.separator, sp.kind)
			}
			return sp, valueError("Cannot specify '%c' with '\\x%x'.", sp.separator, sp.kind)
		}
	}
	return sp, nil
}

// specInteger reads decimal digits at *pos, as CPython's get_integer in
// formatter_unicode.c, and returns how many it read.
func specInteger(spec []rune, pos *int) (int64, int, error) {
	var acc int64
	n := 0
	for *pos < len(spec) {
		d := decimalValue(spec[*pos])
		if d < 0 {
			break
		}
		if acc > (math.MaxInt64-d)/10 {
			return 0, n, valueError("Too many decimal digits in format string")
		}
		acc = acc*10 + d
		*pos++
		n++
	}
	return acc, n, nil
}
