package gcode

import (
	"bytes"
	"fmt"
	"math"
	"strings"

	"github.com/printbridge/printbridge/bridge/lazy"
)

// Notes a Result may carry.
const (
	noteLongLine   = "lines longer than 64 KiB were cut; only their first 64 KiB were read"
	noteProbing    = "G29 bed probing is not timed"
	noteHeating    = "heat-up waits (M109, M190, M116) are not timed"
	noteToolRange  = "tool numbers above 15 were ignored"
	noteBadArc     = "arcs without I, J or R were ignored, as Marlin rejects them"
	noteFilament   = "filament changes and pauses (M600, M0, M1, M601) are not timed"
	noteVolumetric = "E values are volumes in mm³; lengths are derived with the filament diameter"
)

const maxNotes = 8

// defaultFeed is the feed rate before the file sets one: Marlin starts
// at 1500 mm/min.
const defaultFeed = 1500.0 / 60

// analyzer is the interpreter state: positions, modes and totals.
type analyzer struct {
	opts       Options
	userLimits bool
	limits     Limits
	plan       planner
	slicer     slicerParser
	cmd        command

	// pos is the logical position in mm; pos[3] is the E register in the
	// file's own unit (mm, or mm³ when volumetric).
	pos       [4]float64
	relative  bool // G91
	relativeE bool // M83, or G91
	inches    bool // G20
	plane     int  // 17, 18 or 19
	feed      float64
	// speedFactor is M220's feed rate override, flowFactor M221's
	// extrusion override per tool, both as fractions.
	speedFactor float64
	flowFactor  [maxTools]float64
	tool        int
	tools       int // highest tool index used, plus one

	// volumetric is set by M200 D>0 or Cura's UltiGCode flavour;
	// volumeDiameter converts its mm³ to mm of filament.
	volumetric     bool
	usedVolumetric bool
	volumeDiameter float64
	ultiGCode      bool
	retracted      bool // G10 without G11 yet

	// net is the extruder position per tool in mm of filament (flow
	// applied), high its highest value: the filament used.
	net, high [maxTools]float64

	printed, travel box
	layers          int
	topZ            float64
	dwell, homing   float64
	moves, arcs     int64
	lines, bytes    int64
	notes           []string

	// posInTravel and posInPrinted are set while travel or printed
	// already contains pos, so that the next move skips adding its start
	// point, which would change neither box. They are cleared whenever
	// pos changes without being added, even if only the sign of a zero
	// changed, because box.add keeps -0 apart from +0.
	posInTravel, posInPrinted bool
}

func newAnalyzer(opts Options, buf *buffers) *analyzer {
	a := &analyzer{opts: opts, plane: 17, feed: defaultFeed, speedFactor: 1}
	if opts.Limits != nil {
		a.limits = *opts.Limits
		a.userLimits = true
	} else {
		a.limits = MarlinDefaults()
	}
	a.limits.sanitize()
	a.plan.limits = &a.limits
	a.plan.stopped = true
	blocks := opts.PlannerBlocks
	if blocks <= 0 {
		blocks = DefaultPlannerBlocks
	}
	a.plan.ring = buf.ringOf(min(blocks, maxPlannerBlocks))
	for i := range a.flowFactor {
		a.flowFactor[i] = 1
	}
	a.tools = 1
	return a
}

func (a *analyzer) note(n string) {
	for _, have := range a.notes {
		if have == n {
			return
		}
	}
	if len(a.notes) < maxNotes {
		a.notes = append(a.notes, n)
	}
}

// line handles one raw line, newline included.
func (a *analyzer) line(raw []byte) {
	a.lines++
	// The code part ends at a ';' comment, which the slicer parser reads
	// without the ';'.
	//
	// NOTE: CNC-style "(...)" comments are not removed, so letters inside
	// one would be read as parameters; FDM slicers write ';' comments.
	if len(raw) > 0 && raw[0] == ';' {
		// A comment line, a third of the lines of some slicers' files, has
		// no code to search for the ';' or to parse.
		a.comment(raw[1:])
		return
	}
	code := raw
	if i := bytes.IndexByte(raw, ';'); i >= 0 {
		code = raw[:i]
		a.comment(raw[i+1:])
	}
	if !parseCommand(code, &a.cmd) {
		return
	}
	a.execute(&a.cmd)
}

func (a *analyzer) comment(c []byte) {
	before := a.slicer.s.Flavor
	a.slicer.comment(c)
	if flavor := a.slicer.s.Flavor; flavor != before {
		a.flavor(flavor)
	}
}

