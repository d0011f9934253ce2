package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
)

const topicsPrinter = "topics1"

// invalidTopicCase is a command sent to a topic without a valid kind, and
// texts the reason of its rejection must contain.
type invalidTopicCase struct {
	id, topic string
	reasons   []string
}

// decodeReply parses a reply payload, or returns false for other messages.
func decodeReply(payload string) (bridge.Reply, bool) {
	var r bridge.Reply
	if err := json.Unmarshal([]byte(payload), &r); err != nil {
		return bridge.Reply{}, false
	}
	return r, r.Status != ""
}

// checkInvalidTopicRejections checks the replies, the log lines and the
// counter of commands sent to invalid topics. reply returns the reply of
// a command id with the given status.
func checkInvalidTopicRejections(t *testing.T, se *secureEdge, metricsAddr string, cases []invalidTopicCase,
	reply func(id, status string) (bridge.Reply, bool)) {
	t.Helper()
	for _, tc := range cases {
		r, ok := reply(tc.id, bridge.ReplyRejected)
		if !ok {
			t.Errorf("%s: no rejected reply", tc.topic)
			continue
		}
		for _, want := range tc.reasons {
			if !strings.Contains(r.Reason, want) {
				t.Errorf("%s: reason %q does not contain %q", tc.topic, r.Reason, want)
			}
		}
		if r.Printer != topicsPrinter {
			t.Errorf("%s: reply names printer %q, want %q", tc.topic, r.Printer, topicsPrinter)
		}
		if _, ok := reply(tc.id, bridge.ReplyDone); ok {
			t.Errorf("%s: the command ran", tc.topic)
		}
		if !hasLogLine(se.logs.String(), "level=WARN", `msg="command on an invalid topic rejected"`,
			" topic="+tc.topic+" ", " command_id="+tc.id+" ") {
			t.Errorf("%s: the edge log has no warning for command %s", tc.topic, tc.id)
		}
	}
	if executedContains(se.vp, "M117 invalid-topic") {
		t.Error("the printer executed a command sent to an invalid topic")
	}
	if got := commandCounts(t, metricsAddr)["rejected"]; got < float64(len(cases)) {
		t.Errorf("printbridge_commands_total{outcome=\"rejected\"} = %v, want at least %d", got, len(cases))
	}
}

// messageLog is a recorder of MQTT topics or NATS subjects and payloads.
type messageLog interface {
	has(pred func(where, payload string) bool) bool
}

// replyFinder returns a lookup of the reply with a command id and status
// among the messages that log recorded.
func replyFinder(log messageLog) func(id, status string) (bridge.Reply, bool) {
	return func(id, status string) (bridge.Reply, bool) {
		var found bridge.Reply
		ok := log.has(func(_, payload string) bool {
			r, ok := decodeReply(payload)
			if ok && r.ID == id && r.Status == status {
				found = r
			}
			return ok && r.ID == id && r.Status == status
		})
		return found, ok
	}
}

// hasLogLine reports whether one line of log contains every part.
func hasLogLine(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		found := true
		for _, part := range parts {
			if !strings.Contains(line, part) {
				found = false
				break
			}
		}
		if found {
			return true
		}
	}
	return false
}

