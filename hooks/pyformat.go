package hooks

import (
	"fmt"
	"math"
	"strings"
	"unicode"
)

// FormatError is a template that Python's str.format(**params) raises on.
// Class is the Python exception class (KeyError, IndexError, ValueError,
// TypeError, AttributeError) and Message its text; for a KeyError Message
// is the missing placeholder name.
//
// OctoPrint skips a subscription with a WARNING on KeyError and lets every
// other class escape to its event bus. printbridge skips the subscription
// in both cases, but keeps the distinction for logs.
type FormatError struct {
	Class   string
	Message string
}

func (e *FormatError) Error() string {
	if e.Class == "KeyError" {
		return fmt.Sprintf("KeyError: unknown placeholder {%s}", e.Message)
	}
	return e.Class + ": " + e.Message
}

// UnknownPlaceholder reports whether the template named a placeholder that
// is not in the parameters (Python's KeyError).
func (e *FormatError) UnknownPlaceholder() bool { return e.Class == "KeyError" }

func valueError(format string, args ...any) *FormatError {
	return &FormatError{Class: "ValueError", Message: fmt.Sprintf(format, args...)}
}

// Format renders template with Python's str.format(**params) semantics, as
// OctoPrint 1.11.3 and later do after converting every value with str():
// {name}, {{ and }} escapes, !r/!s/!a conversions, string format specs
// (fill, align, width, precision, nested {fields} in the spec), and [n]
// indexing into the string. Errors carry Python's exception class and
// message, raised in the same left-to-right order as CPython 3.11.
//
// One deliberate difference: attribute access ({name.upper}) is an
// AttributeError for every attribute, where Python would render the repr
// of a bound str method.
func Format(template string, params map[string]string) (string, error) {
	return formatLookup(template, mapLookup(params))
}

// formatLookup is Format with the values from lookup.
func formatLookup(template string, lookup placeholderLookup) (string, error) {
	f := formatter{lookup: lookup}
	return f.build([]rune(template), 2)
}

// checkTemplate finds the errors of template that do not depend on the
// values, and the placeholder names it uses, in order of appearance. Every
// name resolves to "" and indexing past the end of a value is accepted,
// because both depend on the event.
func checkTemplate(template string) (names []string, err error) {
	f := formatter{check: true}
	_, err = f.build([]rune(template), 2)
	return f.names, err
}

// formatter mirrors CPython's Objects/stringlib/unicode_format.h
// (MarkupIterator, parse_field, field_name_split, FieldNameIterator) and
// Python/formatter_unicode.c for str values.
type formatter struct {
	lookup func(name string) (string, bool)
	check  bool
	names  []string
}

// build is CPython's build_string: depth starts at 2, so a format spec may
// contain fields, but a field in a spec may not have fields in its own spec.
func (f *formatter) build(s []rune, depth int) (string, error) {
	if depth <= 0 {
		return "", valueError("Max string recursion exceeded")
	}
	var out strings.Builder
	pos := 0
	for pos < len(s) {
		start := pos
		var c rune
		markup := false
		for pos < len(s) {
			c = s[pos]
			pos++
			if c == '{' || c == '}' {
				markup = true
				break
			}
		}
		atEnd := pos >= len(s)
		n := pos - start
		if markup && c == '}' && (atEnd || s[pos] != '}') {
			return "", valueError("Single '}' encountered in format string")
		}
		if markup && atEnd && c == '{' {
			return "", valueError("Single '{' encountered in format string")
		}
		if markup {
			if s[pos] == c {
				// A doubled brace is literal text; the first one is kept.
				pos++
				markup = false
			} else {
				n--
			}
		}
		out.WriteString(string(s[start : start+n]))
		if !markup {
			continue
		}
		fld, next, err := parseField(s, pos)
		if err != nil {
			return "", err
		}
		pos = next
		text, err := f.renderField(fld, depth)
		if err != nil {
			return "", err
		}
		out.WriteString(text)
	}
	return out.String(), nil
}

type field struct {
	name       []rune
	spec       []rune
	conversion rune
	expandSpec bool
}

// parseField reads one replacement field after its opening brace and
// returns the position after its closing brace.
func parseField(s []rune, pos int) (field, int, error) {
	var fld field
	start := pos
	var c rune
	terminated := false
scan:
	for pos < len(s) {
		c = s[pos]
		pos++
		switch c {
		case '{':
			return fld, pos, valueError("unexpected '{' in field name")
		case '[':
			for pos < len(s) && s[pos] != ']' {
				pos++
			}
		case '}', ':', '!':
			terminated = true
			break scan
		}
	}
	if !terminated {
		return fld, pos, valueError("expected '}' before end of string")
	}
	fld.name = s[start : pos-1]
	if c == '}' {
		return fld, pos, nil
	}
	if c == '!' {
		if pos >= len(s) {
			return fld, pos, valueError("end of string while looking for conversion specifier")
		}
		fld.conversion = s[pos]
		pos++
		if pos < len(s) {
			c = s[pos]
			pos++
			if c == '}' {
				return fld, pos, nil
			}
			if c != ':' {
				return fld, pos, valueError("expected ':' after conversion specifier")
			}
		}
	}
	specStart := pos
	count := 1
	for pos < len(s) {
		c = s[pos]
		pos++
		switch c {
		case '{':
			fld.expandSpec = true
			count++
		case '}':
			count--
			if count == 0 {
				fld.spec = s[specStart : pos-1]
				return fld, pos, nil
			}
		}
	}
	return fld, pos, valueError("unmatched '{' in format spec")
}