// flavor applies what a flavour comment implies for the moves that
// follow: UltiGCode's E values are volumes, Klipper plans corners its
// own way.
func (a *analyzer) flavor(f string) {
	switch {
	case strings.EqualFold(f, "UltiGCode"):
		a.ultiGCode = true
		a.volumetric = true
		a.volumeDiameter = ultiGCodeFilamentDiameter
		if a.opts.FilamentDiameter > 0 {
			a.volumeDiameter = a.opts.FilamentDiameter
		}
	case strings.EqualFold(f, "klipper"):
		a.enterKlipper()
	}
}

// enterKlipper switches to Klipper's corner model. Without limits from
// the caller, Marlin's default X/Y feed rate cap does not apply either:
// Klipper's max_velocity lives in printer.cfg, so the file's own F
// values decide.
func (a *analyzer) enterKlipper() {
	if a.limits.Junction == JunctionKlipper {
		return
	}
	a.limits.Junction = JunctionKlipper
	if !a.userLimits {
		// NOTE: 1000 mm/s replaces an unknown max_velocity.
		a.limits.MaxFeedrate[AxisX] = 1000
		a.limits.MaxFeedrate[AxisY] = 1000
		top := max(a.limits.PrintAcceleration, a.limits.TravelAcceleration)
		a.limits.MaxAcceleration[AxisX] = max(a.limits.MaxAcceleration[AxisX], top)
		a.limits.MaxAcceleration[AxisY] = max(a.limits.MaxAcceleration[AxisY], top)
	}
}

func (a *analyzer) execute(c *command) {
	if c.letter == 'G' && c.code <= 1 {
		// G0 and G1, most lines of a file, skip the dispatch below.
		a.linear(c)
		return
	}
	if c.extended != nil {
		if equalFoldASCII(c.extended, "SET_VELOCITY_LIMIT") {
			a.enterKlipper()
		}
		a.limits.applySettings(c)
		return
	}
	switch c.letter {
	case 'G':
		a.executeG(c)
	case 'M':
		a.executeM(c)
	case 'T':
		a.selectTool(c.code)
	}
}

func (a *analyzer) executeG(c *command) {
	switch c.code {
	case 0, 1:
		a.linear(c)
	case 2, 3:
		a.arc(c, c.code == 2)
	case 4:
		a.plan.flush()
		if v, ok := c.param('S'); ok && v > 0 {
			a.dwell += v
		} else if v, ok := c.param('P'); ok && v > 0 {
			a.dwell += v / 1000
		}
	case 10:
		if !c.present('P') && !c.present('L') {
			a.firmwareRetract(true)
		}
	case 11:
		a.firmwareRetract(false)
	case 17, 18, 19:
		a.plane = c.code
	case 20:
		a.inches = true
	case 21:
		a.inches = false
	case 28:
		a.home(c)
	case 29:
		a.plan.flush()
		a.note(noteProbing)
	case 90:
		// Marlin's G90 and G91 switch E as well; M82/M83 switch E alone.
		a.relative, a.relativeE = false, false
	case 91:
		a.relative, a.relativeE = true, true
	case 92:
		a.setPosition(c)
	}
}

func (a *analyzer) executeM(c *command) {
	if a.limits.applySettings(c) {
		return
	}
	switch c.code {
	case 0, 1, 600, 601:
		a.plan.flush()
		a.note(noteFilament)
	case 82:
		a.relativeE = false
	case 83:
		a.relativeE = true
	case 109, 190, 116:
		a.plan.flush()
		a.note(noteHeating)
	case 400:
		a.plan.flush()
	case 200:
		a.m200(c)
	case 220:
		if v, ok := c.param('S'); ok && v > 0 {
			a.speedFactor = v / 100
		}
	case 221:
		if v, ok := c.param('S'); ok && v >= 0 {
			tool := a.tool
			if t, ok := c.param('T'); ok && t >= 0 && t < maxTools {
				tool = int(t)
			}
			a.flowFactor[tool] = v / 100
		}
	}
}

// m200 sets volumetric extrusion as Marlin 2 does: D sets the filament
// diameter and, when above zero, switches volumetric mode on; S0 and S1
// switch it off and on.
func (a *analyzer) m200(c *command) {
	if d, ok := c.param('D'); ok {
		if d > 0 {
			a.volumeDiameter = a.length(d)
			a.volumetric = true
		} else {
			a.volumetric = false
		}
	}
	if s, ok := c.param('S'); ok {
		a.volumetric = s != 0 && a.volumeDiameter > 0
	}
}

