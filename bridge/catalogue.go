package bridge

import (
	"sort"
	"strings"
)

// FieldType is the JSON type of a payload field.
type FieldType string

// Payload field types.
const (
	TypeString FieldType = "string"
	TypeInt    FieldType = "integer"
	TypeFloat  FieldType = "number"
	TypeBool   FieldType = "boolean"
	TypeObject FieldType = "object"
	TypeArray  FieldType = "array"
	TypeAny    FieldType = "any"
)

// FieldDef describes one payload key of an event.
type FieldDef struct {
	Name     string
	Type     FieldType
	Optional bool
	// Nullable marks fields that OctoPrint sends as None in some cases.
	Nullable bool
	Doc      string
}

// EventDef is the catalogue entry of one OctoPrint event.
type EventDef struct {
	Name   string
	Group  string
	Doc    string
	Fields []FieldDef
	// FiredBy says which printbridge process and activity fires the event,
	// or which subsystem printbridge does not have yet.
	FiredBy string
	// PayloadNote describes what Fields cannot: a payload whose keys
	// depend on the fired name, or one that is not checked at all.
	PayloadNote string
}

// Event names, spelled once. They are OctoPrint's names and are case
// sensitive.
const (
	EventStartup                = "Startup"
	EventShutdown               = "Shutdown"
	EventConnectivityChanged    = "ConnectivityChanged"
	EventConnecting             = "Connecting"
	EventConnected              = "Connected"
	EventDisconnecting          = "Disconnecting"
	EventDisconnected           = "Disconnected"
	EventError                  = "Error"
	EventPrinterStateChanged    = "PrinterStateChanged"
	EventPrinterReset           = "PrinterReset"
	EventFileSelected           = "FileSelected"
	EventFileDeselected         = "FileDeselected"
	EventPrintStarted           = "PrintStarted"
	EventPrintDone              = "PrintDone"
	EventPrintFailed            = "PrintFailed"
	EventPrintCancelling        = "PrintCancelling"
	EventPrintCancelled         = "PrintCancelled"
	EventPrintPaused            = "PrintPaused"
	EventPrintResumed           = "PrintResumed"
	EventChartMarked            = "ChartMarked"
	EventPowerOn                = "PowerOn"
	EventPowerOff               = "PowerOff"
	EventHome                   = "Home"
	EventZChange                = "ZChange"
	EventWaiting                = "Waiting"
	EventDwelling               = "Dwelling"
	EventCooling                = "Cooling"
	EventAlert                  = "Alert"
	EventConveyor               = "Conveyor"
	EventEject                  = "Eject"
	EventEStop                  = "EStop"
	EventFilamentChange         = "FilamentChange"
	EventPositionUpdate         = "PositionUpdate"
	EventFirmwareData           = "FirmwareData"
	EventToolChange             = "ToolChange"
	EventCommandSuppressed      = "CommandSuppressed"
	EventInvalidToolReported    = "InvalidToolReported"
	EventUpload                 = "Upload"
	EventSettingsUpdated        = "SettingsUpdated"
	EventPrinterProfileModified = "PrinterProfileModified"
	EventFileRemovedName        = "FileRemoved"
	EventUpdatedFiles           = "UpdatedFiles"
	EventTransferStarted        = "TransferStarted"
	EventTransferDone           = "TransferDone"
	EventTransferFailed         = "TransferFailed"
)

var jobFields = []FieldDef{
	{Name: "name", Type: TypeString, Doc: "the file's name"},
	{Name: "path", Type: TypeString, Doc: "the file's path within its storage location"},
	{Name: "origin", Type: TypeString, Doc: "local or sdcard"},
	{Name: "size", Type: TypeInt, Nullable: true, Doc: "the file's size in bytes (if available)"},
	{Name: "owner", Type: TypeString, Optional: true, Doc: "the user who started the print job (if available)"},
	{Name: "user", Type: TypeString, Optional: true, Doc: "the user who performed this action (if available)"},
}

