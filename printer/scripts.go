package printer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/lazy"
)

// GCODE script names, OctoPrint's. Each is a file of that name, without
// extension, in the scripts folder. OctoPrint has no afterPrintStarted
// script: beforePrintStarted runs after PrintStarted has fired, before the
// first line of the file.
const (
	ScriptAfterPrinterConnected     = "afterPrinterConnected"
	ScriptBeforePrinterDisconnected = "beforePrinterDisconnected"
	ScriptBeforePrintStarted        = "beforePrintStarted"
	ScriptAfterPrintDone            = "afterPrintDone"
	ScriptAfterPrintCancelled       = "afterPrintCancelled"
	ScriptAfterPrintPaused          = "afterPrintPaused"
	ScriptBeforePrintResumed        = "beforePrintResumed"
	ScriptBeforeToolChange          = "beforeToolChange"
	ScriptAfterToolChange           = "afterToolChange"
)

// ScriptNames lists every script the edge runs, in the order of a print's
// life.
var ScriptNames = []string{
	ScriptAfterPrinterConnected, ScriptBeforePrintStarted, ScriptAfterPrintPaused, ScriptBeforePrintResumed,
	ScriptAfterPrintDone, ScriptAfterPrintCancelled, ScriptBeforeToolChange, ScriptAfterToolChange,
	ScriptBeforePrinterDisconnected,
}

// printScripts are the scripts that OctoPrint 1.11 runs through
// printer.script(), which fires GcodeScript<Name>Running and
// GcodeScript<Name>Finished; the connection and tool change scripts are
// sent by the serial layer directly and fire nothing.
var printScripts = lazy.Map[string, bool]{Build: func() map[string]bool {
	return map[string]bool{
		ScriptBeforePrintStarted: true, ScriptAfterPrintDone: true, ScriptAfterPrintCancelled: true,
		ScriptAfterPrintPaused: true, ScriptBeforePrintResumed: true,
	}
}}

// scriptVariables are the template variables that some script gets. The
// fan speed variables of OctoPrint (last_fanspeed, pause_fanspeed,
// cancel_fanspeed) are missing because the edge does not track M106.
var scriptVariables = lazy.Map[string, bool]{Build: func() map[string]bool {
	return map[string]bool{
		"event": true, "printer_profile": true, "last_position": true, "last_temperature": true,
		"pause_position": true, "pause_temperature": true, "cancel_position": true, "cancel_temperature": true,
		"tool": true,
	}
}}

// ScriptEventName returns the GcodeScript event name of a script, with
// OctoPrint's rule: the first letter upper-cased, the rest kept.
func ScriptEventName(script, phase string) string {
	if script == "" {
		return ""
	}
	return "GcodeScript" + strings.ToUpper(script[:1]) + script[1:] + phase
}

// LoadScript reads and parses one script from dir. A missing file (or
// an empty dir) returns nil and no error.
func LoadScript(dir, name string) (*Template, error) {
	if dir == "" {
		return nil, nil
	}
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read GCODE script: %w", err)
	}
	if err := checkScriptBytes(path, name, data); err != nil {
		return nil, err
	}
	return ParseTemplate(path, string(data), scriptVariables.Get())
}

// checkScriptBytes rejects a script whose command part (before `;`) has
// a control byte other than tab, with the rule job files are checked by.
// Sending it would strip or replace the byte, so the printer would run a
// command other than the one in the file.
func checkScriptBytes(path, name string, data []byte) error {
	for i, line := range bytes.Split(data, []byte("\n")) {
		if c, ok := controlByte(commandPart(line)); ok {
			return fmt.Errorf("GCODE script %s line %d contains the control byte 0x%02x; remove it from %s", name, i+1, c, path)
		}
	}
	return nil
}

// nonASCII returns the first character of cmd that ToASCII replaces with
// '?'.
func nonASCII(cmd string) (rune, bool) {
	for _, r := range cmd {
		if r != '\t' && (r < 0x20 || r > 0x7e) {
			return r, true
		}
	}
	return 0, false
}