func (a *analyzer) selectTool(n int) {
	if n < 0 || n >= maxTools {
		a.note(noteToolRange)
		return
	}
	a.tool = n
	a.tools = max(a.tools, n+1)
}

// length converts a parameter to mm.
func (a *analyzer) length(v float64) float64 {
	if a.inches {
		return v * 25.4
	}
	return v
}

// target returns the position a move ends at; E stays in file units.
// It returns scalars, which the compiler keeps in registers, where it
// would return an array in memory.
func (a *analyzer) target(c *command) (x, y, z, e float64) {
	x, y, z, e = a.pos[0], a.pos[1], a.pos[2], a.pos[3]
	if v, ok := c.param('X'); ok {
		x = moveTo(x, a.length(v), a.relative)
	}
	if v, ok := c.param('Y'); ok {
		y = moveTo(y, a.length(v), a.relative)
	}
	if v, ok := c.param('Z'); ok {
		z = moveTo(z, a.length(v), a.relative)
	}
	if v, ok := c.param('E'); ok {
		// G20 scales lengths, but not volumes in mm³.
		if !a.volumetric {
			v = a.length(v)
		}
		e = moveTo(e, v, a.relativeE)
	}
	if f, ok := c.param('F'); ok && f > 0 {
		a.feed = a.length(f) / 60
	}
	return x, y, z, e
}

// moveTo returns the coordinate that a parameter v moves to from the
// coordinate from: from+v when relative, else v.
func moveTo(from, v float64, relative bool) float64 {
	if relative {
		return from + v
	}
	return v
}

// filament converts an E change in file units to mm of filament with
// the tool's flow factor applied, and books it on the current tool.
func (a *analyzer) filament(dE float64) float64 {
	if dE == 0 {
		return 0
	}
	if a.volumetric {
		dE /= crossSection(a.volumeDiameter)
		a.usedVolumetric = true
	}
	dE *= a.flowFactor[a.tool]
	a.net[a.tool] += dE
	a.high[a.tool] = mathMax(a.high[a.tool], a.net[a.tool])
	return dE
}

// mathMax returns math.Max(x, y), up to the payload bits of a NaN.
// math.Max is an assembly function on amd64, which the compiler cannot
// inline. The builtin max differs from it only when one argument is +Inf
// and the other NaN, where math.Max returns +Inf.
func mathMax(x, y float64) float64 {
	if x > math.MaxFloat64 {
		return x
	}
	if y > math.MaxFloat64 {
		return y
	}
	return max(x, y)
}

func crossSection(diameter float64) float64 {
	return math.Pi * diameter * diameter / 4
}

func (a *analyzer) linear(c *command) {
	x, y, z, e := a.target(c)
	if !finite(x) || !finite(y) || !finite(z) || !finite(e) {
		return
	}
	fx, fy, fz, fe := a.pos[0], a.pos[1], a.pos[2], a.pos[3]
	dFil := a.filament(e - fe)
	a.pos = [4]float64{x, y, z, e}
	dx, dy, dz := x-fx, y-fy, z-fz
	headMoves := dx != 0 || dy != 0 || dz != 0
	if !headMoves {
		a.posInTravel, a.posInPrinted = false, false
		if dFil == 0 {
			return
		}
	}
	a.moves++
	kind := kindRetract
	if headMoves {
		kind = kindTravel
		if dFil != 0 {
			kind = kindPrint
		}
	}
	a.plan.add(dx, dy, dz, dFil, a.feed*a.speedFactor, kind)
	if headMoves {
		if !a.posInTravel {
			a.travel.add(fx, fy, fz)
		}
		a.travel.add(x, y, z)
		a.posInTravel = true
	}
	if dFil > 0 && (dx != 0 || dy != 0) {
		if !a.posInPrinted {
			a.printed.add(fx, fy, fz)
		}
		a.printed.add(x, y, z)
		a.posInPrinted = true
		a.layer(z)
	} else {
		a.posInPrinted = false
	}
}

// layer counts a new layer when the file extrudes above every height it
// extruded at before. That equals the number of distinct heights for
// prints that go up layer by layer, in constant memory.
//
// NOTE: a spiral (vase mode) print rises with every move, so each move
// counts as a layer there.
func (a *analyzer) layer(z float64) {
	if a.layers == 0 || z > a.topZ+1e-4 {
		a.layers++
		a.topZ = z
	}
}

