package bridge

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestPayloadKeepsOrderAndFloats(t *testing.T) {
	p := Payload{{Key: "new", Value: 10.0}, {Key: "old", Value: nil}, {Key: "a", Value: 3}, {Key: "pos", Value: Payload{{Key: "z", Value: 0.2}, {Key: "x", Value: 1e-05}}}}
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"new":10.0,"old":null,"a":3,"pos":{"z":0.2,"x":1e-05}}`
	if string(data) != want {
		t.Fatalf("marshal = %s, want %s", data, want)
	}
	var back Payload
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back[0].Key != "new" || back[3].Key != "pos" {
		t.Fatalf("key order lost: %v", back)
	}
	if n, ok := back[0].Value.(json.Number); !ok || n.String() != "10.0" {
		t.Fatalf("float 10.0 decoded as %#v", back[0].Value)
	}
	if n := back[2].Value.(json.Number); n.String() != "3" {
		t.Fatalf("int decoded as %v", n)
	}
}

func TestPayloadRejectsNonObject(t *testing.T) {
	var p Payload
	if err := json.Unmarshal([]byte(`[1,2]`), &p); err == nil {
		t.Fatal("array accepted as payload")
	}
	if err := json.Unmarshal([]byte(`null`), &p); err != nil || p != nil {
		t.Fatalf("null payload = %v, %v", p, err)
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	z := 0.2
	env := Envelope{Schema: 1, ID: NewEventID(time.Now()), Seq: 7, Printer: "mk3", Event: EventZChange,
		Time: time.Now().UTC(), Payload: Payload{{Key: "new", Value: 0.2}, {Key: "old", Value: nil}},
		Context: Context{CurrentZ: &z, File: &FileRef{Name: "a.gcode", Path: "a.gcode", Origin: "local"}}}
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 7 || got.Event != EventZChange || *got.Context.CurrentZ != 0.2 || got.Context.File.Name != "a.gcode" {
		t.Fatalf("round trip lost fields: %+v", got)
	}
	if !strings.Contains(string(data), `"progress":null`) {
		t.Fatalf("missing progress in context: %s", data)
	}
}

func TestNewEventIDIsUUIDv7(t *testing.T) {
	a := NewEventID(time.UnixMilli(1000))
	b := NewEventID(time.UnixMilli(2000))
	if len(a) != 36 || a[14] != '7' {
		t.Fatalf("id %q is not a UUIDv7", a)
	}
	if a >= b {
		t.Fatalf("ids do not sort by time: %s >= %s", a, b)
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	cases := []struct {
		kind, data, wantID, wantErr string
	}{
		{CommandGcode, `{"id":"c1","commands":["G28"]}`, "", ""},
		{CommandGcode, `{"id":"c1","commands":"G28"}`, "", ""},
		// An empty or null upload_id must not make a remove that drops
		// an upload delete the file.
		{CommandFile, `{"id":"u1","action":"remove","path":"a.gcode","upload_id":""}`, "u1", `invalid "upload_id" ""`},
		{CommandFile, `{"id":"u2","action":"remove","path":"a.gcode","upload_id":null}`, "u2", `invalid "upload_id" ""`},
		{CommandFile, `{"id":"u3","action":"remove","path":"a.gcode","upload_id":"up-1"}`, "", ""},
		{CommandGcode, `{"id":"c2"}`, "c2", "missing \"commands\""},
		{CommandGcode, `{"commands":["G28"]}`, "", "missing \"id\""},
		{CommandGcode, `{"id":"c3","commands":["G28\nM112"]}`, "c3", "line break"},
		{CommandGcode, `{"id":"c4","commands":[1]}`, "c4", "commands[0] must be a string"},
		{CommandGcode, `not json`, "", "invalid JSON"},
		{CommandGcode, `[1,2]`, "", "must be a JSON object"},
		{CommandGcode, `[1,2]`, "", `not a JSON array ([1,2])`},
		{CommandGcode, `[1,2]`, "", `send a JSON object such as {"id": "c1", "commands": ["M105"]}`},
		{CommandJob, `"start"`, "", "not a JSON string"},
		{CommandJob, `"start"`, "", `such as {"id": "c1", "action": "start", "path": "benchy.gcode"}`},
		{CommandConnection, `42`, "", "not a JSON number"},
		{CommandConnection, `null`, "", "not JSON null"},
		{CommandConnection, `true`, "", "not a JSON boolean"},
		{CommandGcode, `{"id": "m15", "commands": ["M1`, "", "the message ends after 30 bytes, before the JSON object is complete"},
		{CommandGcode, `{"id": "m15", "commands": ["M1`, "", `Send the whole object, such as {"id": "c1", "commands": ["M105"]}`},
		{CommandGcode, `{"id": "m16", "commands": [M105]}`, "", `invalid JSON at byte 28`},
		{CommandGcode, `{"id": "m16", "commands": [M105]}`, "", `send one JSON object such as {"id": "c1", "commands": ["M105"]}`},
		{CommandGcode, ``, "", `empty message: send a JSON object such as {"id": "c1", "commands": ["M105"]}`},
		{CommandGcode, `{"id":"c5","commands":["G28"],"bogus":1}`, "c5", `unknown key "bogus"`},
		{CommandGcode, `{"id":"c6","commands":["M105"],"ID":"zz"}`, "c6", `did you mean "id"`},
		{CommandGcode, `{"id":"c7","commands":["M105"]} {"id":"c8","commands":["M105"]}`, "c7", "data after the command object"},
		{CommandGcode, `{"id":"c9","commands":["M105"],"path":"a.gcode"}`, "c9", `unknown key "path"`},
		{CommandConnection, `{"id":"c12","action":"connect"}]`, "c12", "data after the command object"},
		{CommandConnection, `{"id":"c13","action":"connect"}}`, "c13", "data after the command object"},
		{CommandGcode, `{"id":"c14","commands":["G28"],"force":"yes"}`, "c14", `"force" must be true or false`},
		{CommandGcode, `{"id":5,"commands":["M105"]}`, "5", `"id" must be a string, not the number 5: send "id": "5"`},
		{CommandGcode, `{"id":1e2,"commands":["M105"]}`, "1e2", `not the number 1e2`},
		{CommandGcode, `{"id":["a"],"commands":["M105"]}`, "", `"id" must be a string, not ["a"]`},
		{CommandGcode, `{"id":null,"commands":["M105"]}`, "", `missing "id"`},
		{CommandGcode, "{\"id\":\"b31\xff\",\"commands\":[\"M105\"]}", "b31\ufffd", `"id" must be valid UTF-8`},
		{CommandGcode, `{"id":"b32\ud800","commands":["M105"]}`, "b32\ufffd", `"id" must be valid UTF-8`},
		{CommandGcode, `{"id":"b33\ufffd","commands":["M105"]}`, "", ""},
		{CommandGcode, `{"id":"b34�","commands":["M105"]}`, "", ""},
		{CommandGcode, "{\"id\":\"b35\",\"source\":\"hook\xff\",\"commands\":[\"M105\"]}", "b35", "\"source\" must be valid UTF-8: \"hook\ufffd\""},
		{CommandGcode, `{"id":"b36","source":"hook\udc00","commands":["M105"]}`, "b36", `"source" must be valid UTF-8`},
		{CommandGcode, `{"id":"b37","source":"hook\ufffd","commands":["M105"]}`, "", ""},
		{CommandGcode, `{"id":"b38\ud800\\ufffd","commands":["M105"]}`, "b38\ufffd\\ufffd", `"id" must be valid UTF-8`},
		{CommandGcode, `{"id":"b39\\\ufffd","commands":["M105"]}`, "", ""},
		{CommandGcode, `{"id":"c10","commands":["M105"],"expires":"yesterday"}`, "c10", "RFC 3339"},
		{CommandGcode, `{"id":"c11","commands":["", "  "]}`, "c11", "only blank lines"},
		{CommandGcode, `{"ID":"m20","commands":["M105"]}`, "", `missing "id": the message has "ID", but keys are case-sensitive; use "id"`},
		{CommandGcode, `{"Id":"m21","commands":["M105"]}`, "", `the message has "Id"`},
		{CommandGcode, `{"id":"m22","commands":[null]}`, "m22", "commands[0] must be a string with one G-code line, not JSON null"},
		{CommandGcode, `{"id":"m23","commands":["M105", 5]}`, "m23", "commands[1] must be a string with one G-code line, not a JSON number"},
		{CommandGcode, `{"id":"m24","commands":["M105", {"g":"G28"}]}`, "m24", "commands[1] must be a string with one G-code line, not a JSON object"},
		{CommandGcode, `{"id":"m25","commands":[ "M105" , "G28" ]}`, "", ""},
		{CommandFile, `{"id":"f1","action":"frobnicate"}`, "f1", `unknown file action "frobnicate": use add, move, copy, remove, mkdir, list or upload`},
		{CommandFile, `{"id":"f2","path":"a.gcode"}`, "f2", `missing "action": use add, move, copy`},
		{CommandFile, `{"id":"f3","action":"remove"}`, "f3", `missing "path"`},
		{CommandEvent, `{"id":"e1","event":"plugin_a_b","payload":[1]}`, "e1", `"payload" must be a JSON object`},
		{CommandEvent, `{"id":"e2","event":"plugin_x_y#"}`, "e2", "invalid custom event name"},
		{CommandJob, `{"id":"j1","action":"start","path":"a.gcode"}`, "", ""},
		{CommandJob, `{"id":"j2","action":"explode"}`, "j2", "unknown job action"},
		{CommandJob, `{"id":"j3"}`, "j3", "missing \"action\""},
		{CommandJob, `{"id":"j4","action":"start","path":"CUBE.GCO","origin":"sdcard"}`, "", ""},
		{CommandJob, `{"id":"j5","action":"select","path":"a.gcode","origin":"local"}`, "", ""},
		{CommandJob, `{"id":"j6","action":"start","path":"a.gcode","origin":"usb"}`, "j6", `unknown origin "usb"`},
		{CommandJob, `{"id":"j7","action":"cancel","origin":"sdcard"}`, "j7", `"origin" is only valid with select and start`},
		{CommandJob, `{"id":"j8","action":"start","origin":5}`, "j8", `"origin" must be a string`},
		{CommandFile, `{"id":"s1","action":"list","origin":"sdcard"}`, "", ""},
		{CommandFile, `{"id":"s2","action":"upload","path":"a.gcode","origin":"sdcard"}`, "", ""},
		{CommandFile, `{"id":"s3","action":"upload","path":"a.gcode","destination":"a.gco","origin":"sdcard"}`, "", ""},
		{CommandFile, `{"id":"s4","action":"remove","path":"A.GCO","origin":"sdcard"}`, "", ""},
		{CommandFile, `{"id":"s5","action":"upload","path":"a.gcode"}`, "s5", `add "origin": "sdcard"`},
		{CommandFile, `{"id":"s6","action":"move","path":"A.GCO","destination":"B.GCO","origin":"sdcard"}`, "s6", "not available on the SD card"},
		{CommandFile, `{"id":"s7","action":"upload","origin":"sdcard"}`, "s7", `missing "path"`},
		{CommandFile, `{"id":"s8","action":"upload","path":"a.gcode","origin":"sdcard","print":true}`, "", ""},
		{CommandFile, `{"id":"s13","action":"upload","path":"a.gcode","origin":"sdcard","select":true}`, "", ""},
		{CommandFile, `{"id":"s14","action":"remove","path":"A.GCO","origin":"sdcard","print":true}`, "s14", `"select" and "print" are only valid with upload`},
		{CommandFile, `{"id":"s15","action":"upload","path":"a.gcode","origin":"sdcard","data":"G28"}`, "s15", "not valid with origin sdcard"},
		{CommandFile, `{"id":"s9","action":"list","path":"x","origin":"sdcard"}`, "s9", "lists the whole card"},
		{CommandFile, `{"id":"s10","action":"remove","path":"A.GCO","destination":"B","origin":"sdcard"}`, "s10", "only valid with upload"},
		{CommandFile, `{"id":"s11","action":"list","origin":"SDCARD"}`, "s11", "unknown origin"},
		{CommandFile, `{"id":"s12","action":"list","Origin":"sdcard"}`, "s12", `did you mean "origin"`},
		{CommandConnection, `{"id":"x","action":"connect"}`, "", ""},
		{CommandConnection, `{"id":"x","action":"start"}`, "x", "unknown connection action"},
		{"bogus", `{"id":"x"}`, "x", "unknown command kind"},
	}
	for _, c := range cases {
		cmd, err := DecodeCommand(c.kind, []byte(c.data))
		if c.wantErr == "" {
			if err != nil || cmd == nil {
				t.Errorf("%s %s: unexpected error %v", c.kind, c.data, err)
			}
			continue
		}
		cerr, ok := err.(*CommandError)
		if !ok {
			t.Errorf("%s %s: error %v is not a CommandError", c.kind, c.data, err)
			continue
		}
		if !strings.Contains(cerr.Reason, c.wantErr) {
			t.Errorf("%s %s: reason %q does not mention %q", c.kind, c.data, cerr.Reason, c.wantErr)
		}
		if cerr.ID != c.wantID {
			t.Errorf("%s %s: id %q, want %q", c.kind, c.data, cerr.ID, c.wantID)
		}
	}
}

