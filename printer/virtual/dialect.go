package virtual

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Output formats that differ between Marlin, Repetier and Prusa firmware.
// Repetier's strings follow Repetier-Firmware 0.92 and 1.0 (Communication.cpp,
// gcode.cpp, Commands.cpp), Prusa's follow Prusa-Firmware 3.x
// (Marlin_main.cpp, cmdqueue.cpp) and reports seen from MK3 printers.

// prusaSDFile is the one file on the simulated SD card of a Prusa, listed
// with the lower-case 8.3 name that Prusa-Firmware prints.
const (
	prusaSDFile     = "mini-c~1.gco"
	prusaSDFileSize = 85818
)

// busyLine returns the host keep-alive line of the dialect.
func (s *session) busyLine() string {
	if s.cfg.repetier() {
		return msgBusyRep
	}
	return msgBusy
}

// heaterReport returns the M105 text after its ok. Marlin's and Prusa's
// start with a space, so "ok" + report is the reply. Repetier's is a line
// of its own after the ok.
func (s *session) heaterReport(active int) string {
	switch s.cfg.Dialect {
	case DialectRepetier:
		return s.p.thermal.repetierReport(active)
	case DialectPrusa:
		return s.p.thermal.prusaReport(active)
	}
	return s.p.thermal.report(active)
}

// autoReportText returns the M155 temperature auto-report of the active
// tool.
func (s *session) autoReportText() string {
	report := s.heaterReport(s.machine.tool())
	if s.cfg.prusa() {
		return strings.TrimLeft(report, " ")
	}
	return report
}

// heatingStatus returns the line M109 and M190 print while they wait.
func (s *session) heatingStatus(heater, tool int) string {
	switch s.cfg.Dialect {
	case DialectRepetier:
		return s.p.thermal.repetierReport(tool)
	case DialectPrusa:
		// Marlin 1.x form, as Prusa-Firmware prints it.
		hotend, _ := s.p.thermal.reading(tool)
		if heater == bedHeater {
			bed, _ := s.p.thermal.reading(bedHeater)
			return fmt.Sprintf("T:%.1f E:0 B:%.1f", hotend, bed)
		}
		return fmt.Sprintf("T:%.1f E:%d W:?", hotend, tool)
	}
	return s.p.thermal.report(tool) + " W:?"
}

// announceTarget prints Repetier's `TargetExtr<n>:<t>` or `TargetBed:<t>`
// after a target change; the other dialects print nothing.
func (s *session) announceTarget(heater int, target float64) {
	if !s.cfg.repetier() {
		return
	}
	t := strconv.Itoa(int(math.Round(target)))
	if heater == bedHeater {
		s.send("TargetBed:" + t)
		return
	}
	s.send("TargetExtr" + strconv.Itoa(heater) + ":" + t)
}

// positionReport returns the M114 and M154 text of the dialect.
func (s *session) positionReport() string {
	if s.cfg.prusa() {
		return s.machine.prusaPositionReport()
	}
	if s.cfg.repetier() {
		return s.machine.repetierPositionReport()
	}
	return s.machine.positionReport()
}

// reportFirmware executes M115.
func (s *session) reportFirmware(g *gcode) bool {
	switch s.cfg.Dialect {
	case DialectRepetier:
		s.send("FIRMWARE_NAME:" + s.cfg.FirmwareName +
			" FIRMWARE_URL:https://github.com/repetier/Repetier-Firmware/" +
			" PROTOCOL_VERSION:1.0" +
			" MACHINE_TYPE:" + s.cfg.MachineType +
			" EXTRUDER_COUNT:" + strconv.Itoa(s.cfg.Extruders) +
			" REPETIER_PROTOCOL:3")
		for _, c := range repetierCapabilities {
			s.send("Cap:" + c)
		}
		s.send("Printed filament:0.00m Printing time:0 days 0 hours 0 min")
		s.send("PrinterMode:FFF")
	case DialectPrusa:
		s.send("FIRMWARE_NAME:" + s.cfg.FirmwareName +
			" FIRMWARE_URL:https://github.com/prusa3d/Prusa-Firmware" +
			" PROTOCOL_VERSION:1.0" +
			" MACHINE_TYPE:" + s.cfg.MachineType +
			" EXTRUDER_COUNT:" + strconv.Itoa(s.cfg.Extruders))
		for _, c := range prusaCapabilities {
			s.send("Cap:" + c)
		}
	default:
		s.reportMarlinFirmware()
	}
	return true
}

