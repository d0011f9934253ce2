package hooks

import (
	"regexp"
	"strings"

	"github.com/printbridge/printbridge/bridge"
)

// gcodeEvents maps a G-code to the event that sending it fires, after
// OctoPrint's comm layer (1.11). M114, M115 and T<n> are added here because
// their replies or their sending fire PositionUpdate, FirmwareData and
// ToolChange (which fires even when the tool does not change), so a hook
// on those events that sends them loops as well.
var gcodeEvents = map[string]string{
	"G28":  bridge.EventHome,
	"M300": bridge.EventAlert,
	"G4":   bridge.EventDwelling,
	"M0":   bridge.EventWaiting,
	"M1":   bridge.EventWaiting,
	"M226": bridge.EventWaiting,
	"M245": bridge.EventCooling,
	"M240": bridge.EventConveyor,
	"M40":  bridge.EventEject,
	"M112": bridge.EventEStop,
	"M80":  bridge.EventPowerOn,
	"M81":  bridge.EventPowerOff,
	"M600": bridge.EventFilamentChange,
	"M701": bridge.EventFilamentChange,
	"M702": bridge.EventFilamentChange,
	"M114": bridge.EventPositionUpdate,
	"M115": bridge.EventFirmwareData,
	"T":    bridge.EventToolChange,
}

// zParameter finds a Z word (not part of a longer word) with a number, or
// with a placeholder in a template such as "G1 Z{new}".
var (
	zParameter         = regexp.MustCompile(`(?i)(?:^|[^a-z])z\s*[-+]?(?:[0-9]*\.?[0-9]+)`)
	zParameterTemplate = regexp.MustCompile(`(?i)(?:^|[^a-z])z\s*(?:[-+]?[0-9]*\.?[0-9]+|\{)`)
)

// gcodeCode returns the normalised first code of a line ("G28", "M117",
// "T" for any tool) and the text after it. Leading space and a line number
// are skipped, and the letter is matched in either case, because the
// firmware accepts g28 as well; OctoPrint itself matches upper case only.
func gcodeCode(line string) (code, rest string) {
	s := strings.TrimSpace(line)
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 1 && (s[0] == 'N' || s[0] == 'n') && isASCIIDigit(s[1]) {
		j := 1
		for j < len(s) && isASCIIDigit(s[j]) {
			j++
		}
		s = strings.TrimLeft(s[j:], " \t")
	}

	if len(s) < 2 {
		return "", ""
	}
	letter := s[0] &^ 0x20
	if letter != 'G' && letter != 'M' && letter != 'T' {
		return "", ""
	}

	j := 1
	for j < len(s) && isASCIIDigit(s[j]) {
		j++
	}
	if j == 1 {
		return "", ""
	}
	if letter == 'T' {
		return "T", s[j:]
	}
	number := strings.TrimLeft(s[1:j], "0")
	if number == "" {
		number = "0"
	}
	return string(letter) + number, s[j:]
}

func isASCIIDigit(c byte) bool { return c >= '0' && c <= '9' }

// lineFiresEvent reports whether sending a rendered G-code line fires
// event.
func lineFiresEvent(line, event string) bool {
	code, rest := gcodeCode(line)
	if code == "G0" || code == "G1" {
		return event == bridge.EventZChange && zParameter.MatchString(rest)
	}
	return code != "" && gcodeEvents[code] == event
}

// templateFiresEvent is lineFiresEvent for a template before rendering: a
// placeholder in place of the Z value still counts.
func templateFiresEvent(template, event string) bool {
	code, rest := gcodeCode(template)
	if code == "G0" || code == "G1" {
		return event == bridge.EventZChange && zParameterTemplate.MatchString(rest)
	}
	return code != "" && gcodeEvents[code] == event
}
