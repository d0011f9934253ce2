package printer_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

// eventRow says how the catalogue test covers one event.
type eventRow struct {
	// driven: the scenario below fires it; want holds payload values to
	// check besides the keys.
	driven bool
	want   map[string]any
	// coveredBy names the test that drives the event through another
	// component, as "file.go:TestName" relative to the repository root.
	coveredBy string
	// notYet is a word of the subsystem NotFiredYet must name.
	notYet string
}

var eventTable = map[string]eventRow{
	bridge.EventStartup:  {coveredBy: "cmd/printbridge/e2e_test.go:TestChainOverMosquitto"},
	bridge.EventShutdown: {coveredBy: "cmd/printbridge/e2e_test.go:TestChainOverMosquitto"},
	"ClientOpened":       {notYet: "push-socket"}, "ClientAuthed": {notYet: "push-socket"},
	"ClientClosed": {notYet: "push-socket"}, "ClientDeauthed": {notYet: "push-socket"},
	"UserLoggedIn": {notYet: "users"}, "UserLoggedOut": {notYet: "users"},
	bridge.EventConnectivityChanged: {coveredBy: "cmd/printbridge/settings_test.go:TestConnectivityChangedOnBrokerOutage"},

	bridge.EventConnecting:          {driven: true},
	bridge.EventConnected:           {driven: true, want: map[string]any{"baudrate": 115200}},
	bridge.EventDisconnecting:       {driven: true},
	bridge.EventDisconnected:        {driven: true},
	"ConnectionsAutorefreshed":      {notYet: "port autodetection"},
	bridge.EventError:               {driven: true, want: map[string]any{"reason": "firmware", "consequence": "emergency"}},
	bridge.EventPrinterStateChanged: {driven: true},
	bridge.EventPrinterReset:        {coveredBy: "printer/printer_test.go:TestFirmwareResetMidJob"},
	"PrinterControlsChanged":        {notYet: "OctoPrint 2.0"},

	"Upload":                    {coveredBy: "cmd/printbridge/e2e_test.go:TestChainOverMosquitto"},
	"FileAdded":                 {coveredBy: "printer/storage/ops_test.go:TestAddEventsAndAnalysis"},
	"FileRemoved":               {coveredBy: "printer/storage/ops_test.go:TestRemoveFile"},
	"FileMoved":                 {coveredBy: "printer/storage/ops_test.go:TestMoveFileEventOrder"},
	"FolderAdded":               {coveredBy: "printer/storage/ops_test.go:TestFolderOperations"},
	"FolderRemoved":             {coveredBy: "printer/storage/ops_test.go:TestFolderOperations"},
	"FolderMoved":               {coveredBy: "printer/storage/ops_test.go:TestFolderOperations"},
	"UpdatedFiles":              {coveredBy: "printer/storage/ops_test.go:TestAddEventsAndAnalysis"},
	"MetadataAnalysisStarted":   {coveredBy: "printer/storage/ops_test.go:TestAddEventsAndAnalysis"},
	"MetadataAnalysisFinished":  {coveredBy: "printer/storage/ops_test.go:TestAddEventsAndAnalysis"},
	"MetadataStatisticsUpdated": {coveredBy: "printer/storage/metadata_test.go:TestStatisticsAfterPrint"},
	bridge.EventFileSelected:    {driven: true, want: map[string]any{"path": "short.gcode", "origin": "local"}},
	bridge.EventFileDeselected:  {driven: true},
	bridge.EventTransferStarted: {coveredBy: "printer/sd_test.go:TestSDUploadCopiesCommands"},
	bridge.EventTransferDone:    {coveredBy: "printer/sd_test.go:TestSDUploadCopiesCommands"},
	bridge.EventTransferFailed:  {coveredBy: "printer/sd_test.go:TestSDUploadWriteFailure"},

	bridge.EventPrintStarted:    {driven: true, want: map[string]any{"origin": "local"}},
	bridge.EventPrintDone:       {driven: true, want: map[string]any{"path": "short.gcode"}},
	bridge.EventPrintFailed:     {driven: true, want: map[string]any{"reason": "cancelled"}},
	bridge.EventPrintCancelling: {driven: true},
	bridge.EventPrintCancelled:  {driven: true},
	bridge.EventPrintPaused:     {driven: true},
	bridge.EventPrintResumed:    {driven: true},
	bridge.EventChartMarked:     {driven: true},

	bridge.EventPowerOn: {driven: true}, bridge.EventPowerOff: {driven: true}, bridge.EventHome: {driven: true},
	bridge.EventZChange: {driven: true, want: map[string]any{"new": 1.5}},
	bridge.EventWaiting: {driven: true}, bridge.EventDwelling: {driven: true}, bridge.EventCooling: {driven: true},
	bridge.EventAlert: {driven: true}, bridge.EventConveyor: {driven: true}, bridge.EventEject: {driven: true},
	bridge.EventEStop: {driven: true}, bridge.EventFilamentChange: {driven: true},
	bridge.EventPositionUpdate:      {driven: true},
	bridge.EventFirmwareData:        {driven: true},
	bridge.EventToolChange:          {driven: true, want: map[string]any{"old": 0, "new": 1}},
	"RegisteredMessageReceived":     {notYet: "feedback controls"},
	bridge.EventCommandSuppressed:   {driven: true, want: map[string]any{"command": "M1", "severity": "warn"}},
	bridge.EventInvalidToolReported: {driven: true, want: map[string]any{"tool": 1, "fallback": 0}},

	"CaptureStart": {notYet: "timelapse"}, "CaptureDone": {notYet: "timelapse"}, "CaptureFailed": {notYet: "timelapse"},
	"PostRollStart": {notYet: "timelapse"}, "PostRollEnd": {notYet: "timelapse"}, "MovieRendering": {notYet: "timelapse"},
	"MovieDone": {notYet: "timelapse"}, "MovieFailed": {notYet: "timelapse"},
	"SlicingStarted": {notYet: "slicing"}, "SlicingDone": {notYet: "slicing"}, "SlicingCancelled": {notYet: "slicing"},
	"SlicingFailed": {notYet: "slicing"}, "SlicingProfileAdded": {notYet: "slicing"}, "SlicingProfileModified": {notYet: "slicing"},
	"SlicingProfileDeleted": {notYet: "slicing"},

	bridge.EventSettingsUpdated:        {coveredBy: "cmd/printbridge/settings_test.go:TestSIGHUPReloadsSettings"},
	"PrinterProfileAdded":              {notYet: "printer profile management"},
	bridge.EventPrinterProfileModified: {driven: true, want: map[string]any{"identifier": "table"}},
	"PrinterProfileDeleted":            {notYet: "printer profile management"},
}

