package virtual

import (
	"bytes"
	"strconv"
	"strings"
)

// acceptLine checks one received line as Marlin 2.x does and queues its
// command.
func (s *session) acceptLine(raw []byte) {
	line := bytes.TrimLeft(cString(raw), " ")
	if len(line) == 0 {
		return
	}
	if s.killed {
		// NOTE: real Marlin ignores everything after kill() until a reset;
		// the simulator also accepts M999 so tests can go on.
		if g := parseGcode(normalize(line)); g.name() == "M999" {
			s.execute(queuedCommand{gcode: g})
		}
		return
	}
	if s.cfg.repetier() {
		s.acceptRepetierLine(line)
		return
	}

	numbered := line[0] == 'N'
	if !numbered && s.cfg.prusa() && bytes.IndexByte(line, '*') >= 0 {
		s.lineError(errNoLineNum, 0)
		return
	}
	var n int64
	if numbered {
		var ok bool
		if n, ok = s.checkNumbered(line); !ok {
			return
		}
	}
	g := parseGcode(normalize(line))
	g.line, g.hasLine = n, numbered
	counted := numbered && g.name() != "M110"
	if counted && s.rewindDue(n) {
		s.rewind(n)
		return
	}
	cmd := queuedCommand{gcode: g}
	if numbered {
		cmd.after = s.countNumbered()
	}
	if counted {
		s.countForRewind()
	}
	if !s.cfg.EmergencyParser {
		s.processCritical(line)
		if s.killed {
			return
		}
	}
	s.queue = append(s.queue, cmd)
}

// checkNumbered validates the line number and checksum of a line that
// starts with N and returns its number. The number of a line containing
// M110 is taken from an N after the first four bytes (M110 N<n>), else
// from the prefix, and is not checked against the last line.
func (s *session) checkNumbered(line []byte) (int64, bool) {
	npos := line
	isM110 := bytes.Contains(line, []byte("M110"))
	if isM110 && len(line) > 4 {
		if i := bytes.IndexByte(line[4:], 'N'); i >= 0 {
			npos = line[4+i:]
		}
	}
	n := strtol(npos[1:])
	star := bytes.LastIndexByte(line, '*')
	if s.cfg.FirstStarChecksum {
		star = bytes.IndexByte(line, '*')
	}
	intact := star >= 0 && strtol(line[star+1:]) == int64(checksum(line[:star]))
	if intact && !isM110 {
		s.p.countReceived(n, s.lastN)
	}
	if n != s.lastN+1 && !isM110 {
		s.lineError(errLineNumber, n)
		return 0, false
	}
	if star < 0 {
		s.lineError(errNoChecksum, n)
		return 0, false
	}
	if !intact || s.injectResend(n, isM110) || isM110 && s.rejectM110(n) {
		s.lineError(errChecksum, n)
		return 0, false
	}
	s.lastN = n
	if isM110 {
		s.m110Line = n
		s.p.resetLineStats()
	} else {
		s.p.countAccepted(n)
	}
	return n, true
}

// rejectM110 decides whether Config.RejectM110 rejects an M110 line that
// sets the line number to target. An M110 that leaves the number as it
// is, such as a handshake's M110 N0 right after the boot, always passes.
func (s *session) rejectM110(target int64) bool {
	if s.m110Rejected >= s.cfg.RejectM110 || target == s.lastN {
		return false
	}
	s.m110Rejected++
	s.p.recordFault(FaultM110Rejected, 0)
	s.p.log.Info("rejecting an M110 line with a checksum error", "line_number", target, "last_line", s.lastN, "rejected", s.m110Rejected)
	return true
}

// injectResend decides whether Config.ResendRatio rejects line n.
func (s *session) injectResend(n int64, isM110 bool) bool {
	ratio := s.cfg.ResendRatio
	if ratio == 0 || isM110 || n == s.lastInjected {
		return false
	}
	s.ratioCount++
	if s.ratioCount*ratio/100 == (s.ratioCount-1)*ratio/100 {
		return false
	}
	s.lastInjected = n
	return true
}

// lineError rejects a line as Marlin's gcode_line_error does: discard all
// pipelined input, report the error and request the line after the last
// accepted one. The input is dropped before anything is sent, so nothing
// the host sends in reply is lost.
func (s *session) lineError(msg string, got int64) {
	s.p.log.Debug("rejected line", "reason", msg, "line", got, "last_line", s.lastN)
	s.asm.rejected(s.rx.drain())
	s.sendRejection(msg)
	if s.cfg.DuplicateResend {
		// A line that the host had pipelined behind the rejected one fails
		// the sequence check and repeats the request.
		s.p.countDuplicateRequest()
		s.sendRejection(errLineNumber)
	}
}

func (s *session) sendRejection(msg string) {
	last := strconv.FormatInt(s.lastN, 10)
	s.send("Error:" + msg + last)
	s.send(msgResend + strconv.FormatInt(s.lastN+1, 10))
	if s.cfg.okAfterResend() {
		s.send("ok")
	}
}

