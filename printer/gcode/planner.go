package gcode

import "math"

// DefaultPlannerBlocks is how many moves the planner holds before it
// commits the oldest one. Marlin holds 16 (8-bit boards) to 64 moves and
// plans each buffer to a stop at its end. With 64, the committed move is
// planned as with an endless buffer, except in long runs of very short
// segments.
const DefaultPlannerBlocks = 64

// maxPlannerBlocks bounds Options.PlannerBlocks.
const maxPlannerBlocks = 4096

// moveKind selects the acceleration of a move, as Marlin does.
type moveKind int

const (
	kindTravel  moveKind = iota // no extrusion: M204 T
	kindPrint                   // extrusion with head motion: M204 P
	kindRetract                 // extruder only: M204 R
)

// block is one planned move.
type block struct {
	// length is the path length in mm: X, Y and Z, or the extruder's
	// travel for an extruder-only move.
	length float64
	// unit is the move per axis divided by length (X, Y, Z, E), so the
	// E component of a printing move is its extrusion per mm of path.
	unit     [4]float64
	nominal  float64 // cruise speed, mm/s
	accel    float64 // mm/s²
	maxEntry float64 // corner speed limit with the previous move, mm/s
	// reverse is the highest entry speed from which the rest of the
	// buffer can still slow down to a stop at its end.
	reverse float64
	// speedGain is 2·accel·length, the change of the squared speed over
	// the whole block (v² = v₀² + 2·a·s), in mm²/s².
	speedGain float64
}

// planner estimates the time of a stream of moves with a trapezoidal
// speed profile per move and Marlin-style look-ahead.
type planner struct {
	limits *Limits
	ring   []block
	head   int // index of the oldest block
	count  int
	// entry is the committed entry speed of the oldest block.
	entry float64
	// stopped is set while the machine is at rest (at the start and after
	// a flush), when a block may start at its corner limit. Otherwise an
	// empty buffer continues at the last exit speed.
	stopped bool
	// seconds is the time of all committed blocks.
	seconds float64

	// The previous block, kept after it is committed, for the corner
	// speed of the next one.
	hasPrev     bool
	prevUnit    [4]float64
	prevNominal float64
	prevSafe    float64
	// prevVel is the previous block's speed per axis at its nominal
	// speed (prevNominal·prevUnit), which jerkCorner computed for it;
	// hasPrevVel is cleared while another corner model plans.
	prevVel    [4]float64
	hasPrevVel bool
	prevLength float64
	prevAccel  float64
}

// add plans a move by dx, dy, dz (mm) and de (mm of filament) at feed
// (mm/s). The move comes as scalars, not as an array: the compiler keeps
// arrays of more than one element in memory, and passes them in memory.
func (p *planner) add(dx, dy, dz, de, feed float64, kind moveKind) {
	length := math.Sqrt(dx*dx + dy*dy + dz*dz)
	if length < 1e-9 {
		length = math.Abs(de)
		kind = kindRetract
	}
	if length < 1e-9 || math.IsNaN(length) || math.IsInf(length, 0) {
		return
	}
	// Committing first frees the ring slot that the new block is then
	// planned in, so it is not built on the stack and copied.
	if p.count == len(p.ring) {
		p.commit()
	}
	b := &p.ring[p.wrap(p.head+p.count)]

	l := p.limits
	b.length = length
	// The loops over the four axes are written out, because a loop costs
	// a counter, a bounds check and a branch per axis on every move.
	u0, u1, u2, u3 := dx/length, dy/length, dz/length, de/length
	b.unit = [4]float64{u0, u1, u2, u3}

	minFeed := l.MinTravelFeedrate
	accel := l.TravelAcceleration
	switch kind {
	case kindPrint:
		minFeed, accel = l.MinPrintFeedrate, l.PrintAcceleration
	case kindRetract:
		minFeed, accel = l.MinPrintFeedrate, l.RetractAcceleration
	}
	// Two comparisons replace the builtin max, whose handling of NaN and
	// of signed zeros costs more. feed and minFeed are finite and at least
	// 0, so the result is the same.
	nominal := feed
	if minFeed > nominal {
		nominal = minFeed
	}
	if nominal < 0.01 {
		nominal = 0.01
	}
	nominal, accel = limitAxis(nominal, accel, u0, l.MaxFeedrate[0], l.MaxAcceleration[0])
	nominal, accel = limitAxis(nominal, accel, u1, l.MaxFeedrate[1], l.MaxAcceleration[1])
	nominal, accel = limitAxis(nominal, accel, u2, l.MaxFeedrate[2], l.MaxAcceleration[2])
	nominal, accel = limitAxis(nominal, accel, u3, l.MaxFeedrate[3], l.MaxAcceleration[3])
	b.nominal, b.accel = nominal, accel

	// The block's values are read from the locals, not back from the
	// ring, so that they stay in registers.
	var maxEntry float64
	// Jerk, the default, is tested first, as one comparison that the
	// compiler inlines.
	if p.limits.Junction == JunctionJerk {
		maxEntry = p.jerkCorner(nominal, u0, u1, u2, u3)
	} else {
		maxEntry = p.cornerSpeed(b)
	}
	if p.hasPrev {
		maxEntry = min(maxEntry, p.prevNominal)
	}
	maxEntry = min(maxEntry, nominal)
	b.maxEntry = maxEntry
	p.hasPrev = true
	p.prevUnit, p.prevNominal, p.prevLength, p.prevAccel = [4]float64{u0, u1, u2, u3}, nominal, length, accel

	if p.count == 0 {
		if p.stopped {
			p.entry = maxEntry
		} else {
			p.entry = min(p.entry, maxEntry)
		}
		p.stopped = false
	}
	speedGain := 2 * accel * length
	b.speedGain = speedGain
	b.reverse = min(maxEntry, math.Sqrt(speedGain))
	p.count++
	p.reversePass()
}

