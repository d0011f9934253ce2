// Package jsonwire appends JSON strings and floats to a []byte exactly as
// encoding/json's Marshal writes them, so that hand-written encoders on the
// event path can skip reflection and Marshal's re-validation of every
// MarshalJSON result while producing the same bytes.
//
// The rules copied here are those of encoding/json in Go 1.26 without
// GOEXPERIMENT=jsonv2. The tests compare against encoding/json itself, so
// a change in a later Go release shows up as a test failure.
package jsonwire

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// needsEscape marks the ASCII bytes that json.Marshal does not copy as
// they are: control characters, '"' and '\\', and '<', '>' and '&',
// which Marshal escapes so that JSON can be embedded in HTML.
var needsEscape = func() (set [utf8.RuneSelf]bool) {
	for b := range utf8.RuneSelf {
		set[b] = b < ' ' || b == '"' || b == '\\' || b == '<' || b == '>' || b == '&'
	}
	return set
}()

// AppendString appends s as a quoted JSON string with json.Marshal's
// escaping: \" \\ \b \f \n \r \t, \u00XX for the other control characters
// and for '<', '>' and '&', \u2028 and \u2029 for the line and paragraph
// separators, and \ufffd for each byte of invalid UTF-8.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if !needsEscape[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendFloat appends f as json.Marshal writes a float64: the shortest
// digits that round-trip, in exponent form below 1e-6 and from 1e21 on,
// with a one-digit exponent written without padding (1e-7, not 1e-07).
// NaN and infinities, which JSON cannot represent, return the error that
// json.Marshal returns for them.
func AppendFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, &json.UnsupportedValueError{Value: reflect.ValueOf(f), Str: strconv.FormatFloat(f, 'g', -1, 64)}
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// strconv pads the exponent to two digits, json.Marshal does not.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}
