package printer

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/lazy"
)

func (s *session) enqueue(q queued) {
	s.queue = append(s.queue, q)
}

// pump sends while the window has room: resends first, then commands
// and markers, then the next job line. Each line is measured before it
// goes out, so the window is checked with its real wire length.
func (s *session) pump() {
	s.flushEmergencies()
	for s.port != nil && !s.expectResendOK && !s.probing && s.state != StateConnecting {
		if len(s.resend) > 0 {
			h, ok := s.history[s.resend[0]]
			if !ok {
				s.resend = s.resend[1:]
				continue
			}
			if !s.canSend(h.text, wireLength(h.wire, h.text)+1) {
				return
			}
			s.resend = s.resend[1:]
			s.writeLine(h)
			continue
		}
		if len(s.queue) > 0 {
			q := s.queue[0]
			if q.marker != nil {
				if len(s.inflight) > 0 {
					return
				}
				s.queue = s.queue[1:]
				q.marker()
				continue
			}
			if s.suppress(q.text) {
				s.queue = s.queue[1:]
				s.dropQueuedLine(q)
				continue
			}
			if !q.toolScripts && CodeOf(q.text) == "T" {
				if before, after, ok := s.toolChangeLines(q.text); ok {
					s.queue = append(wrapToolChange(before, after, q), s.queue[1:]...)
					continue
				}
			}
			if !s.canSend(q.text, s.queuedWireLength(q.text)+1) {
				return
			}
			s.queue = s.queue[1:]
			if q.text == "M105" {
				s.pollQueued = false
			}
			s.writeNumbered(q, true)
			continue
		}
		if s.sd.transfer != nil {
			if !s.sd.transfer.streaming || s.sd.transfer.eof || !s.capsApplied {
				return
			}
			if !s.nextTransferLine() {
				if len(s.queue) > 0 || len(s.resend) > 0 {
					continue
				}
				return
			}
			continue
		}
		// Job lines wait until the connection setup (M115, capabilities,
		// auto-report, resend style probe) is done, so the setup lines
		// never land between the lines of a file.
		if s.job == nil || s.state != StatePrinting || !s.capsApplied {
			return
		}
		if !s.nextJobLine() {
			// The end of the file queues M400 and a marker, which must go
			// out now: no ok may be pending that would pump again.
			if len(s.queue) > 0 || len(s.resend) > 0 {
				continue
			}
			return
		}
	}
}

// queuedWireLength is the wire length text gets as the next numbered
// line; an M110 carries its own number.
func (s *session) queuedWireLength(text string) int {
	text = ToASCII(text)
	if CodeOf(text) == "M110" {
		if v, ok := Param(strings.TrimPrefix(text, "M110"), 'N'); ok {
			return wireLength(int(v), text)
		}
		return wireLength(0, text)
	}
	return wireLength(s.nextLine, text)
}

// writeNumbered numbers a new line and sends it. fireEvents is false
// only for the handshake.
//
// An M110 goes out as N<k> M110 N<k> but keeps the old count: it takes
// the next number of the current numbering as its place in the history,
// because until its ok the firmware still counts the old way, and if it
// rejects the M110 it requests that number. commitLineReset switches to
// k+1 when the M110 is acknowledged.
func (s *session) writeNumbered(q queued, fireEvents bool) {
	text := ToASCII(q.text)
	code := CodeOf(text)
	if fireEvents {
		s.queuingPhase(text, code)
	}
	n := s.nextLine
	s.nextLine++
	entry := sentLine{n: n, wire: n, text: text, owner: q.owner}
	if CodeOf(strings.ToUpper(text)) == "M110" {
		entry.wire = m110Target(text)
		entry.reset = true
	}
	s.writeLine(entry)
	if fireEvents {
		s.sentPhase(text, code)
	}
}

// m110Target returns the line number an M110 sets: its N parameter, or
// 0 without one.
func m110Target(text string) int {
	if v, ok := Param(strings.TrimPrefix(strings.ToUpper(text), "M110"), 'N'); ok {
		return int(v)
	}
	return 0
}

// commitLineReset switches to the numbering of an acknowledged M110: the
// next line is its number plus one, and the lines before it can no
// longer be requested.
func (s *session) commitLineReset(m sentLine) {
	if len(s.inflight) > 0 {
		// canSend keeps lines behind an M110 until its ok; a line found
		// here was numbered in the old count and would be rejected.
		s.log.Warn("lines in flight behind an acknowledged M110 are sent again in the new numbering", "lines", len(s.inflight))
		s.requeueInflightAsCommands()
	}
	s.log.Debug("line numbers reset", "next_line", m.wire+1)
	s.nextLine = m.wire + 1
	m.n = m.wire
	s.history = map[int]sentLine{m.n: m}
	s.historyOrder = []int{m.n}
	s.resend = nil
	s.resendLast = -1
	s.resendRepeats = 0
	s.requestedLine = -1
	s.recovering = false
}