// limitAxis lowers the feed rate and the acceleration of a move so that
// one axis, whose share of the move is unit, stays within its maxima.
func limitAxis(nominal, accel, unit, maxFeed, maxAccel float64) (float64, float64) {
	u := math.Abs(unit)
	if u < 1e-12 {
		return nominal, accel
	}
	if nominal*u > maxFeed {
		nominal = maxFeed / u
	}
	if accel*u > maxAccel {
		accel = maxAccel / u
	}
	return nominal, accel
}

// reversePass raises the reverse bounds after a block was appended: the
// new last block ends at a stop, and every earlier bound grows until one
// is already at its corner limit, because bounds before it cannot change.
func (p *planner) reversePass() {
	if p.count < 2 {
		return
	}
	ci := p.wrap(p.head + p.count - 2)
	next := &p.ring[p.wrap(ci+1)]
	for range p.count - 1 {
		cur := &p.ring[ci]
		if cur.reverse >= cur.maxEntry {
			// A bound at its corner limit cannot grow: v below is at most
			// maxEntry, because the square root of a finite sum of
			// squares and speedGain is never NaN. Returning here spares
			// the square root.
			return
		}
		v := min(cur.maxEntry, math.Sqrt(next.reverse*next.reverse+cur.speedGain))
		if v <= cur.reverse {
			return
		}
		cur.reverse = v
		next = cur
		if ci == 0 {
			ci = len(p.ring)
		}
		ci--
	}
}

// wrap maps an index of up to twice the ring's length into the ring. It
// replaces a modulo, which costs a division per block on the hot path.
func (p *planner) wrap(i int) int {
	if i >= len(p.ring) {
		i -= len(p.ring)
	}
	return i
}

// commit adds the time of the oldest block. Its exit speed is the next
// block's entry: as fast as accelerating from its own entry allows, but
// no faster than the rest of the buffer can stop from. The last block in
// the buffer ends at a stop.
func (p *planner) commit() {
	b := &p.ring[p.head]
	entry := min(p.entry, b.reverse)
	exit := 0.0
	if p.count > 1 {
		exit = min(math.Sqrt(entry*entry+b.speedGain), p.ring[p.wrap(p.head+1)].reverse)
	}
	p.seconds += trapezoidTime(b.length, entry, exit, b.nominal, b.accel)
	p.entry = exit
	p.head = p.wrap(p.head + 1)
	p.count--
}

// flush commits every held block and ends at a stop, as a dwell, a
// homing move or a wait for temperature does on the printer.
func (p *planner) flush() {
	for p.count > 0 {
		p.commit()
	}
	p.hasPrev = false
	p.prevSafe = 0
	p.entry = 0
	p.stopped = true
}

// cornerSpeed returns the highest speed at which b may start after the
// previous block, by junction deviation or Klipper's model. add computes
// the jerk corner, the default, itself.
func (p *planner) cornerSpeed(b *block) float64 {
	p.hasPrevVel = false
	switch p.limits.Junction {
	case JunctionDeviation:
		return p.deviationCorner(b)
	case JunctionKlipper:
		return p.klipperCorner(b)
	default:
		return p.jerkCorner(b.nominal, b.unit[0], b.unit[1], b.unit[2], b.unit[3])
	}
}