func withJob(extra ...FieldDef) []FieldDef {
	out := append([]FieldDef{}, jobFields...)
	return append(out, extra...)
}

var positionField = FieldDef{Name: "position", Type: TypeObject, Optional: true,
	Doc: "head position x, y, z, e, t, f as reported by M114 (values null if not recorded)"}

var fileFields = []FieldDef{
	{Name: "name", Type: TypeString, Doc: "the file's name"},
	{Name: "path", Type: TypeString, Doc: "the file's path within its storage location"},
	{Name: "origin", Type: TypeString, Doc: "local or sdcard"},
}

var storageFields = []FieldDef{
	{Name: "storage", Type: TypeString, Doc: "the storage's identifier"},
	{Name: "path", Type: TypeString, Doc: "the path within the storage"},
	{Name: "name", Type: TypeString, Doc: "the name"},
}

const (
	byEdgeSerial   = "edge: serial activity"
	byEdgeJob      = "edge: print job"
	byEdgeGcode    = "edge: G-code sent to the printer"
	byEdge         = "edge"
	byEdgeFiles    = "edge: files directory (changes from outside and command/file)"
	byEdgeAnalysis = "edge: G-code analysis of each new file, and print statistics"
	byEdgeBus      = "edge: broker connection (every configured MQTT and NATS connection up, or one of them lost); fired while the broker is away, it is published from the outbox after the reconnect"
	byEdgeReload   = "edge: configuration reload on SIGHUP, once the reloadable settings are in force (docs/scripts.md)"
	byEdgeSDUpload = "edge: upload to the printer's SD card (command/file upload with origin sdcard)"
	notYet         = "not fired yet: "
)

