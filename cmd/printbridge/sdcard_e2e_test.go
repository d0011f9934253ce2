package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/printer/virtual"
)

// finalReply waits for the done or failed reply of command id.
func (c *chain) finalReply(id string, timeout time.Duration) bridge.Reply {
	c.t.Helper()
	var r bridge.Reply
	waitFor(c.t, "final reply of "+id, timeout, func() bool {
		var ok bool
		if r, ok = c.col.reply(id, bridge.ReplyDone); ok {
			return true
		}
		if r, ok = c.col.reply(id, bridge.ReplyFailed); ok {
			return true
		}
		r, ok = c.col.reply(id, bridge.ReplyRejected)
		return ok
	})
	return r
}

func (c *chain) events(name string) []*bridge.Envelope {
	var out []*bridge.Envelope
	for _, e := range c.col.snapshot() {
		if e.Event == name {
			out = append(out, e)
		}
	}
	return out
}

func TestSDCardOverMosquitto(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	newBus := mqttChainBuses(url, "e2e-sd-")
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	c := startChain(t, busOptions{mqttURL: url, baseTopic: bridge.DefaultBase}, newBus, vcfg)
	waitFor(t, "Connected", 20*time.Second, func() bool { return c.col.has(bridge.EventConnected) })
	waitFor(t, "first SD listing", 20*time.Second, func() bool { return c.col.has(bridge.EventUpdatedFiles) })

	c.command("file", `{"id": "sd-up", "action": "upload", "path": "`+e2eFile+`", "origin": "sdcard"}`)
	if r := c.finalReply("sd-up", 60*time.Second); r.Status != bridge.ReplyDone {
		t.Fatalf("upload reply = %+v, want done", r)
	}
	// Replies and events travel separately, so the event may come later.
	waitFor(t, "TransferDone", 10*time.Second, func() bool { return c.col.has(bridge.EventTransferDone) })
	if len(c.events(bridge.EventTransferStarted)) != 1 || len(c.events(bridge.EventTransferDone)) != 1 {
		t.Fatalf("transfer events: %d started, %d done; want one each",
			len(c.events(bridge.EventTransferStarted)), len(c.events(bridge.EventTransferDone)))
	}

	c.command("file", `{"id": "sd-ls", "action": "list", "origin": "sdcard"}`)
	r := c.finalReply("sd-ls", 20*time.Second)
	if r.Status != bridge.ReplyDone || len(r.Lines) != 1 {
		t.Fatalf("list reply = %+v, want done with one file", r)
	}
	var entry struct {
		Name, Path, Display, Origin string
		Size                        *int64
	}
	if err := json.Unmarshal([]byte(r.Lines[0]), &entry); err != nil {
		t.Fatalf("list entry %q: %v", r.Lines[0], err)
	}
	if entry.Origin != "sdcard" || entry.Size == nil || *entry.Size <= 0 || !strings.EqualFold(entry.Name, "bambus~1.gco") {
		t.Errorf("list entry = %+v, want bambus~1.gco with a size and origin sdcard", entry)
	}

	c.command("job", `{"id": "sd-go", "action": "start", "path": "`+entry.Path+`", "origin": "sdcard"}`)
	if r := c.finalReply("sd-go", 20*time.Second); r.Status != bridge.ReplyDone {
		t.Fatalf("SD start reply = %+v, want done", r)
	}
	waitFor(t, "PrintDone", 120*time.Second, func() bool { return c.col.has(bridge.EventPrintDone) })
	started := c.events(bridge.EventPrintStarted)
	if len(started) != 1 {
		t.Fatalf("PrintStarted fired %d times, want once", len(started))
	}
	if v, _ := started[0].Payload.Get("origin"); v != "sdcard" {
		t.Errorf("PrintStarted origin = %v, want sdcard", v)
	}
	if f := started[0].Context.File; f == nil || f.Origin != "sdcard" {
		t.Errorf("PrintStarted context file = %+v, want origin sdcard", f)
	}

	c.command("file", `{"id": "sd-rm", "action": "remove", "path": "`+entry.Path+`", "origin": "sdcard"}`)
	if r := c.finalReply("sd-rm", 20*time.Second); r.Status != bridge.ReplyDone {
		t.Fatalf("remove reply = %+v, want done", r)
	}
	c.command("file", `{"id": "sd-bad", "action": "move", "path": "a", "destination": "b", "origin": "sdcard"}`)
	if r := c.finalReply("sd-bad", 20*time.Second); r.Status != bridge.ReplyRejected || !strings.Contains(r.Reason, "not available on the SD card") {
		t.Errorf("SD move reply = %+v, want a rejection", r)
	}
	if n := len(c.events(bridge.EventPrintFailed)); n != 0 {
		t.Errorf("PrintFailed fired %d times", n)
	}
}