func TestEveryCatalogueEventCovered(t *testing.T) {
	docs, err := os.ReadFile(filepath.Join("..", "docs", "events.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, def := range bridge.Events() {
		row, ok := eventTable[def.Name]
		if !ok {
			t.Errorf("%s has no row in the event table; add how it is tested", def.Name)
			continue
		}
		subsystem, notFired := bridge.NotFiredYet(&def)
		switch {
		case row.notYet != "":
			if !notFired || !strings.Contains(subsystem, row.notYet) {
				t.Errorf("%s: NotFiredYet = %q, %v; want a subsystem naming %q", def.Name, subsystem, notFired, row.notYet)
			}
			if !strings.Contains(string(docs), "### "+def.Name+"\n\n"+def.Doc+"\n\nFired by: not fired yet: "+subsystem) {
				t.Errorf("docs/events.md does not say that %s is not fired yet (%s)", def.Name, subsystem)
			}
		case notFired:
			t.Errorf("%s is tested as fired, but the catalogue says not fired yet: %s", def.Name, subsystem)
		case row.coveredBy != "":
			file, test, _ := strings.Cut(row.coveredBy, ":")
			src, err := os.ReadFile(filepath.Join("..", file))
			if err != nil {
				t.Errorf("%s: covering test file: %v", def.Name, err)
				continue
			}
			if !regexp.MustCompile(`func ` + test + `\(t \*testing\.T\)`).Match(src) {
				t.Errorf("%s: %s has no %s", def.Name, file, test)
			}
		}
	}
}

// TestEventCatalogueScenario drives every event of the table marked
// driven through the virtual printer and checks each payload against the
// catalogue: every key that is not optional is present, and no key is
// outside the catalogue.
func TestEventCatalogueScenario(t *testing.T) {
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 1
	profile := printer.DefaultProfile()
	profile.Extruder.Count = 2 // the virtual printer has one, so T1 is reported invalid
	r := startRig(t, vcfg, printer.Config{Settings: printer.Settings{Profile: profile, BlockedCommands: []string{"M1"}}})
	if err := os.WriteFile(filepath.Join(r.files, "short.gcode"), []byte("G28\nG1 X5 Y5 F3000\nG1 X10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.waitState("OPERATIONAL", 10*time.Second)

	r.gcode("M80", "M81", "G28", "G1 Z1.5 F300", "M0", "M1", "G4 P0", "M245", "M300 S440 P10", "M240", "M40", "M701", "M114")
	r.gcode("T1")
	waitFor(t, "InvalidToolReported", 10*time.Second, func() bool { return r.rec.count(bridge.EventInvalidToolReported) == 1 })

	r.job(bridge.ActionStart, testFile)
	r.waitState("PRINTING", 10*time.Second)
	r.job(bridge.ActionPause, "")
	r.waitState("PAUSED", 60*time.Second)
	r.job(bridge.ActionResume, "")
	r.waitState("PRINTING", 60*time.Second)
	r.job(bridge.ActionCancel, "")
	r.waitState("OPERATIONAL", 60*time.Second)

	r.job(bridge.ActionStart, "short.gcode")
	waitFor(t, "PrintDone", 60*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })
	r.waitState("OPERATIONAL", 10*time.Second)
	ctx := context.Background()
	if err := r.p.Deselect(ctx, "short.gcode"); err != nil {
		t.Fatal(err)
	}
	profile.ID = "table"
	if err := r.p.ApplySettings(ctx, printer.Settings{Profile: profile, BlockedCommands: []string{"M1"}}); err != nil {
		t.Fatal(err)
	}

	disconnected := make(chan error, 1)
	if err := r.p.Connection(ctx, bridge.ActionDisconnect, func(_ []string, err error) { disconnected <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-disconnected; err != nil {
		t.Fatal(err)
	}
	if err := r.p.Connection(ctx, bridge.ActionConnect, nil); err != nil {
		t.Fatal(err)
	}
	r.waitState("OPERATIONAL", 10*time.Second)
	waitFor(t, "FirmwareData after the reconnect", 10*time.Second, func() bool { return r.rec.count(bridge.EventFirmwareData) == 2 })
	// M112 ends the connection with EStop and an Error of reason
	// firmware, consequence emergency.
	if err := r.p.SendGcode(ctx, []string{"M112"}, "test", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "EStop", 10*time.Second, func() bool { return r.rec.count(bridge.EventEStop) == 1 })

	for name, row := range eventTable {
		if !row.driven {
			continue
		}
		def, ok := bridge.LookupEvent(name)
		if !ok {
			t.Errorf("%s is not in the catalogue", name)
			continue
		}
		events := r.rec.all(name)
		if len(events) == 0 {
			t.Errorf("%s never fired", name)
			continue
		}
		for _, ev := range events {
			checkPayloadKeys(t, def, ev.payload)
		}
		for key, want := range row.want {
			found := false
			for _, ev := range events {
				if got, _ := ev.payload.Get(key); got == want {
					found = true
				}
			}
			if !found {
				t.Errorf("no %s has %s = %v; payloads: %v", name, key, want, events)
			}
		}
	}
}

func checkPayloadKeys(t *testing.T, def *bridge.EventDef, payload bridge.Payload) {
	t.Helper()
	known := map[string]bool{}
	for _, f := range def.Fields {
		known[f.Name] = true
		if _, ok := payload.Get(f.Name); !ok && !f.Optional {
			t.Errorf("%s lacks %q: %v", def.Name, f.Name, payload)
		}
	}
	for _, f := range payload {
		if !known[f.Key] {
			t.Errorf("%s has %q, which the catalogue does not list: %v", def.Name, f.Key, payload)
		}
	}
}
