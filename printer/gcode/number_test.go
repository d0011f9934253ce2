package gcode

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// checkSameNumber fails when parseNumber and parseLongNumber, the
// general algorithm, disagree on in by a single bit.
func checkSameNumber(t *testing.T, in []byte) {
	t.Helper()
	v, used, ok := parseNumber(in)
	wantV, wantUsed, wantOK := parseLongNumber(in)
	if ok != wantOK || used != wantUsed || math.Float64bits(v) != math.Float64bits(wantV) {
		t.Errorf("parseNumber(%q) = %v (bits %#x), %d, %v; parseLongNumber = %v (bits %#x), %d, %v",
			in, v, math.Float64bits(v), used, ok, wantV, math.Float64bits(wantV), wantUsed, wantOK)
	}

	// scanNumber reads eight bytes at once, past len(in) when the
	// capacity allows. Digits and points there must not be read as part
	// of the number.
	for _, filler := range []string{"77777777", ".5.5.5.5", "        ", "777 ", ".25 ", "7.25 "} {
		padded := append([]byte(nil), in...)
		padded = append(padded, filler...)[:len(in)]
		v, used, ok := parseNumber(padded)
		if ok != wantOK || used != wantUsed || math.Float64bits(v) != math.Float64bits(wantV) {
			t.Errorf("parseNumber(%q followed by %q in its capacity) = %v (bits %#x), %d, %v; parseLongNumber = %v (bits %#x), %d, %v",
				in, filler, v, math.Float64bits(v), used, ok, wantV, math.Float64bits(wantV), wantUsed, wantOK)
		}
	}
}

func TestParseNumberMatchesLong(t *testing.T) {
	fixed := []string{
		"", "-", "+", ".", "-.", "+.", "0", "-0", "-0.000", "+0", "00012", "5.", ".5", "-.0158",
		"123456789012345678", "1234567890123456789", "12345678901234567890123",
		"0.00000000000000000001234", "999999999999999999", "99999999999999999.9",
		"1.0000000000000000000000001", "18446744073709551616", "X1", "1X", "1.2.3", "10E5",
		"94.302 Y94.302", "0.1", "0.2", "0.3", "1e9", "-1234.5678", "\x00", "1\xff",
	}
	for _, s := range fixed {
		checkSameNumber(t, []byte(s))
	}

	// Random numbers of every length up to 25 digits, with and without
	// sign, point and leading zeros, followed by what ends a parameter.
	rng := rand.New(rand.NewPCG(1, 2))
	tails := []string{"", " ", "E", "\n", ";", "*", "."}
	for range 200000 {
		var b strings.Builder
		switch rng.IntN(3) {
		case 0:
			b.WriteByte('-')
		case 1:
			if rng.IntN(4) == 0 {
				b.WriteByte('+')
			}
		}
		intDigits, fracDigits := rng.IntN(14), rng.IntN(12)
		if rng.IntN(20) == 0 {
			intDigits, fracDigits = rng.IntN(26), rng.IntN(26)
		}
		for k := range intDigits {
			if k == 0 && rng.IntN(3) == 0 {
				b.WriteByte('0')
				continue
			}
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		if fracDigits > 0 || rng.IntN(10) == 0 {
			b.WriteByte('.')
		}
		for range fracDigits {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		b.WriteString(tails[rng.IntN(len(tails))])
		checkSameNumber(t, []byte(b.String()))
	}
}

func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"94.302", "-.0158", "1234567890123456789012", "0.000001", "5.", "-", "3.14E2"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkSameNumber(t, in)
	})
}
