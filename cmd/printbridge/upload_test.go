package main

import (
	"bytes"
	"context"
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

	rejections := []struct {
		id, command, reason string
	}{
		{"p-orphan", `{"id": "p-orphan", "action": "add", "path": "orphan.gcode", "data": "G28\n", "part": 2, "parts": 3}`,
			"send part 1 first"},
		{"p-first", `{"id": "p-first", "action": "add", "path": "gap.gcode", "data": "G28\n", "part": 1, "parts": 3}`, ""},
		{"p-gap", `{"id": "p-gap", "action": "add", "path": "gap.gcode", "data": "G1 X1\n", "part": 3, "parts": 3}`,
			"part 2 comes next"},
		{"p-count", `{"id": "p-count", "action": "add", "path": "gap.gcode", "data": "G1 X1\n", "part": 2, "parts": 4}`,
			"part 1 had 3"},
		{"p-print", `{"id": "p-print", "action": "add", "path": "gap.gcode", "data": "G1 X1\n", "part": 2, "parts": 3, "print": true}`,
			"belong on the last part"},
		{"p-zero", `{"id": "p-zero", "action": "add", "path": "gap.gcode", "data": "G1 X1\n", "part": 0, "parts": 3}`,
			"whole number from 1"},
	}
	for _, r := range rejections {
		c.command("file", r.command)
		if r.reason == "" {
			waitFor(t, "done reply of "+r.id, 10*time.Second, func() bool { _, ok := c.col.reply(r.id, bridge.ReplyDone); return ok })
			continue
		}
		var reply bridge.Reply
		waitFor(t, "rejection of "+r.id, 10*time.Second, func() bool {
			var ok bool
			reply, ok = c.col.reply(r.id, bridge.ReplyRejected)
			return ok
		})
		if !strings.Contains(reply.Reason, r.reason) {
			t.Errorf("rejection of %s = %q, want it to say %q", r.id, reply.Reason, r.reason)
		}
	}
	if _, err := os.Stat(filepath.Join(c.dir, "files", "gap.gcode")); !os.IsNotExist(err) {
		t.Errorf("gap.gcode exists before its last part came: %v", err)
	}

	// gap.gcode is open; three more uploads reach the limit of four.
	for _, name := range []string{"a", "b", "c"} {
		id := "open-" + name
		c.command("file", `{"id": "`+id+`", "action": "add", "path": "`+name+`.gcode", "data": "G28\n", "part": 1, "parts": 2}`)
		waitFor(t, "done reply of "+id, 10*time.Second, func() bool { _, ok := c.col.reply(id, bridge.ReplyDone); return ok })
	}
	c.command("file", `{"id": "open-d", "action": "add", "path": "d.gcode", "data": "G28\n", "part": 1, "parts": 2}`)
	var full bridge.Reply
	waitFor(t, "rejection of open-d", 10*time.Second, func() bool {
		var ok bool
		full, ok = c.col.reply("open-d", bridge.ReplyRejected)
		return ok
	})
	if !strings.Contains(full.Reason, "4 uploads in parts are open (a.gcode, b.gcode, c.gcode, gap.gcode)") {
		t.Errorf("rejection of a fifth upload = %q, want it to name the four open ones", full.Reason)
	}
	c.command("file", `{"id": "close-a", "action": "add", "path": "a.gcode", "data": "G1 X1\n", "part": 2, "parts": 2}`)
	waitFor(t, "done reply of close-a", 10*time.Second, func() bool { _, ok := c.col.reply("close-a", bridge.ReplyDone); return ok })
	if got, err := os.ReadFile(filepath.Join(c.dir, "files", "a.gcode")); err != nil || string(got) != "G28\nG1 X1\n" {
		t.Errorf("a.gcode = %q, %v; want its two parts", got, err)
	}
	c.command("file", `{"id": "open-d2", "action": "add", "path": "d.gcode", "data": "G28\n", "part": 1, "parts": 2}`)
	waitFor(t, "done reply of open-d2", 10*time.Second, func() bool { _, ok := c.col.reply("open-d2", bridge.ReplyDone); return ok })
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
