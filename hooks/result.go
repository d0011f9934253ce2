package hooks

import (
	"encoding/json"
	"errors"
	"time"
)

// Outcomes that callers and logs tell apart; returned errors wrap them.
var (
	// ErrTimeout is a hook run that exceeded its timeout. For a system
	// hook the process group was killed.
	ErrTimeout = errors.New("hook timed out")
	// ErrLoopGuard is a G-code hook whose lines would fire the event that
	// runs the hook, so they were not sent.
	ErrLoopGuard = errors.New("G-code would fire the hook's own event again")
	// ErrStopped is a hook run cut short because the worker is stopping.
	ErrStopped = errors.New("worker is stopping")
)

// CommandResult is the outcome of one command of a system hook.
type CommandResult struct {
	// ExitCode is the process's exit status, or -1 when it did not start
	// or was killed by a signal.
	ExitCode int
	Duration time.Duration
}

// Result is the outcome of one hook run for one event.
type Result struct {
	// Hook is the subscription's name, or "#<entry> <event>".
	Hook    string
	Event   string
	EventID string
	Printer string
	Type    HookType
	// ExitCode is the exit status of the last command that ran, -1 when
	// none ran. For G-code hooks it is 0 when the edge replied done and 1
	// when it replied rejected or failed.
	ExitCode int
	// Commands has one entry per command that ran, in order; a failing
	// command ends the list.
	Commands []CommandResult
	Duration time.Duration
	// OutputTail is the end of the combined stdout and stderr of the
	// commands, or the firmware's reply lines of a G-code hook.
	OutputTail string
	// CommandID is the id of the G-code command a gcode hook sent.
	CommandID string
	// Err is nil on success.
	Err error
}

type commandJSON struct {
	ExitCode        int     `json:"exit_code"`
	DurationSeconds float64 `json:"duration_seconds"`
}

type resultJSON struct {
	Hook            string        `json:"hook"`
	Event           string        `json:"event"`
	EventID         string        `json:"event_id"`
	Printer         string        `json:"printer"`
	Type            HookType      `json:"type"`
	ExitCode        int           `json:"exit_code"`
	DurationSeconds float64       `json:"duration_seconds"`
	OutputTail      string        `json:"output_tail"`
	Error           string        `json:"error"`
	Commands        []commandJSON `json:"commands"`
	CommandID       string        `json:"command_id,omitempty"`
}

// MarshalJSON writes the message published on the printer's hook topic:
// durations in seconds, and error "" on success.
func (r Result) MarshalJSON() ([]byte, error) {
	out := resultJSON{
		Hook: r.Hook, Event: r.Event, EventID: r.EventID, Printer: r.Printer, Type: r.Type,
		ExitCode: r.ExitCode, DurationSeconds: r.Duration.Seconds(), OutputTail: r.OutputTail,
		Commands: make([]commandJSON, len(r.Commands)), CommandID: r.CommandID,
	}
	if r.Err != nil {
		out.Error = r.Err.Error()
	}
	for i, c := range r.Commands {
		out.Commands[i] = commandJSON{ExitCode: c.ExitCode, DurationSeconds: c.Duration.Seconds()}
	}
	return json.Marshal(out)
}
