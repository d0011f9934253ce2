package printer

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/printbridge/printbridge/bridge/lazy"
)

// Flow control modes (Config.Flow).
const (
	// FlowAuto sends one line at a time until the firmware is known, then
	// windows for Marlin and for any firmware that sends ADVANCED_OK.
	FlowAuto = "auto"
	// FlowPingPong keeps one line in flight, as OctoPrint does; safe with
	// every firmware.
	FlowPingPong = "ping-pong"
	// FlowWindow always windows, also for firmwares printbridge does not
	// recognise.
	FlowWindow = "window"
)

// ValidateFlow checks a Config.Flow value.
func ValidateFlow(flow string) error {
	switch flow {
	case "", FlowAuto, FlowPingPong, FlowWindow:
		return nil
	}
	return fmt.Errorf("invalid flow control %q: use auto, ping-pong or window", flow)
}

// maxWindowLines caps the lines in flight even when they are short, so a
// rejected line costs a bounded number of duplicate resend requests.
const maxWindowLines = 8

// windowed reports whether more than one line may be in flight.
func (s *session) windowed() bool {
	if s.noWindow {
		return false
	}
	switch s.p.cfg.Flow {
	case FlowPingPong:
		return false
	case FlowWindow:
		return true
	}
	return s.advancedOK || strings.HasPrefix(strings.ToLower(s.firmwareName), "marlin")
}

// canSend reports whether the line text, wireLen bytes on the wire (line
// feed included), may go out now. Windowed sending counts characters:
// the bytes of every unacknowledged line stay below the firmware's RX
// buffer, so its buffer can never overflow, whatever it has already
// moved to its command queue. With ADVANCED_OK the free command slots it
// reports bound the window too. windowBehind adds the rules for lines
// behind a long-running command or an M110.
//
// NOTE: counting does not keep a rejected line's followers whole. On a
// paced line, the bytes still on the wire when the firmware rejects a
// line arrive after it emptied its RX buffer. The rest of a line cut
// there then runs as a command of its own, because Marlin 2.0's
// GCodeQueue::get_serial_commands checks only lines that start with N.
// The virtual printer shows it at 250000 baud with ResendRatio 10.
func (s *session) canSend(text string, wireLen int) bool {
	if s.recovering && time.Now().Before(s.settleUntil) {
		return false
	}
	if len(s.inflight) == 0 {
		return true
	}
	if s.recovering || !s.windowed() || len(s.inflight) >= maxWindowLines {
		return false
	}
	budget, ok := s.windowBehind(text)
	if !ok || s.inflightBytes+wireLen > budget {
		return false
	}
	if s.advancedOK && s.sentSinceOK >= s.freeSlots {
		return false
	}
	return true
}

// emergencyReserve is the wire length of the longest line sendEmergency
// writes out of band, "M108\n", "M112\n" or "M410\n".
const emergencyReserve = len("M108\n")

// windowBehind returns the byte budget for the lines in flight once text
// is added, and false when text must wait for the oks of the lines in
// flight.
//
// Nothing follows an M110 before its ok: the next line's number depends
// on whether the firmware took it.
//
// Behind a long-running command (G28, G29, M109, M190, G4, M400...) the
// window goes on only when the firmware has EMERGENCY_PARSER. Marlin
// moves lines from its RX buffer into its command queue while such a
// command runs. Without the parser it acts on M108, M112 and M410 only
// as it moves them (GCodeQueue::get_serial_commands), and it stops
// moving lines once the queue is full (BUFSIZE). So lines behind the
// command would fill the queue and hold an emergency line back until the
// command ends. The parser reads every received byte in the serial
// interrupt instead, so the emergency line acts whatever is queued, as
// long as its bytes reach the RX buffer. On a UART a full ring drops the
// bytes (MarlinSerial's store_rxd_char), and a stored "M1" without the
// rest of "M108" would run as M1, a pause for the user. On USB CDC the
// bytes would wait in the host until the command ends. So the budget
// keeps emergencyReserve bytes free. The count takes every line in
// flight to be still in the RX buffer, and with the reserve it has room
// for an emergency line, so flushEmergencies sends one at once instead
// of after the command's ok.
//
// Behind a wait that M108 ends (M109, M190, M0, M600...), only lines
// that neither move the machine nor wait follow, see staticLine, because
// a cancel sends M108, and the lines already sent then run at once, with
// the heaters below their targets.
func (s *session) windowBehind(text string) (int, bool) {
	budget := s.p.cfg.RXBufferSize - 1
	for _, f := range s.inflight {
		if f.reset {
			return 0, false
		}
		if !f.longRun {
			continue
		}
		if !s.caps["EMERGENCY_PARSER"] {
			return 0, false
		}
		if interruptibleCode(CodeOf(f.text)) && !staticLine(text) {
			return 0, false
		}
		budget = s.p.cfg.RXBufferSize - 1 - emergencyReserve
	}
	return budget, true
}

