package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxCommandSize is the largest command message accepted, in bytes.
const MaxCommandSize = 64 * 1024

// LargeCommandAdvice is the advice that ends the rejection of a command
// message over the size limit.
const LargeCommandAdvice = `split the G-code lines into several commands; send a larger G-code file in parts ("part" and "parts" of a file add, as printbridge upload does), add it "from" the edge's --import-dir, or copy it into the edge's files folder`

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

// File actions of command/file.
const (
	FileAdd    = "add"
	FileMove   = "move"
	FileCopy   = "copy"
	FileRemove = "remove"
	FileMkdir  = "mkdir"
	FileList   = "list"
	// FileUpload copies a file of the files directory to the printer's SD
	// card; it needs origin sdcard.
	FileUpload = "upload"
)

// File origins, OctoPrint's storage names: the edge's files directory
// and the printer's SD card.
const (
	OriginLocal  = "local"
	OriginSDCard = "sdcard"
)

// Command is a message on command/<kind>.
type Command struct {
	ID string `json:"id"`
	// Commands are the G-code lines of a gcode command, in order.
	Commands []string `json:"commands,omitempty"`
	// Action is the job or connection action.
	Action string `json:"action,omitempty"`
	// Path is the job file, relative to the edge's files directory, or
	// with Origin sdcard a file name of the printer's SD card.
	Path string `json:"path,omitempty"`
	// Origin is the storage of Path: local (the default) or sdcard.
	Origin string `json:"origin,omitempty"`
	// Source names the sender, such as "hook:Connected", for logs.
	Source string `json:"source,omitempty"`
	// ReplyTo overrides the reply topic or subject.
	ReplyTo string `json:"reply_to,omitempty"`
	// Expires drops the command with a rejected reply once passed.
	Expires *time.Time `json:"expires,omitempty"`
	// Destination is the target of a file move or copy.
	Destination string `json:"destination,omitempty"`
	// Data is the content of a file added inline; From names a file on
	// the edge's host to add instead (only inside its import folder).
	Data *string `json:"data,omitempty"`
	From string  `json:"from,omitempty"`
	// Part and Parts split a file add with Data over several messages:
	// Data is part Part (from 1) of Parts. The file is added once the
	// last part has come, and Select and Print count on the last part
	// only.
	Part  int `json:"part,omitempty"`
	Parts int `json:"parts,omitempty"`
	// UploadID names the upload that the parts belong to, chosen by the
	// sender, so that parts of two uploads of one path never mix. A file
	// remove with UploadID drops that open upload instead.
	UploadID string `json:"upload_id,omitempty"`
	// Select and Print select, or start printing, a file once it is added.
	Select bool `json:"select,omitempty"`
	Print  bool `json:"print,omitempty"`
	// Force lets a G-code command past the policy rules that guard a
	// running print (a heater off or G28 mid-print).
	Force bool `json:"force,omitempty"`
	// Event and Payload are the event of a command/event message.
	Event   string  `json:"event,omitempty"`
	Payload Payload `json:"payload,omitempty"`
}

// ReasonExpired starts the reason of the rejected reply to a command whose
// Expires had passed when the edge got it, followed by that time.
const ReasonExpired = "command expired at"

// Reply statuses, in the order a command goes through them.
const (
	ReplyAccepted = "accepted"
	ReplyRejected = "rejected"
	ReplyDone     = "done"
	ReplyFailed   = "failed"
)

// Reply is the edge's response to a command. Every command gets accepted or rejected, and
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

// commandKeys lists the keys each kind accepts besides the common ones.
var commandKeys = map[string][]string{
	CommandGcode:      {"commands", "force"},
	CommandJob:        {"action", "path", "origin"},
	CommandConnection: {"action"},
	CommandEvent:      {"event", "payload"},
	CommandFile:       {"action", "path", "destination", "data", "from", "select", "print", "origin", "part", "parts", "upload_id"},
}

var commonCommandKeys = []string{"id", "source", "reply_to", "expires"}

