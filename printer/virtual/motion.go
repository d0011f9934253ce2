package virtual

import (
	"fmt"
	"math"
	"sync"
	"time"
)

const (
	axisX = iota
	axisY
	axisZ
	axisE
)

var axisLetters = [4]byte{'X', 'Y', 'Z', 'E'}

// Motion constants of Marlin's example configuration.
var (
	stepsPerMM    = [3]float64{80, 80, 400}              // DEFAULT_AXIS_STEPS_PER_UNIT for X, Y, Z
	homingFeed    = [3]float64{50 * 60, 50 * 60, 4 * 60} // HOMING_FEEDRATE_MM_M
	homingMinimum = 5.0                                  // mm moved per axis by G28 even from 0, for the endstop approach
	homingBump    = 200 * time.Millisecond               // bump and re-approach per axis
)

const (
	defaultFeedrate = 1500.0 // mm/min, Marlin's feedrate_mm_s at boot (25 mm/s)
	mmPerInch       = 25.4
)

// machine is the logical position and motion modes. The firmware
// goroutine changes it; the report goroutine reads it for M154.
type machine struct {
	mu          sync.Mutex // guards all fields
	pos         [4]float64 // logical position in mm
	relative    [4]bool    // G91/M83 per axis
	inches      bool       // G20
	feedrate    float64    // mm/min
	feedPercent float64    // M220
	activeTool  int
	allowCold   bool // M302 P1: cold extrusion allowed
}

func newMachine() *machine {
	return &machine{feedrate: defaultFeedrate, feedPercent: 100}
}

// reset returns the machine to its power-on state.
func (m *machine) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos = [4]float64{}
	m.relative = [4]bool{}
	m.inches = false
	m.feedrate = defaultFeedrate
	m.feedPercent = 100
	m.activeTool = 0
	m.allowCold = false
}

// positionReport returns the M114 text, `X:<x> Y:<y> Z:<z> E:<e> Count
// X:<steps> Y:<steps> Z:<steps>`. Marlin's Count part shows the planner
// position in steps; without bed leveling that is the logical position
// times the steps per mm.
func (m *machine) positionReport() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pos
	return fmt.Sprintf("X:%.2f Y:%.2f Z:%.2f E:%.2f Count X:%d Y:%d Z:%d",
		p[axisX], p[axisY], p[axisZ], p[axisE],
		int64(math.Round(p[axisX]*stepsPerMM[axisX])),
		int64(math.Round(p[axisY]*stepsPerMM[axisY])),
		int64(math.Round(p[axisZ]*stepsPerMM[axisZ])))
}

func (m *machine) tool() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.activeTool
}

func (m *machine) toMM(v float64) float64 {
	if m.inches {
		return v * mmPerInch
	}
	return v
}

// moveLocked returns the start and end of a G0-G3 move and the feed rate
// in mm/min after its F parameter.
func (m *machine) moveLocked(g *gcode) (start, end [4]float64, feed float64) {
	start, end = m.pos, m.pos
	for a, letter := range axisLetters {
		v, ok := g.float(letter)
		if !ok {
			continue
		}
		v = m.toMM(v)
		if m.relative[a] {
			end[a] += v
		} else {
			end[a] = v
		}
	}
	if f, ok := g.float('F'); ok && f > 0 {
		m.feedrate = m.toMM(f)
	}
	return start, end, m.feedrate * m.feedPercent / 100
}

// move executes G0, G1, G2 and G3: the move goes into the planner, which
// delays the ok while it is full, and the logical position becomes the
// end point. Arcs take the time of their arc length.
func (s *session) move(g *gcode) bool {
	m := s.machine
	m.mu.Lock()
	start, end, feed := m.moveLocked(g)
	tool, allowCold := m.activeTool, m.allowCold
	arcCenter, arc := m.arcCenterLocked(g, start, end)
	m.mu.Unlock()

	de := end[axisE] - start[axisE]
	if de != 0 && !allowCold {
		if actual, _ := s.p.thermal.reading(tool); actual < extrudeMinTemp {
			// PREVENT_COLD_EXTRUSION: the E part is dropped but the
			// position moves on as if it had been extruded.
			s.send(msgColdExtrude)
			de = 0
		}
	}
	var length float64
	if arc {
		length = arcLength(start, end, arcCenter, g.code == 2)
	} else {
		length = math.Sqrt(sq(end[axisX]-start[axisX]) + sq(end[axisY]-start[axisY]) + sq(end[axisZ]-start[axisZ]))
	}
	if length == 0 {
		length = math.Abs(de)
	}
	if length > 0 && !s.addBlock(moveDuration(length, feed)) {
		return true
	}
	m.mu.Lock()
	m.pos = end
	m.mu.Unlock()
	return true
}

