package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/printer/virtual"
)

func TestSplitUploadKeepsLinesAndFits(t *testing.T) {
	var content bytes.Buffer
	for i := range 3000 {
		content.WriteString("G1 X10.5 Y20.25 E0.5 ; Würfel <inner> & outer\n")
		if i%1000 == 0 {
			// A line longer than a part, so it must be cut inside.
			content.WriteString(strings.Repeat("ü", 5000) + "\n")
		}
	}
	// Control characters are escaped as six bytes each in JSON.
	content.WriteString(strings.Repeat("\x01", 20000))
	template := bridge.Command{Action: bridge.FileAdd, Path: "prints/cube.gcode", Source: "printbridge upload"}

	parts, err := splitUpload(content.Bytes(), 8192, template)
	if err != nil {
		t.Fatal(err)
	}
	if got := bytes.Join(parts, nil); !bytes.Equal(got, content.Bytes()) {
		t.Fatalf("the parts joined are %d bytes and differ from the %d bytes of the file", len(got), content.Len())
	}
	for i, part := range parts {
		if len(part) > 8192 {
			t.Errorf("part %d has %d bytes, over the 8192 asked for", i+1, len(part))
		}
		if !utf8.Valid(part) {
			t.Errorf("part %d is not valid UTF-8: a character was split", i+1)
		}
		fits, err := partFits(template, part)
		if err != nil {
			t.Fatal(err)
		}
		if !fits {
			t.Errorf("the message of part %d is over %d bytes", i+1, bridge.MaxCommandSize)
		}
		short := bytes.IndexByte(part, '\n') >= 0 && !bytes.HasSuffix(part, []byte("\n"))
		if short && i < len(parts)-1 {
			t.Errorf("part %d holds a line feed but does not end after one", i+1)
		}
	}
}

// TestUploadInParts sends a real slicer file through `printbridge upload`
// in parts of 16 KiB to an edge on NATS, and checks the file that the
// edge stored and what it rejects.
func TestUploadInParts(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	c := startChain(t, busOptions{natsURL: emb.NATSURL(), baseTopic: bridge.DefaultBase}, natsChainBuses(emb.NATSURL(), "upload-"), vcfg)
	waitFor(t, "Connected", 15*time.Second, func() bool { return c.col.has(bridge.EventConnected) })

	uploadDemoFile(t, c, "--nats", emb.NATSURL())

	// part sends one part of an upload by hand, as a Node-RED flow would.
	part := func(id, path, upload string, n, parts int, extra string) {
		t.Helper()
		c.command("file", fmt.Sprintf(`{"id": %q, "action": "add", "path": %q, "data": "G1 X%d\n", "part": %d, "parts": %d, "upload_id": %q%s}`,
			id, path, n, n, parts, upload, extra))
	}
	// outcome waits for the final reply of id, checks that its status is
	// status and its reason contains reason, and returns it.
	outcome := func(id, status, reason string) bridge.Reply {
		t.Helper()
		var reply bridge.Reply
		waitFor(t, status+" reply of "+id, 10*time.Second, func() bool {
			var ok bool
			reply, ok = c.col.reply(id, status)
			return ok
		})
		if !strings.Contains(reply.Reason, reason) {
			t.Errorf("reply %s of %s = %q, want it to say %q", status, id, reply.Reason, reason)
		}
		return reply
	}

	part("p-orphan", "orphan.gcode", "u1", 2, 3, "")
	outcome("p-orphan", bridge.ReplyRejected, "send part 1 first")
	part("p-first", "gap.gcode", "u1", 1, 3, "")
	outcome("p-first", bridge.ReplyDone, "")
	part("p-gap", "gap.gcode", "u1", 3, 3, "")
	outcome("p-gap", bridge.ReplyRejected, "part 2 comes next")
	part("p-count", "gap.gcode", "u1", 2, 4, "")
	outcome("p-count", bridge.ReplyRejected, "part 1 had 3")
	part("p-print", "gap.gcode", "u1", 2, 3, `, "print": true`)
	outcome("p-print", bridge.ReplyRejected, "belong on the last part")
	// A second client's upload of the same path must not mix its parts
	// into the open one.
	part("p-other", "gap.gcode", "u2", 1, 3, "")
	if other := outcome("p-other", bridge.ReplyRejected, "another client is sending this path"); strings.Contains(other.Reason, "u1") {
		t.Errorf("rejection %q names the open upload's id, with which the other client could drop it", other.Reason)
	}
	part("p-stray", "gap.gcode", "u2", 2, 3, "")
	outcome("p-stray", bridge.ReplyRejected, "belongs to upload u2, but the open upload of this path has another upload_id")
	c.command("file", `{"id": "p-noid", "action": "add", "path": "gap.gcode", "data": "G1\n", "part": 2, "parts": 3}`)
	outcome("p-noid", bridge.ReplyRejected, `missing "upload_id"`)
	c.command("file", `{"id": "p-zero", "action": "add", "path": "gap.gcode", "data": "G1\n", "part": 0, "parts": 3, "upload_id": "u1"}`)
	outcome("p-zero", bridge.ReplyRejected, "whole number from 1")
	c.command("file", `{"id": "p-remove", "action": "remove", "path": "gap.gcode", "part": 2, "parts": 3}`)
	outcome("p-remove", bridge.ReplyRejected, "belong to a file add, not to remove")
	if _, err := os.Stat(filepath.Join(c.dir, "files", "gap.gcode")); !os.IsNotExist(err) {
		t.Errorf("gap.gcode exists before its last part came: %v", err)
	}
	// What would fail the last part fails the first, before the file is
	// sent.
	c.command("file", `{"id": "mk", "action": "mkdir", "path": "taken.gcode"}`)
	outcome("mk", bridge.ReplyDone, "")
	part("p-taken", "taken.gcode", "u3", 1, 2, "")
	outcome("p-taken", bridge.ReplyRejected, "a folder of that name")

	// gap.gcode is open; three more uploads reach the limit of four.
	for _, name := range []string{"a", "b", "c"} {
		part("open-"+name, name+".gcode", "u-"+name, 1, 2, "")
		outcome("open-"+name, bridge.ReplyDone, "")
	}
	part("open-d", "d.gcode", "u-d", 1, 2, "")
	outcome("open-d", bridge.ReplyRejected, "4 uploads in parts are open (a.gcode, b.gcode, c.gcode, gap.gcode)")
	part("close-a", "a.gcode", "u-a", 2, 2, "")
	outcome("close-a", bridge.ReplyDone, "")
	if got, err := os.ReadFile(filepath.Join(c.dir, "files", "a.gcode")); err != nil || string(got) != "G1 X1\nG1 X2\n" {
		t.Errorf("a.gcode = %q, %v; want its two parts", got, err)
	}
	// A client that gives up drops its upload and frees its slot.
	c.command("file", `{"id": "drop-b", "action": "remove", "path": "b.gcode", "upload_id": "u-b"}`)
	outcome("drop-b", bridge.ReplyDone, "")
	part("open-d2", "d.gcode", "u-d", 1, 2, "")
	outcome("open-d2", bridge.ReplyDone, "")
	part("open-e", "e.gcode", "u-e", 1, 2, "")
	outcome("open-e", bridge.ReplyDone, "")
	if _, err := os.Stat(filepath.Join(c.dir, "files", "b.gcode")); !os.IsNotExist(err) {
		t.Errorf("b.gcode exists after its upload was dropped: %v", err)
	}
}

