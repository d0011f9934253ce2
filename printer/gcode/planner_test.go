package gcode

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// testLimits accelerates every move at accel (mm/s²) with the given jerk
// (mm/s) and no feed rate cap.
func testLimits(accel, jerk float64) *Limits {
	l := MarlinDefaults()
	l.MaxAcceleration = [4]float64{1e9, 1e9, 1e9, 1e9}
	l.PrintAcceleration, l.TravelAcceleration, l.RetractAcceleration = accel, accel, accel
	l.MaxFeedrate = [4]float64{1e6, 1e6, 1e6, 1e6}
	l.Jerk = [4]float64{jerk, jerk, jerk, jerk}
	return &l
}

// stopToStop is the time of a move of length mm from rest to rest at
// nominal speed and accel, with no jerk.
func stopToStop(length, nominal, accel float64) float64 {
	return trapezoidTime(length, 0, 0, nominal, accel)
}

func TestTrapezoidTime(t *testing.T) {
	cases := []struct {
		name                                string
		length, entry, exit, nominal, accel float64
		want                                float64
	}{
		{"cruise between ramps", 100, 0, 0, 100, 1000, 0.1 + 0.1 + 90.0/100},
		{"exactly reaches nominal", 10, 0, 0, 100, 1000, 0.2},
		{"triangle", 4, 0, 0, 100, 1000, 2 * math.Sqrt(4000) / 1000},
		{"entry at nominal", 100, 100, 0, 100, 1000, 0.1 + 95.0/100},
		{"constant speed", 50, 100, 100, 100, 1000, 0.5},
		{"entry above nominal is clamped", 50, 200, 100, 100, 1000, 0.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := trapezoidTime(tc.length, tc.entry, tc.exit, tc.nominal, tc.accel)
			if !near(got, tc.want, 1e-12) {
				t.Errorf("trapezoidTime = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPlannerTimes(t *testing.T) {
	// Junction deviation at a 90° corner: v² = a·J·sin(θ/2)/(1−sin(θ/2)).
	sinHalf := math.Sqrt(0.5)
	jdCorner := math.Sqrt(1000 * 0.05 * sinHalf / (1 - sinHalf))
	cornerMove := func(v float64) float64 { return trapezoidTime(50, 0, v, 100, 1000) }
	jd := testLimits(1000, 0)
	jd.Junction = JunctionDeviation

	cases := []struct {
		name   string
		src    string
		limits *Limits
		want   float64
	}{
		{"single move from rest", "G1 X100 F6000\n", testLimits(1000, 0), stopToStop(100, 100, 1000)},
		{"short move is a triangle", "G1 X4 F6000\n", testLimits(1000, 0), stopToStop(4, 100, 1000)},
		{"collinear moves plan through", "G1 X50 F6000\nG1 X100\n", testLimits(1000, 0), stopToStop(100, 100, 1000)},
		{"reversal stops", "G1 X50 F6000\nG1 X0\n", testLimits(1000, 0), 2 * stopToStop(50, 100, 1000)},
		{"right angle without jerk stops", "G1 X50 F6000\nG1 Y50\n", testLimits(1000, 0), 2 * stopToStop(50, 100, 1000)},
		{"right angle within jerk keeps speed", "G1 X50 F6000\nG1 X50 Y50\n", testLimits(1000, 1000),
			trapezoidTime(50, 100, 100, 100, 1000) + trapezoidTime(50, 100, 0, 100, 1000)},
		{"start at jerk speed", "G1 X100 F6000\n", testLimits(1000, 10), trapezoidTime(100, 10, 0, 100, 1000)},
		{"dwell in ms and s", "G4 P500\nG4 S2\n", testLimits(1000, 0), 2.5},
		{"M203 caps feed rate", "M203 X10\nG1 X100 F6000\n", testLimits(1e9, 0), 10},
		{"M204 P for printing moves", "M204 P1000\nM83\nG1 X100 E1 F6000\n", testLimits(1e9, 0), stopToStop(100, 100, 1000)},
		{"M204 T for travel", "M204 P1000 T500\nG1 X100 F6000\n", testLimits(1e9, 0), stopToStop(100, 100, 500)},
		{"M204 S for both", "M204 S500\nM83\nG1 X100 E1 F6000\n", testLimits(1e9, 0), stopToStop(100, 100, 500)},
		{"M201 caps axis acceleration", "M201 X1000\nG1 X100 F6000\n", testLimits(1e9, 0), stopToStop(100, 100, 1000)},
		{"M201 scales by direction", "M201 X1000\nG1 X60 Y80 F6000\n", testLimits(1e9, 0), stopToStop(100, 100, 1000/0.6)},
		{"M220 doubles speed", "M220 S200\nG1 X100 F3000\n", testLimits(1e9, 0), 1},
		{"E-only move at the E feed rate cap", "M203 E10\nM83\nG1 E10 F6000\n", testLimits(1e9, 0), 1},
		{"M205 J switches to junction deviation", "M205 J0.05\nG1 X50 F6000\nG1 Y50\n", testLimits(1000, 0),
			cornerMove(jdCorner) + cornerMove(jdCorner)},
		{"junction deviation reversal stops", "G1 X50 F6000\nG1 X0\n", jd, 2 * stopToStop(50, 100, 1000)},
		{"junction deviation straight line", "G1 X50 F6000\nG1 X100\n", jd, stopToStop(100, 100, 1000)},
		{"Klipper square corner velocity", "SET_VELOCITY_LIMIT ACCEL=1000 SQUARE_CORNER_VELOCITY=5\nG1 X50 F6000\nG1 Y50\n",
			testLimits(1000, 0), cornerMove(5) + cornerMove(5)},
		{"firmware retraction", "G10\nG11\n", testLimits(1e9, 0), 3.0/45 + 3.0/8},
		{"inches feed rate", "G20\nG1 X1 F60\n", testLimits(1e9, 0), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := analyzeString(t, tc.src, Options{Limits: tc.limits})
			if !near(r.EstimatedPrintTime, tc.want, 1e-6) {
				t.Errorf("EstimatedPrintTime = %.9f, want %.9f", r.EstimatedPrintTime, tc.want)
			}
		})
	}
}

func TestPlannerLookahead(t *testing.T) {
	var b strings.Builder
	b.WriteString("G1 F6000\n")
	for i := 1; i <= 100; i++ {
		b.WriteString("G1 X" + strconv.Itoa(i) + "\n")
	}
	src := b.String()

	// 100 collinear 1 mm moves plan like one 100 mm move: 5 mm of braking
	// fit in the 64-move look-ahead.
	r := analyzeString(t, src, Options{Limits: testLimits(1000, 0)})
	if want := stopToStop(100, 100, 1000); !near(r.EstimatedPrintTime, want, 1e-6) {
		t.Errorf("64 blocks: EstimatedPrintTime = %v, want %v", r.EstimatedPrintTime, want)
	}
	// With a single block, every move must end at a stop.
	r = analyzeString(t, src, Options{Limits: testLimits(1000, 0), PlannerBlocks: 1})
	if want := 100 * stopToStop(1, 100, 1000); !near(r.EstimatedPrintTime, want, 1e-6) {
		t.Errorf("1 block: EstimatedPrintTime = %v, want %v", r.EstimatedPrintTime, want)
	}
	// Four blocks hold 4 mm, so the speed peaks where braking from it
	// over the 4 mm ahead still stops in time.
	four := analyzeString(t, src, Options{Limits: testLimits(1000, 0), PlannerBlocks: 4}).EstimatedPrintTime
	if four <= stopToStop(100, 100, 1000) || four >= 100*stopToStop(1, 100, 1000) {
		t.Errorf("4 blocks: EstimatedPrintTime = %v, want between the 64- and 1-block times", four)
	}
}

func TestHomingTime(t *testing.T) {
	r := analyzeString(t, "G1 X100 F6000\nG28 X\n", Options{Limits: testLimits(1e9, 0)})
	if want := 100.0/50 + 3*5.0/50; !near(r.Time.Homing, want, 1e-9) {
		t.Errorf("Time.Homing = %v, want %v", r.Time.Homing, want)
	}
	r = analyzeString(t, "G28 W\n", Options{})
	if want := 3*5.0/50 + 3*5.0/50 + 3*2.0/4; !near(r.Time.Homing, want, 1e-9) {
		t.Errorf("G28 W: Time.Homing = %v, want %v for all axes", r.Time.Homing, want)
	}
	if !near(r.EstimatedPrintTime, r.Time.Moves+r.Time.Dwell+r.Time.Homing, 1e-12) {
		t.Errorf("EstimatedPrintTime %v is not the sum of %+v", r.EstimatedPrintTime, r.Time)
	}
}

func TestLimitsSanitized(t *testing.T) {
	l := MarlinDefaults()
	l.PrintAcceleration = -1
	l.TravelAcceleration = 0
	l.MaxFeedrate[AxisX] = math.NaN()
	l.MaxAcceleration[AxisX] = math.Inf(1)
	l.Junction = "bogus"
	r := analyzeString(t, "G1 X100 F6000\n", Options{Limits: &l})
	def := analyzeString(t, "G1 X100 F6000\n", Options{})
	if r.EstimatedPrintTime != def.EstimatedPrintTime {
		t.Errorf("time with invalid limits = %v, want the Marlin default %v", r.EstimatedPrintTime, def.EstimatedPrintTime)
	}
}

// nestedJerkChange is the speed change at a corner as jerkCorner
// computed it before jerkChange, with nested comparisons.
func nestedJerkChange(exit, entry float64) float64 {
	if exit > entry {
		if entry > 0 || exit < 0 {
			return exit - entry
		}
		return max(exit, -entry)
	}
	if entry < 0 || exit > 0 {
		return entry - exit
	}
	return max(-exit, entry)
}

func TestJerkChangeMatchesNested(t *testing.T) {
	values := []float64{0, math.Copysign(0, -1), 1, -1, 2.5, -2.5, 1e-300, -1e-300, 300, -300}
	rng := rand.New(rand.NewPCG(9, 10))
	for range 1000 {
		values = append(values, rng.NormFloat64()*50)
	}
	for _, exit := range values {
		for _, entry := range values {
			// == treats -0 and +0 as equal: the sign of a zero change is
			// never seen, because it is only compared with a jerk limit.
			if got, want := jerkChange(exit, entry), nestedJerkChange(exit, entry); got != want {
				t.Fatalf("jerkChange(%v, %v) = %v, the nested comparisons give %v", exit, entry, got, want)
			}
		}
	}
}