// repetierCapabilities are the Cap lines of Repetier-Firmware 1.0 without
// an LCD, Z probe or power switch.
var repetierCapabilities = []string{
	"PROGRESS:0", "AUTOREPORT_TEMP:1", "EEPROM:1", "AUTOLEVEL:0", "Z_PROBE:0",
	"SOFTWARE_POWER:0", "TOGGLE_LIGHTS:0", "PAUSESTOP:1", "PREHEAT:1",
}

// prusaCapabilities are the Cap lines of Prusa-Firmware 3.10 and later on
// an MK3S.
var prusaCapabilities = []string{
	"AUTOREPORT_TEMP:1", "AUTOREPORT_FANS:1", "AUTOREPORT_POSITION:1", "EXTENDED_M20:1", "PRUSA_MMU2:1",
}

// repetierReport returns Repetier's temperature line: `T:<a> /<t> B:<a>
// /<t> B@:<pwm> @:<pwm>`, with targets in whole degrees and
// `T<n>:<a> /<t> @<n>:<pwm>` per hotend on machines with more than one.
func (t *thermal) repetierReport(active int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.updateLocked()
	var b strings.Builder
	h := t.hotends[active]
	fmt.Fprintf(&b, "T:%.2f /%.0f", h.actual, h.target)
	if t.bed != nil {
		fmt.Fprintf(&b, " B:%.2f /%.0f B@:%d", t.bed.actual, t.bed.target, t.bed.power())
	}
	fmt.Fprintf(&b, " @:%d", h.power())
	if len(t.hotends) > 1 {
		for i, h := range t.hotends {
			fmt.Fprintf(&b, " T%d:%.2f /%.0f @%d:%d", i, h.actual, h.target, i, h.power())
		}
	}
	return b.String()
}

// prusaAmbientOffset is how much warmer than the room the simulated
// Prusa's board (A:) reads.
const prusaAmbientOffset = 4.0

// prusaReport returns Prusa-Firmware's report: ` T:<a> /<t> B:<a> /<t>
// T0:<a> /<t> @:<pwm> B@:<pwm> P:<pinda> A:<ambient>`, one decimal each.
// The simulated PINDA probe reads the bed temperature.
func (t *thermal) prusaReport(active int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.updateLocked()
	var b strings.Builder
	h := t.hotends[active]
	fmt.Fprintf(&b, " T:%.1f /%.1f", h.actual, h.target)
	pinda := ambientTemp
	if t.bed != nil {
		fmt.Fprintf(&b, " B:%.1f /%.1f", t.bed.actual, t.bed.target)
		pinda = t.bed.actual
	}
	for i, h := range t.hotends {
		fmt.Fprintf(&b, " T%d:%.1f /%.1f", i, h.actual, h.target)
	}
	fmt.Fprintf(&b, " @:%d", h.power())
	if t.bed != nil {
		fmt.Fprintf(&b, " B@:%d", t.bed.power())
	}
	fmt.Fprintf(&b, " P:%.1f A:%.1f", pinda, ambientTemp+prusaAmbientOffset)
	return b.String()
}

// prusaPositionReport returns Prusa's M114 text, whose Count part is in
// millimetres: `X:<x> Y:<y> Z:<z> E:<e> Count X: <x> Y:<y> Z:<z> E:<e>`.
func (m *machine) prusaPositionReport() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pos
	return fmt.Sprintf("X:%.2f Y:%.2f Z:%.2f E:%.2f Count X: %.2f Y:%.2f Z:%.2f E:%.2f",
		p[axisX], p[axisY], p[axisZ], p[axisE], p[axisX], p[axisY], p[axisZ], p[axisE])
}

// repetierPositionReport returns Repetier's M114 text, `X:<x> Y:<y>
// Z:<z> E:<e>` (Commands::printCurrentPosition).
func (m *machine) repetierPositionReport() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pos
	return fmt.Sprintf("X:%.2f Y:%.2f Z:%.2f E:%.2f", p[axisX], p[axisY], p[axisZ], p[axisE])
}