// staticCodes only set or report state: no motion, no wait, no tool
// change and no SD print start.
var staticCodes = lazy.Map[string, bool]{Build: func() map[string]bool {
	return map[string]bool{
		"G20": true, "G21": true, "G90": true, "G91": true, "G92": true,
		"M17": true, "M18": true, "M84": true, "M82": true, "M83": true,
		"M104": true, "M140": true, "M141": true, "M105": true, "M114": true, "M115": true,
		"M154": true, "M155": true, "M106": true, "M107": true, "M73": true, "M117": true, "M118": true,
		"M201": true, "M203": true, "M204": true, "M205": true, "M220": true, "M221": true,
		"M300": true, "M486": true, "M555": true, "M569": true, "M900": true, "M907": true,
	}
}}

// staticLine reports whether text may follow a wait that M108 ends. It
// is a list of codes known to be static rather than a list of codes
// that move, so a firmware's own moving codes stop the window too.
func staticLine(text string) bool {
	return staticCodes.Get()[CodeOf(strings.ToUpper(text))]
}

var advancedOKPattern = lazy.Regexp{Expr: `^ok\s+(?:N(\d+)\s+)?P(\d+)\s+B(\d+)`}

func (s *session) handleOK(line string, now time.Time) {
	s.lastProgress = now
	s.timeouts = 0
	if s.probing {
		s.probing = false
		s.noWindow = true
		s.log.Warn("firmware accepted an out-of-sequence line, so it does not check line numbers; sending one line at a time")
		s.pump()
		return
	}
	if s.expectResendOK {
		// The ok that follows a Resend line belongs to the rejected line.
		s.expectResendOK = false
		s.resendWithOK = true
		s.pump()
		return
	}
	acked := 1
	if m := advancedOKPattern.Get().FindStringSubmatch(line); m != nil {
		if !s.advancedOK {
			s.log.Info("firmware sends ADVANCED_OK; windowed sending uses its buffer counts")
		}
		s.advancedOK = true
		s.freeSlots, _ = strconv.Atoi(m[3])
		s.sentSinceOK = 0
		if m[1] != "" {
			// The line number names the line that was processed, so oks lost
			// on the wire cannot shift the accounting.
			n, _ := strconv.Atoi(m[1])
			if s.okNumberUnsent(n) {
				s.reportOKNumber(line, n, now)
				acked = 1
			} else {
				acked = s.ackedByNumber(n)
			}
			if acked == 0 {
				s.countStrayOK()
				s.log.Debug("ok for a line no longer in flight ignored", "line", line)
				s.pump()
				return
			}
		}
	}
	if len(s.inflight) == 0 {
		s.countStrayOK()
		s.log.Debug("ok without a line in flight ignored", "line", line)
		if len(line) > 2 {
			s.parseReport(line)
		}
		return
	}
	for i := 0; i < acked && len(s.inflight) > 0; i++ {
		s.ackHead(line, now, i == acked-1)
	}
	s.pump()
}

// okNumberUnsent reports whether the N of an ADVANCED_OK ok names a line
// that was never sent. Marlin 2.x (GCodeQueue::ok_to_send) sends the N
// prefix of the command it acknowledges, so N is at most the newest
// number sent since the last M110.
//
// NOTE: a late ok for a line sent before an M110 that reset the count to
// a lower number is also taken as unsent once that line is no longer in
// flight.
func (s *session) okNumberUnsent(n int) bool {
	for _, f := range s.inflight {
		if f.wire == n {
			return false
		}
	}
	return n > s.maxWire
}

// reportOKNumber counts an ok whose line number was never sent as serial
// garbage and logs it at most once a minute. The ok then acknowledges one
// line, as a plain ok does: the number is corrupt, and acknowledging
// every line below it would empty the window at once.
func (s *session) reportOKNumber(line string, n int, now time.Time) {
	if f := s.p.metrics.Garbage; f != nil {
		f()
	}
	count, ok := s.okNumberLog.allow(now)
	if !ok {
		return
	}
	s.log.Warn("ok names a line number that was never sent; taken as a plain ok",
		"line", truncateText(line, 80), "ok_line_number", n, "last_sent_line_number", s.maxWire, "count", count)
}

