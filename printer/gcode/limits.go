package gcode

import "math"

// Axis indexes into the per-axis arrays of Limits.
const (
	AxisX = iota
	AxisY
	AxisZ
	AxisE
)

// JunctionModel names how the planner limits the speed at the corner
// between two moves.
type JunctionModel string

// Junction models.
const (
	// JunctionJerk is Marlin's classic jerk (M205 X Y Z E): each axis may
	// change speed instantly by up to its jerk value. PrusaSlicer's own
	// estimator uses this model.
	JunctionJerk JunctionModel = "jerk"
	// JunctionDeviation is Marlin 2's junction deviation (M205 J).
	JunctionDeviation JunctionModel = "junction-deviation"
	// JunctionKlipper is Klipper's square corner velocity model.
	JunctionKlipper JunctionModel = "klipper"
)

// Limits are the firmware's motion settings at the start of a file. The
// file's own M201, M203, M204, M205, M220, M566 and SET_VELOCITY_LIMIT
// commands change them as the analysis goes.
type Limits struct {
	// MaxFeedrate is the maximum speed per axis in mm/s (M203).
	MaxFeedrate [4]float64
	// MaxAcceleration is the maximum acceleration per axis in mm/s²
	// (M201).
	MaxAcceleration [4]float64
	// PrintAcceleration applies to moves that extrude (M204 P or S), in
	// mm/s².
	PrintAcceleration float64
	// RetractAcceleration applies to moves of the extruder alone (M204
	// R), in mm/s².
	RetractAcceleration float64
	// TravelAcceleration applies to moves without extrusion (M204 T or
	// S), in mm/s².
	TravelAcceleration float64
	// Jerk is the instant speed change per axis in mm/s (M205 X Y Z E),
	// used by JunctionJerk.
	Jerk [4]float64
	// JunctionDeviation is Marlin's M205 J in mm, used by
	// JunctionDeviation.
	JunctionDeviation float64
	// SquareCornerVelocity is Klipper's corner speed of a 90° turn in
	// mm/s, used by JunctionKlipper.
	SquareCornerVelocity float64
	// MinPrintFeedrate and MinTravelFeedrate are Marlin's M205 S and T in
	// mm/s.
	MinPrintFeedrate, MinTravelFeedrate float64
	// Junction is the corner model. An M205 J in the file switches to
	// JunctionDeviation, a Klipper command (SET_VELOCITY_LIMIT) or a
	// Klipper flavour comment to JunctionKlipper.
	Junction JunctionModel
	// HomingFeedrate is the speed of a G28 approach per axis (X, Y, Z) in
	// mm/s.
	HomingFeedrate [3]float64
	// HomingBump is how far each axis backs off after touching its end
	// stop before it approaches again at half speed, in mm.
	HomingBump [3]float64
	// RetractLength, RetractFeedrate and RecoverFeedrate are the firmware
	// retraction of G10 and G11 (M207 S F, M208 F), in mm and mm/s.
	RetractLength, RetractFeedrate, RecoverFeedrate float64
}

// MarlinDefaults returns the settings of a Marlin 2.1 build with its
// example Configuration.h values. Max feed rates are 300/300/5/25 mm/s
// and max accelerations 3000/3000/100/10000 mm/s² (X/Y/Z/E). Print,
// retract and travel accelerations are 3000 mm/s², jerk 10/10/0.3/5 mm/s.
// Homing runs at 50/50/4 mm/s with bumps of 5/5/2 mm, and firmware
// retraction takes 3 mm at 45 mm/s and recovers at 8 mm/s.
func MarlinDefaults() Limits {
	return Limits{
		MaxFeedrate:          [4]float64{300, 300, 5, 25},
		MaxAcceleration:      [4]float64{3000, 3000, 100, 10000},
		PrintAcceleration:    3000,
		RetractAcceleration:  3000,
		TravelAcceleration:   3000,
		Jerk:                 [4]float64{10, 10, 0.3, 5},
		JunctionDeviation:    0.013,
		SquareCornerVelocity: 5,
		Junction:             JunctionJerk,
		HomingFeedrate:       [3]float64{50, 50, 4},
		HomingBump:           [3]float64{5, 5, 2},
		RetractLength:        3,
		RetractFeedrate:      45,
		RecoverFeedrate:      8,
	}
}