// DecodeCommand parses and validates one message of the given kind. Key
// names are matched exactly (Go's encoding/json would take "ID" for
// "id"), and every error names the field and the expected form.
func DecodeCommand(kind string, data []byte) (*Command, error) {
	if len(data) > MaxCommandSize {
		return nil, &CommandError{ID: PeekCommandID(data), Reason: fmt.Sprintf("command message of %d bytes exceeds the maximum of %d bytes; %s", len(data), MaxCommandSize, LargeCommandAdvice)}
	}
	fields, err := decodeObject(data, commandExample(kind))
	if err != nil {
		id := PeekCommandID(data)
		var dup *duplicateKeyError
		if errors.As(err, &dup) && dup.key == "id" && dup.topLevel {
			// Either id could be the sender's, so the rejection names none.
			id = ""
		}
		return nil, &CommandError{ID: id, Reason: err.Error()}
	}
	cmd := &Command{}
	if raw, ok := fields["id"]; ok {
		if err := json.Unmarshal(raw, &cmd.ID); err != nil {
			return nil, nonStringID(raw)
		}
	}
	if cmd.ID == "" {
		for key := range fields {
			if key != "id" && strings.EqualFold(key, "id") {
				return nil, &CommandError{Reason: fmt.Sprintf(`missing "id": the message has %q, but keys are case-sensitive; use "id"`, key)}
			}
		}
		return nil, &CommandError{Reason: `missing "id": every command needs an id so that its replies can be matched`}
	}
	if !validUTF8String(fields["id"], cmd.ID) {
		// The decoder replaced the invalid bytes with U+FFFD, so a reply
		// could not carry the sender's id back unchanged.
		return nil, &CommandError{ID: cmd.ID, Reason: fmt.Sprintf(`"id" must be valid UTF-8: %q contains bytes or \u escapes that are not UTF-8 text; send an id such as "id": "c1"`,
			truncate(cmd.ID, 40))}
	}
	fail := func(format string, args ...any) (*Command, error) {
		return nil, &CommandError{ID: cmd.ID, Reason: fmt.Sprintf(format, args...)}
	}
	allowed, known := commandKeys[kind]
	if !known {
		return fail("unknown command kind %q: use gcode, job, connection, event or file", kind)
	}
	allowed = append(append([]string{}, commonCommandKeys...), allowed...)
	for key := range fields {
		if !slices.Contains(allowed, key) {
			hint := ""
			for _, a := range allowed {
				if strings.EqualFold(a, key) {
					hint = fmt.Sprintf(" (did you mean %q? keys are case-sensitive)", a)
				}
			}
			return fail("unknown key %q on command/%s%s; valid keys: %s", key, kind, hint, strings.Join(allowed, ", "))
		}
	}
	for key, dst := range map[string]*string{"reply_to": &cmd.ReplyTo, "action": &cmd.Action, "path": &cmd.Path, "event": &cmd.Event,
		"destination": &cmd.Destination, "from": &cmd.From, "origin": &cmd.Origin, "upload_id": &cmd.UploadID} {
		if raw, ok := fields[key]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return fail("%q must be a string", key)
			}
		}
	}
	if _, ok := fields["upload_id"]; ok && !isTokenName(cmd.UploadID, 128, true) {
		// An empty or null id must not turn a remove that drops an
		// upload into one that deletes the file.
		return fail(`invalid "upload_id" %q: use 1 to 128 letters, digits, '-' or '_', or leave the key out`, truncate(cmd.UploadID, 40))
	}
	if _, ok := fields["reply_to"]; ok {
		if err := ValidateReplyTo(cmd.ReplyTo); err != nil {
			return fail("%s", err.Error())
		}
	}
	if raw, ok := fields["expires"]; ok {
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return fail(`"expires" must be a string with an RFC 3339 time, such as 2026-12-03T21:00:00Z`)
		}
		t, err := time.Parse(time.RFC3339, text)
		if err != nil {
			return fail(`"expires" must be an RFC 3339 time, such as 2026-12-03T21:00:00Z, not %q`, text)
		}
		cmd.Expires = &t
	}
	if raw, ok := fields["source"]; ok {
		if err := json.Unmarshal(raw, &cmd.Source); err != nil {
			return fail(`"source" must be a string`)
		}
		if !validUTF8String(raw, cmd.Source) {
			// The decoder replaced the invalid bytes with U+FFFD, so the
			// logs would name a sender that did not send this command.
			return fail(`"source" must be valid UTF-8: %q contains bytes or \u escapes that are not UTF-8 text; send a source such as "source": "hook:Connected"`,
				truncate(cmd.Source, 40))
		}
	}
	if raw, ok := fields["data"]; ok {
		var data string
		if err := json.Unmarshal(raw, &data); err != nil {
			return fail(`"data" must be a string with the file's G-code`)
		}
		cmd.Data = &data
	}
	for key, dst := range map[string]*int{"part": &cmd.Part, "parts": &cmd.Parts} {
		if raw, ok := fields[key]; ok {
			if err := json.Unmarshal(raw, dst); err != nil || *dst < 1 {
				return fail("%q must be a whole number from 1, not %s", key, truncate(string(raw), 40))
			}
		}
	}
	for key, dst := range map[string]*bool{"select": &cmd.Select, "print": &cmd.Print} {
		if raw, ok := fields[key]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return fail("%q must be true or false", key)
			}
		}
	}
	if raw, ok := fields["force"]; ok {
		if err := json.Unmarshal(raw, &cmd.Force); err != nil {
			return fail(`"force" must be true or false`)
		}
	}
	if raw, ok := fields["payload"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &cmd.Payload); err != nil {
			return fail(`"payload" must be a JSON object`)
		}
	}
	lines, err := decodeLines(fields["commands"])
	if err != nil {
		return fail("%s", err.Error())
	}
	cmd.Commands = lines
	if err := validateCommand(kind, cmd); err != nil {
		return fail("%s", err.Error())
	}
	return cmd, nil
}

