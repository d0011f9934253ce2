package printer

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/lazy"
)

// DefaultBlockedCommands is OctoPrint's serial.blockedCommands default:
// M0 and M1 wait for a button press on the printer, which stalls the
// serial stream until someone walks up to it.
var DefaultBlockedCommands = []string{"M0", "M1"}

// pausingCodes pause a running print when they come from its file, as
// OctoPrint's serial.pausingCommands default (M0, M1, M25).
var pausingCodes = lazy.Map[string, bool]{Build: func() map[string]bool {
	return map[string]bool{"M0": true, "M1": true, "M25": true}
}}

var commandCodePattern = lazy.Regexp{Expr: `^([GM]\d+(\.\d+)?|T)$`}

// ParseCommandList reads a comma- or space-separated list of G-code
// codes (M0, G28, T), as the blocked and ignored commands settings take.
func ParseCommandList(list string) ([]string, error) {
	out := []string{}
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		code := strings.ToUpper(f)
		if !commandCodePattern.Get().MatchString(code) {
			return nil, fmt.Errorf("invalid command code %q: give codes such as M0, G28 or T, separated by commas", f)
		}
		if code == "M112" {
			return nil, fmt.Errorf("M112 is the emergency stop and cannot be blocked or ignored; remove it")
		}
		out = append(out, code)
	}
	return out, nil
}

// suppression returns why text must not be sent, or "" when it may be:
// its code is blocked (severity warn) or ignored (info), it heats a bed
// or chamber that the printer profile does not have, or it selects a tool
// that the profile does not have or that the firmware reported invalid.
func (s *session) suppression(text string) (message, severity string) {
	code := CodeOf(text)
	st := s.settings
	switch {
	case code == "":
		return "", ""
	case slices.Contains(st.BlockedCommands, code):
		return fmt.Sprintf("%s was not sent: it is in the edge's blocked commands (%s); remove it there to send it",
			code, strings.Join(st.BlockedCommands, ", ")), "warn"
	case slices.Contains(st.IgnoredCommands, code):
		return fmt.Sprintf("%s was not sent: it is in the edge's ignored commands", code), "info"
	case (code == "M140" || code == "M190") && !st.Profile.HeatedBed:
		return fmt.Sprintf("%s was not sent: printer profile %s has no heated bed; set heatedBed: true if the printer has one",
			code, st.Profile.ID), "warn"
	case (code == "M141" || code == "M191") && !st.Profile.HeatedChamber:
		return fmt.Sprintf("%s was not sent: printer profile %s has no heated chamber; set heatedChamber: true if the printer has one",
			code, st.Profile.ID), "warn"
	case code == "T":
		n, ok := toolNumber(text)
		if !ok {
			return "", ""
		}
		if s.invalidTools[n] {
			return fmt.Sprintf("T%d was not sent: the firmware reported tool %d as invalid", n, n), "warn"
		}
		if n >= st.Profile.Extruder.Count {
			return fmt.Sprintf("T%d was not sent: printer profile %s has %d extruder(s), numbered from 0; fix extruder.count if the printer has more",
				n, st.Profile.ID, st.Profile.Extruder.Count), "warn"
		}
	}
	return "", ""
}

// suppress fires CommandSuppressed and returns true when text must not be
// sent.
func (s *session) suppress(text string) bool {
	message, severity := s.suppression(text)
	if message == "" {
		return false
	}
	if severity == "info" {
		s.log.Info("command suppressed", "command", text, "reason", message)
	} else {
		s.log.Warn("command suppressed", "command", text, "reason", message)
	}
	if f := s.p.metrics.Suppressed; f != nil {
		f()
	}
	s.emit(bridge.EventCommandSuppressed, bridge.Payload{
		{Key: "command", Value: text}, {Key: "message", Value: message}, {Key: "severity", Value: severity},
	})
	return true
}

// invalidToolPattern finds the tool of Marlin's `echo:T<n> Invalid
// extruder` answer to a T<n> for a tool it does not have.
var invalidToolPattern = lazy.Regexp{Expr: `(?i)\bT(\d+)\b.*invalid extruder`}

// onInvalidTool handles the firmware's report that the selected tool does
// not exist: it fires InvalidToolReported with the tool and the one
// selected before it, remembers the tool so later T<n> are suppressed,
// and selects the fallback again, as OctoPrint does with its tool sanity
// check on.
func (s *session) onInvalidTool(line string) {
	m := invalidToolPattern.Get().FindStringSubmatch(line)
	if m == nil {
		// M104 T9 and similar name no tool selection; nothing to undo.
		s.log.Warn("firmware reported an invalid extruder", "line", line)
		return
	}
	n, _ := strconv.Atoi(m[1])
	if n != s.tool {
		s.log.Warn("firmware reported an invalid extruder that is not the selected tool; ignored", "line", line, "tool", s.tool)
		return
	}
	fallback := s.toolBefore
	if fallback == n || s.invalidTools[fallback] {
		fallback = 0
	}
	if s.invalidTools == nil {
		s.invalidTools = map[int]bool{}
	}
	s.invalidTools[n] = true
	s.log.Warn("firmware reported the selected tool as invalid; later selections of it are suppressed", "tool", n, "fallback", fallback)
	s.emit(bridge.EventInvalidToolReported, bridge.Payload{{Key: "tool", Value: n}, {Key: "fallback", Value: fallback}})
	s.queue = append([]queued{{text: "T" + strconv.Itoa(fallback)}}, s.queue...)
	s.pump()
}