// jerkCorner is Marlin 2's classic jerk. A move may start from rest at
// its safe speed, where no axis jumps by more than its jerk. A corner is
// taken at the highest common speed that keeps each axis's change within
// its jerk.
func (p *planner) jerkCorner(nominal, u0, u1, u2, u3 float64) float64 {
	jerk := &p.limits.Jerk
	// The speed of each axis at the block's nominal speed, for the safe
	// speed here and as the previous block's speeds at the next corner.
	// Scalars, not an array: the compiler keeps arrays of more than one
	// element in memory.
	v0, v1, v2, v3 := nominal*u0, nominal*u1, nominal*u2, nominal*u3
	safe, limited := nominal, false
	safe, limited = safeAxis(safe, limited, nominal, v0, jerk[0])
	safe, limited = safeAxis(safe, limited, nominal, v1, jerk[1])
	safe, limited = safeAxis(safe, limited, nominal, v2, jerk[2])
	safe, _ = safeAxis(safe, limited, nominal, v3, jerk[3])
	prevSafe := p.prevSafe
	p.prevSafe = safe
	e0, e1, e2, e3 := p.prevVel[0], p.prevVel[1], p.prevVel[2], p.prevVel[3]
	hasPrevVel := p.hasPrevVel
	p.prevVel, p.hasPrevVel = [4]float64{v0, v1, v2, v3}, true
	prevNominal := p.prevNominal
	if !p.hasPrev || prevNominal < 1e-6 {
		return safe
	}
	if !hasPrevVel {
		u := &p.prevUnit
		e0, e1, e2, e3 = prevNominal*u[0], prevNominal*u[1], prevNominal*u[2], prevNominal*u[3]
	}

	// Both moves' axis speeds are scaled to the lower of the two nominal
	// speeds: e0 to e3 are the previous move's, v0 to v3 this one's.
	// Marlin multiplies the other by a factor of 1, which changes no
	// value, so it is left out, and with it the division when both
	// nominal speeds are equal, as along the chords of an arc.
	var vmax float64
	switch {
	case nominal < prevNominal:
		vmax = nominal
		f := nominal / prevNominal
		e0, e1, e2, e3 = e0*f, e1*f, e2*f, e3*f
	case nominal == prevNominal:
		vmax = prevNominal
	default:
		vmax = prevNominal
		f := prevNominal / nominal
		v0, v1, v2, v3 = v0*f, v1*f, v2*f, v3*f
	}
	// The loop over the four axes is written out, as in add.
	//
	// The change of an axis is at most the difference of its two speeds,
	// so a difference within the jerk, as at most corners between an
	// arc's chords, leaves the factor. That test, written out here so
	// that it takes no call, costs about a third of the instructions of
	// jerkChange.
	factor := 1.0
	if exit, entry := e0*factor, v0*factor; math.Abs(exit-entry) > jerk[0] {
		factor = jerkLimit(factor, exit, entry, jerk[0])
	}
	if exit, entry := e1*factor, v1*factor; math.Abs(exit-entry) > jerk[1] {
		factor = jerkLimit(factor, exit, entry, jerk[1])
	}
	if exit, entry := e2*factor, v2*factor; math.Abs(exit-entry) > jerk[2] {
		factor = jerkLimit(factor, exit, entry, jerk[2])
	}
	if exit, entry := e3*factor, v3*factor; math.Abs(exit-entry) > jerk[3] {
		factor = jerkLimit(factor, exit, entry, jerk[3])
	}
	vmax *= factor
	// When both moves may start from rest faster than the corner allows,
	// the corner is a stop and start anyway.
	if threshold := vmax * 0.99; prevSafe > threshold && safe > threshold {
		vmax = safe
	}
	return vmax
}

// safeAxis lowers a move's safe speed, the highest at which it may start
// from rest, so that one axis, whose speed at the nominal speed is vel,
// starts within its jerk. limited reports whether an earlier axis
// lowered it.
func safeAxis(safe float64, limited bool, nominal, vel, jerk float64) (float64, bool) {
	speed := math.Abs(vel)
	if speed <= jerk {
		return safe, limited
	}
	if !limited {
		return safe * (jerk / speed), true
	}
	if speed*safe > nominal*jerk {
		safe = nominal * jerk / speed
	}
	return safe, true
}

// jerkLimit lowers a corner's speed factor so that one axis, whose
// speeds at the corner are exit and entry with the factor applied,
// changes speed by at most its jerk.
func jerkLimit(factor, exit, entry, jerk float64) float64 {
	if change := jerkChange(exit, entry); change > jerk {
		factor *= jerk / change
	}
	return factor
}