func TestDecodeCommandSizeLimit(t *testing.T) {
	big := `{"id":"x","commands":["` + strings.Repeat("G", MaxCommandSize) + `"]}`
	if _, err := DecodeCommand(CommandGcode, []byte(big)); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized command: %v", err)
	}
}

func TestTopicsBuildAndParse(t *testing.T) {
	tp := Topics{}
	if got := tp.MQTTEvent("mk3", "PrintDone"); got != "printbridge/mk3/event/PrintDone" {
		t.Errorf("MQTTEvent = %q", got)
	}
	if got := tp.NATSCommand("mk3", "gcode"); got != "printbridge.mk3.command.gcode" {
		t.Errorf("NATSCommand = %q", got)
	}
	p, sec, rest, ok := tp.ParseMQTT("printbridge/mk3/command/job")
	if !ok || p != "mk3" || sec != "command" || rest != "job" {
		t.Errorf("ParseMQTT = %q %q %q %v", p, sec, rest, ok)
	}
	if _, _, _, ok := (Topics{Base: "farm/a"}).ParseNATS("farm.a.p1.event.Home"); !ok {
		t.Error("ParseNATS failed on a two-level base")
	}
}

func TestValidatePrinterID(t *testing.T) {
	for _, id := range []string{"mk3s-1", "ender_3", "A1"} {
		if err := ValidatePrinterID(id); err != nil {
			t.Errorf("%q rejected: %v", id, err)
		}
	}
	for _, id := range []string{"", "a/b", "a.b", "a+b", "a#", strings.Repeat("x", 65)} {
		if err := ValidatePrinterID(id); err == nil {
			t.Errorf("%q accepted", id)
		}
	}
}

