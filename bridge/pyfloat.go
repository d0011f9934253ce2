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
	return string(appendFinitePythonFloat(nil, f))
}

// appendFinitePythonFloat appends repr(f) for a finite f. The shortest
// digits that round-trip are the same in the 'e' and 'f' layouts, so only
// the layout depends on the decimal exponent. Comparing |f| with 1e-4 and
// 1e16 picks the layout exactly, because 1e16 is a float64 and a value
// whose shortest digits are below 1e-4 parses to a float below
// float64(1e-4).
func appendFinitePythonFloat(dst []byte, f float64) []byte {
	if abs := math.Abs(f); abs != 0 && (abs < 1e-4 || abs >= 1e16) {
		// Go's 'e' layout already writes a signed exponent of at least
		// two digits, as Python does.
		return strconv.AppendFloat(dst, f, 'e', -1, 64)
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, 'f', -1, 64)
	if bytes.IndexByte(dst[start:], '.') < 0 {
		dst = append(dst, ".0"...)
	}
	return dst
}