// jerkChange returns the speed change of one axis at a corner, from its
// exit speed in the previous move to its entry speed in the next, as
// classic jerk counts it. While the axis keeps its direction, that is
// the difference. Otherwise it is the larger speed, because the axis
// stops and starts again.
//
// The smaller of the two is always the right one: with equal signs the
// difference is at most the larger speed, with opposite signs it is the
// sum of both sizes, at least the larger one, also after rounding. The
// builtin min and max compile without branches. Testing the signs took
// a branch whose outcome changes with the direction of each move, where
// cachegrind's branch simulation counted a third of the planner's
// mispredictions on the arcs test file. The result differs from the
// nested comparisons only in the sign of a zero, which no comparison with
// a jerk limit (at least 0) can tell apart.
func jerkChange(exit, entry float64) float64 {
	return min(math.Abs(exit-entry), max(math.Abs(exit), math.Abs(entry)))
}

// xyzCos returns the cosine of the angle between the previous move's
// reversed direction and b's, over X, Y and Z only (both E-only moves
// count as pointing along E).
func (p *planner) xyzCos(b *block) float64 {
	a, c := p.prevUnit, b.unit
	if a[0] == 0 && a[1] == 0 && a[2] == 0 {
		a = [4]float64{0, 0, 0, math.Copysign(1, a[3])}
	} else {
		a[3] = 0
	}
	if c[0] == 0 && c[1] == 0 && c[2] == 0 {
		c = [4]float64{0, 0, 0, math.Copysign(1, c[3])}
	} else {
		c[3] = 0
	}
	return -(a[0]*c[0] + a[1]*c[1] + a[2]*c[2] + a[3]*c[3])
}

// deviationCorner is Marlin 2's junction deviation, with its limit for
// segments shorter than 1 mm, which treats a run of them as an arc and
// caps the speed by the centripetal acceleration.
func (p *planner) deviationCorner(b *block) float64 {
	if !p.hasPrev {
		return 0
	}
	cos := p.xyzCos(b)
	if cos > 0.999999 {
		return 0
	}
	cos = max(cos, -0.999999)
	sinHalf := math.Sqrt(0.5 * (1 - cos))
	v2 := b.accel * p.limits.JunctionDeviation * sinHalf / (1 - sinHalf)
	if b.length < 1 {
		if theta := math.Acos(-cos); theta > 1e-9 {
			v2 = min(v2, b.length*b.accel/theta)
		}
	}
	return math.Sqrt(v2)
}

// klipperCorner is Klipper's junction model: a virtual junction
// deviation derived from square_corner_velocity, capped by the
// centripetal speed of an arc through both moves.
func (p *planner) klipperCorner(b *block) float64 {
	if !p.hasPrev {
		return 0
	}
	cos := p.xyzCos(b)
	if cos > 0.999999 {
		return 0
	}
	cos = max(cos, -0.999999)
	sinHalf := math.Sqrt(0.5 * (1 - cos))
	scv := p.limits.SquareCornerVelocity
	deviation := scv * scv * (math.Sqrt2 - 1) / b.accel
	v2 := sinHalf / (1 - sinHalf) * deviation * b.accel
	if cosHalf := math.Sqrt(0.5 * (1 + cos)); cosHalf > 1e-9 {
		tanHalf := sinHalf / cosHalf
		v2 = min(v2, 0.5*b.length*tanHalf*b.accel, 0.5*p.prevLength*tanHalf*p.prevAccel)
	}
	return math.Sqrt(v2)
}

// trapezoidTime returns the seconds of a move of length mm that starts at
// entry, cruises at nominal and ends at exit (mm/s), accelerating and
// decelerating at accel (mm/s²). A move too short to reach nominal gets a
// triangular profile.
func trapezoidTime(length, entry, exit, nominal, accel float64) float64 {
	entry = min(entry, nominal)
	exit = min(exit, nominal)
	// A move that enters or leaves at its cruise speed has no ramp there.
	// The divisions skipped would return +0, and adding +0 changes no sum
	// of these non-negative terms.
	accelDist := (nominal*nominal - entry*entry) / (2 * accel)
	decelDist := (nominal*nominal - exit*exit) / (2 * accel)
	if accelDist+decelDist <= length {
		return (nominal-entry)/accel + (nominal-exit)/accel + (length-accelDist-decelDist)/nominal
	}
	peak := math.Sqrt(accel*length + (entry*entry+exit*exit)/2)
	peak = max(peak, entry, exit)
	return (peak-entry)/accel + (peak-exit)/accel
}
