package gcode

import (
	"math"

	"github.com/printbridge/printbridge/bridge/lazy"
)

// arcSegment is the chord length in mm that arcs are cut into for the
// planner, Marlin 2.1's MAX_ARC_SEGMENT_MM. maxArcSegments caps the work
// per line: a longer arc gets longer chords, at most 5.6° of a full
// circle each, which shortens its path by under 0.05% and keeps its
// corners gentle enough not to slow the planner.
//
// NOTE: Marlin's plan_arc (G2_G3.cpp of the 2.0.9 and 2.1 era) also cuts
// a full circle into at least MIN_CIRCLE_SEGMENTS chords, 72 by default,
// and has no cap per arc. So on arcs of under about 11.5 mm radius the
// firmware plans more, shorter chords than this: 32,308 instead of
// 19,489 on the arcs test file. Planned with Marlin's count, the
// estimates of the three test files with arcs moved by at most 1 s.
const (
	arcSegment     = 1.0
	maxArcSegments = 64
)

// planeAxes returns the two axes of the arc plane, the linear axis (for
// helical moves) and the letters of the centre offsets along the first
// two: G17 is XY with I J, G18 is ZX with K I, G19 is YZ with J K.
func planeAxes(plane int) (p, q, linear int, offP, offQ byte) {
	switch plane {
	case 18:
		return AxisZ, AxisX, AxisY, 'K', 'I'
	case 19:
		return AxisY, AxisZ, AxisX, 'J', 'K'
	default:
		return AxisX, AxisY, AxisZ, 'I', 'J'
	}
}

// toPlane returns the point x, y, z along the two axes of an arc plane
// whose first axis is p and along its linear axis, in the order of
// planeAxes.
func toPlane(p int, x, y, z float64) (alongP, alongQ, alongLinear float64) {
	switch p {
	case AxisZ: // G18: Z, X, and Y linear
		return z, x, y
	case AxisY: // G19: Y, Z, and X linear
		return y, z, x
	default: // G17: X, Y, and Z linear
		return x, y, z
	}
}

// fromPlane returns as X, Y and Z a point given along the two axes of
// an arc plane whose first axis is p and along its linear axis, in the
// order of planeAxes.
func fromPlane(p int, alongP, alongQ, alongLinear float64) (x, y, z float64) {
	switch p {
	case AxisZ: // G18: Z, X, and Y linear
		return alongQ, alongLinear, alongP
	case AxisY: // G19: Y, Z, and X linear
		return alongLinear, alongP, alongQ
	default: // G17: X, Y, and Z linear
		return alongP, alongQ, alongLinear
	}
}

// arc handles G2 (clockwise) and G3 with a centre offset (I J K) or a
// radius (R, negative for more than half a circle), as Marlin does. An
// arc whose end equals its start is a full circle.
func (a *analyzer) arc(c *command, clockwise bool) {
	p, _, _, offP, offQ := planeAxes(a.plane)
	x, y, z, e := a.target(c)
	if !finite(x) || !finite(y) || !finite(z) || !finite(e) {
		return
	}
	// The arc is worked out in scalars along the plane's axes, which the
	// compiler keeps in registers, where it keeps arrays in memory.
	fx, fy, fz, fe := a.pos[0], a.pos[1], a.pos[2], a.pos[3]
	fromP, fromQ, fromLinear := toPlane(p, fx, fy, fz)
	toP, toQ, toLinear := toPlane(p, x, y, z)
	cp, cq, ok := a.arcCentre(c, toP-fromP, toQ-fromQ, offP, offQ, clockwise)
	if !ok {
		a.note(noteBadArc)
		return
	}
	radius := math.Hypot(cp, cq)
	centreP, centreQ := fromP+cp, fromQ+cq
	startAngle := math.Atan2(-cq, -cp)
	sweep := arcSweep(-cp, -cq, toP-centreP, toQ-centreQ, clockwise)

	linDelta := toLinear - fromLinear
	length := math.Hypot(sweep*radius, linDelta)
	dFil := a.filament(e - fe)
	a.pos = [4]float64{x, y, z, e}
	a.arcs++
	fromInTravel, fromInPrinted := a.posInTravel, a.posInPrinted
	a.posInTravel, a.posInPrinted = false, false
	if !(length < 1e12) {
		return
	}
	kind := kindTravel
	if dFil != 0 {
		kind = kindPrint
	}
	n := int(math.Ceil(length / arcSegment))
	n = min(max(n, 1), maxArcSegments)
	// Every segment extrudes the same share at the same feed rate.
	segmentFil, feed := dFil/float64(n), a.feed*a.speedFactor
	px, py, pz := fx, fy, fz
	for k := 1; k <= n; k++ {
		cx, cy, cz := x, y, z
		if k != n {
			f := float64(k) / float64(n)
			angle := startAngle + sweep*f
			// Sincos shares the range reduction of Sin and Cos and then
			// evaluates the same polynomials, so it returns their values.
			sin, cos := math.Sincos(angle)
			cx, cy, cz = fromPlane(p, centreP+radius*cos, centreQ+radius*sin, fromLinear+linDelta*f)
		}
		a.plan.add(cx-px, cy-py, cz-pz, segmentFil, feed, kind)
		px, py, pz = cx, cy, cz
	}

	if !fromInTravel {
		a.travel.add(fx, fy, fz)
	}
	a.travel.add(x, y, z)
	a.travel.addArcExtremes(p, centreP, centreQ, radius, startAngle, sweep)
	a.posInTravel = true
	if dFil > 0 {
		if !fromInPrinted {
			a.printed.add(fx, fy, fz)
		}
		a.printed.add(x, y, z)
		a.printed.addArcExtremes(p, centreP, centreQ, radius, startAngle, sweep)
		a.posInPrinted = true
		a.layer(z)
	}
}