// uploadDemoFile sends the demo's slicer file, 85 KB, through
// `printbridge upload` in parts of 16 KiB with the extra flags args (the
// bus, --print), and checks the file that the edge of chain c stored.
func uploadDemoFile(t *testing.T, c *chain, args ...string) {
	t.Helper()
	source := filepath.Join("..", "..", "deploy", "demo", "prusaslicer-2.8.1_mk4s_mini-cube.gcode")
	want, err := os.ReadFile(source)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args = append(args, "--printer", "e2e", "--path", "up/cube.gcode", "--part-bytes", "16384", "--timeout", "20s", "--file", source)
	if err := runUpload(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("upload: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "up/cube.gcode added from") {
		t.Errorf("upload printed %q, want the edge's last reply", stdout.String())
	}
	got, err := os.ReadFile(filepath.Join(c.dir, "files", "up", "cube.gcode"))
	if err != nil {
		t.Fatalf("the edge did not store the file: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the stored file has %d bytes and differs from the %d bytes sent", len(got), len(want))
	}
	waitFor(t, "Upload", 10*time.Second, func() bool { return c.col.has(bridge.EventUpload) })
}

func TestUploadInPartsOverMosquitto(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	c := startChain(t, busOptions{mqttURL: url, baseTopic: bridge.DefaultBase}, mqttChainBuses(url, "upload-"), vcfg)
	waitFor(t, "Connected", 15*time.Second, func() bool { return c.col.has(bridge.EventConnected) })
	uploadDemoFile(t, c, "--mqtt", url, "--print")
	waitFor(t, "PrintStarted of the uploaded file", 10*time.Second, func() bool { return c.col.has(bridge.EventPrintStarted) })
}

func TestUploadWithoutEdgeFailsAtOnce(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	file := filepath.Join(t.TempDir(), "x.gcode")
	if err := os.WriteFile(file, []byte("G28\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := runUpload(context.Background(), []string{"--nats", emb.NATSURL(), "--printer", "ghost", "--file", file}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "no edge of printer ghost") {
		t.Errorf("upload to a printer without an edge: err = %v, want one that says no edge is connected", err)
	}
}

// TestPublishThroughEdge fires a plugin event through an edge with
// `printbridge publish`, which waits for the edge's reply as upload does.
func TestPublishThroughEdge(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	c := startChain(t, busOptions{natsURL: emb.NATSURL(), baseTopic: bridge.DefaultBase}, natsChainBuses(emb.NATSURL(), "publish-"), vcfg)
	waitFor(t, "Connected", 15*time.Second, func() bool { return c.col.has(bridge.EventConnected) })

	var stdout, stderr bytes.Buffer
	err := runPublish(context.Background(), []string{"--nats", emb.NATSURL(), "--printer", "e2e", "--event", "plugin_test_ping"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("publish: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "plugin_test_ping fired on printer e2e") {
		t.Errorf("publish printed %q, want that the event fired", stdout.String())
	}
	waitFor(t, "plugin_test_ping", 10*time.Second, func() bool { return c.col.has("plugin_test_ping") })

	err = runPublish(context.Background(), []string{"--nats", emb.NATSURL(), "--printer", "ghost", "--event", "plugin_test_ping"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "no edge of printer ghost") {
		t.Errorf("publish to a printer without an edge: err = %v, want one that says no edge is connected", err)
	}
}