// writeLine sends h with the number of its N prefix and records it in
// the history under its number in the firmware's count.
func (s *session) writeLine(h sentLine) {
	n := h.n
	s.wireBuffer = AppendNumbered(s.wireBuffer[:0], h.wire, h.text)
	wire := s.wireBuffer
	h.sentAt = time.Now()
	h.longRun = longRunningCodes.Get()[CodeOf(h.text)]
	h.answersRequest = n == s.requestedLine
	h.size = len(wire) + 1
	entry := h
	if _, ok := s.history[n]; !ok {
		s.historyOrder = append(s.historyOrder, n)
		if len(s.historyOrder) > s.p.cfg.HistorySize {
			delete(s.history, s.historyOrder[0])
			s.historyOrder = s.historyOrder[1:]
		}
	}
	// Only the copy in flight is a timeout retry; a later resend of n
	// from the history is not, unless another timeout marks it again.
	entry.retry = false
	s.history[n] = entry
	if h.reset || h.wire > s.maxWire {
		s.maxWire = h.wire
	}
	s.inflight = append(s.inflight, h)
	s.inflightBytes += entry.size
	s.sentSinceOK++
	s.remember("Send: " + string(wire))
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("send", "line", string(wire))
	}
	s.wireBuffer = append(s.wireBuffer, '\n')
	if _, err := s.port.Write(s.wireBuffer); err != nil {
		s.fail("connection", fmt.Sprintf("write to serial port %s failed: %v", s.p.cfg.Port, err), "disconnect", false)
		return
	}
	if f := s.p.metrics.LineSent; f != nil {
		f()
	}
}

// wireLength returns the length of text once numbered with n.
func wireLength(n int, text string) int {
	return numberedLength(n, text)
}

// queuingPhase fires the events that OctoPrint fires when a line is
// queued for sending (Home for G28, Alert for M300, ...).
func (s *session) queuingPhase(text, code string) {
	if name, ok := gcodeEvents.Get()[code]; ok && code != "M112" {
		s.emit(name, nil)
	}
}

// sentPhase tracks what a sent line changes: Z (ZChange), tool
// (ToolChange), feed rate and heater targets.
func (s *session) sentPhase(text, code string) {
	switch code {
	case "G0", "G1":
		if f, ok := Param(text, 'F'); ok {
			s.feedrate = &f
		}
		if z, ok := ParseZ(text); ok {
			s.onZ(z)
		}
	case "G28":
		if f, ok := Param(text, 'F'); ok {
			s.feedrate = &f
		}
	case "T":
		n, err := strconv.Atoi(strings.TrimPrefix(strings.Fields(text)[0], "T"))
		if err == nil {
			old := s.tool
			s.toolBefore = old
			s.tool = n
			s.emit(bridge.EventToolChange, bridge.Payload{{Key: "old", Value: old}, {Key: "new", Value: n}})
		}
	case "M104", "M109":
		s.setTarget(text, "tool"+strconv.Itoa(s.toolParam(text)))
	case "M140", "M190":
		s.setTarget(text, "bed")
	case "M141", "M191":
		s.setTarget(text, "chamber")
	case "M155":
		if v, ok := Param(text, 'S'); ok {
			s.autoReport = v > 0 && s.caps["AUTOREPORT_TEMP"]
		}
	case "M154":
		if v, ok := Param(text, 'S'); ok {
			s.posAutoReport = v > 0 && s.caps["AUTOREPORT_POS"]
		}
	case "M27":
		if v, ok := Param(text, 'S'); ok {
			s.sdAutoReport = v > 0 && s.caps["AUTOREPORT_SD_STATUS"]
		}
	}
}

// dropQueuedLine accounts a suppressed line of a command as done, so the
// command still gets its reply.
func (s *session) dropQueuedLine(q queued) {
	o := q.owner
	if o == nil {
		return
	}
	o.addReply("suppressed: " + q.text)
	o.pending--
	if o.pending == 0 {
		o.finish(nil)
	}
}

// wrapToolChange returns the queue entries of a T<n> between the lines
// of the tool change scripts. The T<n> keeps its command's owner.
func wrapToolChange(before, after []string, q queued) []queued {
	out := make([]queued, 0, len(before)+len(after)+1)
	for _, l := range before {
		out = append(out, queued{text: l, toolScripts: true})
	}
	q.toolScripts = true
	out = append(out, q)
	for _, l := range after {
		out = append(out, queued{text: l, toolScripts: true})
	}
	return out
}

func (s *session) toolParam(text string) int {
	if v, ok := Param(text, 'T'); ok {
		return int(v)
	}
	return s.tool
}