// commandExample is a valid message of kind, for error messages.
func commandExample(kind string) string {
	switch kind {
	case CommandGcode:
		return `{"id": "c1", "commands": ["M105"]}`
	case CommandJob:
		return `{"id": "c1", "action": "start", "path": "benchy.gcode"}`
	case CommandConnection:
		return `{"id": "c1", "action": "connect"}`
	case CommandEvent:
		return `{"id": "c1", "event": "plugin_acme_hello", "payload": {}}`
	case CommandFile:
		return `{"id": "c1", "action": "list"}`
	}
	return `{"id": "c1", ...}`
}

// jsonValueKind names the kind of a valid JSON value by its first byte.
func jsonValueKind(value []byte) string {
	switch value[0] {
	case '[':
		return "a JSON array"
	case '"':
		return "a JSON string"
	case 't', 'f':
		return "a JSON boolean"
	case 'n':
		return "JSON null"
	case '{':
		return "a JSON object"
	}
	return "a JSON number"
}

// decodeObject splits a message into its top-level fields, rejecting
// anything that is not exactly one JSON object. example is a valid
// message, which the errors show.
func decodeObject(data []byte, example string) (map[string]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("empty message: send a JSON object such as %s", example)
	}
	if trimmed[0] != '{' {
		if !json.Valid(trimmed) {
			return nil, fmt.Errorf("invalid JSON, starting %q: send a JSON object such as %s", truncate(string(trimmed), 20), example)
		}
		return nil, fmt.Errorf("message must be a JSON object, not %s (%s): send a JSON object such as %s",
			jsonValueKind(trimmed), truncate(string(trimmed), 20), example)
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	var fields map[string]json.RawMessage
	if err := dec.Decode(&fields); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return nil, fmt.Errorf("invalid JSON at byte %d: %v: send one JSON object such as %s", syntax.Offset, err, example)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("invalid JSON: the message ends after %d bytes, before the JSON object is complete (unexpected EOF). Send the whole object, such as %s, and check that the sender does not cut it off",
				len(trimmed), example)
		}
		return nil, fmt.Errorf("invalid JSON: %v: send one JSON object such as %s", err, example)
	}
	if rest := bytes.TrimSpace(trimmed[dec.InputOffset():]); len(rest) > 0 {
		return nil, errors.New("invalid JSON: data after the command object; send one command per message")
	}
	if err := checkDuplicateKeys(trimmed); err != nil {
		return nil, err
	}
	return fields, nil
}

