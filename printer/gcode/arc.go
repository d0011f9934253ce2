package gcode

import "math"

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
	p, q, lin, offP, offQ := planeAxes(a.plane)
	x, y, z, e := a.target(c)
	if !finite(x) || !finite(y) || !finite(z) || !finite(e) {
		return
	}
	t := [4]float64{x, y, z, e}
	from := a.pos
	cp, cq, ok := a.arcCentre(c, from, t, p, q, offP, offQ, clockwise)
	if !ok {
		a.note(noteBadArc)
		return
	}
	radius := math.Hypot(cp, cq)
	centre := [2]float64{from[p] + cp, from[q] + cq}
	startAngle := math.Atan2(-cq, -cp)
	sweep := arcSweep(-cp, -cq, t[p]-centre[0], t[q]-centre[1], clockwise)

	linDelta := t[lin] - from[lin]
	length := math.Hypot(sweep*radius, linDelta)
	dFil := a.filament(t[3] - from[3])
	a.pos = t
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
	// The chords are computed in scalars, which the compiler keeps in
	// registers, and mapped from the arc's plane to X, Y and Z.
	px, py, pz := from[0], from[1], from[2]
	for k := 1; k <= n; k++ {
		x, y, z := t[0], t[1], t[2]
		if k != n {
			f := float64(k) / float64(n)
			angle := startAngle + sweep*f
			// Sincos shares the range reduction of Sin and Cos and then
			// evaluates the same polynomials, so it returns their values.
			sin, cos := math.Sincos(angle)
			x, y, z = fromPlane(p, centre[0]+radius*cos, centre[1]+radius*sin, from[lin]+linDelta*f)
		}
		a.plan.add(x-px, y-py, z-pz, segmentFil, feed, kind)
		px, py, pz = x, y, z
	}

	if !fromInTravel {
		a.travel.add(from[0], from[1], from[2])
	}
	a.travel.add(t[0], t[1], t[2])
	addArcExtremes(&a.travel, centre, radius, startAngle, sweep, p, q)
	a.posInTravel = true
	if dFil > 0 {
		if !fromInPrinted {
			a.printed.add(from[0], from[1], from[2])
		}
		a.printed.add(t[0], t[1], t[2])
		addArcExtremes(&a.printed, centre, radius, startAngle, sweep, p, q)
		a.posInPrinted = true
		a.layer(t[2])
	}
}

// arcCentre returns the centre's offset from the start in the arc plane.
func (a *analyzer) arcCentre(c *command, from, t [4]float64, p, q int, offP, offQ byte, clockwise bool) (float64, float64, bool) {
	if r, ok := c.param('R'); ok {
		r = a.length(r)
		dp, dq := t[p]-from[p], t[q]-from[q]
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
// and 270° that the arc passes through. A point strictly inside b's
// bounds on its axis would change nothing, so its sweep test, the costly
// part, is left out.
func addArcExtremes(b *box, centre [2]float64, radius, start, sweep float64, p, q int) {
	for k, axis := range [4]int{p, q, p, q} {
		sign := 1.0
		if k >= 2 {
			sign = -1
		}
		v := centre[k%2] + sign*radius
		if b.inside(axis, v) || !inSweep(start, sweep, float64(k)*math.Pi/2) {
			continue
		}
		b.addAxis(axis, v)
	}
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