func (s *session) setTarget(text, heater string) {
	v, ok := Param(text, 'S')
	if !ok {
		v, ok = Param(text, 'R')
	}
	if !ok {
		return
	}
	cur := s.temps[heater]
	cur.Target = &v
	s.temps[heater] = cur
}

// onZ applies OctoPrint's two gates: the connection's last Z and the
// printer's tracked Z, which is reset on file select, print start,
// cancel and disconnect. Every distinct value fires, Z-hops included.
func (s *session) onZ(z float64) {
	if s.commZ != nil && *s.commZ == z {
		return
	}
	s.commZ = &z
	if s.printerZ != nil && *s.printerZ == z {
		return
	}
	var old any
	if s.printerZ != nil {
		old = *s.printerZ
	}
	s.printerZ = &z
	s.emit(bridge.EventZChange, bridge.Payload{{Key: "new", Value: z}, {Key: "old", Value: old}})
}

// emergencyCodes skip every queue, as OctoPrint's emergencyCommands.
var emergencyCodes = lazy.Map[string, bool]{Build: func() map[string]bool {
	return map[string]bool{"M112": true, "M108": true, "M410": true}
}}

// sendEmergency writes an emergency line out of band. M112 goes at
// once and then ends the connection: the firmware is halted and needs a
// reset. M108 and M410 go as soon as their bytes fit in the firmware's
// RX buffer next to the lines in flight (flushEmergencies).
func (s *session) sendEmergency(text, code string) {
	if code != "M112" {
		s.emergencies = append(s.emergencies, code)
		s.flushEmergencies()
		if len(s.emergencies) > 0 {
			s.log.Warn("emergency command waits for room in the firmware's RX buffer; it goes out once oks of the lines in flight free it",
				"command", text, "bytes_in_flight", s.inflightBytes)
		}
		return
	}
	s.log.Warn("emergency command sent out of band", "command", text)
	if _, err := s.port.Write([]byte(code + "\n")); err != nil {
		s.fail("connection", fmt.Sprintf("write to serial port %s failed: %v", s.p.cfg.Port, err), "disconnect", false)
		return
	}
	n := s.nextLine
	s.nextLine++
	_, _ = s.port.Write([]byte(FormatNumbered(n, "M112") + "\n"))
	// Closing the port at once can drop bytes the firmware has not read
	// yet (a pty discards them); give it a moment to take the stop.
	time.Sleep(100 * time.Millisecond)
	s.emit(bridge.EventEStop, nil)
	s.wantConnected = false
	s.fail("firmware", "emergency stop (M112) sent; reset the printer, then connect again", "emergency", false)
}

// flushEmergencies writes the waiting M108 and M410 lines, unnumbered,
// while their bytes fit in the firmware's RX buffer next to the lines
// in flight. Marlin's emergency parser acts on them in its serial
// interrupt, but the line also stays in the RX buffer and later runs
// from the command queue, which sends an ok, as OctoPrint's
// _emergency_force_send also expects. So each one joins the lines in
// flight: its ok completes it in its place, and its bytes count in the
// window. A full RX buffer would drop the line's tail on a UART, and
// the stored rest, such as "M1", would glue to the next line and run.
// Behind a long-running command the window keeps emergencyReserve bytes
// free, so the first emergency line goes at once there. Elsewhere it
// waits for at most the oks of the lines in flight.
func (s *session) flushEmergencies() {
	for len(s.emergencies) > 0 && s.port != nil {
		code := s.emergencies[0]
		size := len(code) + 1
		if len(s.inflight) > 0 && s.inflightBytes+size > s.p.cfg.RXBufferSize-1 {
			return
		}
		s.log.Warn("emergency command sent out of band", "command", code)
		s.emergencies = s.emergencies[1:]
		s.inflight = append(s.inflight, sentLine{n: -1, wire: -1, text: code, emergency: true, size: size, sentAt: time.Now()})
		s.inflightBytes += size
		s.sentSinceOK++
		s.remember("Send: " + code)
		if _, err := s.port.Write([]byte(code + "\n")); err != nil {
			s.fail("connection", fmt.Sprintf("write to serial port %s failed: %v", s.p.cfg.Port, err), "disconnect", false)
			return
		}
	}
}

// checkLine validates a line before it is queued.
func (s *session) checkLine(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return fmt.Errorf("line %q contains a line break", line)
	}
	// The line number grows while the line waits in the queue; measure
	// with a margin so a line accepted now is not too long when sent.
	if l := wireLength(s.nextLine+len(s.queue)+1000, ToASCII(line)); l > s.p.cfg.MaxLineLength {
		return fmt.Errorf("line %q is %d bytes with line number and checksum, over the firmware's maximum of %d; shorten it or raise the edge's max-line-length if the firmware's MAX_CMD_SIZE is larger",
			truncateText(line, 40), l, s.p.cfg.MaxLineLength)
	}
	return nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