// duplicateKeyError is a key given twice in one JSON object.
type duplicateKeyError struct {
	key      string
	topLevel bool
	// parent is the top-level key that contains a nested repeat.
	parent string
}

func (e *duplicateKeyError) Error() string {
	if e.topLevel {
		return fmt.Sprintf("duplicate key %q in the command: give each key once, because only one of its values would be used", e.key)
	}
	return fmt.Sprintf("duplicate key %q inside %q: give each key once, because only one of its values would be used", e.key, e.parent)
}

// checkDuplicateKeys rejects an object, at any depth, that repeats a key.
// encoding/json keeps the last value of a repeated key, so
// {"id":"a15",...,"id":"a16"} would run as a16 while the sender's log
// shows a15. data must be valid JSON.
func checkDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	// Each open object has its set of keys, and each open array nil.
	var stack []map[string]bool
	// where names the top-level key whose value is being read, for the
	// error of a nested repeat.
	where := ""
	expectKey := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("invalid JSON: %v", err)
		}
		if delim, ok := tok.(json.Delim); ok {
			switch delim {
			case '{':
				stack = append(stack, map[string]bool{})
			case '[':
				stack = append(stack, nil)
			default:
				stack = stack[:len(stack)-1]
			}
			expectKey = len(stack) > 0 && stack[len(stack)-1] != nil
			continue
		}
		if expectKey {
			key := tok.(string)
			keys := stack[len(stack)-1]
			if keys[key] {
				return &duplicateKeyError{key: key, topLevel: len(stack) == 1, parent: where}
			}
			keys[key] = true
			if len(stack) == 1 {
				where = key
			}
			expectKey = false
			continue
		}
		// A scalar value ends a member of an object, so a key follows.
		expectKey = len(stack) > 0 && stack[len(stack)-1] != nil
	}
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
	var elements []json.RawMessage
	if err := json.Unmarshal(raw, &elements); err != nil {
		return nil, fmt.Errorf(`invalid "commands": want a string or a list of strings, got %s`, truncate(string(raw), 60))
	}
	// Decoding into []string would turn a null element into "", which
	// then reads as a blank line instead of a wrong type.
	many := make([]string, len(elements))
	for i, element := range elements {
		if err := json.Unmarshal(element, &many[i]); err != nil || element[0] != '"' {
			return nil, fmt.Errorf(`commands[%d] must be a string with one G-code line, not %s`, i, jsonValueKind(element))
		}
	}
	return many, nil
}