var catalogue = []EventDef{
	{Name: EventStartup, Group: "server", Doc: "The edge has started.", FiredBy: byEdge},
	{Name: EventShutdown, Group: "server", Doc: "The edge is shutting down.", FiredBy: byEdge},
	{Name: "ClientOpened", Group: "server", Doc: "A client has connected to the push socket.",
		Fields: []FieldDef{{Name: "remoteAddress", Type: TypeString}}, FiredBy: notYet + "push-socket clients"},
	{Name: "ClientAuthed", Group: "server", Doc: "A client has authenticated a user session on the push socket.",
		Fields: []FieldDef{{Name: "remoteAddress", Type: TypeString}, {Name: "username", Type: TypeString}}, FiredBy: notYet + "push-socket clients"},
	{Name: "ClientClosed", Group: "server", Doc: "A client has disconnected from the push socket.",
		Fields: []FieldDef{{Name: "remoteAddress", Type: TypeString}}, FiredBy: notYet + "push-socket clients"},
	{Name: "ClientDeauthed", Group: "server", Doc: "A client has deauthenticated.",
		Fields: []FieldDef{{Name: "remoteAddress", Type: TypeString}, {Name: "username", Type: TypeString}}, FiredBy: notYet + "push-socket clients"},
	{Name: "UserLoggedIn", Group: "server", Doc: "A user logged in.",
		Fields: []FieldDef{{Name: "username", Type: TypeString}}, FiredBy: notYet + "users"},
	{Name: "UserLoggedOut", Group: "server", Doc: "A user logged out.",
		Fields: []FieldDef{{Name: "username", Type: TypeString}}, FiredBy: notYet + "users"},
	{Name: EventConnectivityChanged, Group: "server", Doc: "The edge's broker connectivity changed.",
		Fields: []FieldDef{{Name: "old", Type: TypeBool}, {Name: "new", Type: TypeBool}}, FiredBy: byEdgeBus},

	{Name: EventConnecting, Group: "printer communication", Doc: "The edge is attempting to connect to the printer.", FiredBy: byEdgeSerial},
	{Name: EventConnected, Group: "printer communication", Doc: "The edge has connected to the printer.",
		Fields: []FieldDef{{Name: "port", Type: TypeString}, {Name: "baudrate", Type: TypeInt}}, FiredBy: byEdgeSerial},
	{Name: EventDisconnecting, Group: "printer communication", Doc: "The edge is going to disconnect from the printer.", FiredBy: byEdgeSerial},
	{Name: EventDisconnected, Group: "printer communication", Doc: "The edge has disconnected from the printer.", FiredBy: byEdgeSerial},
	{Name: "ConnectionsAutorefreshed", Group: "printer communication", Doc: "The list of serial ports was refreshed.",
		Fields: []FieldDef{{Name: "connections", Type: TypeAny, Optional: true}}, FiredBy: notYet + "port autodetection"},
	{Name: EventError, Group: "printer communication", Doc: "An unrecoverable error on the firmware or the connection.",
		Fields: []FieldDef{
			{Name: "error", Type: TypeString, Doc: "the error string"},
			{Name: "reason", Type: TypeString, Doc: "firmware, resend, resend_loop, timeout, connection, start_print, autodetect"},
			{Name: "consequence", Type: TypeString, Optional: true, Doc: "emergency, disconnect or cancel"},
			{Name: "faq", Type: TypeString, Optional: true},
			{Name: "logs", Type: TypeArray, Optional: true, Doc: "the last lines of the serial log"},
		}, FiredBy: byEdgeSerial},
	{Name: EventPrinterStateChanged, Group: "printer communication", Doc: "The state of the printer changed.",
		Fields: []FieldDef{{Name: "state_id", Type: TypeString}, {Name: "state_string", Type: TypeString}}, FiredBy: byEdgeSerial},
	{Name: EventPrinterReset, Group: "printer communication", Doc: "The firmware sent start while connected.",
		Fields: []FieldDef{{Name: "idle", Type: TypeBool}}, FiredBy: byEdgeSerial},
	{Name: "PrinterControlsChanged", Group: "printer communication", Doc: "The printer's controls changed (OctoPrint 2.0).", FiredBy: notYet + "OctoPrint 2.0 controls"},

	{Name: "Upload", Group: "file handling", Doc: "A file has been uploaded.",
		Fields: []FieldDef{{Name: "name", Type: TypeString}, {Name: "path", Type: TypeString}, {Name: "target", Type: TypeString},
			{Name: "select", Type: TypeBool}, {Name: "print", Type: TypeBool}, {Name: "effective_select", Type: TypeBool},
			{Name: "effective_print", Type: TypeBool}, {Name: "userdata", Type: TypeAny, Optional: true}}, FiredBy: byEdgeFiles + "; " + byEdgeSDUpload + ", with target sdcard"},
	{Name: "FileAdded", Group: "file handling", Doc: "A file has been added to a storage.",
		Fields: append(append([]FieldDef{}, storageFields...), FieldDef{Name: "type", Type: TypeArray}, FieldDef{Name: "operation", Type: TypeString}), FiredBy: byEdgeFiles},
	{Name: "FileRemoved", Group: "file handling", Doc: "A file has been removed from a storage.",
		Fields: append(append([]FieldDef{}, storageFields...), FieldDef{Name: "type", Type: TypeArray}, FieldDef{Name: "operation", Type: TypeString}), FiredBy: byEdgeFiles},
	{Name: "FileMoved", Group: "file handling", Doc: "A file has been moved.",
		Fields: []FieldDef{{Name: "storage", Type: TypeString}, {Name: "source_path", Type: TypeString}, {Name: "source_name", Type: TypeString},
			{Name: "source_type", Type: TypeArray}, {Name: "destination_path", Type: TypeString}, {Name: "destination_name", Type: TypeString},
			{Name: "destination_type", Type: TypeArray}}, FiredBy: byEdgeFiles},
	{Name: "FolderAdded", Group: "file handling", Doc: "A folder has been added to a storage.", Fields: storageFields, FiredBy: byEdgeFiles},
	{Name: "FolderRemoved", Group: "file handling", Doc: "A folder has been removed from a storage.", Fields: storageFields, FiredBy: byEdgeFiles},
	{Name: "FolderMoved", Group: "file handling", Doc: "A folder has been moved.",
		Fields: []FieldDef{{Name: "storage", Type: TypeString}, {Name: "source_path", Type: TypeString}, {Name: "source_name", Type: TypeString},
			{Name: "destination_path", Type: TypeString}, {Name: "destination_name", Type: TypeString}}, FiredBy: byEdgeFiles},
	{Name: EventUpdatedFiles, Group: "file handling", Doc: "A file list was modified.",
		Fields:  []FieldDef{{Name: "type", Type: TypeString}},
		FiredBy: byEdgeFiles + ", and every SD card file list the printer sends (M20), as OctoPrint fires it"},
	{Name: "MetadataAnalysisStarted", Group: "file handling", Doc: "The metadata analysis of a file has started.", Fields: fileFields, FiredBy: byEdgeAnalysis},
	{Name: "MetadataAnalysisFinished", Group: "file handling", Doc: "The metadata analysis of a file has finished.",
		Fields: append(append([]FieldDef{}, fileFields...), FieldDef{Name: "result", Type: TypeObject}), FiredBy: byEdgeAnalysis},
	{Name: "MetadataStatisticsUpdated", Group: "file handling", Doc: "The metadata of a file has been updated after a print.",
		Fields: []FieldDef{{Name: "storage", Type: TypeString}, {Name: "path", Type: TypeString}}, FiredBy: byEdgeAnalysis},
	{Name: EventFileSelected, Group: "file handling", Doc: "A file has been selected for printing.", Fields: fileFields, FiredBy: byEdgeJob},
	{Name: EventFileDeselected, Group: "file handling", Doc: "No file is selected any more.", FiredBy: byEdgeJob},
	{Name: EventTransferStarted, Group: "file handling", Doc: "A file transfer to the printer's SD has started.",
		Fields: []FieldDef{{Name: "local", Type: TypeString, Doc: "the file's path in the files directory"},
			{Name: "remote", Type: TypeString, Doc: "the file's name on the SD card"}}, FiredBy: byEdgeSDUpload},
	{Name: EventTransferDone, Group: "file handling", Doc: "A file transfer to the printer's SD has finished.",
		Fields: []FieldDef{{Name: "time", Type: TypeFloat, Doc: "seconds the transfer took"}, {Name: "local", Type: TypeString},
			{Name: "remote", Type: TypeString}}, FiredBy: byEdgeSDUpload},
	{Name: EventTransferFailed, Group: "file handling", Doc: "A file transfer to the printer's SD has failed.",
		Fields: []FieldDef{{Name: "local", Type: TypeString}, {Name: "remote", Type: TypeString},
			{Name: "time", Type: TypeFloat, Doc: "seconds until the transfer failed (OctoPrint 1.11 sends it too, undocumented)"}}, FiredBy: byEdgeSDUpload},

	{Name: EventPrintStarted, Group: "printing", Doc: "A print has started.", Fields: withJob(), FiredBy: byEdgeJob},
	{Name: EventPrintDone, Group: "printing", Doc: "A print completed successfully.",
		Fields: withJob(FieldDef{Name: "time", Type: TypeFloat, Doc: "print time in seconds, paused time excluded"}), FiredBy: byEdgeJob},
	{Name: EventPrintFailed, Group: "printing", Doc: "A print failed (reason cancelled or error).",
		Fields: withJob(
			FieldDef{Name: "time", Type: TypeFloat},
			FieldDef{Name: "reason", Type: TypeString, Doc: "cancelled or error"},
			FieldDef{Name: "error", Type: TypeString, Optional: true},
			FieldDef{Name: "progress", Type: TypeAny, Optional: true, Nullable: true,
				Doc: "for reason error a fraction 0.0-1.0, for reason cancelled an int percentage, as OctoPrint sends them"},
			positionField,
			FieldDef{Name: "fileposition", Type: TypeInt, Optional: true}), FiredBy: byEdgeJob},
	{Name: EventPrintCancelling, Group: "printing", Doc: "The print is about to be cancelled.",
		Fields: withJob(FieldDef{Name: "firmwareError", Type: TypeString, Optional: true}), FiredBy: byEdgeJob},
	{Name: EventPrintCancelled, Group: "printing", Doc: "The print has been cancelled.",
		Fields: withJob(FieldDef{Name: "time", Type: TypeFloat}, positionField,
			FieldDef{Name: "fileposition", Type: TypeInt}, FieldDef{Name: "progress", Type: TypeInt}), FiredBy: byEdgeJob},
	{Name: EventPrintPaused, Group: "printing", Doc: "The print has been paused.",
		Fields: withJob(positionField, FieldDef{Name: "fileposition", Type: TypeInt}, FieldDef{Name: "progress", Type: TypeInt}), FiredBy: byEdgeJob},
	{Name: EventPrintResumed, Group: "printing", Doc: "The print has been resumed.", Fields: withJob(), FiredBy: byEdgeJob},
	{Name: EventChartMarked, Group: "printing", Doc: "A time-based marking for the temperature chart.",
		Fields: []FieldDef{{Name: "type", Type: TypeString}, {Name: "label", Type: TypeString, Optional: true}, {Name: "time", Type: TypeFloat, Optional: true}}, FiredBy: byEdgeJob},

	{Name: EventPowerOn, Group: "gcode", Doc: "An M80 was sent to the printer.", FiredBy: byEdgeGcode},
	{Name: EventPowerOff, Group: "gcode", Doc: "An M81 was sent to the printer.", FiredBy: byEdgeGcode},
	{Name: EventHome, Group: "gcode", Doc: "A G28 was sent to the printer.", FiredBy: byEdgeGcode},
	{Name: EventZChange, Group: "gcode", Doc: "A G0 or G1 with a new Z was sent to the printer (Z-hops included).",
		Fields: []FieldDef{{Name: "new", Type: TypeFloat}, {Name: "old", Type: TypeFloat, Nullable: true}}, FiredBy: byEdgeGcode},
	{Name: EventWaiting, Group: "gcode", Doc: "An M0, M1 or M226 was sent to the printer.", FiredBy: byEdgeGcode},
	{Name: EventDwelling, Group: "gcode", Doc: "A G4 was sent to the printer (OctoPrint's docs call it Dwell, but Dwelling is what fires).", FiredBy: byEdgeGcode},
	{Name: EventCooling, Group: "gcode", Doc: "An M245 was sent to the printer.", FiredBy: byEdgeGcode},
	{Name: EventAlert, Group: "gcode", Doc: "An M300 was sent to the printer.", FiredBy: byEdgeGcode},
	{Name: EventConveyor, Group: "gcode", Doc: "An M240 was sent to the printer.", FiredBy: byEdgeGcode},
	{Name: EventEject, Group: "gcode", Doc: "An M40 was sent to the printer.", FiredBy: byEdgeGcode},
	{Name: EventEStop, Group: "gcode", Doc: "An M112 was sent to the printer.", FiredBy: byEdgeGcode},
	{Name: EventFilamentChange, Group: "gcode", Doc: "An M600, M701 or M702 was sent to the printer.", FiredBy: byEdgeGcode},
	{Name: EventPositionUpdate, Group: "gcode", Doc: "A position report (M114 reply) was received.",
		Fields: []FieldDef{{Name: "reason", Type: TypeString, Nullable: true}, {Name: "x", Type: TypeFloat, Nullable: true},
			{Name: "y", Type: TypeFloat, Nullable: true}, {Name: "z", Type: TypeFloat, Nullable: true}, {Name: "e", Type: TypeFloat, Nullable: true},
			{Name: "t", Type: TypeInt, Nullable: true}, {Name: "f", Type: TypeFloat, Nullable: true}}, FiredBy: byEdgeSerial},
	{Name: EventFirmwareData, Group: "gcode", Doc: "The M115 reply was parsed.",
		Fields: []FieldDef{{Name: "name", Type: TypeString}, {Name: "data", Type: TypeObject}}, FiredBy: byEdgeSerial},
	{Name: EventToolChange, Group: "gcode", Doc: "A tool change command was sent to the printer.",
		Fields: []FieldDef{{Name: "old", Type: TypeInt}, {Name: "new", Type: TypeInt}}, FiredBy: byEdgeGcode},
	{Name: "RegisteredMessageReceived", Group: "gcode", Doc: "A registered feedback message was received.",
		Fields: []FieldDef{{Name: "key", Type: TypeString}, {Name: "matched", Type: TypeString}, {Name: "outputs", Type: TypeAny}}, FiredBy: notYet + "feedback controls"},
	{Name: EventCommandSuppressed, Group: "gcode", Doc: "A command was suppressed and not sent to the printer.",
		Fields:  []FieldDef{{Name: "command", Type: TypeString}, {Name: "message", Type: TypeString}, {Name: "severity", Type: TypeString, Doc: "warn or info"}},
		FiredBy: "edge: a line not sent because of the blocked or ignored commands, the printer profile (no heated bed or chamber, no such tool) or a tool the firmware reported invalid"},
	{Name: EventInvalidToolReported, Group: "gcode", Doc: "The firmware reported a tool as invalid.",
		Fields:  []FieldDef{{Name: "tool", Type: TypeInt}, {Name: "fallback", Type: TypeInt}},
		FiredBy: "edge: the firmware answered a T<n> with Invalid extruder; later T<n> for that tool are suppressed and T<fallback> is sent"},

	{Name: "CaptureStart", Group: "timelapse", Fields: []FieldDef{{Name: "file", Type: TypeString}}, Doc: "A timelapse frame capture has started.", FiredBy: notYet + "timelapse"},
	{Name: "CaptureDone", Group: "timelapse", Fields: []FieldDef{{Name: "file", Type: TypeString}}, Doc: "A timelapse frame has been captured.", FiredBy: notYet + "timelapse"},
	{Name: "CaptureFailed", Group: "timelapse", Fields: []FieldDef{{Name: "file", Type: TypeString}, {Name: "error", Type: TypeString}}, Doc: "A timelapse frame could not be captured.", FiredBy: notYet + "timelapse"},
	{Name: "PostRollStart", Group: "timelapse", Doc: "The timelapse post roll has started.", FiredBy: notYet + "timelapse"},
	{Name: "PostRollEnd", Group: "timelapse", Doc: "The timelapse post roll has ended.", FiredBy: notYet + "timelapse"},
	{Name: "MovieRendering", Group: "timelapse", Doc: "The timelapse movie has started rendering.",
		Fields: []FieldDef{{Name: "gcode", Type: TypeString}, {Name: "movie", Type: TypeString}, {Name: "movie_basename", Type: TypeString}}, FiredBy: notYet + "timelapse"},
	{Name: "MovieDone", Group: "timelapse", Doc: "The timelapse movie is completed.",
		Fields: []FieldDef{{Name: "gcode", Type: TypeString}, {Name: "movie", Type: TypeString}, {Name: "movie_basename", Type: TypeString}}, FiredBy: notYet + "timelapse"},
	{Name: "MovieFailed", Group: "timelapse", Doc: "The timelapse movie failed to render.",
		Fields: []FieldDef{{Name: "gcode", Type: TypeString}, {Name: "movie", Type: TypeString}, {Name: "movie_basename", Type: TypeString},
			{Name: "returncode", Type: TypeInt}, {Name: "reason", Type: TypeString}}, FiredBy: notYet + "timelapse"},

	{Name: "SlicingStarted", Group: "slicing", Doc: "The slicing of a file has started.", Fields: slicingFields(FieldDef{Name: "progressAvailable", Type: TypeBool}), FiredBy: notYet + "slicing"},
	{Name: "SlicingDone", Group: "slicing", Doc: "The slicing of a file has completed.", Fields: slicingFields(FieldDef{Name: "time", Type: TypeFloat}), FiredBy: notYet + "slicing"},
	{Name: "SlicingCancelled", Group: "slicing", Doc: "The slicing of a file has been cancelled.", Fields: slicingFields(), FiredBy: notYet + "slicing"},
	{Name: "SlicingFailed", Group: "slicing", Doc: "The slicing of a file has failed.", Fields: slicingFields(FieldDef{Name: "reason", Type: TypeString}), FiredBy: notYet + "slicing"},
	{Name: "SlicingProfileAdded", Group: "slicing", Doc: "A slicing profile was added.", Fields: []FieldDef{{Name: "slicer", Type: TypeString}, {Name: "profile", Type: TypeString}}, FiredBy: notYet + "slicing"},
	{Name: "SlicingProfileModified", Group: "slicing", Doc: "A slicing profile was modified.", Fields: []FieldDef{{Name: "slicer", Type: TypeString}, {Name: "profile", Type: TypeString}}, FiredBy: notYet + "slicing"},
	{Name: "SlicingProfileDeleted", Group: "slicing", Doc: "A slicing profile was deleted.", Fields: []FieldDef{{Name: "slicer", Type: TypeString}, {Name: "profile", Type: TypeString}}, FiredBy: notYet + "slicing"},

	{Name: EventSettingsUpdated, Group: "settings", Doc: "The settings were updated.", FiredBy: byEdgeReload},
	{Name: "PrinterProfileAdded", Group: "printer profile", Doc: "A printer profile was added.", Fields: []FieldDef{{Name: "identifier", Type: TypeString}}, FiredBy: notYet + "printer profile management (the edge has one profile file)"},
	{Name: EventPrinterProfileModified, Group: "printer profile", Doc: "A printer profile was modified.", Fields: []FieldDef{{Name: "identifier", Type: TypeString}},
		FiredBy: "edge: the --printer-profile file changed on disk, or a reload changed the profile"},
	{Name: "PrinterProfileDeleted", Group: "printer profile", Doc: "A printer profile was deleted.", Fields: []FieldDef{{Name: "identifier", Type: TypeString}}, FiredBy: notYet + "printer profile management (the edge has one profile file)"},
}

