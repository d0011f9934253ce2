package virtual

import (
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/printbridge/printbridge/bridge/lazy"
)

// handler executes one command and reports whether the generic ok is
// still due (false when it sent its own ok or must not send one).
type handler func(s *session, g *gcode) bool

// silentCommands are further commands of a typical Marlin 2.1 build (SD
// card, EEPROM, fans, motion and PID settings) that the simulator accepts
// with a bare ok and otherwise ignores.
var silentCommands = []string{
	"M17", "M18", "M31", "M32",
	"M42", "M73", "M75", "M76", "M77", "M78", "M80", "M81", "M84", "M85", "M92", "M106", "M107",
	"M111", "M119", "M145", "M149", "M200", "M201", "M203", "M204", "M205", "M206", "M211",
	"M221", "M226", "M280", "M300", "M301", "M303", "M304", "M412", "M413", "M420", "M428",
	"M500", "M501", "M502", "M503", "M504", "M575", "M600", "M603", "M851", "M876",
	"M900", "M907",
}

var handlers = lazy.Map[string, handler]{Build: func() map[string]handler {
	m := map[string]handler{
		"G0":   (*session).move,
		"G1":   (*session).move,
		"G2":   (*session).move,
		"G3":   (*session).move,
		"G4":   (*session).dwell,
		"G20":  func(s *session, g *gcode) bool { s.setInches(true); return true },
		"G21":  func(s *session, g *gcode) bool { s.setInches(false); return true },
		"G28":  (*session).home,
		"G90":  func(s *session, g *gcode) bool { s.setRelative(false, axisX, axisY, axisZ, axisE); return true },
		"G91":  func(s *session, g *gcode) bool { s.setRelative(true, axisX, axisY, axisZ, axisE); return true },
		"G92":  (*session).setPosition,
		"M0":   (*session).pauseForUser,
		"M1":   (*session).pauseForUser,
		"M20":  (*session).listFiles,
		"M21":  (*session).initCard,
		"M22":  (*session).releaseCard,
		"M23":  (*session).selectFile,
		"M24":  (*session).startPrint,
		"M25":  (*session).pausePrint,
		"M26":  (*session).setSDPosition,
		"M27":  (*session).reportSDStatus,
		"M28":  (*session).beginWrite,
		"M29":  (*session).endWrite,
		"M30":  (*session).deleteFile,
		"M524": (*session).abortPrint,
		"M82":  func(s *session, g *gcode) bool { s.setRelative(false, axisE); return true },
		"M83":  func(s *session, g *gcode) bool { s.setRelative(true, axisE); return true },
		"M104": (*session).setHotend,
		"M105": (*session).reportTemperatures,
		"M108": (*session).breakAndContinue,
		"M109": (*session).setHotend,
		"M110": (*session).setLineNumber,
		"M112": (*session).emergencyStop,
		"M113": (*session).setKeepalive,
		"M114": func(s *session, g *gcode) bool { s.send(s.positionReport()); return true },
		"M115": (*session).reportFirmware,
		"M117": (*session).setStatus,
		"M118": (*session).echoText,
		"M140": (*session).setBed,
		"M154": (*session).setPositionInterval,
		"M155": func(s *session, g *gcode) bool { return s.setInterval(g, &s.tempInterval) },
		"M190": (*session).setBed,
		"M220": (*session).setFeedPercent,
		"M302": (*session).setColdExtrusion,
		"M400": func(s *session, g *gcode) bool { s.syncPlanner(); return true },
		"M410": (*session).quickStop,
		"M999": (*session).restart,
	}
	for _, name := range silentCommands {
		m[name] = okOnly
	}
	return m
}}

func okOnly(*session, *gcode) bool { return true }

// sdCommands exist only in firmware built with SDSUPPORT.
var sdCommands = lazy.Map[string, bool]{Build: func() map[string]bool {
	return map[string]bool{
		"M20": true, "M21": true, "M22": true, "M23": true, "M24": true, "M25": true, "M26": true,
		"M27": true, "M28": true, "M29": true, "M30": true, "M524": true,
	}
}}

// dispatch runs the handler of g; commands without one get Marlin 2.x's
// unknown-command echo and an ok.
func (s *session) dispatch(g *gcode) bool {
	if g.letter == 'T' && g.code >= 0 && g.sub < 0 {
		return s.selectTool(g.code)
	}
	if h, ok := handlers.Get()[g.name()]; ok {
		if g.name() == "M140" || g.name() == "M190" {
			if !s.cfg.HeatedBed {
				return s.unknown(g)
			}
		}
		if s.cfg.NoSDSupport && sdCommands.Get()[g.name()] {
			return s.unknown(g)
		}
		return h(s, g)
	}
	return s.unknown(g)
}

