package bridge

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeCommandReplyTo(t *testing.T) {
	valid := []string{"app/replies", "_INBOX.abc123", "printbridge/virtual1/reply", "a/b-c_d/v1.2"}
	for _, replyTo := range valid {
		cmd, err := DecodeCommand(CommandGcode, []byte(`{"id":"c1","commands":["M105"],"reply_to":"`+replyTo+`"}`))
		if err != nil {
			t.Errorf("reply_to %q rejected: %v", replyTo, err)
			continue
		}
		if cmd.ReplyTo != replyTo {
			t.Errorf("ReplyTo = %q, want %q", cmd.ReplyTo, replyTo)
		}
	}
	invalid := map[string]string{
		`"x/#"`:                 "wildcard",
		`"printbridge/+/reply"`: "wildcard",
		`"inbox.*"`:             "wildcard",
		`"inbox.>"`:             "wildcard",
		`""`:                    "empty",
		`"$SYS/broker"`:         "'$'",
		`"a\u0000b"`:            "NUL",
		`"a b"`:                 "whitespace",
		`"a\tb"`:                "whitespace",
		`"a..b"`:                "empty NATS token",
		`".a"`:                  "empty NATS token",
		`"a."`:                  "empty NATS token",
		`"a/\uffff"`:            "noncharacter",
		`"a/\ufffe"`:            "noncharacter",
		`"a/\ufdd0"`:            "noncharacter",
		"\"a/\xef\xbf\xbe\"":    "noncharacter",
		`"` + strings.Repeat("a", MaxReplyToLength+1) + `"`: "maximum",
	}
	for raw, want := range invalid {
		_, err := DecodeCommand(CommandGcode, []byte(`{"id":"c1","commands":["M105"],"reply_to":`+raw+`}`))
		if err == nil {
			t.Errorf("reply_to %.30s accepted", raw)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reply_to %.30s: error %q does not contain %q", raw, err, want)
		}
		if !strings.Contains(err.Error(), `"reply_to"`) {
			t.Errorf("reply_to %.30s: error %q does not name reply_to", raw, err)
		}
	}
}

func TestCheckReplyTarget(t *testing.T) {
	topics := Topics{}
	allowed := []string{"printbridge/p1/reply", "printbridge/p1/reply/app", "printbridge.p1.reply", "printbridge.p1.reply.app",
		"app/replies", "_INBOX.x", "printbridgex/p1/event/PrintDone"}
	for _, replyTo := range allowed {
		if err := topics.CheckReplyTarget("p1", replyTo); err != nil {
			t.Errorf("%q rejected: %v", replyTo, err)
		}
	}
	rejected := []string{"printbridge/p1/event/PrintDone", "printbridge/p1/state", "printbridge/p1/availability",
		"printbridge/p1/hook", "printbridge/p1/command/gcode", "printbridge/p2/reply", "printbridge/p2/event/PrintDone",
		"printbridge/bridge/info", "printbridge/p1/replyx", "printbridge", "printbridge.p1.event.PrintDone", "printbridge.p1.state",
		"printbridge.p2.reply"}
	for _, replyTo := range rejected {
		err := topics.CheckReplyTarget("p1", replyTo)
		if err == nil {
			t.Errorf("%q accepted", replyTo)
			continue
		}
		if !strings.Contains(err.Error(), replyTo) {
			t.Errorf("error %q does not name %q", err, replyTo)
		}
	}
	farm := Topics{Base: "farm/site1"}
	if err := farm.CheckReplyTarget("p1", "farm/site1/p1/event/PrintDone"); err == nil {
		t.Error("event topic under a custom base accepted")
	}
	if err := farm.CheckReplyTarget("p1", "farm.site1.p1.state"); err == nil {
		t.Error("state subject under a custom base accepted")
	}
	if err := farm.CheckReplyTarget("p1", "farm/site1/p1/reply"); err != nil {
		t.Errorf("own reply topic under a custom base rejected: %v", err)
	}
}

func TestCheckReplyTargetIntegrations(t *testing.T) {
	topics := Topics{}
	protected := []string{"homeassistant", "octoPrint", "ha/birth"}
	for _, replyTo := range []string{"octoPrint/event/PrintDone", "octoPrint/progress/printing", "octoPrint/mqtt",
		"homeassistant/device/printbridge_p1/config", "homeassistant/status", "homeassistant", "ha/birth"} {
		err := topics.CheckReplyTarget("p1", replyTo, protected...)
		if err == nil {
			t.Errorf("%q accepted", replyTo)
			continue
		}
		if !strings.Contains(err.Error(), replyTo) {
			t.Errorf("error %q does not name %q", err, replyTo)
		}
	}
	for _, replyTo := range []string{"octoPrintx/replies", "homeassistantx", "ha/births", "app/replies", "printbridge/p1/reply"} {
		if err := topics.CheckReplyTarget("p1", replyTo, protected...); err != nil {
			t.Errorf("%q rejected: %v", replyTo, err)
		}
	}
}

func TestIsNoncharacter(t *testing.T) {
	for _, r := range []rune{0xFDD0, 0xFDEF, 0xFFFE, 0xFFFF, 0x1FFFE, 0x10FFFF} {
		if !IsNoncharacter(r) {
			t.Errorf("%U not taken for a noncharacter", r)
		}
	}
	for _, r := range []rune{'a', 0xFDCF, 0xFDF0, 0xFFFD, 0xFEFF, 0x1FFFD, 0x10000} {
		if IsNoncharacter(r) {
			t.Errorf("%U taken for a noncharacter", r)
		}
	}
}

func TestDecodeCommandDuplicateKeys(t *testing.T) {
	cases := []struct {
		data   string
		key    string
		wantID string
	}{
		{`{"id":"a15","commands":["M105"],"id":"a16"}`, `"id"`, ""},
		{`{"id":"a17","commands":["M105"],"commands":["M84"]}`, `"commands"`, "a17"},
		{`{"id":"a18","event":"plugin_test_x","payload":{"n":1,"n":2}}`, `"n" inside "payload"`, "a18"},
		{`{"id":"a19","event":"plugin_test_x","payload":{"l":[{"k":1},{"k":2,"k":3}]}}`, `"k" inside "payload"`, "a19"},
	}
	for _, tc := range cases {
		kind := CommandGcode
		if strings.Contains(tc.data, "event") {
			kind = CommandEvent
		}
		_, err := DecodeCommand(kind, []byte(tc.data))
		if err == nil {
			t.Errorf("%s accepted", tc.data)
			continue
		}
		if !strings.Contains(err.Error(), "duplicate key "+tc.key) {
			t.Errorf("%s: error %q does not name duplicate key %s", tc.data, err, tc.key)
		}
		var cerr *CommandError
		if errors.As(err, &cerr) && cerr.ID != tc.wantID {
			t.Errorf("%s: rejection id = %q, want %q", tc.data, cerr.ID, tc.wantID)
		}
	}
	// The same key in sibling objects is no repeat.
	if _, err := DecodeCommand(CommandEvent, []byte(`{"id":"a20","event":"plugin_test_x","payload":{"a":{"k":1},"b":{"k":2},"l":[{"k":1},{"k":2}]}}`)); err != nil {
		t.Errorf("sibling objects with one key name rejected: %v", err)
	}
}