func slicingFields(extra ...FieldDef) []FieldDef {
	out := []FieldDef{{Name: "slicer", Type: TypeString}, {Name: "stl", Type: TypeString}, {Name: "stl_location", Type: TypeString},
		{Name: "gcode", Type: TypeString}, {Name: "gcode_location", Type: TypeString}}
	return append(out, extra...)
}

// Templated event names, spelled as OctoPrint's event documentation
// (docs/events/index.rst) spells them. ${ScriptName} is the script's name
// with its first letter upper-cased (GcodeScriptBeforePrintStartedRunning).
const (
	TemplateScriptRunning  = "GcodeScript${ScriptName}Running"
	TemplateScriptFinished = "GcodeScript${ScriptName}Finished"
	TemplatePluginEvent    = "plugin_<id>_<name>"
)

const (
	byEdgeScript = "edge: the print GCODE scripts beforePrintStarted, afterPrintPaused, beforePrintResumed, " +
		"afterPrintDone and afterPrintCancelled, also when the script file does not exist (docs/scripts.md)"
	scriptPayload = "the payload of the event that runs the script (PrintStarted, PrintPaused, PrintResumed, " +
		"PrintDone or PrintCancelled): the print job keys below and that event's other keys"
)

// scriptTemplates are the events around OctoPrint's GCODE scripts, listed
// after PrintResumed as in OctoPrint's documentation. The edge fires one
// name per script, which LookupEvent does not know and IsDynamicEvent
// accepts.
var scriptTemplates = []EventDef{
	{Name: TemplateScriptRunning, Group: "printing", Doc: "A print GCODE script is about to be queued.",
		Fields: jobFields, PayloadNote: scriptPayload, FiredBy: byEdgeScript},
	{Name: TemplateScriptFinished, Group: "printing", Doc: "A print GCODE script has been queued.",
		Fields: jobFields, PayloadNote: scriptPayload, FiredBy: byEdgeScript},
}

