package bridge

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func FuzzDecodeCommand(f *testing.F) {
	seeds := []struct{ kind, data string }{
		{CommandGcode, `{"id": "c-1", "commands": ["M117 Hello", "G28"], "source": "flow"}`},
		{CommandGcode, `{"id": "c-2", "commands": "G28"}`},
		{CommandGcode, `{"id": "c-3", "commands": ["M117 a\nM112"]}`},
		{CommandGcode, `{"id": 7, "commands": [1, 2]}`},
		{CommandGcode, `{"id": "c-4", "commands": ["G28"], "expires": "2020-01-01T00:00:00Z", "reply_to": "x/y"}`},
		{CommandJob, `{"id": "j-1", "action": "start", "path": "../../etc/passwd"}`},
		{CommandJob, `{"id": "j-2", "action": "cancel", "path": "x"}`},
		{CommandConnection, `{"id": "n-1", "action": "connect"}`},
		{CommandEvent, `{"id": "e-1", "event": "ZChange", "payload": {"new": 0.2, "old": null}}`},
		{CommandEvent, `{"id": "e-2", "event": "plugin_x", "payload": {"a": [1, {"b": "c"}]}}`},
		{"nope", `{"id": "x"}`},
		{CommandGcode, `{"id": "c-5", "commands": ["G28"], "unknown": true}`},
		{CommandGcode, `[]`},
		{CommandGcode, `null`},
		{CommandGcode, `{"id": "c-6", "commands": ["G28"]} {"id": "c-7"}`},
		{CommandGcode, "\xff\xfe"},
		{CommandJob, `{"id": "j-3", "action": "start", "path": "CUBE.GCO", "origin": "sdcard"}`},
		{CommandFile, `{"id": "f-1", "action": "upload", "path": "a.gcode", "destination": "a.gco", "origin": "sdcard"}`},
		{CommandFile, `{"id": "f-2", "action": "list", "origin": "sdcard"}`},
		{CommandFile, `{"id": "f-3", "action": "copy", "path": "a", "destination": "b", "origin": "sdcard"}`},
		{CommandFile, `{"id": "f-4", "action": "add", "path": "a.gcode", "data": "G28"}`},
	}
	for _, s := range seeds {
		f.Add(s.kind, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, kind string, data []byte) {
		cmd, err := DecodeCommand(kind, data)
		if err != nil {
			var cerr *CommandError
			if !errors.As(err, &cerr) || cerr.Reason == "" {
				t.Fatalf("DecodeCommand(%q, %q) = %v (%T), want a *CommandError with a reason", kind, data, err, err)
			}
			if cmd != nil {
				t.Fatalf("DecodeCommand(%q, %q) returned a command with an error", kind, data)
			}
			// A rejection is sent back as a reply, so it must encode.
			if _, err := json.Marshal(Reply{ID: cerr.ID, Status: ReplyRejected, Reason: cerr.Reason}); err != nil {
				t.Fatalf("rejection of %q does not encode: %v", data, err)
			}
			return
		}
		if cmd.ID == "" {
			t.Fatalf("DecodeCommand(%q, %q) accepted a command without id", kind, data)
		}
		if len(data) > MaxCommandSize {
			t.Fatalf("DecodeCommand accepted %d bytes, over the maximum of %d", len(data), MaxCommandSize)
		}
		switch kind {
		case CommandGcode:
			if len(cmd.Commands) == 0 {
				t.Fatalf("gcode command %q without lines accepted", data)
			}
			for _, line := range cmd.Commands {
				if strings.ContainsAny(line, "\r\n") {
					t.Fatalf("gcode line %q with a line break accepted", line)
				}
			}
		case CommandJob, CommandConnection:
			if cmd.Action == "" {
				t.Fatalf("%s command %q without action accepted", kind, data)
			}
		case CommandEvent:
			if cmd.Event == "" {
				t.Fatalf("event command %q without event accepted", data)
			}
		case CommandFile:
			if cmd.Action == "" {
				t.Fatalf("file command %q without action accepted", data)
			}
			if cmd.Origin == OriginSDCard && cmd.Action != FileList && cmd.Action != FileUpload && cmd.Action != FileRemove {
				t.Fatalf("SD file command %q with action %q accepted", data, cmd.Action)
			}
			if cmd.Action == FileUpload && cmd.Origin != OriginSDCard {
				t.Fatalf("upload %q without origin sdcard accepted", data)
			}
		default:
			t.Fatalf("command of unknown kind %q accepted", kind)
		}
	})
}

func FuzzDecodeEnvelope(f *testing.F) {
	seeds := []string{
		`{"schema": 1, "id": "0193a6f0-0000-7000-8000-000000000001", "seq": 3, "printer": "mk3s", "event": "ZChange", "time": "2026-12-03T21:00:00.123Z", "payload": {"new": 0.4, "old": 0.2}, "context": {"currentZ": 0.4, "progress": 12.5, "file": {"name": "a", "path": "a", "origin": "local"}, "state": "PRINTING"}}`,
		`{"id": "x", "printer": "p", "event": "Startup", "payload": null}`,
		`{"id": "x", "printer": "p", "event": "PrintDone", "payload": {"name": "a;b", "time": 1e308}}`,
		`{"id": "", "printer": "p", "event": "E"}`,
		`{"seq": -1}`,
		`{"time": "yesterday"}`,
		`[1, 2]`,
		`{"payload": {"a": {"b": {"c": [[[[]]]]}}}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := DecodeEnvelope(data)
		if err != nil {
			if env != nil {
				t.Fatalf("DecodeEnvelope(%q) returned an envelope with an error", data)
			}
			return
		}
		if env.ID == "" || env.Event == "" || env.Printer == "" {
			t.Fatalf("DecodeEnvelope(%q) accepted an envelope without id, event or printer: %+v", data, env)
		}
		// Whatever decodes can be validated and encoded again without
		// panicking, as the worker and the edge do.
		_ = ValidateEnvelope(env)
		out, err := json.Marshal(env)
		if err != nil {
			t.Fatalf("re-encoding %q: %v", data, err)
		}
		again, err := DecodeEnvelope(out)
		if err != nil {
			t.Fatalf("re-encoded envelope %s does not decode: %v", out, err)
		}
		if again.ID != env.ID || again.Event != env.Event || again.Printer != env.Printer || again.Seq != env.Seq {
			t.Fatalf("round trip changed the envelope: %+v, then %+v", env, again)
		}
	})
}
