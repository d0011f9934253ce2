package hooks

import (
	"errors"
	"strconv"
	"time"

	"github.com/printbridge/printbridge/bridge/jsonwire"
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
	// ErrStale is a G-code hook not sent because its event is older than
	// printbridge.gcode_max_age behind a newer event of its printer.
	ErrStale = errors.New("event too old for its G-code")
	// ErrOffline is a G-code hook not sent because the edge of its
	// printer published "offline", or because the NATS server reported
	// that its command reached no edge (bridge.ErrNoSubscriber).
	ErrOffline = errors.New("printer offline")
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

// MarshalJSON writes the message published on the printer's hook topic:
// durations in seconds, and error "" on success.
func (r Result) MarshalJSON() ([]byte, error) {
	return r.AppendJSON(make([]byte, 0, r.encodedSizeHint()))
}

// encodedSizeHint is a buffer capacity for AppendJSON that rarely needs to
// grow. It counts about 200 bytes of keys, quotes and numbers, the
// strings, and about 48 bytes per command, so only escapes and long error
// texts exceed it.
func (r Result) encodedSizeHint() int {
	return 216 + len(r.Hook) + len(r.Event) + len(r.EventID) + len(r.Printer) + len(r.Type) +
		len(r.OutputTail) + len(r.CommandID) + 48*len(r.Commands)
}

// AppendJSON appends the message of [Result.MarshalJSON] to dst without
// going through json.Marshal, which re-validates the output of every
// MarshalJSON method and which the worker would otherwise run once per
// hook result. The bytes are those that json.Marshal wrote for the
// struct of snake_case fields that this method replaced.
func (r Result) AppendJSON(dst []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, `{"hook":`...)
	dst = jsonwire.AppendString(dst, r.Hook)
	dst = append(dst, `,"event":`...)
	dst = jsonwire.AppendString(dst, r.Event)
	dst = append(dst, `,"event_id":`...)
	dst = jsonwire.AppendString(dst, r.EventID)
	dst = append(dst, `,"printer":`...)
	dst = jsonwire.AppendString(dst, r.Printer)
	dst = append(dst, `,"type":`...)
	dst = jsonwire.AppendString(dst, string(r.Type))
	dst = append(dst, `,"result":`...)
	dst = jsonwire.AppendString(dst, resultLabel(r))
	dst = append(dst, `,"exit_code":`...)
	dst = strconv.AppendInt(dst, int64(r.ExitCode), 10)
	dst = append(dst, `,"duration_seconds":`...)
	dst, err := jsonwire.AppendFloat(dst, r.Duration.Seconds())
	if err != nil {
		return dst[:start], err
	}
	dst = append(dst, `,"output_tail":`...)
	dst = jsonwire.AppendString(dst, r.OutputTail)
	dst = append(dst, `,"error":`...)
	if r.Err != nil {
		dst = jsonwire.AppendString(dst, r.Err.Error())
	} else {
		dst = append(dst, `""`...)
	}
	dst = append(dst, `,"commands":[`...)
	for i, c := range r.Commands {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"exit_code":`...)
		dst = strconv.AppendInt(dst, int64(c.ExitCode), 10)
		dst = append(dst, `,"duration_seconds":`...)
		if dst, err = jsonwire.AppendFloat(dst, c.Duration.Seconds()); err != nil {
			return dst[:start], err
		}
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	if r.CommandID != "" {
		dst = append(dst, `,"command_id":`...)
		dst = jsonwire.AppendString(dst, r.CommandID)
	}
	return append(dst, '}'), nil
}
