package virtual

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// randomSource is the seeded generator behind the random quirks. The
// firmware, report and link goroutines share it.
type randomSource struct {
	mu sync.Mutex // guards r
	r  *rand.Rand
}

func newRandomSource(seed int64) *randomSource {
	return &randomSource{r: rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))}
}

// percent reports true in pct of 100 calls on average.
func (rs *randomSource) percent(pct int) bool {
	if pct <= 0 {
		return false
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.r.IntN(100) < pct
}

// chance reports true with probability p.
func (rs *randomSource) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.r.Float64() < p
}

// intN returns a number in [0, n).
func (rs *randomSource) intN(n int) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.r.IntN(n)
}

// otherByte returns a random byte that differs from b and from every byte
// in avoid.
func (rs *randomSource) otherByte(b byte, avoid string) byte {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for {
		c := byte(rs.r.IntN(256))
		if c != b && strings.IndexByte(avoid, c) < 0 {
			return c
		}
	}
}

// Fault is a simulated fault and its place in the record of executed
// commands.
type Fault struct {
	// Kind is FaultRewind, FaultReset or FaultM110Rejected.
	Kind string
	// At is the number of commands executed before the fault.
	At int
	// Lines is, for a rewind, how many of the commands executed before At
	// the firmware runs again right after it: while the host sends only
	// numbered lines, Executed()[At:At+Lines] repeats
	// Executed()[At-Lines:At].
	Lines int
}

// Faults returns the simulated rewinds, resets and M110 rejections so
// far, in order.
func (p *Printer) Faults() []Fault {
	p.recordMu.Lock()
	defer p.recordMu.Unlock()
	return append([]Fault(nil), p.faults...)
}

func (p *Printer) recordFault(kind string, lines int) {
	p.recordMu.Lock()
	defer p.recordMu.Unlock()
	p.faults = append(p.faults, Fault{Kind: kind, At: len(p.executed), Lines: lines})
}

// isOKLine reports whether an output line acknowledges a command.
func isOKLine(line string) bool { return strings.HasPrefix(line, "ok") }

// send writes one output line to the host, after an out-of-turn
// temperature report if AutoreportMidline picks this line.
func (s *session) send(line string) {
	s.p.log.Debug("send", "line", line)
	out := s.outLine(line)
	if report, glued := s.midlineReport(); report != "" {
		out.glue = glued
		s.p.link.writeLines(s.ctx, outLine{text: report, hold: glued}, out)
		return
	}
	s.p.link.writeLines(s.ctx, out)
}

// sendReport writes a periodic report, which never gets another report
// inserted in front of it.
func (s *session) sendReport(line string) {
	s.p.log.Debug("send", "line", line)
	s.p.link.writeLines(s.ctx, s.outLine(line))
}

// outLine applies GluedOKs to a line: an ok may continue the held line,
// and output of a running command holds its line feed back so that an ok
// can follow it. Keep-alive lines are never held, because a host times
// out without them.
func (s *session) outLine(line string) outLine {
	out := outLine{text: line}
	if s.cfg.GluedOKs == 0 {
		return out
	}
	switch {
	case isOKLine(line):
		out.glue = s.p.rand.percent(s.cfg.GluedOKs)
	case s.busy.Load() && line != s.busyLine() && okMayGlue(line):
		out.hold = true
	}
	return out
}

// okMayGlue reports whether GluedOKs may put an ok right after line: a
// line that ends in a digit or one of : ? " ) ., or a `File deleted:`
// line. After a letter the ok would read as the end of a word (`echo:SD
// card ok`), which no host can tell from a glued one, so such a line
// keeps its line feed.
func okMayGlue(line string) bool {
	if line == "" {
		return false
	}
	if strings.HasPrefix(line, "File deleted") {
		return true
	}
	last := line[len(line)-1]
	return last >= '0' && last <= '9' || strings.IndexByte(`:?").`, last) >= 0
}

// midlineReport returns the temperature report that AutoreportMidline
// puts in front of the next output line, if any, and whether the line is
// glued to it.
func (s *session) midlineReport() (string, bool) {
	if s.cfg.AutoreportMidline == 0 || s.tempInterval.Load() == 0 || s.halted.Load() {
		return "", false
	}
	if !s.p.rand.percent(s.cfg.AutoreportMidline) {
		return "", false
	}
	return s.autoReportText(), s.p.rand.intN(2) == 0
}