func TestValidatePrinterIDRejectsBridge(t *testing.T) {
	err := ValidatePrinterID("bridge")
	if err == nil {
		t.Fatal(`printer id "bridge" accepted, but printbridge/bridge/info is the shared bridge topic`)
	}
	for _, want := range []string{`"bridge"`, "reserved for the bridge topics", "printbridge/bridge/info"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	for _, id := range []string{"Bridge", "bridge1", "my-bridge"} {
		if err := ValidatePrinterID(id); err != nil {
			t.Errorf("%q rejected: %v", id, err)
		}
	}
}

// TestIsTokenNameMatchesPatterns checks isTokenName against the regular
// expressions it replaced in ValidatePrinterID and IsDynamicEvent.
func TestIsTokenNameMatchesPatterns(t *testing.T) {
	printerID := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	dynamicName := regexp.MustCompile(`^[A-Za-z0-9_]{1,128}$`)
	inputs := []string{"", "a", "A1", "mk3s-1", "ender_3", "-", "_", "a b", "a.b", "a/b", "a+b", "a#", "a*", "a>b",
		"é", "aé", "a\n", "\na", "a\x00", "\xff", "Z9", "`", "@", "[", "{", "/", ":",
		strings.Repeat("x", 63), strings.Repeat("x", 64), strings.Repeat("x", 65),
		strings.Repeat("y", 127), strings.Repeat("y", 128), strings.Repeat("y", 129), strings.Repeat("-", 64)}
	for _, s := range inputs {
		if got, want := isTokenName(s, 64, true), printerID.MatchString(s); got != want {
			t.Errorf("isTokenName(%q, 64, true) = %v, want %v", s, got, want)
		}
		if got, want := isTokenName(s, 128, false), dynamicName.MatchString(s); got != want {
			t.Errorf("isTokenName(%q, 128, false) = %v, want %v", s, got, want)
		}
	}
}

func TestCatalogueLookups(t *testing.T) {
	if _, ok := LookupEvent("PrintDone"); !ok {
		t.Fatal("PrintDone missing from catalogue")
	}
	if SuggestEvent("Dwell") != EventDwelling {
		t.Error("Dwell does not suggest Dwelling")
	}
	if SuggestEvent("printdone") != EventPrintDone {
		t.Error("case slip not suggested")
	}
	if !IsDynamicEvent("GcodeScriptAfterPrintDoneFinished") || !IsDynamicEvent("plugin_octolapse_movie_done") {
		t.Error("dynamic events not recognised")
	}
	if IsDynamicEvent("GcodeScriptRunning") || IsDynamicEvent("plugin_x") {
		t.Error("malformed dynamic names accepted")
	}
	seen := map[string]bool{}
	for _, d := range Events() {
		if seen[d.Name] {
			t.Errorf("duplicate catalogue entry %s", d.Name)
		}
		seen[d.Name] = true
	}
}

func TestTopicsEventOf(t *testing.T) {
	custom := Topics{Base: "farm/hall-2"}
	cases := []struct {
		topics  Topics
		mqtt    string
		printer string
		event   string
		ok      bool
	}{
		{Topics{}, "printbridge/mk3s/event/PrintDone", "mk3s", "PrintDone", true},
		{custom, "farm/hall-2/mk3s/event/PrintDone", "mk3s", "PrintDone", true},
		{custom, "printbridge/mk3s/event/PrintDone", "", "", false},
		{Topics{}, "printbridge/mk3s/command/gcode", "", "", false},
		{Topics{}, "printbridge/mk3s/event", "", "", false},
		{Topics{}, "printbridge/mk3s/event/", "", "", false},
		{Topics{}, "printbridge", "", "", false},
		{Topics{}, "printbridge/", "", "", false},
		{Topics{}, "printbridge2/mk3s/event/PrintDone", "", "", false},
		{custom, "farm/hall-3/mk3s/event/PrintDone", "", "", false},
		{custom, "farm/hall-2/mk3s", "", "", false},
	}
	for _, c := range cases {
		printer, event, ok := c.topics.EventOfMQTT(c.mqtt)
		if printer != c.printer || event != c.event || ok != c.ok {
			t.Errorf("EventOfMQTT(%q) = %q, %q, %v, want %q, %q, %v", c.mqtt, printer, event, ok, c.printer, c.event, c.ok)
		}
		subject := strings.ReplaceAll(c.mqtt, "/", ".")
		printer, event, ok = c.topics.EventOfNATS(subject)
		if printer != c.printer || event != c.event || ok != c.ok {
			t.Errorf("EventOfNATS(%q) = %q, %q, %v, want %q, %q, %v", subject, printer, event, ok, c.printer, c.event, c.ok)
		}
	}
	// A plugin event name with '.' spans several NATS tokens.
	if _, event, _ := (Topics{}).EventOfNATS("printbridge.mk3s.event.plugin.a"); event != "plugin.a" {
		t.Errorf("EventOfNATS with a dotted name returned event %q, want plugin.a", event)
	}
}