// acceptRepetierLine checks and queues a line as Repetier's
// GCode::parseAscii and checkAndPushCommand do. After the checksum and
// format checks come M110 and the line number. The line is then queued
// and acknowledged at once.
func (s *session) acceptRepetierLine(line []byte) {
	numbered := line[0] == 'N'
	n := s.lastN
	if numbered {
		n = strtol(line[1:])
	}
	g, ok := s.parseRepetierLine(line, numbered, n)
	if !ok {
		return
	}

	if g.name() == "M110" {
		if v, ok := g.int('N'); ok && !numbered {
			n = int64(v)
		}
		s.lastN, s.m110Line = n, n
		s.p.resetLineStats()
		s.waitingForResend = -1
		s.send("ok")
		return
	}
	if numbered && n != s.lastN+1 {
		if s.waitingForResend >= 0 {
			// Lines the host sent before it saw the resend request.
			s.waitingForResend--
			s.send("skip " + strconv.FormatInt(n, 10))
			s.send("ok")
			return
		}
		s.send("Error:expected line " + strconv.FormatInt(s.lastN+1, 10) + " got " + strconv.FormatInt(n, 10))
		s.requestResend(s.cfg.DuplicateResend)
		return
	}
	if numbered {
		s.lastN = n
		s.p.countAccepted(n)
		if s.rewindDue(n) {
			s.rewind(n)
			return
		}
	}

	g.line, g.hasLine = n, numbered
	cmd := queuedCommand{gcode: g}
	if numbered {
		cmd.after = s.countNumbered()
		s.countForRewind()
	}
	if !s.cfg.EmergencyParser {
		s.processCritical(line)
		if s.killed {
			return
		}
	}
	s.queue = append(s.queue, cmd)
	s.waitingForResend = -1
	s.ok(g)
}

// parseRepetierLine checks the checksum from the first `*` (a line
// without one passes) and the format of a line numbered n, requests a
// resend if either is wrong and returns the parsed command otherwise.
func (s *session) parseRepetierLine(line []byte, numbered bool, n int64) (*gcode, bool) {
	if star := bytes.IndexByte(line, '*'); star >= 0 {
		isM110 := bytes.Contains(line, []byte("M110"))
		intact := strtol(line[star+1:]) == int64(checksum(line[:star]))
		if intact && numbered && !isM110 {
			s.p.countReceived(n, s.lastN)
		}
		if !intact || numbered && (s.injectResend(n, isM110) || isM110 && s.rejectM110(n)) {
			s.send("Error:Wrong checksum")
			s.requestResend(s.cfg.DuplicateResend)
			return nil, false
		}
	}
	g := parseGcode(normalize(line))
	if strings.ContainsAny(g.text, "GMT") {
		s.formatErrors = 0
		return g, true
	}
	// Repetier takes a line without G, M or T for noise, up to three in a
	// row.
	s.formatErrors++
	if s.formatErrors < 3 {
		s.send("Error:Format error")
		s.requestResend(s.cfg.DuplicateResend)
		return nil, false
	}
	return g, true
}

// requestResend is Repetier's GCode::requestResend: an empty line,
// `Resend:<n>` and ok, twice if repeat is set (DuplicateResend). Unlike
// Marlin it keeps the received input, and the lines in it that are out of
// sequence get `skip <n>`.
func (s *session) requestResend(repeat bool) {
	s.asm.reset()
	s.waitingForResend = 14
	if repeat {
		s.p.countDuplicateRequest()
	}
	for range 1 + boolInt(repeat) {
		s.send("")
		s.send(s.resendText(s.lastN + 1))
		s.send("ok")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// countNumbered counts an accepted numbered line and returns what the
// reset-after-lines and fatal-after-lines faults do after it.
func (s *session) countNumbered() afterAction {
	s.acceptedNumbered++
	switch {
	case s.cfg.FatalAfterLines > 0 && !s.fatalDone && s.acceptedNumbered >= s.cfg.FatalAfterLines:
		s.fatalDone = true
		return afterFatal
	case s.cfg.ResetAfterLines > 0 && !s.resetDone && s.acceptedNumbered >= s.cfg.ResetAfterLines:
		s.resetDone = true
		return afterReset
	}
	return afterNothing
}

// processCritical acts on M108, M112 and M410 as soon as their line is
// taken into the queue, as Marlin does without EMERGENCY_PARSER. Like
// Marlin it only looks at lines that start with the command, so numbered
// lines wait for their turn in the queue.
func (s *session) processCritical(line []byte) {
	switch {
	case bytes.HasPrefix(line, []byte("M108")):
		s.breakWait.Store(true)
	case bytes.HasPrefix(line, []byte("M112")):
		s.p.record(normalize(line))
		s.kill(true)
	case bytes.HasPrefix(line, []byte("M410")):
		s.planner.clear()
	}
}