// dropOK decides whether DroppedOKs swallows the next command ok. Like
// ResendRatio it drops an exact share of the oks, spread evenly.
func (s *session) dropOK() bool {
	pct := s.cfg.DroppedOKs
	if pct == 0 {
		return false
	}
	s.okCount++
	return s.okCount*pct/100 != (s.okCount-1)*pct/100
}

// corruptRX applies RXByteErrors to a received byte of the line being
// assembled.
func (s *session) corruptRX(c byte) byte {
	if s.cfg.RXByteErrors == 0 || c == '\n' || c == '\r' || c == '*' || !s.asm.numbered() {
		return c
	}
	if !s.p.rand.chance(s.cfg.RXByteErrors) {
		return c
	}
	bad := s.p.rand.otherByte(c, "\x00\n\r:*")
	s.p.log.Debug("corrupted received byte", "byte", c, "replacement", bad)
	return bad
}

// countForRewind counts an accepted numbered line toward the next rewind
// (Config.RewindEvery).
func (s *session) countForRewind() {
	if s.cfg.RewindEvery > 0 {
		s.sinceRewind++
	}
}

// rewindDue reports whether numbered line n gets a rewind instead of
// being queued. The rewind never reaches back to the line of
// the last M110 or before it.
func (s *session) rewindDue(n int64) bool {
	if s.cfg.RewindEvery == 0 || s.sinceRewind < s.cfg.RewindEvery {
		return false
	}
	return s.rewindTarget(n) > s.m110Line
}

// rewindTarget returns the first line that a rewind at line n requests:
// RewindLines back, or the oldest line still queued, whose command is
// dropped.
func (s *session) rewindTarget(n int64) int64 {
	target := n - int64(s.cfg.RewindLines)
	if len(s.queue) > 0 {
		target = min(target, s.lastExecutedN+1)
	}
	return target
}

// rewind replies to line n the way Prusa's filament sensor checkpoint does:
// the queued commands are dropped, the line number goes back and the host
// is asked for the lines from the target on, which the firmware then runs
// again.
func (s *session) rewind(n int64) {
	target := s.rewindTarget(n)
	repeat := max(0, int(s.lastExecutedN-target+1))
	s.p.log.Info("simulating firmware rewind", "line", n, "resend_from", target, "commands_run_again", repeat)
	s.p.recordFault(FaultRewind, repeat)
	s.sinceRewind = 0
	s.queue = nil
	s.flushed = true
	s.lastN = target - 1
	s.rx.drain()
	s.asm.reset()
	for range 1 + boolInt(s.cfg.DuplicateResend) {
		s.send(s.resendText(target))
		if s.repetierOrOKAfterResend() {
			s.send("ok")
		}
	}
	if s.cfg.DuplicateResend {
		s.p.countDuplicateRequest()
	}
}

// resendText formats a resend request in the dialect's spelling.
func (s *session) resendText(n int64) string {
	if s.cfg.repetier() {
		return "Resend:" + strconv.FormatInt(n, 10)
	}
	return msgResend + strconv.FormatInt(n, 10)
}

// repetierOrOKAfterResend reports whether a Resend line is followed by
// ok: always in Repetier, per ResendStyle otherwise.
func (s *session) repetierOrOKAfterResend() bool {
	return s.cfg.repetier() || s.cfg.okAfterResend()
}

// repetierResendAfter is how long Repetier waits for the rest of a
// started line, or for the line it requested, before it requests the
// line again (GCode::readFromSerial).
const repetierResendAfter = 200 * time.Millisecond

// resetStart returns the output that begins the banner of a simulated
// reset: `start`, after NUL bytes (ResetNUL) and after a temperature
// report cut off at a random byte (ResetMidLine).
func (s *session) resetStart() []outLine {
	start := outLine{text: "start"}
	if s.cfg.ResetNUL {
		start.text = strings.Repeat("\x00", 1+s.p.rand.intN(3)) + start.text
	}
	if !s.cfg.ResetMidLine {
		return []outLine{start}
	}
	report := s.autoReportText()
	cut := 1 + s.p.rand.intN(len(report)-1)
	start.glue = true
	return []outLine{{text: report[:cut], hold: true}, start}
}