func TestEdgeRejectsInvalidCommandTopicsOverMosquitto(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	client := rawMQTT(t, url, "invalid-topics", "", "")
	replies := &topicLog{}
	base := "printbridge/" + topicsPrinter
	rawSubscribeAll(t, client, replies, base+"/reply", base+"/event/Connected")

	// A retained message on the command level stays ignored, as retained
	// commands on valid topics are, and gets no reply.
	rawPublish(t, client, base+"/command", true, `{"id": "retained-1", "commands": ["M117 invalid-topic"]}`)
	t.Cleanup(func() { rawPublish(t, client, base+"/command", true, "") })

	metricsAddr := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	se := startSecureEdge(t, topicsPrinter, busOptions{mqttURL: url, baseTopic: bridge.DefaultBase}, metricsAddr)
	waitUntil(t, "Connected", func() bool { return replies.hasTopic(base + "/event/Connected") })

	validForm := "publish to printbridge/topics1/command/<kind>, where <kind> is one of gcode, job, connection, event, file"
	cases := []invalidTopicCase{
		{"m15", base + "/command", []string{`"printbridge/topics1/command"`, "has no command kind", validForm}},
		{"m16", base + "/command/gcode/extra", []string{`"printbridge/topics1/command/gcode/extra"`, `levels after the command kind ("gcode/extra")`, validForm}},
		{"m17", base + "/command/gcode.extra", []string{`unknown command kind "gcode.extra"`, validForm}},
		{"m18", base + "/command/", []string{"has no command kind", validForm}},
	}
	// Clearing a retained command, as the edge's log advises, reaches the
	// edge as an empty message, which it ignores without a reply.
	rawPublish(t, client, base+"/command/gcode", true, "")
	for _, tc := range cases {
		rawPublish(t, client, tc.topic, false, fmt.Sprintf(`{"id": %q, "commands": ["M117 invalid-topic"]}`, tc.id))
	}
	// The edge handles commands in order, so once this one is done the
	// rejections before it are published too.
	rawPublish(t, client, base+"/command/gcode", false, `{"id": "after-invalid", "commands": ["M105"]}`)
	reply := replyFinder(replies)
	waitUntil(t, "done reply of after-invalid", func() bool { _, ok := reply("after-invalid", bridge.ReplyDone); return ok })

	checkInvalidTopicRejections(t, se, metricsAddr, cases, reply)
	if _, ok := reply("", bridge.ReplyRejected); ok {
		t.Error("the empty message that clears a retained command got a rejected reply")
	}
	if !strings.Contains(se.logs.String(), "empty message on a command topic ignored") {
		t.Error("the edge did not log the empty command message as ignored")
	}
	if got := commandCounts(t, metricsAddr)["empty"]; got != 1 {
		t.Errorf(`printbridge_commands_total{outcome="empty"} = %v, want 1`, got)
	}
	if _, ok := reply("retained-1", bridge.ReplyRejected); ok {
		t.Error("the retained command on an invalid topic got a reply")
	}
	if !strings.Contains(se.logs.String(), "retained command ignored") || !strings.Contains(se.logs.String(), "command_id=retained-1") {
		t.Error("the edge did not log the retained command on the command level as ignored")
	}
}