// ackedByNumber returns how many lines in flight an ADVANCED_OK `ok N<n>`
// acknowledges: the line whose N prefix is n and every line before it.
// The prefix is compared, not the count, because an M110 carries the
// number it sets (N0 M110 N0 behind N57). An n not in flight acknowledges
// the lines with lower numbers that were sent before any M110.
func (s *session) ackedByNumber(n int) int {
	for i, f := range s.inflight {
		if f.wire == n {
			return i + 1
		}
	}
	acked := 0
	for _, f := range s.inflight {
		if f.reset || f.wire > n {
			break
		}
		acked++
	}
	return acked
}

// ackHead completes the oldest line in flight. withReport attaches the ok
// line's own report (`ok T:...`) to it.
func (s *session) ackHead(line string, now time.Time, withReport bool) {
	head := s.inflight[0]
	s.inflight = s.inflight[1:]
	s.inflightBytes -= head.size
	if s.recovering && head.n >= s.recoverLine && len(s.resend) == 0 {
		s.recovering = false
	}
	if f := s.p.metrics.OKLatency; f != nil {
		f(now.Sub(head.sentAt))
	}
	if withReport && len(line) > 2 && !advancedOKPattern.Get().MatchString(line) {
		if head.owner != nil {
			head.owner.addReply(line)
		}
		s.parseReport(line)
	}
	if head.reset {
		s.commitLineReset(head)
	}
	s.completeOwnerLine(head)
}

// completeOwnerLine counts an acknowledged line toward its request, once
// per line number however many copies went out.
func (s *session) completeOwnerLine(f sentLine) {
	if o := f.owner; o != nil && !o.acked[f.n] {
		if o.acked == nil {
			o.acked = map[int]bool{}
		}
		o.acked[f.n] = true
		o.pending--
		if o.pending == 0 {
			o.finish(nil)
		}
	}
}

func (s *session) handleWait(now time.Time) {
	// Marlin sends wait when its queue has been empty for a second, so a
	// line still in flight was lost on the wire: send it again. The line
	// number makes a duplicate harmless (the firmware requests a resend).
	if len(s.inflight) > 0 && now.Sub(s.inflight[0].sentAt) > time.Second {
		s.log.Warn("firmware is idle while a line is in flight; sending it again", "line_number", s.inflight[0].n)
		s.requeueInflight()
		s.pump()
	}
}

// requeueInflight schedules every line in flight to be sent again, after
// a communication timeout or a wait line took their oks for lost.
//
// The retries go out one at a time. When only the oks were lost, the
// firmware rejects the first copy with a line-number error and, as
// Marlin's gcode_line_error does, empties its RX buffer. Copies
// pipelined behind the first would be cut there at any byte, and the
// rest of a cut line would then run as an unnumbered command. The edge
// cannot count their bytes either: after the rejection they may be gone
// or still on the wire, and no answer tells which.
func (s *session) requeueInflight() {
	var ns []int
	for _, f := range s.inflight {
		if f.emergency {
			// Its ok may be the one that was lost, or it may still come.
			// An unnumbered line cannot be sent again safely either way.
			continue
		}
		ns = append(ns, f.n)
		if h, ok := s.history[f.n]; ok {
			h.retry = true
			s.history[f.n] = h
		}
	}
	s.resend = append(ns, s.resend...)
	s.inflight = nil
	s.inflightBytes = 0
	if len(s.resend) > 0 {
		s.recovering = true
		s.recoverLine = slices.Max(s.resend)
	}
}

// dropInflightFrom removes the lines numbered n and later from the
// window; the lines before n are still waiting for their oks. An
// emergency line sent after a removed line goes too: the firmware
// emptied its RX buffer when it rejected that line, so no ok follows.
//
// NOTE: an emergency line still on the wire at the rejection arrives
// after the RX flush and runs with an ok, which then completes the next
// line in flight early.
func (s *session) dropInflightFrom(n int) (dropped int) {
	kept := s.inflight[:0]
	s.inflightBytes = 0
	behindDropped := false
	for _, f := range s.inflight {
		if f.emergency && behindDropped {
			continue
		}
		if !f.emergency && f.n >= n {
			dropped++
			behindDropped = true
			continue
		}
		kept = append(kept, f)
		s.inflightBytes += f.size
	}
	s.inflight = kept
	return dropped
}

