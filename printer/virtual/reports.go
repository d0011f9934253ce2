package virtual

import (
	"strconv"
	"sync/atomic"
	"time"
)

// reportTick is how often the report goroutine checks its deadlines.
const reportTick = 20 * time.Millisecond

// reportLoop sends the periodic lines that Marlin prints from idle(): the
// M155 temperature and M154 position auto-reports and, while a command
// runs longer than the M113 interval, `echo:busy: processing`. It runs in
// its own goroutine for the session; all intervals are wall-clock time.
func (s *session) reportLoop() {
	ticker := time.NewTicker(reportTick)
	defer ticker.Stop()
	temp := periodic{interval: &s.tempInterval}
	pos := periodic{interval: &s.posInterval}
	sd := periodic{interval: &s.sdInterval}
	var nextBusy time.Time
	for {
		select {
		case <-ticker.C:
		case <-s.ctx.Done():
			return
		}
		if !s.busy.Load() {
			// GluedOKs holds line feeds back while a command runs; a line
			// held when the command ended gets its line feed now.
			s.p.link.flushHeld(s.ctx)
		}
		if s.halted.Load() {
			continue
		}
		now := time.Now()
		if temp.due(now) {
			s.sendReport(s.autoReportText())
		}
		if pos.due(now) {
			s.sendReport(s.positionReport())
		}
		if sd.due(now) {
			s.sendReport(s.p.sd.statusLine())
		}

		// host_keepalive(): the first busy line comes one interval after
		// the command started, then one per interval.
		keepalive := time.Duration(s.keepalive.Load())
		switch {
		case s.cfg.NoBusyKeepalive || keepalive == 0 || !s.busy.Load():
			nextBusy = time.Time{}
		case nextBusy.IsZero():
			nextBusy = now.Add(keepalive)
		case !now.Before(nextBusy):
			s.sendBusy()
			nextBusy = now.Add(keepalive)
		}
	}
}

// periodic is the schedule of one auto-report.
type periodic struct {
	interval *atomic.Int64
	last     int64 // interval seen at the previous check
	next     time.Time
}

// due reports whether the report is to be sent now. A new interval starts
// counting from the moment it was seen, as M155 and M154 restart the
// timer.
func (p *periodic) due(now time.Time) bool {
	iv := p.interval.Load()
	if iv != p.last {
		p.last = iv
		p.next = now.Add(time.Duration(iv))
		return false
	}
	if iv == 0 || now.Before(p.next) {
		return false
	}
	p.next = now.Add(time.Duration(iv))
	return true
}

// reportMarlinFirmware is Marlin's M115: the firmware line, then Marlin
// 2.1's extended capability report in Marlin's order, with the values of
// the simulated build.
func (s *session) reportMarlinFirmware() {
	s.send("FIRMWARE_NAME:" + s.cfg.FirmwareName +
		" SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin" +
		" PROTOCOL_VERSION:1.0" +
		" MACHINE_TYPE:" + s.cfg.MachineType +
		" EXTRUDER_COUNT:" + strconv.Itoa(s.cfg.Extruders) +
		" UUID:" + s.cfg.UUID)
	for _, c := range s.capabilities() {
		v := "0"
		if c.on {
			v = "1"
		}
		s.send("Cap:" + c.name + ":" + v)
	}
}

type capability struct {
	name string
	on   bool
}

func (s *session) capabilities() []capability {
	return []capability{
		{"SERIAL_XON_XOFF", false},
		{"BINARY_FILE_TRANSFER", false},
		{"EEPROM", true},
		{"VOLUMETRIC", true},
		{"AUTOREPORT_POS", !s.cfg.NoAutoreportPos},
		{"AUTOREPORT_TEMP", true},
		{"PROGRESS", false},
		{"PRINT_JOB", true},
		{"AUTOLEVEL", false},
		{"RUNOUT", false},
		{"Z_PROBE", false},
		{"LEVELING_DATA", false},
		{"BUILD_PERCENT", true},
		{"SOFTWARE_POWER", false},
		{"TOGGLE_LIGHTS", false},
		{"CASE_LIGHT_BRIGHTNESS", false},
		{"EMERGENCY_PARSER", s.cfg.EmergencyParser},
		{"HOST_ACTION_COMMANDS", false},
		{"PROMPT_SUPPORT", false},
		{"SDCARD", !s.cfg.NoSDSupport},
		{"MULTI_VOLUME", false},
		{"REPEAT", false},
		{"SD_WRITE", !s.cfg.NoSDSupport},
		{"AUTOREPORT_SD_STATUS", !s.cfg.NoSDSupport && !s.cfg.NoSDAutoReport},
		{"LONG_FILENAME", !s.cfg.NoSDSupport},
		{"LFN_WRITE", false},
		{"CUSTOM_FIRMWARE_UPLOAD", false},
		{"EXTENDED_M20", !s.cfg.NoSDSupport},
		{"THERMAL_PROTECTION", true},
		{"MOTION_MODES", false},
		{"ARCS", true},
		{"BABYSTEPPING", false},
		{"CHAMBER_TEMPERATURE", false},
		{"COOLER_TEMPERATURE", false},
		{"MEATPACK", false},
		{"CONFIG_EXPORT", false},
	}
}
