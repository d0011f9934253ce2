package bridge

import (
	"bytes"
	"math"
	"strconv"
)

// PythonFloatRepr is Python 3's repr(float): the shortest digits that
// round-trip, in fixed notation when the decimal exponent is in [-4, 16)
// and always with a fractional part, otherwise in scientific notation with
// a signed exponent of at least two digits. OctoPrint renders hook
// placeholders and GCODE script values this way.
func PythonFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	// One shortest-digits conversion gives both layouts: the digits and
	// the exponent of the 'e' form are those of the fixed form too.
	var buf [32]byte
	sci := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	mark := bytes.IndexByte(sci, 'e')
	exp, _ := strconv.Atoi(string(sci[mark+1:]))
	out := make([]byte, 0, 32)
	if exp < -4 || exp >= 16 {
		out = append(out, sci[:mark]...)
		out = append(out, 'e')
		if exp < 0 {
			out, exp = append(out, '-'), -exp
		} else {
			out = append(out, '+')
		}
		if exp < 10 {
			out = append(out, '0')
		}
		return string(strconv.AppendInt(out, int64(exp), 10))
	}
	mant := sci[:mark]
	if mant[0] == '-' {
		out = append(out, '-')
		mant = mant[1:]
	}
	// The digits without the point of d.ddd.
	digits := make([]byte, 0, len(mant))
	for _, c := range mant {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	if exp < 0 {
		out = append(out, "0."...)
		for range -exp - 1 {
			out = append(out, '0')
		}
		return string(append(out, digits...))
	}
	if whole := exp + 1; whole < len(digits) {
		out = append(out, digits[:whole]...)
		out = append(out, '.')
		return string(append(out, digits[whole:]...))
	}
	out = append(out, digits...)
	for range exp + 1 - len(digits) {
		out = append(out, '0')
	}
	return string(append(out, ".0"...))
}