func (f *formatter) renderField(fld field, depth int) (string, error) {
	value, err := f.fieldValue(fld.name)
	if err != nil {
		return "", err
	}
	switch fld.conversion {
	case 0, 's':
	case 'r':
		value = pyReprString(value)
	case 'a':
		value = pyASCII(pyReprString(value))
	default:
		if fld.conversion > 32 && fld.conversion < 127 {
			return "", valueError("Unknown conversion specifier %c", fld.conversion)
		}
		return "", valueError("Unknown conversion specifier \\x%x", fld.conversion)
	}
	spec := fld.spec
	if fld.expandSpec {
		expanded, err := f.build(spec, depth-1)
		if err != nil {
			return "", err
		}
		if f.check {
			// The expanded spec depends on the values, so only the
			// fields inside it can be checked before an event arrives.
			return "", nil
		}
		spec = []rune(expanded)
	}
	if len(spec) == 0 {
		return value, nil
	}
	return formatString(value, spec)
}

// fieldValue resolves "name", "name[0]" or "name.attr" against the
// parameters, like CPython's get_field_object.
func (f *formatter) fieldValue(name []rune) (string, error) {
	i := 0
	for i < len(name) && name[i] != '.' && name[i] != '[' {
		i++
	}
	first, rest := name[:i], name[i:]
	index, err := decimalIndex(first)
	if err != nil {
		return "", err
	}
	if len(first) == 0 || index >= 0 {
		if len(first) == 0 {
			index = 0
		}
		return "", &FormatError{Class: "IndexError",
			Message: fmt.Sprintf("Replacement index %d out of range for positional args tuple", index)}
	}

	key := string(first)
	var value string
	if f.check {
		f.names = append(f.names, key)
	} else {
		v, ok := f.lookup(key)
		if !ok {
			return "", &FormatError{Class: "KeyError", Message: key}
		}
		value = v
	}
	return applyAccessors(value, !f.check, rest)
}

// applyAccessors applies the [n] and .attr parts that follow a field's
// name, as CPython's FieldNameIterator yields them. Without a known value
// (at load time) indexing cannot go out of range.
func applyAccessors(value string, valueKnown bool, rest []rune) (string, error) {
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		var part []rune
		switch c {
		case '.':
			j := 0
			for j < len(rest) && rest[j] != '.' && rest[j] != '[' {
				j++
			}
			part, rest = rest[:j], rest[j:]
			if len(part) == 0 {
				return "", valueError("Empty attribute in format string")
			}
			return "", &FormatError{Class: "AttributeError",
				Message: fmt.Sprintf("attribute access .%s is not supported: placeholder values are strings", string(part))}

		case '[':
			j := 0
			for j < len(rest) && rest[j] != ']' {
				j++
			}
			if j == len(rest) {
				return "", valueError("Missing ']' in format string")
			}
			part, rest = rest[:j], rest[j+1:]
			if len(part) == 0 {
				return "", valueError("Empty attribute in format string")
			}
			idx, err := decimalIndex(part)
			if err != nil {
				return "", err
			}
			if idx < 0 {
				return "", &FormatError{Class: "TypeError", Message: "string indices must be integers, not 'str'"}
			}
			if !valueKnown {
				continue
			}
			runes := []rune(value)
			if idx >= int64(len(runes)) {
				return "", &FormatError{Class: "IndexError", Message: "string index out of range"}
			}
			value = string(runes[idx])

		default:
			return "", valueError("Only '.' or '[' may follow ']' in format field specifier")
		}
	}
	return value, nil
}

// decimalIndex is CPython's get_integer for field names: -1 unless every
// rune is a decimal digit, and a ValueError when the number overflows a
// Py_ssize_t.
func decimalIndex(s []rune) (int64, error) {
	if len(s) == 0 {
		return -1, nil
	}
	var acc int64
	for _, r := range s {
		d := decimalValue(r)
		if d < 0 {
			return -1, nil
		}
		if acc > (math.MaxInt64-d)/10 {
			return -1, valueError("Too many decimal digits in format string")
		}
		acc = acc*10 + d
	}
	return acc, nil
}

// decimalValue returns the value of a Unicode decimal digit (category Nd),
// or -1. Nd digits come in contiguous runs from 0 to 9, so the value is the
// distance from the start of the run modulo 10.
func decimalValue(r rune) int64 {
	if r >= '0' && r <= '9' {
		return int64(r - '0')
	}
	if r < 0x80 || !unicode.Is(unicode.Nd, r) {
		return -1
	}
	start := r
	for unicode.Is(unicode.Nd, start-1) {
		start--
	}
	return int64(r-start) % 10
}
