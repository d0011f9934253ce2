package bridge

import (
	"fmt"
	"math"
	"strconv"
	"strings"
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
	sci := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expText, _ := strings.Cut(sci, "e")
	exp, _ := strconv.Atoi(expText)
	if exp < -4 || exp >= 16 {
		sign := "+"
		if exp < 0 {
			sign, exp = "-", -exp
		}
		return fmt.Sprintf("%se%s%02d", mant, sign, exp)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}