// arcCentre returns the centre's offset from the start in the arc plane,
// for an arc that ends dp, dq from where it starts.
func (a *analyzer) arcCentre(c *command, dp, dq float64, offP, offQ byte, clockwise bool) (float64, float64, bool) {
	if r, ok := c.param('R'); ok {
		r = a.length(r)
		d := math.Hypot(dp, dq)
		if d == 0 || r == 0 {
			return 0, 0, false
		}
		h := 0.0
		if h2 := (r - d/2) * (r + d/2); h2 > 0 {
			h = math.Sqrt(h2)
		}
		side := 1.0
		if clockwise != (r < 0) {
			side = -1
		}
		return dp/2 - side*h*dq/d, dq/2 + side*h*dp/d, true
	}
	i, iok := c.param(offP)
	j, jok := c.param(offQ)
	if (!iok && !jok) || (i == 0 && j == 0) {
		return 0, 0, false
	}
	return a.length(i), a.length(j), true
}

// arcSweep returns the signed angle in radians from the start vector
// (sp, sq) to the end vector (ep, eq) around the centre: positive
// (counter-clockwise) in (0, 2π], negative for clockwise in [-2π, 0).
func arcSweep(sp, sq, ep, eq float64, clockwise bool) float64 {
	angle := math.Atan2(sp*eq-sq*ep, sp*ep+sq*eq)
	if angle < 0 {
		angle += 2 * math.Pi
	}
	if clockwise {
		angle -= 2 * math.Pi
	}
	// A start equal to the end is a full circle.
	if math.Abs(angle) < 1e-9 {
		angle = 2 * math.Pi
	}
	return angle
}

// addArcExtremes widens b by the points of the circle at 0°, 90°, 180°
// and 270° that an arc in the plane whose first axis is p passes
// through. A point strictly inside b's bounds on its axis would change
// nothing, so its sweep test, the costly part, is left out. The four
// points are written out, as scalars.
func (b *box) addArcExtremes(p int, centreP, centreQ, radius, start, sweep float64) {
	axisP, axisQ := p, AxisY
	switch p {
	case AxisZ: // G18: Z, X
		axisQ = AxisX
	case AxisY: // G19: Y, Z
		axisQ = AxisZ
	}
	turns := quarterTurns.Get()
	b.addArcExtreme(axisP, centreP+radius, start, sweep, turns[0])
	b.addArcExtreme(axisQ, centreQ+radius, start, sweep, turns[1])
	b.addArcExtreme(axisP, centreP-radius, start, sweep, turns[2])
	b.addArcExtreme(axisQ, centreQ-radius, start, sweep, turns[3])
}

// quarterTurns are the angles of the circle's extremes, k·π/2 for k from
// 0 to 3, rounded as float64 arithmetic rounds each step. A constant
// expression such as 3*math.Pi/2 is exact until its end and can round
// differently.
var quarterTurns = lazy.Value[[4]float64]{Build: func() (turns [4]float64) {
	for k := range turns {
		turns[k] = float64(k) * math.Pi / 2
	}
	return turns
}}

// addArcExtreme widens b on axis by v, the circle's extreme at angle,
// if the arc passes through angle.
func (b *box) addArcExtreme(axis int, v, start, sweep, angle float64) {
	if b.inside(axis, v) || !inSweep(start, sweep, angle) {
		return
	}
	b.addAxis(axis, v)
}

func inSweep(start, sweep, angle float64) bool {
	if sweep > 0 {
		return remainder(remainder(angle-start, 2*math.Pi)+2*math.Pi, 2*math.Pi) <= sweep
	}
	return remainder(remainder(start-angle, 2*math.Pi)+2*math.Pi, 2*math.Pi) <= -sweep
}

// remainder returns math.Mod(x, y) for y > 0. math.Mod subtracts scaled
// copies of y in a loop of Frexp and Ldexp calls. For |x| up to 2y, all
// that inSweep passes for a start angle from Atan2, subtracting y at most
// twice gives the same exact remainder: by Sterbenz's lemma r−y is exact
// for y ≤ r ≤ 2y. Other x, NaN included, go to math.Mod.
func remainder(x, y float64) float64 {
	r := math.Abs(x)
	if !(r <= 2*y) {
		return math.Mod(x, y)
	}
	if r >= y {
		r -= y
	}
	if r >= y {
		r -= y
	}
	return math.Copysign(r, x)
}