func validateCommand(kind string, cmd *Command) error {
	switch kind {
	case CommandGcode:
		if len(cmd.Commands) == 0 {
			return errors.New(`missing "commands": give one or more G-code lines`)
		}
		blank := true
		for i, line := range cmd.Commands {
			if strings.ContainsAny(line, "\r\n") {
				return fmt.Errorf("commands[%d] contains a line break; send each line as its own list entry", i)
			}
			if strings.TrimSpace(line) != "" {
				blank = false
			}
		}
		if blank {
			return errors.New(`"commands" has only blank lines; nothing would be sent`)
		}
	case CommandJob:
		if err := validateOrigin(cmd.Origin); err != nil {
			return err
		}
		switch cmd.Action {
		case ActionSelect, ActionStart:
		case ActionPause, ActionResume, ActionCancel:
			if cmd.Path != "" {
				return fmt.Errorf(`"path" is only valid with select and start, not %q`, cmd.Action)
			}
			if cmd.Origin != "" {
				return fmt.Errorf(`"origin" is only valid with select and start, not %q: %s acts on the running print wherever its file is`, cmd.Action, cmd.Action)
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
	case CommandFile:
		if err := validateOrigin(cmd.Origin); err != nil {
			return err
		}
		if cmd.Origin == OriginSDCard {
			return validateSDFileCommand(cmd)
		}
		// The action decides which other keys are needed, so it is
		// checked first.
		switch cmd.Action {
		case FileAdd, FileMove, FileCopy, FileRemove, FileMkdir, FileList:
		case FileUpload:
			return errors.New(`file upload copies a file to the printer's SD card: add "origin": "sdcard"`)
		case "":
			return errors.New(`missing "action": use add, move, copy, remove, mkdir, list or upload`)
		default:
			return fmt.Errorf("unknown file action %q: use add, move, copy, remove, mkdir, list or upload", cmd.Action)
		}
		if cmd.Path == "" && cmd.Action != FileList {
			return errors.New(`missing "path": name the file or folder inside the edge's files directory`)
		}
		if cmd.Action != FileAdd && (cmd.Part != 0 || cmd.Parts != 0) {
			return fmt.Errorf(`"part" and "parts" belong to a file add, not to %s`, cmd.Action)
		}
		if cmd.Action != FileAdd && cmd.Action != FileRemove && cmd.UploadID != "" {
			return fmt.Errorf(`"upload_id" belongs to a file add in parts, or to a remove that drops that upload, not to %s`, cmd.Action)
		}
		switch cmd.Action {
		case FileAdd:
			if (cmd.Data == nil) == (cmd.From == "") {
				return errors.New(`file add needs exactly one of "data" (the G-code) and "from" (a file in the edge's import folder)`)
			}
			if err := validateParts(cmd); err != nil {
				return err
			}
		case FileRemove:
			if cmd.UploadID != "" && !isTokenName(cmd.UploadID, 128, true) {
				return fmt.Errorf(`invalid "upload_id" %q: use 1 to 128 letters, digits, '-' or '_'`, truncate(cmd.UploadID, 40))
			}
		case FileMove, FileCopy:
			if cmd.Destination == "" {
				return fmt.Errorf(`file %s needs "destination"`, cmd.Action)
			}
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
	return nil
}

// MaxUploadParts is the largest "parts" of a file add. The edge also
// limits the size of the whole file.
const MaxUploadParts = 1 << 20

// validateParts checks "part" and "parts" of a file add.
func validateParts(cmd *Command) error {
	switch {
	case cmd.Part == 0 && cmd.Parts == 0 && cmd.UploadID == "":
		return nil
	case cmd.Part == 0 && cmd.Parts == 0:
		return errors.New(`"upload_id" names an upload in parts: give "part" and "parts" too`)
	case cmd.Part == 0 || cmd.Parts == 0:
		return errors.New(`"part" and "parts" go together: number the messages of a file split over several from "part": 1 up to "parts"`)
	case cmd.Data == nil:
		return errors.New(`"part" and "parts" split "data"; a file added "from" the import folder comes in one message`)
	case cmd.UploadID == "":
		return errors.New(`missing "upload_id": give the parts of one upload the same id of your choice, such as a UUID, so that two uploads of one path never mix`)
	case !isTokenName(cmd.UploadID, 128, true):
		return fmt.Errorf(`invalid "upload_id" %q: use 1 to 128 letters, digits, '-' or '_'`, truncate(cmd.UploadID, 40))
	case cmd.Parts > MaxUploadParts:
		return fmt.Errorf(`"parts" %d is over the maximum of %d`, cmd.Parts, MaxUploadParts)
	case cmd.Part > cmd.Parts:
		return fmt.Errorf(`"part" %d is over "parts" %d`, cmd.Part, cmd.Parts)
	case (cmd.Select || cmd.Print) && cmd.Part != cmd.Parts:
		return fmt.Errorf(`"select" and "print" belong on the last part (%d of %d), once the whole file has come`, cmd.Parts, cmd.Parts)
	}
	return nil
}

func validateOrigin(origin string) error {
	switch origin {
	case "", OriginLocal, OriginSDCard:
		return nil
	}
	return fmt.Errorf("unknown origin %q: use local (the edge's files directory) or sdcard (the printer's SD card)", origin)
}

// validateSDFileCommand checks a command/file message for the SD card:
// list, upload (path in the files directory, destination the optional SD
// name) and remove (path the SD name).
func validateSDFileCommand(cmd *Command) error {
	if cmd.Data != nil || cmd.From != "" {
		return errors.New(`"data" and "from" are not valid with origin sdcard: upload a file of the edge's files directory`)
	}
	if (cmd.Select || cmd.Print) && cmd.Action != FileUpload {
		return fmt.Errorf(`"select" and "print" are only valid with upload, not with %s, on origin sdcard`, cmd.Action)
	}
	switch cmd.Action {
	case FileList:
		if cmd.Path != "" || cmd.Destination != "" {
			return errors.New(`file list with origin sdcard lists the whole card: leave out "path" and "destination"`)
		}
	case FileUpload:
		if cmd.Path == "" {
			return errors.New(`missing "path": name the file in the edge's files directory to copy to the SD card`)
		}
	case FileRemove:
		if cmd.Path == "" {
			return errors.New(`missing "path": name the SD card file as the file list shows it`)
		}
		if cmd.Destination != "" {
			return errors.New(`"destination" is only valid with upload`)
		}
	case "":
		return errors.New(`missing "action": use list, upload or remove with origin sdcard`)
	default:
		return fmt.Errorf("file action %q is not available on the SD card: use list, upload or remove with origin sdcard", cmd.Action)
	}
	return nil
}

// PeekCommandID returns the "id" of a message that may fail to decode, so
// that its rejection can still name it; "" when there is none.
func PeekCommandID(data []byte) string {
	var probe struct {
		ID any `json:"id"`
	}
	// A decoder reads the first object even when junk follows it.
	if json.NewDecoder(bytes.NewReader(data)).Decode(&probe) != nil {
		return ""
	}
	if s, ok := probe.ID.(string); ok {
		return s
	}
	return ""
}

// nonStringID rejects an id that is not a JSON string. A number, as a
// Node-RED flow sends easily, is echoed as the reply's id in its decimal
// form, so that the sender can still match the rejection.
func nonStringID(raw json.RawMessage) *CommandError {
	text := strings.TrimSpace(string(raw))
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return &CommandError{ID: n.String(),
			Reason: fmt.Sprintf(`"id" must be a string, not the number %s: send "id": %q`, n, n.String())}
	}
	return &CommandError{Reason: fmt.Sprintf(`"id" must be a string, not %s: send an id such as "id": "c1"`, truncate(text, 40))}
}

// validUTF8String reports whether the JSON string raw, which decoded to
// text, is valid UTF-8. encoding/json turns invalid bytes and lone
// surrogate escapes such as \ud800 into U+FFFD, so text then contains
// more U+FFFD than raw spells out.
func validUTF8String(raw json.RawMessage, text string) bool {
	if !utf8.Valid(raw) {
		return false
	}
	if !strings.ContainsRune(text, utf8.RuneError) {
		return true
	}
	return spelledReplacements(raw) == strings.Count(text, string(utf8.RuneError))
}

// spelledReplacements counts the U+FFFD characters that the JSON string
// raw spells out, as the character or as a \ufffd escape. An escaped
// backslash is skipped, so `\\ufffd` is not counted.
func spelledReplacements(raw json.RawMessage) int {
	count := 0
	for i := 0; i < len(raw); i++ {
		switch {
		case raw[i] == '\\' && i+1 < len(raw) && raw[i+1] == 'u':
			if i+6 <= len(raw) && bytes.EqualFold(raw[i+2:i+6], []byte("fffd")) {
				count++
			}
			i += 5
		case raw[i] == '\\':
			i++
		case bytes.HasPrefix(raw[i:], []byte(string(utf8.RuneError))):
			count++
		}
	}
	return count
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
