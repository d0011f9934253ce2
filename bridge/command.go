package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MaxCommandSize is the largest command message accepted, in bytes.
const MaxCommandSize = 64 * 1024

// Job actions of command/job and connection actions of command/connection.
const (
	ActionSelect     = "select"
	ActionStart      = "start"
	ActionPause      = "pause"
	ActionResume     = "resume"
	ActionCancel     = "cancel"
	ActionConnect    = "connect"
	ActionDisconnect = "disconnect"
)

// Command is a message on command/<kind>.
type Command struct {
	ID string `json:"id"`
	// Commands are the G-code lines of a gcode command, in order.
	Commands []string `json:"commands,omitempty"`
	// Action is the job or connection action.
	Action string `json:"action,omitempty"`
	// Path is the job file, relative to the edge's files directory.
	Path string `json:"path,omitempty"`
	// Source names the sender, such as "hook:Connected", for logs.
	Source string `json:"source,omitempty"`
	// ReplyTo overrides the reply topic or subject.
	ReplyTo string `json:"reply_to,omitempty"`
	// Expires drops the command with a rejected reply once passed.
	Expires *time.Time `json:"expires,omitempty"`
	// Event and Payload are the event of a command/event message.
	Event   string  `json:"event,omitempty"`
	Payload Payload `json:"payload,omitempty"`
}

// Reply statuses, in the order a command goes through them.
const (
	ReplyAccepted = "accepted"
	ReplyRejected = "rejected"
	ReplyDone     = "done"
	ReplyFailed   = "failed"
)

// Reply answers a command; every command gets accepted or rejected, and
// an accepted one later gets done or failed.
type Reply struct {
	ID      string    `json:"id"`
	Printer string    `json:"printer"`
	Kind    string    `json:"kind"`
	Status  string    `json:"status"`
	Reason  string    `json:"reason,omitempty"`
	Lines   []string  `json:"lines,omitempty"`
	Time    time.Time `json:"time"`
}

// Final reports whether no further reply follows this one.
func (r *Reply) Final() bool {
	return r.Status != ReplyAccepted
}

// CommandError is a malformed or invalid command. ID is set when the
// message carried one, so the rejection can name it.
type CommandError struct {
	ID     string
	Reason string
}

func (e *CommandError) Error() string { return e.Reason }

// DecodeCommand parses and validates one message of the given kind.
func DecodeCommand(kind string, data []byte) (*Command, error) {
	if len(data) > MaxCommandSize {
		return nil, &CommandError{Reason: fmt.Sprintf("command message of %d bytes exceeds the maximum of %d bytes", len(data), MaxCommandSize)}
	}
	var raw struct {
		Command
		Commands json.RawMessage `json:"commands,omitempty"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, &CommandError{ID: peekID(data), Reason: fmt.Sprintf("invalid JSON command: %v", err)}
	}
	cmd := raw.Command
	if cmd.ID == "" {
		return nil, &CommandError{Reason: `missing "id": every command needs an id so that its replies can be matched`}
	}
	lines, err := decodeLines(raw.Commands)
	if err != nil {
		return nil, &CommandError{ID: cmd.ID, Reason: err.Error()}
	}
	cmd.Commands = lines
	if err := validateCommand(kind, &cmd); err != nil {
		return nil, &CommandError{ID: cmd.ID, Reason: err.Error()}
	}
	return &cmd, nil
}

// decodeLines accepts a list of strings or, for convenience from Home
// Assistant and Node-RED, one string.
func decodeLines(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf(`invalid "commands": want a string or a list of strings, got %s`, truncate(string(raw), 60))
	}
	return many, nil
}

func validateCommand(kind string, cmd *Command) error {
	switch kind {
	case CommandGcode:
		if cmd.Action != "" {
			return fmt.Errorf(`"action" is not valid on command/gcode; send jobs to command/job`)
		}
		if len(cmd.Commands) == 0 {
			return errors.New(`missing "commands": give one or more G-code lines`)
		}
		for i, line := range cmd.Commands {
			if strings.ContainsAny(line, "\r\n") {
				return fmt.Errorf("commands[%d] contains a line break; send each line as its own list entry", i)
			}
		}
	case CommandJob:
		switch cmd.Action {
		case ActionSelect, ActionStart:
		case ActionPause, ActionResume, ActionCancel:
			if cmd.Path != "" {
				return fmt.Errorf(`"path" is only valid with select and start, not %q`, cmd.Action)
			}
		case "":
			return errors.New(`missing "action": use select, start, pause, resume or cancel`)
		default:
			return fmt.Errorf("unknown job action %q: use select, start, pause, resume or cancel", cmd.Action)
		}
	case CommandEvent:
		if cmd.Event == "" {
			return errors.New(`missing "event": name the event to fire`)
		}
		if cmd.Action != "" {
			return errors.New(`"action" is not valid on command/event`)
		}
		if err := ValidatePayload(cmd.Event, cmd.Payload); err != nil {
			return err
		}
	case CommandConnection:
		switch cmd.Action {
		case ActionConnect, ActionDisconnect:
		case "":
			return errors.New(`missing "action": use connect or disconnect`)
		default:
			return fmt.Errorf("unknown connection action %q: use connect or disconnect", cmd.Action)
		}
	default:
		return fmt.Errorf("unknown command kind %q: use gcode, job, connection or event", kind)
	}
	if kind != CommandEvent && (cmd.Event != "" || cmd.Payload != nil) {
		return fmt.Errorf(`"event" and "payload" are only valid on command/event`)
	}
	if kind != CommandGcode && len(cmd.Commands) > 0 {
		return fmt.Errorf(`"commands" is only valid on command/gcode`)
	}
	return nil
}

// peekID extracts "id" from a message that failed strict decoding, so the
// rejection can still carry it.
func peekID(data []byte) string {
	var probe struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return ""
	}
	if s, ok := probe.ID.(string); ok {
		return s
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
