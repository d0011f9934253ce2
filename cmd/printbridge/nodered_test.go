package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/printer/virtual"
)

// nodeRedVersion is the Node-RED release the example flows are tested
// with. Node-RED 5 needs Node.js 22.9 or later; 4.1 runs on Node.js 18.5+.
const nodeRedVersion = "4.1.8"

// skipNodeRedEnv names the only switch that skips the Node-RED test, for
// machines without Node.js or without access to the npm registry.
const skipNodeRedEnv = "PRINTBRIDGE_SKIP_NODE_RED"

// installNodeRed installs Node-RED from npm into the user's cache folder
// once and returns the path of its red.js.
func installNodeRed(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found: install Node.js 18.5 or later, or set %s=1 to skip this test", skipNodeRedEnv)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm not found: install npm, or set %s=1 to skip this test", skipNodeRedEnv)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "printbridge-test", "node-red-"+nodeRedVersion)
	red := filepath.Join(dir, "node_modules", "node-red", "red.js")
	if _, err := os.Stat(red); err == nil {
		return red
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error",
		"node-red@"+nodeRedVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("npm install node-red@%s failed: %v\n%s\nset %s=1 to skip this test where the npm registry is unreachable",
			nodeRedVersion, err, out, skipNodeRedEnv)
	}
	return red
}

// nodeRedSettings keeps Node-RED on loopback and away from the network:
// no telemetry, no update checks, no module installs.
const nodeRedSettings = `module.exports = {
    uiHost: "127.0.0.1",
    uiPort: %d,
    flowFile: "flows.json",
    credentialSecret: false,
    httpAdminRoot: "/",
    httpNodeRoot: "/",
    telemetry: { enabled: false },
    diagnostics: { enabled: false, ui: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    functionExternalModules: false,
    editorTheme: { projects: { enabled: false } },
    logging: { console: { level: "info", metrics: false, audit: false } },
};
`

// notifySink is the webhook the PrintDone flow posts to.
type notifySink struct {
	mu     sync.Mutex
	bodies []map[string]any
}

func (s *notifySink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	data, _ := io.ReadAll(r.Body)
	if json.Unmarshal(data, &body) != nil {
		body = map[string]any{"invalid": string(data)}
	}
	s.mu.Lock()
	s.bodies = append(s.bodies, body)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *notifySink) all() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.bodies)
}