func (s *session) handleResend(n int) {
	now := time.Now()
	s.lastProgress = now
	if s.probing && n == s.nextLine {
		// The reply to the probe: whether an ok follows shows the style.
		s.probing = false
		s.expectResendOK = true
		s.resendAt = now
		s.requestedLine = n
		return
	}
	if last, ok := ParseLastLine(s.lineError); ok && n != last+1 && s.pendingLine(last+1) {
		// Marlin prints the request for last+1 right after the error
		// line, so a request for another line is one that line noise
		// changed: "Resend: 1" and then "6", or "Resend: 13282ok" where
		// the line feed before the ok became a 2. Resending from last+1
		// is safe even if the error line was the damaged one, because
		// the firmware rejects a line it has and requests the next.
		s.log.Warn("resend request contradicts the firmware's error line before it; resending the line after the error's last line",
			"requested", n, "error", s.lineError, "line_number", last+1)
		n = last + 1
	}
	if n <= 1 && s.nextLine > 2 && s.job != nil && !s.pendingLine(n) {
		// A request for line 1 in the middle of a job means the firmware
		// counts from 0 again: it reset without a banner the edge could
		// read.
		s.log.Warn("firmware requested line 1 in the middle of a print; it has reset", "next_line", s.nextLine)
		s.handleFirmwareReset()
		return
	}
	if f := s.p.metrics.Resend; f != nil {
		f()
	}
	rejection := s.lineError
	s.lineError = ""
	received := s.dropReceivedRetries(n, rejection)
	if s.repeatedRequest(n, rejection) {
		// The firmware requests a line again whose new copy is already
		// on the wire: a pipelined line behind the rejected one failed
		// the sequence check, or the firmware repeats its requests, as
		// Repetier does. Sending n again would make the firmware reject
		// one of the copies and ask once more. The ok that comes with
		// the request belongs to it, not to the copy.
		s.log.Debug("repeated resend request for a line already sent again ignored", "line_number", n, "error", rejection)
		for i := range s.inflight {
			if s.inflight[i].n == n {
				s.inflight[i].suspect = true
			}
		}
		s.expectOKAfterResend(now)
		return
	}
	if n == s.nextLine {
		// Everything up to n-1 arrived and n was not sent yet; nothing to
		// repeat.
		s.log.Debug("resend request for a line not yet sent ignored", "line_number", n)
		if received > 0 {
			// The ok that follows answers the rejected retry, which is
			// no longer in flight.
			s.expectOKAfterResend(now)
		}
		return
	}
	if s.recovering && n == s.resendLast && now.Before(s.settleUntil) {
		// Lines that were already on the wire when the firmware rejected
		// n each fail its sequence check and repeat the request. They are
		// echoes of the first one, not new rejections; the resend waits
		// until they stop, because each echo also makes the firmware
		// discard what it has received.
		s.settleUntil = now.Add(resendSettle)
		s.log.Debug("echoed resend request from a pipelined line", "line_number", n)
		s.requestedLine = n
		s.requeueFrom(n)
		s.expectOKAfterResend(now)
		return
	}
	if n == s.resendLast {
		s.resendRepeats++
		if s.resendRepeats == 2 {
			s.sanitizeRejected(n)
		}
		if s.resendRepeats >= 10 {
			msg := "printer keeps requesting line " + strconv.Itoa(n) + " (" + strconv.Itoa(s.resendRepeats) +
				" times); the firmware rejects that line every time"
			if sent, ok := s.history[n]; ok {
				// A firmware built with a MAX_CMD_SIZE below the edge's
				// --max-line-length cuts long lines, whose checksum then
				// fails on every copy.
				msg += fmt.Sprintf(" (%q, %d bytes on the wire): if the firmware's MAX_CMD_SIZE is below %d, lower --max-line-length to it",
					truncateText(sent.text, 40), wireLength(sent.wire, sent.text), s.p.cfg.MaxLineLength)
			}
			s.fail("resend_loop", msg, "disconnect", false)
			return
		}
	} else {
		s.resendLast = n
		s.resendRepeats = 0
	}
	if _, ok := s.history[n]; !ok || n > s.nextLine {
		msg := "printer requested line " + strconv.Itoa(n) + ", which is not in the resend history (next line " + strconv.Itoa(s.nextLine) + ")"
		if s.job != nil {
			s.fail("resend", msg, "disconnect", false)
			return
		}
		// Idle: re-synchronise the line number instead of failing.
		s.log.Warn(msg + "; resetting line numbers with M110")
		s.resend = nil
		s.requeueInflightAsCommands()
		s.queue = append([]queued{{text: "M110 N" + strconv.Itoa(s.nextLine)}}, s.queue...)
		s.expectOKAfterResend(now)
		return
	}
	if count, ok := s.resendLog.allow(now); ok {
		s.log.Warn("printer requested resend; logged at most once a minute, printbridge_serial_resends_total counts them all",
			"line_number", n, "next_line", s.nextLine, "count", count)
	} else {
		s.log.Debug("printer requested resend", "line_number", n, "next_line", s.nextLine)
	}
	s.requestedLine = n
	dropped := s.requeueFrom(n)
	if dropped > 1 || s.windowed() {
		// Resend one line at a time until n is acknowledged, after the
		// echoes of pipelined lines have stopped (see above).
		s.recovering = true
		s.recoverLine = n
		s.settleUntil = now.Add(resendSettle)
	}
	s.expectOKAfterResend(now)
}