// arcCenterLocked returns the center of a G2/G3 arc given by I/J offsets
// or by a radius R, and false for a straight move or an invalid arc.
func (m *machine) arcCenterLocked(g *gcode, start, end [4]float64) ([2]float64, bool) {
	if g.letter != 'G' || (g.code != 2 && g.code != 3) {
		return [2]float64{}, false
	}
	if r, ok := g.float('R'); ok {
		r = m.toMM(r)
		dx, dy := end[axisX]-start[axisX], end[axisY]-start[axisY]
		d := math.Hypot(dx, dy)
		if d == 0 || math.Abs(r) < d/2 {
			return [2]float64{}, false
		}
		h := math.Sqrt(r*r - d*d/4)
		// Marlin: a positive R takes the shorter arc; the center lies to
		// the right of the chord for G2 and to the left for G3.
		if (g.code == 2) != (r < 0) {
			h = -h
		}
		mx, my := (start[axisX]+end[axisX])/2, (start[axisY]+end[axisY])/2
		return [2]float64{mx - h*dy/d, my + h*dx/d}, true
	}
	i, _ := g.float('I')
	j, _ := g.float('J')
	if i == 0 && j == 0 {
		return [2]float64{}, false
	}
	return [2]float64{start[axisX] + m.toMM(i), start[axisY] + m.toMM(j)}, true
}

// arcLength returns the helical length of an arc from start to end around
// center; equal start and end points make a full circle.
func arcLength(start, end [4]float64, center [2]float64, clockwise bool) float64 {
	radius := math.Hypot(start[axisX]-center[0], start[axisY]-center[1])
	a0 := math.Atan2(start[axisY]-center[1], start[axisX]-center[0])
	a1 := math.Atan2(end[axisY]-center[1], end[axisX]-center[0])
	sweep := a1 - a0
	if clockwise {
		sweep = -sweep
	}
	for sweep <= 1e-9 {
		sweep += 2 * math.Pi
	}
	return math.Hypot(radius*sweep, end[axisZ]-start[axisZ])
}

func sq(v float64) float64 { return v * v }

// moveDuration returns the model time of a move at a constant feed rate
// in mm/min. Acceleration is not modelled.
func moveDuration(length, feed float64) time.Duration {
	feed = math.Max(feed, 1)
	return time.Duration(length / (feed / 60) * float64(time.Second))
}

// addBlock puts a block of model duration d into the planner, waiting
// while it is full.
func (s *session) addBlock(d time.Duration) bool {
	d = s.scaled(d)
	for {
		ok, changed := s.planner.tryAdd(d)
		if ok {
			return true
		}
		if !s.await(changed) {
			return false
		}
	}
}

// syncPlanner waits until all planned moves are done (planner.synchronize).
func (s *session) syncPlanner() bool {
	for {
		empty, changed := s.planner.empty()
		if empty {
			return true
		}
		if !s.await(changed) {
			return false
		}
	}
}

// home executes G28: wait for the planner, then move the named axes (all
// without X, Y or Z) to their endstops at 0.
func (s *session) home(g *gcode) bool {
	if !s.syncPlanner() {
		return true
	}
	axes := []int{}
	for a := axisX; a <= axisZ; a++ {
		if g.has(axisLetters[a]) {
			axes = append(axes, a)
		}
	}
	if len(axes) == 0 {
		axes = []int{axisX, axisY, axisZ}
	}
	m := s.machine
	m.mu.Lock()
	var d time.Duration
	for _, a := range axes {
		d += moveDuration(math.Max(math.Abs(m.pos[a]), homingMinimum), homingFeed[a]) + homingBump
	}
	m.mu.Unlock()
	if !s.addBlock(d) || !s.syncPlanner() {
		return true
	}
	m.mu.Lock()
	for _, a := range axes {
		m.pos[a] = 0
	}
	m.mu.Unlock()
	return true
}

// setPosition executes G92.
func (s *session) setPosition(g *gcode) bool {
	m := s.machine
	m.mu.Lock()
	defer m.mu.Unlock()
	for a, letter := range axisLetters {
		if v, ok := g.float(letter); ok {
			m.pos[a] = m.toMM(v)
		}
	}
	return true
}

// setRelative sets the distance mode of the axes given (G90, G91, M82,
// M83).
func (s *session) setRelative(relative bool, axes ...int) {
	m := s.machine
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range axes {
		m.relative[a] = relative
	}
}

// dwell executes G4 P<ms> or S<s> after the planner is empty.
func (s *session) dwell(g *gcode) bool {
	if !s.syncPlanner() {
		return true
	}
	var d time.Duration
	if ms, ok := g.float('P'); ok {
		d = time.Duration(ms * float64(time.Millisecond))
	}
	if sec, ok := g.float('S'); ok {
		d = time.Duration(sec * float64(time.Second))
	}
	s.sleep(s.scaled(d))
	return true
}
