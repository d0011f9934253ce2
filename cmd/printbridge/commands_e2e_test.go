package main

import (
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/printer/virtual"
)

// badCommandCase is a command that the edge rejects on its default reply
// topic, and a text its reason must contain.
type badCommandCase struct {
	id, data, reason string
}

func checkRejectedStaysOnline(t *testing.T, c *chain, cases []badCommandCase) {
	t.Helper()
	waitFor(t, "Connected", 20*time.Second, func() bool { return c.col.has(bridge.EventConnected) })
	for _, tc := range cases {
		c.command("gcode", tc.data)
	}
	// The edge answers in order, so once this reply is here the
	// rejections before it would have been too.
	c.command("gcode", `{"id": "after-bad", "commands": ["M105"]}`)
	waitFor(t, "done reply of after-bad", 30*time.Second, func() bool { _, ok := c.col.reply("after-bad", bridge.ReplyDone); return ok })
	for _, tc := range cases {
		r, ok := c.col.reply(tc.id, bridge.ReplyRejected)
		if !ok {
			t.Errorf("%s: no rejected reply on the default reply topic", tc.data)
			continue
		}
		if !strings.Contains(r.Reason, tc.reason) {
			t.Errorf("%s: reason %q does not contain %q", tc.data, r.Reason, tc.reason)
		}
		if _, ok := c.col.reply(tc.id, bridge.ReplyDone); ok {
			t.Errorf("%s: the rejected command ran", tc.data)
		}
	}
	if strings.Contains(c.edgeLog.String(), "lost connection") {
		t.Errorf("the edge lost its broker connection; log:\n%s", c.edgeLog.String())
	}
	if n := strings.Count(c.edgeLog.String(), `msg="command rejected"`); n < len(cases) {
		t.Errorf("edge logged %d rejections, want at least %d", n, len(cases))
	}
}

func TestEdgeRejectsBadReplyToOverMosquitto(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	newBus := mqttChainBuses(url, "e2e-")
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	c := startChain(t, busOptions{mqttURL: url, baseTopic: bridge.DefaultBase}, newBus, vcfg)
	checkRejectedStaysOnline(t, c, []badCommandCase{
		{"w1", `{"id": "w1", "commands": ["M105"], "reply_to": "x/#"}`, `"x/#"`},
		{"w2", `{"id": "w2", "commands": ["M105"], "reply_to": "printbridge/+/reply"}`, "wildcard"},
		{"w3", `{"id": "w3", "commands": ["M105"], "reply_to": "$SYS/x"}`, "'$'"},
		{"w4", `{"id": "w4", "commands": ["M105"], "reply_to": ""}`, "empty"},
		{"w5", `{"id": "w5", "commands": ["M105"], "reply_to": "printbridge/e2e/event/PrintDone"}`, "own topics"},
		{"w6", `{"id": "w6", "commands": ["M105"], "reply_to": "printbridge/other/state"}`, "own topics"},
		{"dup-cmd", `{"id": "dup-cmd", "commands": ["M105"], "commands": ["M84"]}`, `duplicate key "commands"`},
	})
	// A reply_to below the printer's reply topic is allowed.
	c.command("gcode", `{"id": "sub-reply", "commands": ["M105"], "reply_to": "printbridge/e2e/reply/app"}`)
	waitFor(t, "acceptance of sub-reply", 30*time.Second, func() bool {
		return strings.Contains(c.edgeLog.String(), "command_id=sub-reply") && strings.Contains(c.edgeLog.String(), "command accepted")
	})
	// A duplicated id is rejected without naming either id.
	c.command("gcode", `{"id": "a15", "commands": ["M105"], "id": "a16"}`)
	waitFor(t, "rejection of the duplicated id", 30*time.Second, func() bool {
		r, ok := c.col.reply("", bridge.ReplyRejected)
		return ok && strings.Contains(r.Reason, `duplicate key "id"`)
	})
	for _, id := range []string{"a15", "a16"} {
		if _, ok := c.col.reply(id, bridge.ReplyDone); ok {
			t.Errorf("the command with a duplicated id ran as %s", id)
		}
	}
}

func TestEdgeRejectsBadReplyToOverNATS(t *testing.T) {
	emb := brokertest.StartNATS(t, true, false)
	newBus := natsChainBuses(emb.NATSURL(), "e2e-")
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	c := startChain(t, busOptions{natsURL: emb.NATSURL(), baseTopic: bridge.DefaultBase}, newBus, vcfg)
	checkRejectedStaysOnline(t, c, []badCommandCase{
		{"n1", `{"id": "n1", "commands": ["M105"], "reply_to": "x.*"}`, "wildcard"},
		{"n2", `{"id": "n2", "commands": ["M105"], "reply_to": "x.>"}`, "wildcard"},
		{"n3", `{"id": "n3", "commands": ["M105"], "reply_to": "x y"}`, "whitespace"},
		{"n4", `{"id": "n4", "commands": ["M105"], "reply_to": "x..y"}`, "empty NATS token"},
		{"n5", `{"id": "n5", "commands": ["M105"], "reply_to": "printbridge.e2e.event.PrintDone"}`, "own topics"},
	})
}