// dropReceivedRetries completes the timeout retries numbered below n, in
// flight or still waiting to be sent, and returns how many there are. A
// request for n with a line-number error (or with no error line) shows
// that the firmware has every line before n, so such a retry repeats a
// line it already took: the firmware answers the copy with a rejection,
// never with an ok, and the ok of the original was lost. Left in
// flight, the retry would hold the window shut and go out again at every
// timeout, and each rejection would request n once more without n being
// sent.
func (s *session) dropReceivedRetries(n int, rejection string) int {
	if rejection != "" && !isLineNumberError(rejection) {
		return 0
	}
	kept := s.inflight[:0]
	var received []sentLine
	for _, f := range s.inflight {
		if f.retry && !f.reset && f.n < n {
			received = append(received, f)
			continue
		}
		kept = append(kept, f)
	}
	s.inflight = kept

	// The retries still waiting to be sent repeat lines the firmware has
	// too. Sending them would only bring one more rejection each, and
	// each rejection empties the firmware's RX buffer again.
	waiting := s.resend[:0]
	for _, r := range s.resend {
		if h, ok := s.history[r]; ok && h.retry && !h.reset && r < n {
			received = append(received, h)
			continue
		}
		waiting = append(waiting, r)
	}
	s.resend = waiting

	for _, f := range received {
		s.log.Debug("retry of a line the firmware already has completed; its ok was lost", "line_number", f.n, "requested", n)
		s.completeOwnerLine(f)
	}
	s.inflightBytes = 0
	for _, f := range s.inflight {
		s.inflightBytes += f.size
	}
	return len(received)
}

// pendingLine reports whether line n is in flight or waiting to be sent
// again.
func (s *session) pendingLine(n int) bool {
	for _, f := range s.inflight {
		if f.n == n {
			return true
		}
	}
	return slices.Contains(s.resend, n)
}

// repeatedRequest reports whether a request for line n repeats one that
// was already answered: a copy of n sent after an earlier request for it
// is in flight, not yet acknowledged, and the request came with a
// line-number error or with no error line at all. A checksum or format error means
// the firmware received that copy damaged, so it is a new rejection.
//
// NOTE: a copy whose N digits were damaged on the wire is also answered
// with a line-number error; it is taken for a repeat, and the line goes
// out again at the communication timeout.
func (s *session) repeatedRequest(n int, rejection string) bool {
	if rejection != "" && !isLineNumberError(rejection) {
		return false
	}
	for _, f := range s.inflight {
		if f.n == n {
			return f.answersRequest
		}
	}
	return false
}

// isLineNumberError reports whether an error line rejects a line for
// its number rather than its content: Marlin's `Line Number is not Last
// Line Number+1` and Repetier's `expected line <n> got <m>`. Marlin's `No
// Checksum with line number` rejects the content.
func isLineNumberError(line string) bool {
	lower := strings.ToLower(line)
	return strings.Contains(lower, "line number is not") || strings.Contains(lower, "expected line")
}