// sanitize replaces unusable values (zero, negative, NaN) by the Marlin
// defaults, so that the planner never divides by zero.
func (l *Limits) sanitize() {
	d := MarlinDefaults()
	fix := func(v *float64, def float64) {
		if !(*v > 0) || math.IsInf(*v, 0) {
			*v = def
		}
	}

	for i := range 4 {
		fix(&l.MaxFeedrate[i], d.MaxFeedrate[i])
		fix(&l.MaxAcceleration[i], d.MaxAcceleration[i])
		if !(l.Jerk[i] >= 0) || math.IsInf(l.Jerk[i], 0) {
			l.Jerk[i] = d.Jerk[i]
		}
	}
	for i := range 3 {
		fix(&l.HomingFeedrate[i], d.HomingFeedrate[i])
		if !(l.HomingBump[i] >= 0) || math.IsInf(l.HomingBump[i], 0) {
			l.HomingBump[i] = d.HomingBump[i]
		}
	}

	fix(&l.PrintAcceleration, d.PrintAcceleration)
	fix(&l.RetractAcceleration, d.RetractAcceleration)
	fix(&l.TravelAcceleration, d.TravelAcceleration)
	fix(&l.JunctionDeviation, d.JunctionDeviation)
	fix(&l.SquareCornerVelocity, d.SquareCornerVelocity)
	fix(&l.RetractFeedrate, d.RetractFeedrate)
	fix(&l.RecoverFeedrate, d.RecoverFeedrate)
	if !(l.RetractLength >= 0) || math.IsInf(l.RetractLength, 0) {
		l.RetractLength = d.RetractLength
	}

	if !(l.MinPrintFeedrate >= 0) || math.IsInf(l.MinPrintFeedrate, 0) {
		l.MinPrintFeedrate = 0
	}
	if !(l.MinTravelFeedrate >= 0) || math.IsInf(l.MinTravelFeedrate, 0) {
		l.MinTravelFeedrate = 0
	}
	switch l.Junction {
	case JunctionJerk, JunctionDeviation, JunctionKlipper:
	default:
		l.Junction = JunctionJerk
	}
}

var axisLetters = [4]byte{'X', 'Y', 'Z', 'E'}

// applySettings changes the limits for a motion settings command and
// reports whether c was one.
func (l *Limits) applySettings(c *command) bool {
	if c.extended != nil {
		return l.applyKlipper(c)
	}
	if c.letter != 'M' {
		return false
	}
	switch c.code {
	case 201:
		for i, a := range axisLetters {
			if v, ok := c.param(a); ok && v > 0 {
				l.MaxAcceleration[i] = v
			}
		}
	case 203:
		// NOTE: RepRapFirmware's M203 is in mm/min but is read as
		// Marlin's mm/s.
		for i, a := range axisLetters {
			if v, ok := c.param(a); ok && v > 0 {
				l.MaxFeedrate[i] = v
			}
		}
	case 204:
		l.applyM204(c)
	case 205:
		for i, a := range axisLetters {
			if v, ok := c.param(a); ok && v >= 0 {
				l.Jerk[i] = v
			}
		}
		if v, ok := c.param('J'); ok && v > 0 {
			l.JunctionDeviation = v
			l.Junction = JunctionDeviation
		}
		if v, ok := c.param('S'); ok && v >= 0 {
			l.MinPrintFeedrate = v
		}
		if v, ok := c.param('T'); ok && v >= 0 {
			l.MinTravelFeedrate = v
		}
	case 207:
		if v, ok := c.param('S'); ok && v >= 0 {
			l.RetractLength = v
		}
		if v, ok := c.param('F'); ok && v > 0 {
			l.RetractFeedrate = v / 60
		}
	case 208:
		if v, ok := c.param('F'); ok && v > 0 {
			l.RecoverFeedrate = v / 60
		}
	case 566:
		// RepRapFirmware's jerk, in mm/min.
		for i, a := range axisLetters {
			if v, ok := c.param(a); ok && v >= 0 {
				l.Jerk[i] = v / 60
			}
		}
	default:
		return false
	}
	return true
}

func (l *Limits) applyM204(c *command) {
	if v, ok := c.param('S'); ok && v > 0 {
		l.PrintAcceleration = v
		l.TravelAcceleration = v
	}
	if v, ok := c.param('P'); ok && v > 0 {
		l.PrintAcceleration = v
	}
	if v, ok := c.param('R'); ok && v > 0 {
		l.RetractAcceleration = v
	}
	if v, ok := c.param('T'); ok && v > 0 {
		l.TravelAcceleration = v
	}
	if l.Junction == JunctionKlipper {
		// Klipper's M204 sets max_accel, which has no per-axis cap.
		top := max(l.PrintAcceleration, l.TravelAcceleration)
		l.MaxAcceleration[AxisX] = max(l.MaxAcceleration[AxisX], top)
		l.MaxAcceleration[AxisY] = max(l.MaxAcceleration[AxisY], top)
	}
}

// applyKlipper handles SET_VELOCITY_LIMIT. Klipper has one max_accel for
// every move and no per-axis X/Y limits, so ACCEL sets all three
// accelerations and lifts the X and Y maxima to it.
func (l *Limits) applyKlipper(c *command) bool {
	if !equalFoldASCII(c.extended, "SET_VELOCITY_LIMIT") {
		return false
	}
	l.Junction = JunctionKlipper
	if v, ok := c.extendedParam("ACCEL"); ok && v > 0 {
		l.PrintAcceleration, l.TravelAcceleration, l.RetractAcceleration = v, v, v
		l.MaxAcceleration[AxisX] = max(l.MaxAcceleration[AxisX], v)
		l.MaxAcceleration[AxisY] = max(l.MaxAcceleration[AxisY], v)
	}
	if v, ok := c.extendedParam("VELOCITY"); ok && v > 0 {
		l.MaxFeedrate[AxisX], l.MaxFeedrate[AxisY] = v, v
	}
	if v, ok := c.extendedParam("SQUARE_CORNER_VELOCITY"); ok && v >= 0 {
		l.SquareCornerVelocity = max(v, 0.001)
	}
	return true
}
