package printer

import (
	"context"
	"slices"

	"github.com/printbridge/printbridge/bridge"
)

// Settings are the parts of a printer's configuration that may change
// while it runs (ApplySettings).
type Settings struct {
	// Profile is the printer profile; the zero value means
	// DefaultProfile.
	Profile Profile
	// ScriptsDir is the folder of GCODE scripts; empty runs none. Scripts
	// are read each time they run, so an edited file applies at once.
	ScriptsDir string
	// Scripts are the scripts of ScriptsDir as parsed at start or reload
	// (LoadScripts). A script whose file no longer parses runs this
	// version, so an invalid edit that a reload rejected does not reach
	// the printer.
	Scripts map[string]*Template
	// BlockedCommands are codes never sent (CommandSuppressed, severity
	// warn); nil means DefaultBlockedCommands and an empty list blocks
	// nothing.
	BlockedCommands []string
	// IgnoredCommands are codes never sent (CommandSuppressed, severity
	// info).
	IgnoredCommands []string
}

func (st Settings) withDefaults() Settings {
	if st.Profile.ID == "" {
		st.Profile = DefaultProfile()
	}
	if st.BlockedCommands == nil {
		st.BlockedCommands = slices.Clone(DefaultBlockedCommands)
	}
	return st
}

func (st Settings) equalCommands(o Settings) bool {
	return slices.Equal(st.BlockedCommands, o.BlockedCommands) && slices.Equal(st.IgnoredCommands, o.IgnoredCommands)
}

// ApplySettings replaces the printer's settings. When the profile
// changed it fires PrinterProfileModified with the profile's identifier.
func (p *Printer) ApplySettings(ctx context.Context, st Settings) error {
	st = st.withDefaults()
	return p.submit(ctx, request{kind: reqSettings, settings: &st})
}

func (s *session) applySettings(st Settings) {
	old := s.settings
	s.settings = st
	if !old.equalCommands(st) {
		s.log.Info("command filters changed", "blocked", st.BlockedCommands, "ignored", st.IgnoredCommands)
	}
	if old.ScriptsDir != st.ScriptsDir {
		s.log.Info("GCODE scripts folder changed", "scripts", st.ScriptsDir)
	}
	if old.Profile != st.Profile {
		s.log.Info("printer profile changed", "profile", st.Profile.ID, "extruders", st.Profile.Extruder.Count,
			"heated_bed", st.Profile.HeatedBed, "heated_chamber", st.Profile.HeatedChamber)
		s.emit(bridge.EventPrinterProfileModified, bridge.Payload{{Key: "identifier", Value: st.Profile.ID}})
	}
}