var pluginTemplate = EventDef{Name: TemplatePluginEvent, Group: "custom events",
	Doc:         "A custom event of a companion program, made of letters, digits and '_'.",
	PayloadNote: "any JSON object, or null, as published; it is not checked against the catalogue",
	FiredBy:     "edge: a command/event message, such as one sent by printbridge publish"}

var catalogueByName = func() map[string]*EventDef {
	m := make(map[string]*EventDef, len(catalogue))
	for i := range catalogue {
		m[catalogue[i].Name] = &catalogue[i]
	}
	return m
}()

// Events returns the catalogue in its documented order.
func Events() []EventDef {
	return append([]EventDef(nil), catalogue...)
}

// ListedEvents returns the catalogue and the templated names that the
// edge fires, in the documented order: the GCODE script events after
// PrintResumed and the custom plugin events last.
func ListedEvents() []EventDef {
	out := make([]EventDef, 0, len(catalogue)+len(scriptTemplates)+1)
	for _, d := range catalogue {
		out = append(out, d)
		if d.Name == EventPrintResumed {
			out = append(out, scriptTemplates...)
		}
	}
	return append(out, pluginTemplate)
}

// TemplateExample returns a name that the templated name fires as, for
// a hint to someone who copied the template from the event list, and
// whether name is one of the templated names.
func TemplateExample(name string) (string, bool) {
	switch name {
	case TemplateScriptRunning:
		return "GcodeScriptBeforePrintStartedRunning", true
	case TemplateScriptFinished:
		return "GcodeScriptAfterPrintDoneFinished", true
	case TemplatePluginEvent:
		return "plugin_acme_hello", true
	}
	return "", false
}