// finite reports whether a coordinate is at most 1e12 in magnitude. The
// comparisons also reject NaN, which compares false, and the infinities.
func finite(x float64) bool {
	return x >= -1e12 && x <= 1e12
}

// firmwareRetract times G10 and G11 as extruder moves of M207's length.
// They net to zero filament: G11 gives back what G10 took, and M208's
// extra recover length is ignored. A repeated G10 (or G11) does nothing,
// as in Marlin.
func (a *analyzer) firmwareRetract(retract bool) {
	if retract == a.retracted {
		return
	}
	a.retracted = retract
	length, feed := a.limits.RetractLength, a.limits.RecoverFeedrate
	if retract {
		length, feed = -length, a.limits.RetractFeedrate
	}
	a.net[a.tool] += length
	a.high[a.tool] = mathMax(a.high[a.tool], a.net[a.tool])
	a.plan.add(0, 0, 0, length, feed, kindRetract)
}

// home approximates G28: each homed axis moves from where it is to 0 at
// its homing feed rate, then backs off by its bump length and touches
// again at half speed (Marlin's HOMING_BUMP_DIVISOR 2). The position
// before the first move of the file is taken as 0, so a G28 at the
// start of a file counts only the bumps.
func (a *analyzer) home(c *command) {
	a.plan.flush()
	a.posInTravel, a.posInPrinted = false, false
	axes := [3]bool{c.present('X'), c.present('Y'), c.present('Z')}
	if !axes[0] && !axes[1] && !axes[2] {
		axes = [3]bool{true, true, true}
	}
	for i, homed := range axes {
		if !homed {
			continue
		}
		feed := a.limits.HomingFeedrate[i]
		a.homing += math.Abs(a.pos[i])/feed + 3*a.limits.HomingBump[i]/feed
		a.pos[i] = 0
	}
}

// setPosition is G92: it sets the logical position without moving.
// Marlin's G92 without parameters changes nothing.
func (a *analyzer) setPosition(c *command) {
	a.posInTravel, a.posInPrinted = false, false
	for i, letter := range axisLetters {
		v, ok := c.param(letter)
		if !ok {
			continue
		}
		if i != AxisE || !a.volumetric {
			v = a.length(v)
		}
		a.pos[i] = v
	}
}

func (a *analyzer) result() *Result {
	a.plan.flush()
	r := &Result{
		LayerCount:          a.layers,
		Slicer:              a.slicer.s,
		Lines:               a.lines,
		Bytes:               a.bytes,
		Moves:               a.moves,
		Arcs:                a.arcs,
		VolumetricExtrusion: a.usedVolumetric || a.ultiGCode,
		Time:                TimeBreakdown{Moves: a.plan.seconds, Dwell: a.dwell, Homing: a.homing},
	}
	r.EstimatedPrintTime = r.Time.Moves + r.Time.Dwell + r.Time.Homing
	r.PrintingArea, r.Dimensions = a.printed.area()
	r.TravelArea, r.TravelDimensions = a.travel.area()

	r.FilamentDiameter = a.diameter()
	if r.VolumetricExtrusion {
		a.note(noteVolumetric)
	}
	area := crossSection(r.FilamentDiameter)
	r.Filament = make(map[string]Filament, a.tools)
	for t := range a.tools {
		r.Filament[toolKey(t)] = Filament{Length: a.high[t], Volume: a.high[t] * area / 1000}
	}
	r.Notes = append([]string(nil), a.notes...)
	return r
}

// diameter picks the filament diameter: the one volumetric E was
// converted with, else the caller's, else the slicer's, else the default.
func (a *analyzer) diameter() float64 {
	switch {
	case a.usedVolumetric && a.volumeDiameter > 0:
		return a.volumeDiameter
	case a.opts.FilamentDiameter > 0:
		return a.opts.FilamentDiameter
	case a.ultiGCode:
		return ultiGCodeFilamentDiameter
	case a.slicer.s.FilamentDiameter != nil && *a.slicer.s.FilamentDiameter < 10:
		return *a.slicer.s.FilamentDiameter
	}
	return DefaultFilamentDiameter
}

var toolKeys = lazy.Value[*[maxTools]string]{Build: func() *[maxTools]string {
	var k [maxTools]string
	for i := range k {
		k[i] = fmt.Sprintf("tool%d", i)
	}
	return &k
}}

func toolKey(t int) string { return toolKeys.Get()[t] }
