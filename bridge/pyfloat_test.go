package bridge

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestPythonFloatReprMatchesPython(t *testing.T) {
	// The values of repr(x) in CPython 3.11.
	cases := []struct {
		in   float64
		want string
	}{
		{0.2, "0.2"},
		{10, "10.0"},
		{-1.5, "-1.5"},
		{1234.5678901, "1234.5678901"},
		{0.0001, "0.0001"},
		{0.00001, "1e-05"},
		{-0.000012345, "-1.2345e-05"},
		{1e15, "1000000000000000.0"},
		{9999999999999998, "9999999999999998.0"},
		{1e16, "1e+16"},
		{1.2345678901234568e+17, "1.2345678901234568e+17"},
		{1e100, "1e+100"},
		{5e-324, "5e-324"},
		{math.MaxFloat64, "1.7976931348623157e+308"},
		{math.Nextafter(0.3, 1), "0.30000000000000004"}, // 0.1 + 0.2 at run time
		{100, "100.0"},
		{123.0, "123.0"},
		{math.Copysign(0, -1), "-0.0"},
		{0, "0.0"},
		{math.NaN(), "nan"},
		{math.Inf(1), "inf"},
		{math.Inf(-1), "-inf"},
	}
	for _, c := range cases {
		if got := PythonFloatRepr(c.in); got != c.want {
			t.Errorf("PythonFloatRepr(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

// referenceFloatRepr is the straightforward form of Python's rule, with
// two conversions, against which the single-conversion one is checked.
func referenceFloatRepr(f float64) string {
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

func TestPythonFloatReprMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200000 {
		var f float64
		switch i % 4 {
		case 0:
			f = math.Float64frombits(rng.Uint64())
		case 1:
			f = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(40)-20))
		case 2:
			f = math.Round(rng.Float64()*1e6) / 1000 // slicer-like values
		default:
			f = float64(rng.Int64N(1<<53)) * math.Pow(10, float64(rng.IntN(8)-4))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) || f == 0 {
			continue
		}
		if got, want := PythonFloatRepr(f), referenceFloatRepr(f); got != want {
			t.Fatalf("PythonFloatRepr(%b) = %q, want %q", f, got, want)
		}
	}
}

// TestEnvelopeFloatsPlainAndExact checks that payload floats go on the
// bus as OctoPrint's json.dumps writes them, in plain decimal notation
// for Unix times, and read back to the same bits.
func TestEnvelopeFloatsPlainAndExact(t *testing.T) {
	cases := []struct {
		in   float64
		want string
	}{
		{1796423673.2620003, "1796423673.2620003"},
		{1796423673, "1796423673.0"},
		{0.2, "0.2"},
		{0.0001, "0.0001"},
		{0.00001, "1e-05"},
		{1e16, "1e+16"},
		{math.Copysign(0, -1), "-0.0"},
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		f := math.Float64frombits(rng.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		cases = append(cases, struct {
			in   float64
			want string
		}{f, referenceFloatRepr(f)})
	}
	for _, c := range cases {
		env := &Envelope{Schema: 1, ID: "id", Printer: "p", Event: "ChartMarked", Payload: Payload{{Key: "time", Value: c.in}}}
		data, err := env.AppendJSON(nil)
		if err != nil {
			t.Fatalf("AppendJSON(time=%v): %v", c.in, err)
		}
		if want := `"payload":{"time":` + c.want + `}`; !strings.Contains(string(data), want) {
			t.Fatalf("envelope of time=%v is\n%s\nwant it to contain %s", c.in, data, want)
		}
		back, err := DecodeEnvelope(data)
		if err != nil {
			t.Fatalf("DecodeEnvelope(%s): %v", data, err)
		}
		number, ok := back.Payload[0].Value.(json.Number)
		if !ok {
			t.Fatalf("decoded time is %T, want json.Number", back.Payload[0].Value)
		}
		got, err := number.Float64()
		if err != nil {
			t.Fatalf("decoded time %q: %v", number, err)
		}
		if math.Float64bits(got) != math.Float64bits(c.in) {
			t.Fatalf("time %v read back as %v from %s", c.in, got, number)
		}
	}
}
