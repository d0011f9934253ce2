package printer

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

func (s *session) handleRequest(r request) error {
	if strings.HasPrefix(r.kind, "sd_") {
		return s.handleSDRequest(r)
	}
	switch r.kind {
	case reqGcode:
		return s.queueGcode(r)
	case reqSelect:
		if !s.state.Operational() && s.state != StateOffline && s.state != StateClosed && s.state != StateClosedWithError {
			return fmt.Errorf("cannot select a file in state %s", s.state)
		}
		if err := s.selectFile(r.path); err != nil {
			return err
		}
		if r.done != nil {
			r.done(nil, nil)
		}
		return nil
	case reqStart:
		return s.startJob(r.path, r.done)
	case reqPause:
		return s.pauseJob(r.done)
	case reqResume:
		return s.resumeJob(r.done)
	case reqCancel:
		if s.sd.transfer != nil {
			return s.cancelTransfer(r.done)
		}
		return s.cancelJob(r.done, "")
	case reqEvent:
		s.emit(r.path, r.payload)
		return nil
	case reqSettings:
		s.applySettings(*r.settings)
		return nil
	case reqDeselect:
		if s.selected == nil || s.selected.origin != "" || s.selected.path != r.path {
			return nil
		}
		if s.job != nil {
			return fmt.Errorf("%s is printing; cancel the print first", r.path)
		}
		s.selected = nil
		s.printerZ = nil
		s.emit(bridge.EventFileDeselected, nil)
		return nil
	case reqConnect:
		if s.port != nil {
			return fmt.Errorf("already connected (state %s)", s.state)
		}
		s.wantConnected = true
		s.attempts = 0
		s.outageEmitted = false
		s.nextAttempt = time.Now()
		s.pendingOnConn = append(s.pendingOnConn, r.done)
		return nil
	case reqDisconnect:
		if s.port == nil && !s.wantConnected {
			return fmt.Errorf("not connected (state %s)", s.state)
		}
		if s.pendingDisconnect != nil {
			return errors.New("already disconnecting: waiting for the beforePrinterDisconnected script to be sent")
		}
		s.wantConnected = false
		s.finishConnectWaiters(errors.New("disconnect requested"))
		if s.port != nil {
			s.emit("Disconnecting", nil)
			if s.state.Operational() && s.state != StateConnecting {
				// OctoPrint sends beforePrinterDisconnected on a clean
				// close and waits for its queues to drain.
				queuedBefore := len(s.queue)
				s.runScript(ScriptBeforePrinterDisconnected, nil, nil)
				if len(s.queue) > queuedBefore {
					s.pendingDisconnect = &pendingDisconnect{done: r.done, deadline: time.Now().Add(beforeDisconnectWait)}
					s.enqueue(queued{marker: s.finishDisconnect})
					s.pump()
					return nil
				}
			}
			s.disconnect("disconnect requested", false)
		} else {
			// The edge was retrying after a connection error: the
			// request ends the outage, and with it the error state.
			s.lastError = ""
			s.setState(StateClosed)
		}
		if r.done != nil {
			r.done(nil, nil)
		}
		return nil
	}
	return fmt.Errorf("unknown request %q", r.kind)
}

func (s *session) queueGcode(r request) error {
	if s.port == nil || !s.state.Operational() {
		return fmt.Errorf("printer is not connected (state %s); send a connect command first", s.state)
	}
	var lines []string
	for _, l := range r.lines {
		if err := s.checkLine(l); err != nil {
			return err
		}
		if cmd := NormalizeCommand(l); cmd != "" {
			lines = append(lines, cmd)
		}
	}
	if len(lines) == 0 {
		if r.done != nil {
			r.done(nil, nil)
		}
		return nil
	}
	req := &gcodeRequest{done: r.done, source: r.source}
	for _, l := range lines {
		// Marlin built with GCODE_CASE_INSENSITIVE runs m112 too, so the
		// emergency check ignores case (the events keep OctoPrint's
		// case-sensitive matching).
		code := CodeOf(strings.ToUpper(l))
		if code == "M112" || (emergencyCodes.Get()[code] && s.caps["EMERGENCY_PARSER"]) {
			s.sendEmergency(l, code)
			if s.port == nil {
				// M112 closed the connection; the command is done, since
				// the stop went out.
				req.addReply("emergency stop sent; the firmware is halted until it is reset")
				req.finish(nil)
				return nil
			}
			continue
		}
		req.pending++
		s.enqueue(queued{text: l, owner: req})
	}
	if req.pending == 0 {
		req.finish(nil)
	}
	s.pump()
	return nil
}

// finishDisconnect closes the port once the beforePrinterDisconnected
// script has been acknowledged, or its wait has timed out.
func (s *session) finishDisconnect() {
	d := s.pendingDisconnect
	if d == nil {
		return
	}
	s.pendingDisconnect = nil
	s.disconnect("disconnect requested", false)
	if d.done != nil {
		d.done(nil, nil)
	}
}