// A flood of commands sent at once, as mosquitto_pub -l does, gets a
// final reply for every command: done for those that fit the command
// queue, rejected for the rest.
func TestCommandFloodEveryCommandReplied(t *testing.T) {
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Fatalf("mosquitto_pub not found: install Debian's mosquitto-clients package: %v", err)
	}
	// Mosquitto drops QoS 1 messages beyond max_queued_messages (1000 by
	// default) for a client that lags, so the edge would never see part
	// of the flood. 0 lifts the limit, and every command reaches the edge.
	proc := brokertest.StartMosquittoWithOptions(t, brokertest.MosquittoOptions{Config: []string{"max_queued_messages 0"}})
	url := proc.URL()
	newBus := mqttChainBuses(url, "e2e-")
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	c := startChain(t, busOptions{mqttURL: url, baseTopic: bridge.DefaultBase}, newBus, vcfg)
	waitFor(t, "Connected", 20*time.Second, func() bool { return c.col.has(bridge.EventConnected) })

	const commands = 3000
	var lines strings.Builder
	for i := range commands {
		fmt.Fprintf(&lines, `{"id":"fl%d","commands":["M105"]}`+"\n", i)
	}
	host, port, err := net.SplitHostPort(strings.TrimPrefix(url, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", "printbridge/e2e/command/gcode", "-l")
	cmd.Stdin = strings.NewReader(lines.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}

	missing := func() []string {
		finals := c.col.finalIDs()
		var ids []string
		for i := range commands {
			if id := fmt.Sprintf("fl%d", i); !finals[id] {
				ids = append(ids, id)
			}
		}
		return ids
	}
	deadline := time.Now().Add(2 * time.Minute)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if ids := missing(); len(ids) > 0 {
		t.Errorf("%d of %d commands got no final reply, such as %q", len(ids), commands, ids[:min(5, len(ids))])
	}
	full := 0
	for i := range commands {
		r, ok := c.col.reply(fmt.Sprintf("fl%d", i), bridge.ReplyRejected)
		if ok && strings.Contains(r.Reason, "command queue is full") {
			full++
		}
	}
	// The policy's rate rule rejects most of the rest.
	t.Logf("%d of %d commands rejected for a full command queue", full, commands)
	if full == 0 {
		t.Error("no command was rejected for a full command queue, so the flood did not fill it")
	}
	if strings.Contains(c.edgeLog.String(), "command reply dropped") {
		t.Errorf("the edge dropped replies; log:\n%s", c.edgeLog.String())
	}
}

// repliesOf returns the replies with id, in the order they arrived.
func (c *collector) repliesOf(id string) []bridge.Reply {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []bridge.Reply
	for _, r := range c.replies {
		if r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

// statuses lists the statuses of replies.
func statuses(replies []bridge.Reply) []string {
	out := make([]string, len(replies))
	for i, r := range replies {
		out[i] = r.Status
	}
	return out
}

func TestRejectedCommandIDReusable(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	newBus := mqttChainBuses(url, "e2e-")
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	c := startChain(t, busOptions{mqttURL: url, baseTopic: bridge.DefaultBase}, newBus, vcfg)
	waitFor(t, "Connected", 20*time.Second, func() bool { return c.col.has(bridge.EventConnected) })

	// The printer rejects a cancel without a print, after the edge has
	// remembered the id; the corrected command under that id runs.
	c.command("job", `{"id": "r1", "action": "cancel"}`)
	waitFor(t, "rejection of r1", 30*time.Second, func() bool { _, ok := c.col.reply("r1", bridge.ReplyRejected); return ok })
	c.command("gcode", `{"id": "r1", "commands": ["M105"]}`)
	waitFor(t, "done reply of r1", 30*time.Second, func() bool { _, ok := c.col.reply("r1", bridge.ReplyDone); return ok })

	// A message rejected while it is decoded never takes its id.
	c.command("gcode", `{"id": "r2", "commands": [null]}`)
	c.command("gcode", `{"id": "r2", "commands": ["M105"]}`)
	waitFor(t, "done reply of r2", 30*time.Second, func() bool { _, ok := c.col.reply("r2", bridge.ReplyDone); return ok })

	// The same rejected command again gets its rejection repeated.
	c.command("job", `{"id": "r3", "action": "cancel"}`)
	c.command("job", `{"id": "r3", "action": "cancel"}`)
	// Once a command ran, its id stays taken for other commands.
	c.command("gcode", `{"id": "r1", "commands": ["M115"]}`)
	c.command("gcode", `{"id": "after-reuse", "commands": ["M105"]}`)
	// The edge replies in order, so once this reply is here the replies
	// before it would have been too.
	waitFor(t, "done reply of after-reuse", 30*time.Second, func() bool { _, ok := c.col.reply("after-reuse", bridge.ReplyDone); return ok })

	if got := statuses(c.col.repliesOf("r1")); !slices.Equal(got, []string{"rejected", "accepted", "done", "rejected"}) {
		t.Errorf("r1 replies %v, want rejected, then accepted and done for the corrected command, then rejected for the reuse", got)
	}
	r1 := c.col.repliesOf("r1")
	if last := r1[len(r1)-1]; !strings.Contains(last.Reason, "already used for a different command") {
		t.Errorf("reuse of a done id rejected with %q, want the id-reuse reason", last.Reason)
	}
	if got := statuses(c.col.repliesOf("r2")); !slices.Equal(got, []string{"rejected", "accepted", "done"}) {
		t.Errorf("r2 replies %v, want rejected, accepted, done", got)
	}
	r3 := c.col.repliesOf("r3")
	if got := statuses(r3); !slices.Equal(got, []string{"rejected", "rejected"}) {
		t.Fatalf("r3 replies %v, want two rejections", got)
	}
	if r3[0].Reason != r3[1].Reason {
		t.Errorf("the repeated r3 got reason %q, want the first reply's %q", r3[1].Reason, r3[0].Reason)
	}
}