// controlByte returns the first byte of code below 0x20 other than tab.
func controlByte(code []byte) (byte, bool) {
	for _, c := range code {
		if c < 0x20 && c != '\t' {
			return c, true
		}
	}
	return 0, false
}

// CheckScripts parses every script in dir, so a template error shows at
// start and on reload instead of in the middle of a print. It also returns
// the names of files in dir that are not scripts the edge runs.
func CheckScripts(dir string) (unknown []string, err error) {
	_, unknown, err = LoadScripts(dir)
	return unknown, err
}

// LoadScripts parses every script in dir and returns them by name, with
// the names of files in dir that are not scripts the edge runs. The error
// joins the errors of all scripts that failed to read or parse.
func LoadScripts(dir string) (scripts map[string]*Template, unknown []string, err error) {
	if dir == "" {
		return nil, nil, nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read GCODE scripts folder: %w", err)
	}
	known := map[string]bool{}
	for _, n := range ScriptNames {
		known[n] = true
	}
	scripts = map[string]*Template{}
	var errs []error
	for _, e := range entries {
		if !known[e.Name()] {
			unknown = append(unknown, e.Name())
			continue
		}
		t, err := LoadScript(dir, e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if t != nil {
			scripts[e.Name()] = t
		}
	}
	return scripts, unknown, errors.Join(errs...)
}

// loadScript reads a script from the scripts folder. When the file no
// longer parses, the version of the last start or reload
// (Settings.Scripts) is used instead, because a rejected reload promises
// that the previous scripts stay in force.
func (s *session) loadScript(name string) (*Template, error) {
	t, err := LoadScript(s.settings.ScriptsDir, name)
	if err == nil {
		return t, nil
	}
	last, ok := s.settings.Scripts[name]
	if !ok {
		return nil, err
	}
	s.log.Warn("GCODE script file is invalid; sending the version loaded at the last start or reload instead", "script", name,
		"scripts", s.settings.ScriptsDir, "error", err)
	return last, nil
}

// scriptLines renders a script into the lines to send. found is false when
// the script file does not exist. Comments and empty lines are dropped,
// as OctoPrint does before queuing.
func (s *session) scriptLines(name string, vars map[string]any) (lines []string, found bool, err error) {
	t, err := s.loadScript(name)
	if err != nil || t == nil {
		return nil, false, err
	}
	vars["printer_profile"] = profileVars(s.settings.Profile)
	vars["last_position"] = payloadVars(s.positionPayload())
	vars["last_temperature"] = s.temperatureVars()
	text, err := t.Render(vars)
	if err != nil {
		return nil, true, err
	}
	for i, raw := range strings.Split(text, "\n") {
		// A variable's value can carry a control byte that the file
		// check at load time did not see.
		if c, ok := controlByte(commandPart([]byte(raw))); ok {
			return nil, true, fmt.Errorf("GCODE script %s output line %d contains the control byte 0x%02x", name, i+1, c)
		}
		cmd := NormalizeCommand(CleanLine([]byte(raw)))
		if cmd == "" {
			continue
		}
		if r, ok := nonASCII(cmd); ok {
			s.log.Warn("GCODE script line has a character outside printable ASCII; the printer gets '?' in its place, as from OctoPrint",
				"script", name, "output_line", i+1, "character", fmt.Sprintf("%q", r), "command", cmd)
		}
		if err := s.checkLine(cmd); err != nil {
			return nil, true, fmt.Errorf("GCODE script %s output line %d: %w", name, i+1, err)
		}
		lines = append(lines, cmd)
	}
	return lines, true, nil
}

// runScript queues a script's lines. For the print scripts it fires
// GcodeScript<Name>Running before and GcodeScript<Name>Finished after
// queuing, with the print job payload, as OctoPrint does. Like OctoPrint
// (which calls these with must_be_set=False), both events fire when the
// file does not exist, and nothing is sent. A script that fails to render
// sends nothing and fires no Finished event, since OctoPrint's raises
// before it.
func (s *session) runScript(name string, event bridge.Payload, vars map[string]any) {
	if vars == nil {
		vars = map[string]any{}
	}
	var payload bridge.Payload
	if event != nil {
		payload = event
		vars["event"] = payloadVars(event)
	} else {
		vars["event"] = nil
	}
	if printScripts.Get()[name] {
		s.emit(ScriptEventName(name, "Running"), payload)
	}
	lines, found, err := s.scriptLines(name, vars)
	if err != nil {
		s.log.Error("GCODE script not sent", "script", name, "error", err)
		if f := s.p.metrics.ScriptError; f != nil {
			f()
		}
		return
	}
	if found {
		s.log.Info("GCODE script queued", "script", name, "lines", len(lines))
	}
	for _, l := range lines {
		s.enqueue(queued{text: l})
	}
	if printScripts.Get()[name] {
		s.emit(ScriptEventName(name, "Finished"), payload)
	}
}

// toolChangeLines renders the beforeToolChange and afterToolChange
// scripts for a T<n> line, with the variable tool = {old, new}. ok is
// false when neither script has lines or one fails to render (which is
// logged and counted); the T<n> is then sent alone.
func (s *session) toolChangeLines(text string) (before, after []string, ok bool) {
	n, isTool := toolNumber(text)
	if !isTool {
		return nil, nil, false
	}
	for _, name := range []string{ScriptBeforeToolChange, ScriptAfterToolChange} {
		vars := map[string]any{"tool": map[string]any{"old": s.tool, "new": n}, "event": nil}
		lines, _, err := s.scriptLines(name, vars)
		if err != nil {
			s.log.Error("GCODE script not sent", "script", name, "error", err)
			if f := s.p.metrics.ScriptError; f != nil {
				f()
			}
			return nil, nil, false
		}
		if name == ScriptBeforeToolChange {
			before = lines
		} else {
			after = lines
		}
	}
	return before, after, len(before)+len(after) > 0
}

// toolNumber returns n of a T<n> line.
func toolNumber(text string) (int, bool) {
	fields := strings.Fields(text)
	if len(fields) == 0 || !strings.HasPrefix(fields[0], "T") {
		return 0, false
	}
	n, err := strconv.Atoi(fields[0][1:])
	return n, err == nil && n >= 0
}

// payloadVars converts a payload into template values.
func payloadVars(p bridge.Payload) map[string]any {
	m := make(map[string]any, len(p))
	for _, f := range p {
		switch v := f.Value.(type) {
		case bridge.Payload:
			m[f.Key] = payloadVars(v)
		case int64:
			m[f.Key] = int(v)
		default:
			m[f.Key] = v
		}
	}
	return m
}

func profileVars(p Profile) map[string]any {
	return map[string]any{
		"id": p.ID, "name": p.Name, "model": p.Model, "heatedBed": p.HeatedBed, "heatedChamber": p.HeatedChamber,
		"volume": map[string]any{"width": p.Volume.Width, "depth": p.Volume.Depth, "height": p.Volume.Height,
			"formFactor": p.Volume.FormFactor, "origin": p.Volume.Origin},
		"extruder": map[string]any{"count": p.Extruder.Count, "nozzleDiameter": p.Extruder.NozzleDiameter, "sharedNozzle": p.Extruder.SharedNozzle},
	}
}

// temperatureVars has OctoPrint's script form of temperatures: tools by
// number (0, 1, ...), the bed as b and the chamber as c, each with actual
// and target (None when unknown).
func (s *session) temperatureVars() map[string]any {
	out := map[string]any{}
	for heater, t := range s.temps {
		key := ""
		switch {
		case heater == "bed":
			key = "b"
		case heater == "chamber":
			key = "c"
		case strings.HasPrefix(heater, "tool"):
			key = strings.TrimPrefix(heater, "tool")
		default:
			continue
		}
		var target any
		if t.Target != nil {
			target = *t.Target
		}
		out[key] = map[string]any{"actual": t.Actual, "target": target}
	}
	return out
}

// beforeDisconnectWait bounds the wait for beforePrinterDisconnected to be
// sent, as OctoPrint's 10 second wait for its queues on close.
const beforeDisconnectWait = 10 * time.Second