// suspectCopyTimeout is how long a resent line may wait for its ok after
// the firmware requested it again (see sentLine.suspect). An echo's copy
// is acknowledged within milliseconds, unless the planner is full and the
// move ahead of it takes longer. A copy sent again too early costs one
// line-number error, while one waited for in vain costs the whole
// communication timeout.
const suspectCopyTimeout = 5 * time.Second

// resendSettle is how long no further echo of a resend request must
// arrive before the requested line is sent again. Echoes come from lines
// already in transit; at 115200 baud a full 128-byte RX buffer takes
// about 11 ms, so 100 ms leaves room for a busy firmware.
const resendSettle = 100 * time.Millisecond

// requeueFrom drops the lines numbered n and later from the window and
// schedules them, in order, for sending again. It returns how many lines
// were in flight from n on.
func (s *session) requeueFrom(n int) int {
	dropped := s.dropInflightFrom(n)
	s.resend = s.resend[:0]
	for i := n; i < s.nextLine; i++ {
		if _, ok := s.history[i]; ok {
			s.resend = append(s.resend, i)
		}
	}
	return dropped
}

// expectOKAfterResend holds sending until the ok that Marlin 1.1 and 2.1
// send after a Resend line, unless the firmware is known to omit it
// (Marlin 2.0.x, Prusa 3.1), in which case sending resumes at once.
func (s *session) expectOKAfterResend(now time.Time) {
	if s.resendWithoutOK {
		s.pump()
		return
	}
	s.expectResendOK = true
	s.resendAt = now
}

// missedResendOK runs when no ok followed a Resend line: the firmware is
// one that omits it, which later resends take into account.
func (s *session) missedResendOK() {
	s.expectResendOK = false
	if !s.resendWithOK && !s.resendWithoutOK {
		s.log.Info("firmware sends no ok after Resend; not waiting for one from now on")
		s.resendWithoutOK = true
	}
	s.pump()
}

func (s *session) requeueInflightAsCommands() {
	var back []queued
	for _, f := range s.inflight {
		if f.emergency {
			continue
		}
		back = append(back, queued{text: f.text, owner: f.owner})
	}
	s.inflight = nil
	s.inflightBytes = 0
	s.queue = append(back, s.queue...)
}

// probeResendStyle learns whether the firmware sends an ok after a Resend
// line, before any line is pipelined: Marlin 1.1 and 2.1 do, Marlin 2.0.x
// and Prusa 3.1 do not, and in a window the two cannot be distinguished from
// the oks of the lines queued before the rejected one. It writes one line
// with a skipped line number, which the firmware rejects without
// executing, and times the answer while nothing else is in flight.
func (s *session) probeResendStyle() {
	s.enqueue(queued{marker: func() {
		wire := FormatNumbered(s.nextLine+1, "M105")
		s.log.Info("probing the firmware's resend style with an out-of-sequence line", "line", wire)
		s.probing = true
		s.probeAt = time.Now()
		s.remember("Send: " + wire)
		if _, err := s.port.Write([]byte(wire + "\n")); err != nil {
			s.fail("connection", "write to serial port "+s.p.cfg.Port+" failed: "+err.Error(), "disconnect", false)
		}
	}})
}

// displayCodes carry free text that old firmwares misparse: Creality's
// splits a command at each ':' and some take the first '*' as the start
// of the checksum, so the same line is rejected every time.
var displayCodes = lazy.Map[string, bool]{Build: func() map[string]bool {
	return map[string]bool{"M117": true, "M118": true}
}}

// sanitizeRejected rewrites a display line that the firmware rejected
// twice in a row: its text loses ':', '*' and ';', and the next resend
// sends that form under the same line number, so the stream goes on. A
// motion line is left alone and ends in the resend loop error.
func (s *session) sanitizeRejected(n int) {
	h, ok := s.history[n]
	if !ok || !displayCodes.Get()[CodeOf(h.text)] {
		return
	}
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ':', '*', ';':
			return ' '
		}
		return r
	}, h.text)
	clean = strings.Join(strings.Fields(clean), " ")
	if clean == h.text {
		return
	}
	s.log.Warn("firmware rejects a display line every time; sending it without ':', '*' and ';'", "line_number", n, "line", h.text, "sent", clean)
	h.text = clean
	s.history[n] = h
}

// countStrayOK counts an ok that acknowledged no line. A few come after a
// communication timeout, when the firmware had the line after all. Many
// come from a firmware or a device on the line that sends oks of its own.
func (s *session) countStrayOK() {
	if f := s.p.metrics.StrayOK; f != nil {
		f()
	}
}