// LookupEvent returns the catalogue entry for an exact, case-sensitive name.
func LookupEvent(name string) (*EventDef, bool) {
	d, ok := catalogueByName[name]
	return d, ok
}

// NotFiredYet returns the subsystem an event waits for when printbridge
// does not fire it yet, and whether that is the case.
func NotFiredYet(def *EventDef) (subsystem string, ok bool) {
	return strings.CutPrefix(def.FiredBy, notYet)
}

// IsDynamicEvent reports whether name is one of OctoPrint's generated
// names, which the catalogue cannot list: GcodeScript<Name>Running or
// GcodeScript<Name>Finished, and plugin_<id>_<name>.
//
// Both must also be safe as one MQTT topic level and one NATS subject
// token: letters, digits and '_' only, so no name can carry a wildcard
// or a separator into a topic.
func IsDynamicEvent(name string) bool {
	if !isTokenName(name, 128, false) {
		return false
	}
	if strings.HasPrefix(name, "GcodeScript") {
		rest := strings.TrimPrefix(name, "GcodeScript")
		return (strings.HasSuffix(rest, "Running") && len(rest) > len("Running")) ||
			(strings.HasSuffix(rest, "Finished") && len(rest) > len("Finished"))
	}
	if strings.HasPrefix(name, "plugin_") {
		rest := strings.TrimPrefix(name, "plugin_")
		i := strings.IndexByte(rest, '_')
		return i > 0 && i < len(rest)-1
	}
	return false
}

// SuggestEvent returns the catalogue name closest to an unknown name: a
// case-insensitive match, the documented-but-wrong Dwell, or "".
func SuggestEvent(name string) string {
	if name == "Dwell" || strings.EqualFold(name, "dwell") {
		return EventDwelling
	}
	for _, d := range catalogue {
		if strings.EqualFold(d.Name, name) {
			return d.Name
		}
	}
	best, bestDist := "", 3
	for _, d := range catalogue {
		if dist := EditDistance(strings.ToLower(name), strings.ToLower(d.Name)); dist < bestDist {
			best, bestDist = d.Name, dist
		}
	}
	return best
}

// EventNames returns every catalogue name, sorted.
func EventNames() []string {
	out := make([]string, 0, len(catalogue))
	for _, d := range catalogue {
		out = append(out, d.Name)
	}
	sort.Strings(out)
	return out
}

// EditDistance returns the Levenshtein distance between a and b in
// bytes, for "did you mean" hints on misspelled names.
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