func TestEdgeRejectsInvalidCommandSubjectsOverNATS(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	nc := rawNATS(t, emb.NATSURL(), "", "", nil)
	replies := &subjectLog{}
	base := "printbridge." + topicsPrinter
	for _, subject := range []string{base + ".reply", base + ".event.Connected"} {
		if _, err := nc.Subscribe(subject, replies.add); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	metricsAddr := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	se := startSecureEdge(t, topicsPrinter, busOptions{natsURL: emb.NATSURL(), baseTopic: bridge.DefaultBase}, metricsAddr)
	waitUntil(t, "Connected", func() bool { return replies.hasSubject(base + ".event.Connected") })

	validForm := "publish to printbridge.topics1.command.<kind>, where <kind> is one of gcode, job, connection, event, file"
	cases := []invalidTopicCase{
		{"n15", base + ".command", []string{`"printbridge.topics1.command"`, "has no command kind", validForm}},
		{"n16", base + ".command.gcode.extra", []string{`"printbridge.topics1.command.gcode.extra"`, `levels after the command kind ("gcode.extra")`, validForm}},
		{"n17", base + ".command.gcode.a.b", []string{`levels after the command kind ("gcode.a.b")`, validForm}},
	}
	for _, tc := range cases {
		natsPublish(t, nc, tc.topic, fmt.Sprintf(`{"id": %q, "commands": ["M117 invalid-topic"]}`, tc.id))
	}
	// A NATS request gets its rejection on the request's inbox.
	msg, err := nc.Request(base+".command", []byte(`{"id": "n18", "commands": ["M117 invalid-topic"]}`), aclWaitTime)
	if err != nil {
		t.Fatalf("request on %s.command: %v", base, err)
	}
	if r, ok := decodeReply(string(msg.Data)); !ok || r.ID != "n18" || r.Status != bridge.ReplyRejected || !strings.Contains(r.Reason, validForm) {
		t.Errorf("reply to the request on %s.command = %s, want rejected n18 naming %q", base, msg.Data, validForm)
	}

	natsPublish(t, nc, base+".command.gcode", `{"id": "after-invalid", "commands": ["M105"]}`)
	reply := replyFinder(replies)
	// The commands on the misplaced subjects come on subscriptions of
	// their own, so their order against after-invalid is not fixed.
	waitUntil(t, "done reply of after-invalid", func() bool { _, ok := reply("after-invalid", bridge.ReplyDone); return ok })
	for _, tc := range cases {
		waitUntil(t, "rejection of "+tc.id, func() bool { _, ok := reply(tc.id, bridge.ReplyRejected); return ok })
	}

	checkInvalidTopicRejections(t, se, metricsAddr, cases, reply)
}

// With deploy/nats/auth.conf, a dashboard's command on a subject below a
// kind gets a rejection, and so does a command of an edge whose
// authorization predates the subscriptions to misplaced subjects, while
// its valid commands still run.
func TestNATSAuthConfInvalidCommandSubjects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rewrite func(string) string
		// rejects is whether the edge may read the misplaced subjects.
		rejects bool
	}{
		{"deploy auth.conf", func(s string) string { return s }, true},
		{"command.* only", func(s string) string {
			const full = `subscribe = ["printbridge.mk3s.command", "printbridge.mk3s.command.>", `
			if !strings.Contains(s, full) {
				panic("deploy/nats/auth.conf has no line " + full + "...: update this test's rewrite")
			}
			return strings.ReplaceAll(s, full, `subscribe = ["printbridge.mk3s.command.*", `)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, passwords := startNATSWithAuthConf(t, tc.rewrite)
			dashboard := rawNATS(t, url, "dashboard", passwords["dashboard"], nil)
			replies := &subjectLog{}
			if _, err := dashboard.Subscribe("printbridge.mk3s.>", replies.add); err != nil {
				t.Fatal(err)
			}
			if err := dashboard.Flush(); err != nil {
				t.Fatal(err)
			}

			secrets := t.TempDir()
			bus := busOptions{natsURL: url, natsUser: "edge-" + aclPrinterA, baseTopic: bridge.DefaultBase}
			bus.secrets.natsPasswordFile = writeSecret(t, secrets, "nats-password", passwords["edge-"+aclPrinterA])
			se := startSecureEdge(t, aclPrinterA, bus, "")
			waitUntil(t, "Connected", func() bool { return replies.hasSubject("printbridge.mk3s.event.Connected") })

			natsPublish(t, dashboard, "printbridge.mk3s.command.gcode.extra", `{"id": "deep-1", "commands": ["M117 invalid-topic"]}`)
			natsPublish(t, dashboard, "printbridge.mk3s.command.gcode", `{"id": "valid-1", "commands": ["M117 valid"]}`)
			isReply := func(id, status string) func() bool {
				return func() bool {
					return replies.has(func(subject, payload string) bool {
						r, ok := decodeReply(payload)
						return subject == "printbridge.mk3s.reply" && ok && r.ID == id && r.Status == status
					})
				}
			}
			waitUntil(t, "done reply of valid-1", isReply("valid-1", bridge.ReplyDone))
			if !executedContains(se.vp, "M117 valid") {
				t.Error("the valid command did not reach the printer")
			}
			if executedContains(se.vp, "M117 invalid-topic") {
				t.Error("the command on printbridge.mk3s.command.gcode.extra reached the printer")
			}
			if tc.rejects {
				waitUntil(t, "rejection of deep-1", isReply("deep-1", bridge.ReplyRejected))
				return
			}
			waitUntil(t, "the logged permissions violation", func() bool {
				return hasLogLine(se.logs.String(), "NATS asynchronous error", "printbridge.mk3s.command.*.>", "Permissions Violation")
			})
			if isReply("deep-1", bridge.ReplyRejected)() {
				t.Error("the edge rejected a command on a subject its authorization does not let it read")
			}
		})
	}
}
