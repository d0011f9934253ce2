package gcode

import (
	"math"
	"math/rand/v2"
	"testing"
)

func sameBits(a, b float64) bool {
	return math.Float64bits(a) == math.Float64bits(b) || (math.IsNaN(a) && math.IsNaN(b))
}

func TestRemainderMatchesMod(t *testing.T) {
	const y = 2 * math.Pi
	edges := []float64{0, y, 2 * y, 3 * y, y / 2, 4 * math.Pi, math.Pi, 1e-300, 1e300, math.Inf(1), math.NaN()}
	var inputs []float64
	for _, e := range edges {
		for _, v := range []float64{e, math.Nextafter(e, math.Inf(1)), math.Nextafter(e, math.Inf(-1))} {
			inputs = append(inputs, v, -v)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 500000 {
		inputs = append(inputs, (rng.Float64()*2-1)*5*y)
	}
	// The values inSweep computes: the difference of a right angle and
	// an Atan2 result, and that remainder plus a full turn.
	for range 200000 {
		start := math.Atan2(rng.NormFloat64(), rng.NormFloat64())
		angle := float64(rng.IntN(4)) * math.Pi / 2
		inner := math.Mod(angle-start, y)
		inputs = append(inputs, angle-start, start-angle, inner+y)
	}
	for _, x := range inputs {
		if got, want := remainder(x, y), math.Mod(x, y); !sameBits(got, want) {
			t.Fatalf("remainder(%v, 2π) = %v (bits %#x), math.Mod = %v (bits %#x)", x, got, math.Float64bits(got), want, math.Float64bits(want))
		}
	}
}

// TestSincosMatchesSinCos guards the arc segments against a Go release
// in which math.Sincos and math.Sin or math.Cos round differently.
func TestSincosMatchesSinCos(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	angles := []float64{0, math.Copysign(0, -1), math.Pi, -math.Pi, math.Pi / 2, 1e10, math.Inf(1), math.NaN()}
	for range 500000 {
		angles = append(angles, (rng.Float64()*2-1)*4*math.Pi)
	}
	for _, x := range angles {
		sin, cos := math.Sincos(x)
		if !sameBits(sin, math.Sin(x)) || !sameBits(cos, math.Cos(x)) {
			t.Fatalf("math.Sincos(%v) = %v, %v; math.Sin, math.Cos = %v, %v", x, sin, cos, math.Sin(x), math.Cos(x))
		}
	}
}

func TestMathMaxMatchesMath(t *testing.T) {
	values := []float64{0, math.Copysign(0, -1), 1, -1, 1e-310, math.MaxFloat64, -math.MaxFloat64,
		math.Inf(1), math.Inf(-1), math.NaN()}
	for _, x := range values {
		for _, y := range values {
			if got, want := mathMax(x, y), math.Max(x, y); !sameBits(got, want) {
				t.Errorf("mathMax(%v, %v) = %v, math.Max = %v", x, y, got, want)
			}
		}
	}
}