func TestNodeRedExampleFlows(t *testing.T) {
	if os.Getenv(skipNodeRedEnv) == "1" {
		t.Skipf("%s=1: Node-RED flows not tested", skipNodeRedEnv)
	}
	red := installNodeRed(t)
	broker := brokertest.StartMosquittoProcess(t, 0)
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	vcfg.Baud = 19200 // prints last long enough to pause one
	c := startIntegrationChain(t, broker.URL(), vcfg, integrationOptions{}, true)
	c.waitEvent(bridge.EventConnected)

	sink := &notifySink{}
	hook := httptest.NewServer(sink)
	defer hook.Close()

	// Node-RED with the example flows, unchanged.
	userDir := t.TempDir()
	flows, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "node-red", "flows.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(userDir, "flows.json"), flows, 0o600); err != nil {
		t.Fatal(err)
	}
	port := brokertest.FreePort(t)
	settings := filepath.Join(userDir, "settings.js")
	if err := os.WriteFile(settings, []byte(fmt.Sprintf(nodeRedSettings, port)), 0o600); err != nil {
		t.Fatal(err)
	}
	nrLog := &syncBuffer{}
	ctx, stop := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "node", red, "--userDir", userDir, "--settings", settings)
	cmd.Env = append(os.Environ(), "MQTT_HOST=127.0.0.1", fmt.Sprintf("MQTT_PORT=%d", broker.Port()),
		"NOTIFY_URL="+hook.URL+"/notify", "PRINTBRIDGE_PRINTER="+integrationPrinter)
	cmd.Stdout, cmd.Stderr = nrLog, nrLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stop()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("Node-RED log:\n%s", nrLog.String())
		}
	}()
	waitFor(t, "Node-RED connected to the broker", 60*time.Second, func() bool {
		return strings.Contains(nrLog.String(), "Connected to broker")
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	executed := func(line string) bool { return slices.Contains(c.vp.Executed(), line) }

	// Send G-code over HTTP.
	resp, err := http.Post(base+"/printbridge/"+integrationPrinter+"/gcode", "application/json",
		strings.NewReader(`{"commands": ["M117 nodered-http"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var accepted struct {
		ID string `json:"id"`
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(body, &accepted) != nil || !strings.HasPrefix(accepted.ID, "nodered-") {
		t.Fatalf("POST G-code answered %d %s, want 202 with a nodered- command id", resp.StatusCode, body)
	}
	waitFor(t, "M117 from the HTTP flow on the printer", 30*time.Second, func() bool { return executed("M117 nodered-http") })
	waitFor(t, "done reply of "+accepted.ID, 30*time.Second, func() bool { return c.replied(accepted.ID, bridge.ReplyDone) })
	bad, err := http.Post(base+"/printbridge/"+integrationPrinter+"/gcode", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if bad.StatusCode != http.StatusBadRequest {
		t.Errorf("POST without G-code answered %d, want 400", bad.StatusCode)
	}

	// The inject node sends its line to PRINTBRIDGE_PRINTER.
	injectID := nodeIDByName(t, flows, "inject", "M117 Hello from Node-RED")
	ir, err := http.Post(base+"/inject/"+injectID, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	ir.Body.Close()
	if ir.StatusCode != http.StatusOK {
		t.Fatalf("triggering the inject node answered %d", ir.StatusCode)
	}
	waitFor(t, "M117 from the inject node on the printer", 30*time.Second, func() bool { return executed("M117 Hello from Node-RED") })

	// The sensor does nothing while the printer is idle. Node-RED's
	// subscriptions may still be on their way, so the sensor repeats
	// until the flow has seen it.
	sensor := "sensors/" + integrationPrinter + "/filament_runout"
	waitFor(t, "the sensor flow to ignore an idle printer", 30*time.Second, func() bool {
		c.publish(sensor, false, "ON")
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(nrLog.String(), "nothing to pause")
	})

	// A notification when a print is done.
	c.command("job", fmt.Sprintf(`{"id": "nodered-print-1", "action": "start", "path": %q}`, e2eFile))
	c.waitEvent(bridge.EventPrintDone)
	waitFor(t, "the PrintDone notification", 30*time.Second, func() bool { return len(sink.all()) > 0 })
	note := sink.all()[0]
	if note["file"] != e2eFile || note["printer"] != integrationPrinter || !strings.Contains(fmt.Sprint(note["message"]), e2eFile) {
		t.Errorf("notification = %v, want the file %s of printer %s", note, e2eFile, integrationPrinter)
	}

	// The sensor pauses a running print.
	const pauseFile = "prusaslicer-2.8.1_mk4s_mini-cube.gcode"
	c.command("job", fmt.Sprintf(`{"id": "nodered-print-2", "action": "start", "path": %q}`, pauseFile))
	// The recorder still has the PRINTING snapshots of the first print,
	// so only a snapshot of this file counts.
	c.waitState("printing "+pauseFile, func(s map[string]any) bool {
		job, _ := s["job"].(map[string]any)
		return s["state_id"] == "PRINTING" && job["path"] == pauseFile
	})
	jobTopic := "printbridge/" + integrationPrinter + "/command/job"
	fromNodeRed := func() (bridge.Command, bool) {
		for _, m := range c.rec.on(jobTopic) {
			var cmd bridge.Command
			if json.Unmarshal([]byte(m.payload), &cmd) == nil && cmd.Source == "node-red" {
				return cmd, true
			}
		}
		return bridge.Command{}, false
	}
	// Node-RED may get the PRINTING state a moment after the recorder,
	// so the sensor repeats until a pause command appears.
	waitFor(t, "a pause command from the sensor flow", 30*time.Second, func() bool {
		if _, ok := fromNodeRed(); ok {
			return true
		}
		c.publish(sensor, false, "ON")
		time.Sleep(200 * time.Millisecond)
		_, ok := fromNodeRed()
		return ok
	})
	pause, _ := fromNodeRed()
	if pause.Action != bridge.ActionPause || !strings.HasPrefix(pause.ID, "nodered-") {
		t.Errorf("sensor flow sent %+v, want a pause with a nodered- id", pause)
	}
	paused := c.waitEvent(bridge.EventPrintPaused)
	checkNodeRedPause(t, paused, pauseFile)
	waitFor(t, "done reply of "+pause.ID, 30*time.Second, func() bool { return c.replied(pause.ID, bridge.ReplyDone) })
	c.command("job", `{"id": "nodered-cancel", "action": "cancel"}`)
	c.waitEvent(bridge.EventPrintCancelled)
}

// checkNodeRedPause checks the PrintPaused envelope against OctoPrint's
// payload: the file, and the position read after the pause.
func checkNodeRedPause(t *testing.T, envelope, file string) {
	t.Helper()
	var ev struct {
		Payload map[string]any `json:"payload"`
	}
	if err := json.Unmarshal([]byte(envelope), &ev); err != nil {
		t.Fatalf("PrintPaused envelope does not parse: %v\n%s", err, envelope)
	}
	if ev.Payload["path"] != file {
		t.Errorf("PrintPaused path = %v, want %s", ev.Payload["path"], file)
	}
	pos, ok := ev.Payload["position"].(map[string]any)
	if !ok {
		t.Fatalf("PrintPaused has no position: %s", envelope)
	}
	for _, axis := range []string{"x", "y", "z", "e"} {
		if _, ok := pos[axis].(float64); !ok {
			t.Errorf("PrintPaused position %s = %v, want the position read after the pause", axis, pos[axis])
		}
	}
}

// replied reports whether a reply with the id and status was published.
func (c *integrationChain) replied(id, status string) bool {
	for _, r := range c.rec.on("printbridge/" + integrationPrinter + "/reply") {
		var reply bridge.Reply
		if json.Unmarshal([]byte(r.payload), &reply) == nil && reply.ID == id && reply.Status == status {
			return true
		}
	}
	return false
}

func nodeIDByName(t *testing.T, flows []byte, nodeType, name string) string {
	t.Helper()
	var nodes []struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(flows, &nodes); err != nil {
		t.Fatalf("flows.json does not parse: %v", err)
	}
	for _, n := range nodes {
		if n.Type == nodeType && n.Name == name {
			return n.ID
		}
	}
	t.Fatalf("flows.json has no %s node named %q", nodeType, name)
	return ""
}
