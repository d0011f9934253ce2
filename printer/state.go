package printer

import "github.com/printbridge/printbridge/bridge/lazy"

// State is one of OctoPrint's communication states. The string values are
// OctoPrint's state ids, so PrinterStateChanged payloads match.
type State string

// States, with OctoPrint's ids.
const (
	StateOffline         State = "OFFLINE"
	StateOpenSerial      State = "OPEN_SERIAL"
	StateConnecting      State = "CONNECTING"
	StateOperational     State = "OPERATIONAL"
	StateStarting        State = "STARTING"
	StatePrinting        State = "PRINTING"
	StatePaused          State = "PAUSED"
	StatePausing         State = "PAUSING"
	StateResuming        State = "RESUMING"
	StateFinishing       State = "FINISHING"
	StateCancelling      State = "CANCELLING"
	StateError           State = "ERROR"
	StateClosed          State = "CLOSED"
	StateClosedWithError State = "CLOSED_WITH_ERROR"
)

// StateTransferringFile is an upload to the SD card; OctoPrint spells the
// id with one R.
const StateTransferringFile State = "TRANSFERING_FILE"

var stateStrings = lazy.Map[State, string]{Build: func() map[State]string {
	return map[State]string{
		StateOffline:         "Offline",
		StateOpenSerial:      "Opening serial connection",
		StateConnecting:      "Connecting",
		StateOperational:     "Operational",
		StateStarting:        "Starting",
		StatePrinting:        "Printing",
		StatePaused:          "Paused",
		StatePausing:         "Pausing",
		StateResuming:        "Resuming",
		StateFinishing:       "Finishing",
		StateCancelling:      "Cancelling",
		StateError:           "Error",
		StateClosed:          "Offline",
		StateClosedWithError: "Offline after error",

		StateTransferringFile: "Transferring file to SD",
	}
}}

// String returns OctoPrint's state string, such as "Operational".
func (s State) String() string {
	if str, ok := stateStrings.Get()[s]; ok {
		return str
	}
	return "Unknown State (" + string(s) + ")"
}

// EventID returns the state id that OctoPrint 1.11 puts in
// PrinterStateChanged. It reports both closed states as OFFLINE because
// it drops the connection before building the payload; printbridge
// copies that so automations written for OctoPrint match, and tells the
// two apart in the state snapshot's error field.
func (s State) EventID() (id, text string) {
	if s == StateClosed || s == StateClosedWithError {
		return string(StateOffline), StateOffline.String()
	}
	return string(s), s.String()
}

// Operational reports whether commands can be sent.
func (s State) Operational() bool {
	switch s {
	case StateOperational, StateStarting, StatePrinting, StatePaused, StatePausing,
		StateResuming, StateFinishing, StateCancelling, StateTransferringFile:
		return true
	}
	return false
}

// Printing reports whether a job is active (paused excluded), OctoPrint's
// printing set.
func (s State) Printing() bool {
	switch s {
	case StateStarting, StatePrinting, StateCancelling, StatePausing, StateResuming, StateFinishing:
		return true
	}
	return false
}
