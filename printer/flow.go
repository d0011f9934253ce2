package printer

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
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

// canSend reports whether a line of wireLen bytes (line feed included)
// may go out now. Windowed sending counts characters: the bytes of every
// unacknowledged line stay below the firmware's RX buffer, so its buffer
// can never overflow, whatever it has already moved to its command
// queue. With ADVANCED_OK the free command slots it reports bound the
// window too.
func (s *session) canSend(wireLen int) bool {
	if s.recovering && time.Now().Before(s.settleUntil) {
		return false
	}
	if len(s.inflight) == 0 {
		return true
	}
	if s.recovering || !s.windowed() || len(s.inflight) >= maxWindowLines {
		return false
	}
	if s.inflightBytes+wireLen > s.p.cfg.RXBufferSize-1 {
		return false
	}
	if s.advancedOK && s.sentSinceOK >= s.freeSlots {
		return false
	}
	// Long-running commands block the firmware's queue; lines behind them
	// would only wait in its buffer, and an emergency line could not
	// overtake them there.
	for _, f := range s.inflight {
		if f.longRun {
			return false
		}
	}
	return true
}

var advancedOKPattern = regexp.MustCompile(`^ok\s+(?:N(\d+)\s+)?P(\d+)\s+B(\d+)`)

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
	if m := advancedOKPattern.FindStringSubmatch(line); m != nil {
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
			acked = 0
			for _, f := range s.inflight {
				if f.n <= n {
					acked++
				}
			}
			if acked == 0 {
				s.log.Debug("ok for a line no longer in flight ignored", "line", line)
				s.pump()
				return
			}
		}
	}
	if len(s.inflight) == 0 {
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
	if withReport && len(line) > 2 && !advancedOKPattern.MatchString(line) {
		if head.owner != nil {
			head.owner.addReply(line)
		}
		s.parseReport(line)
	}
	if o := head.owner; o != nil && !o.acked[head.n] {
		if o.acked == nil {
			o.acked = map[int]bool{}
		}
		o.acked[head.n] = true
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

func (s *session) requeueInflight() {
	var ns []int
	for _, f := range s.inflight {
		ns = append(ns, f.n)
	}
	s.resend = append(ns, s.resend...)
	s.inflight = nil
	s.inflightBytes = 0
}

// dropInflightFrom removes the lines numbered n and later from the
// window; the lines before n are still waiting for their oks.
func (s *session) dropInflightFrom(n int) (dropped int) {
	kept := s.inflight[:0]
	s.inflightBytes = 0
	for _, f := range s.inflight {
		if f.n >= n {
			dropped++
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
		return
	}
	if n <= 1 && s.nextLine > 2 && s.job != nil {
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
	if n == s.nextLine {
		// Everything up to n-1 arrived and n was not sent yet; nothing to
		// repeat.
		s.log.Debug("resend request for a line not yet sent ignored", "line_number", n)
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
			s.fail("resend_loop", "printer keeps requesting line "+strconv.Itoa(n)+" ("+strconv.Itoa(s.resendRepeats)+
				" times); the firmware rejects that line every time", "disconnect", false)
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
	s.log.Warn("printer requested resend", "line_number", n, "next_line", s.nextLine)
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
var displayCodes = map[string]bool{"M117": true, "M118": true}

// sanitizeRejected rewrites a display line that the firmware rejected
// twice in a row: its text loses ':', '*' and ';', and the next resend
// sends that form under the same line number, so the stream goes on. A
// motion line is left alone and ends in the resend loop error.
func (s *session) sanitizeRejected(n int) {
	h, ok := s.history[n]
	if !ok || !displayCodes[CodeOf(h.text)] {
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