func (s *session) unknown(g *gcode) bool {
	if s.cfg.repetier() {
		s.send("Unknown command:" + g.text)
		return true
	}
	s.send(`echo:Unknown command: "` + g.text + `"`)
	return true
}

// selectTool executes T<n>.
func (s *session) selectTool(n int) bool {
	if n >= s.cfg.Extruders {
		s.send("echo:T" + strconv.Itoa(n) + " Invalid extruder")
		return true
	}
	if s.cfg.Extruders == 1 {
		return true
	}
	if !s.syncPlanner() {
		return true
	}
	s.machine.mu.Lock()
	s.machine.activeTool = n
	s.machine.mu.Unlock()
	s.send("echo:Active Extruder: " + strconv.Itoa(n))
	return true
}

// targetExtruder returns the hotend named by T, or the active one, as
// Marlin's get_target_extruder_from_command.
func (s *session) targetExtruder(g *gcode) (int, bool) {
	if t, ok := g.int('T'); ok {
		if t >= 0 && t < s.cfg.Extruders {
			return t, true
		}
		s.send("echo:" + g.name() + " Invalid extruder " + strconv.Itoa(t))
		return 0, false
	}
	return s.machine.tool(), true
}

// setHotend executes M104 and M109. M109 S waits only while heating, M109
// R also while cooling.
func (s *session) setHotend(g *gcode) bool {
	e, ok := s.targetExtruder(g)
	if !ok {
		return true
	}
	temp, hasS := g.float('S')
	if !hasS {
		var hasR bool
		if temp, hasR = g.float('R'); !hasR || g.code == 104 {
			return true
		}
	}
	s.p.thermal.setTarget(e, temp)
	s.announceTarget(e, temp)
	if g.code == 109 {
		s.waitForHeater(e, e, hasS)
	}
	return true
}

// setBed executes M140 and M190.
func (s *session) setBed(g *gcode) bool {
	temp, hasS := g.float('S')
	if !hasS {
		var hasR bool
		if temp, hasR = g.float('R'); !hasR || g.code == 140 {
			return true
		}
	}
	s.p.thermal.setTarget(bedHeater, temp)
	s.announceTarget(bedHeater, temp)
	if g.code == 190 {
		s.waitForHeater(bedHeater, s.machine.tool(), hasS)
	}
	return true
}

// waitForHeater blocks until heater e is within TEMP_WINDOW of its target,
// like Marlin's wait_for_hotend and wait_for_bed. Once per second of model
// time it prints the heater states with ` W:?`, because the simulator has
// no residency timer. noWaitForCooling (the S form) ends the wait when the
// heater is above its target, and M108 ends it early.
func (s *session) waitForHeater(e, reportTool int, noWaitForCooling bool) {
	s.breakWait.Store(false)
	interval := s.scaled(time.Second)
	tick := min(max(interval, time.Millisecond), 100*time.Millisecond)
	floor := hotendCoolFloor
	if e == bedHeater {
		floor = bedCoolFloor
	}
	var nextStatus time.Time
	for {
		actual, target := s.p.thermal.reading(e)
		if now := time.Now(); !now.Before(nextStatus) {
			s.send(s.heatingStatus(e, reportTool))
			nextStatus = now.Add(interval)
		}
		wantsToCool := target < actual
		switch {
		case math.Abs(actual-target) <= tempWindow:
			return
		case wantsToCool && noWaitForCooling:
			return
		case wantsToCool && target == 0 && actual < floor:
			return
		case s.breakWait.Load():
			return
		}
		if !s.sleep(tick) {
			return
		}
	}
}

// reportTemperatures executes M105: "ok" and the heater states on one line.
func (s *session) reportTemperatures(g *gcode) bool {
	e, ok := s.targetExtruder(g)
	if !ok {
		return true
	}
	report := s.heaterReport(e)
	if s.okSent {
		s.send(strings.TrimLeft(report, " "))
		return false
	}
	s.send("ok" + report)
	s.okSent = true
	return false
}

// setInterval executes M154 and M155: auto-report every S seconds (0-60,
// 0 stops it), in wall-clock time.
func (s *session) setInterval(g *gcode, interval *atomic.Int64) bool {
	if sec, ok := g.int('S'); ok {
		sec = min(max(sec, 0), 60)
		interval.Store(int64(time.Duration(sec) * time.Second))
	}
	return true
}

// setPositionInterval executes M154, which only builds with
// AUTO_REPORT_POSITION have.
func (s *session) setPositionInterval(g *gcode) bool {
	if s.cfg.NoAutoreportPos && s.cfg.Dialect == DialectMarlin {
		return s.unknown(g)
	}
	return s.setInterval(g, &s.posInterval)
}

// setKeepalive executes M113: S sets the busy keep-alive interval in
// seconds (0-60, 0 disables it); without S it reports the interval.
func (s *session) setKeepalive(g *gcode) bool {
	if sec, ok := g.int('S'); ok {
		sec = min(max(sec, 0), 60)
		s.keepalive.Store(int64(time.Duration(sec) * time.Second))
		return true
	}
	s.send("echo:M113 S" + strconv.Itoa(int(time.Duration(s.keepalive.Load())/time.Second)))
	return true
}

// setLineNumber executes M110 N<n>. A numbered M110 line already set the
// number when it was received. Like Marlin, the execution sets it again,
// so numbered lines that a host sent ahead of the M110's ok are rejected.
func (s *session) setLineNumber(g *gcode) bool {
	if _, ok := g.params['N']; ok {
		s.lastN = strtol([]byte(g.params['N']))
		s.m110Line = s.lastN
	}
	return true
}

// emergencyStop executes M112 from the queue. With EMERGENCY_PARSER the
// parser already acted on it and Marlin only sends ok.
func (s *session) emergencyStop(g *gcode) bool {
	if s.cfg.EmergencyParser {
		return true
	}
	s.kill(true)
	return false
}

// pauseForUser executes M0 and M1 as a Marlin build with
// EMERGENCY_PARSER and no display does (HAS_RESUME_CONTINUE): wait until
// M108, or at most S seconds or P milliseconds. Without the parser such a
// build has no M0, and the simulator only sends ok.
func (s *session) pauseForUser(g *gcode) bool {
	if !s.cfg.EmergencyParser {
		return true
	}
	s.breakWait.Store(false)
	var limit time.Duration
	if ms, ok := g.float('P'); ok {
		limit = time.Duration(ms * float64(time.Millisecond))
	}
	if sec, ok := g.float('S'); ok {
		limit = time.Duration(sec * float64(time.Second))
	}
	deadline := time.Now().Add(s.scaled(limit))
	for !s.breakWait.Load() {
		if limit > 0 && !time.Now().Before(deadline) {
			return true
		}
		if !s.sleep(10 * time.Millisecond) {
			return true
		}
	}
	return true
}

func (s *session) breakAndContinue(g *gcode) bool {
	if !s.cfg.EmergencyParser {
		s.breakWait.Store(true)
	}
	return true
}

func (s *session) quickStop(g *gcode) bool {
	if !s.cfg.EmergencyParser {
		s.planner.clear()
	}
	return true
}

// restart executes M999: leave the halted state and, unless S1, flush the
// command queue and request the line after the last accepted one.
func (s *session) restart(g *gcode) bool {
	s.killed = false
	s.halted.Store(false)
	if v, ok := g.int('S'); ok && v == 1 {
		return true
	}
	s.queue = nil
	s.flushed = true
	s.send(s.resendText(s.lastN + 1))
	s.send("ok")
	s.okSent = true
	return false
}

// setStatus executes M117, which Marlin shows on the LCD; the simulator
// echoes it like OctoPrint's virtual printer unless NoM117Echo is set.
func (s *session) setStatus(g *gcode) bool {
	if !s.cfg.NoM117Echo {
		s.send("echo:" + g.args)
	}
	return true
}

// echoText executes M118 [A1] [E1] [Pn] <text>: A1 prefixes `//`, E1
// prefixes `echo:`. Marlin parses these flags only at the start of the
// text.
func (s *session) echoText(g *gcode) bool {
	text := g.args
	var hasA, hasE bool
flags:
	for range 3 {
		if len(text) < 2 {
			break
		}
		switch {
		case (text[0] == 'A' || text[0] == 'E') && text[1] == '1':
			hasA = hasA || text[0] == 'A'
			hasE = hasE || text[0] == 'E'
		case text[0] == 'P' && isDigit(text[1]):
		default:
			break flags
		}
		text = strings.TrimLeft(text[2:], " ")
	}
	prefix := ""
	if hasE {
		prefix = "echo:"
	}
	if hasA {
		prefix += "//"
	}
	s.send(prefix + text)
	return true
}

func (s *session) setInches(inches bool) {
	s.machine.mu.Lock()
	s.machine.inches = inches
	s.machine.mu.Unlock()
}

func (s *session) setFeedPercent(g *gcode) bool {
	if p, ok := g.float('S'); ok && p > 0 {
		s.machine.mu.Lock()
		s.machine.feedPercent = p
		s.machine.mu.Unlock()
	}
	return true
}

// setColdExtrusion executes M302 P<0|1>: P1 allows extrusion below
// EXTRUDE_MINTEMP.
func (s *session) setColdExtrusion(g *gcode) bool {
	if p, ok := g.int('P'); ok {
		s.machine.mu.Lock()
		s.machine.allowCold = p == 1
		s.machine.mu.Unlock()
	}
	return true
}
