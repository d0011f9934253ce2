package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
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
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/printer/virtual"
)

// integrationPrinter is the printer id of the integration chains.
const integrationPrinter = "ha1"

// rawMessage is one message the recorder saw, in arrival order.
type rawMessage struct {
	topic    string
	payload  string
	retained bool
}

// recorder keeps every message on the broker, as a user's MQTT explorer
// would show them.
type recorder struct {
	mu   sync.Mutex
	msgs []rawMessage
}

func (r *recorder) add(m mqtt.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rawMessage{topic: m.Topic, payload: string(m.Payload), retained: m.Retained})
}

// on returns the messages of one topic (a filter with + wildcards).
func (r *recorder) on(filter string) []rawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []rawMessage
	for _, m := range r.msgs {
		if topicMatch(filter, m.topic) {
			out = append(out, m)
		}
	}
	return out
}

func (r *recorder) last(filter string) (rawMessage, bool) {
	msgs := r.on(filter)
	if len(msgs) == 0 {
		return rawMessage{}, false
	}
	return msgs[len(msgs)-1], true
}

func topicMatch(filter, topic string) bool {
	f := strings.Split(filter, "/")
	t := strings.Split(topic, "/")
	if len(f) != len(t) {
		return false
	}
	for i := range f {
		if f[i] != "+" && f[i] != t[i] {
			return false
		}
	}
	return true
}

// integrationChain is a virtual printer and an edge with integrations,
// watched by a recorder subscribed to every topic.
type integrationChain struct {
	t        *testing.T
	vp       *virtual.Printer
	observer *mqtt.Bus
	rec      *recorder
	edgeLog  *syncBuffer
	stopEdge context.CancelFunc
	edgeDone chan error
}

func startIntegrationChain(t *testing.T, url string, vcfg virtual.Config, in integrationOptions, autoConnect bool) *integrationChain {
	t.Helper()
	dir := t.TempDir()
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{e2eFile, "prusaslicer-2.8.1_mk4s_mini-cube.gcode"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "gcode", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(files, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	vp, err := virtual.New(vcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vpCtx, stopVP := context.WithCancel(context.Background())
	vpDone := make(chan error, 1)
	go func() { vpDone <- vp.Run(vpCtx) }()

	c := &integrationChain{t: t, vp: vp, rec: &recorder{}, edgeLog: &syncBuffer{}}
	c.observer, err = mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "integration-observer"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.observer.SubscribeRaw(context.Background(), "#", c.rec.add); err != nil {
		t.Fatal(err)
	}

	edgeCtx, stopEdge := context.WithCancel(context.Background())
	c.stopEdge = stopEdge
	c.edgeDone = make(chan error, 1)
	opts := edgeOptions{
		port: vp.Path(), baud: 115200, printerID: integrationPrinter, filesDir: files, dataDir: filepath.Join(dir, "edge"),
		maxLineLength: 96, autoConnect: autoConnect, integrations: in,
		bus: busOptions{mqttURL: url, baseTopic: bridge.DefaultBase},
	}
	log := slog.New(slog.NewTextHandler(c.edgeLog, &slog.HandlerOptions{Level: slog.LevelInfo}))
	go func() { c.edgeDone <- runEdgeWith(edgeCtx, opts, log, nil) }()

	t.Cleanup(func() {
		c.stop()
		_ = c.observer.Close()
		stopVP()
		<-vpDone
		// Cancelling Run leaves the pty master and its inotify instance
		// open; only Close releases them.
		_ = vp.Close()
		if t.Failed() {
			t.Logf("edge log:\n%s", c.edgeLog.String())
		}
	})
	return c
}

func (c *integrationChain) stop() {
	if c.stopEdge == nil {
		return
	}
	c.stopEdge()
	if err := <-c.edgeDone; err != nil {
		c.t.Errorf("edge stopped with error: %v", err)
	}
	c.stopEdge = nil
}

func (c *integrationChain) publish(topic string, retained bool, payload string) {
	c.t.Helper()
	if err := c.observer.PublishRaw(context.Background(), topic, retained, []byte(payload)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *integrationChain) command(kind, data string) {
	c.t.Helper()
	c.publish("printbridge/"+integrationPrinter+"/command/"+kind, false, data)
}

// waitState waits for a state snapshot for which cond holds and returns it.
func (c *integrationChain) waitState(what string, cond func(map[string]any) bool) string {
	c.t.Helper()
	var found string
	waitFor(c.t, what, 60*time.Second, func() bool {
		for _, m := range c.rec.on("printbridge/" + integrationPrinter + "/state") {
			var snap map[string]any
			if json.Unmarshal([]byte(m.payload), &snap) == nil && cond(snap) {
				found = m.payload
				return true
			}
		}
		return false
	})
	return found
}

func (c *integrationChain) hasEvent(name string) bool {
	return len(c.rec.on("printbridge/"+integrationPrinter+"/event/"+name)) > 0
}

func (c *integrationChain) waitEvent(name string) string {
	c.t.Helper()
	waitFor(c.t, "event "+name, 60*time.Second, func() bool { return c.hasEvent(name) })
	return c.rec.on("printbridge/" + integrationPrinter + "/event/" + name)[0].payload
}

func snapFlag(snap map[string]any, name string) bool {
	flags, _ := snap["flags"].(map[string]any)
	on, _ := flags[name].(bool)
	return on
}

func hasHeater(snap map[string]any, heater string) bool {
	temps, _ := snap["temperatures"].(map[string]any)
	_, ok := temps[heater]
	return ok
}

// discoveryConfig is the device discovery payload as Home Assistant reads it.
type discoveryConfig struct {
	Device     map[string]any            `json:"device"`
	Origin     map[string]any            `json:"origin"`
	Components map[string]map[string]any `json:"components"`
}

func parseDiscovery(t *testing.T, payload string) discoveryConfig {
	t.Helper()
	var cfg discoveryConfig
	if err := json.Unmarshal([]byte(payload), &cfg); err != nil {
		t.Fatalf("discovery payload is not JSON: %v\n%s", err, payload)
	}
	return cfg
}

const discoveryTopic = "homeassistant/device/printbridge_" + integrationPrinter + "/config"

// jinjaRenderer renders Home Assistant MQTT templates with Jinja2 in a
// sandbox, with value and value_json as Home Assistant provides them and
// its to_json filter. StrictUndefined makes a missing key an error, which
// Home Assistant would log and render as an empty string.
const jinjaRenderer = `
import json, sys
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
env = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
env.filters["to_json"] = lambda v: json.dumps(v)
out = []
for case in json.load(sys.stdin):
    value = case["value"]
    try:
        value_json = json.loads(value)
    except ValueError:
        value_json = None
    try:
        out.append({"result": env.from_string(case["template"]).render(value=value, value_json=value_json)})
    except Exception as e:
        out.append({"error": type(e).__name__ + ": " + str(e)})
json.dump(out, sys.stdout)
`

// jinjaPython returns a Python interpreter that has Jinja2, installing
// Debian's python3-jinja2 when none has it and the test runs as root.
func jinjaPython(t *testing.T) string {
	t.Helper()
	candidates := []string{"python3", "/usr/bin/python3"}
	for _, py := range candidates {
		if exec.Command(py, "-c", "import jinja2").Run() == nil {
			return py
		}
	}
	if os.Geteuid() == 0 {
		cmd := exec.Command("apt-get", "install", "-y", "-q", "python3-jinja2")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("installing python3-jinja2 failed: %v\n%s", err, out)
		}
		if exec.Command("/usr/bin/python3", "-c", "import jinja2").Run() == nil {
			return "/usr/bin/python3"
		}
	}
	t.Fatal("no Python with Jinja2 found: install Debian's python3-jinja2 to check the Home Assistant templates")
	return ""
}

type renderCase struct {
	Template string `json:"template"`
	Value    string `json:"value"`
}

// renderTemplates renders every case and fails on a template error.
func renderTemplates(t *testing.T, cases []renderCase) []string {
	t.Helper()
	input, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(jinjaPython(t), "-c", jinjaRenderer)
	cmd.Stdin = strings.NewReader(string(input))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("Jinja2 renderer failed: %v", err)
	}
	var results []struct {
		Result *string `json:"result"`
		Error  string  `json:"error"`
	}
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("Jinja2 renderer output is not JSON: %v\n%s", err, out)
	}
	rendered := make([]string, len(results))
	for i, r := range results {
		if r.Result == nil {
			t.Errorf("template %q failed on %s: %s", cases[i].Template, cases[i].Value, r.Error)
			continue
		}
		rendered[i] = *r.Result
	}
	return rendered
}

// renderComponent renders the value template and every availability
// template of one component against one message.
func renderComponent(t *testing.T, comp map[string]any, value string) (state string, availability []string) {
	t.Helper()
	cases := []renderCase{{Template: comp["value_template"].(string), Value: value}}
	avail, _ := comp["availability"].([]any)
	for _, a := range avail {
		entry := a.(map[string]any)
		if tpl, ok := entry["value_template"].(string); ok {
			cases = append(cases, renderCase{Template: tpl, Value: value})
		}
	}
	out := renderTemplates(t, cases)
	return out[0], out[1:]
}

func TestHomeAssistantDiscoveryTemplates(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	vcfg.Baud = 19200 // a print lasts long enough to sample its state
	c := startIntegrationChain(t, url, vcfg, integrationOptions{homeAssistant: true, haPrefix: "homeassistant"}, true)

	var cfg discoveryConfig
	waitFor(t, "discovery with temperature sensors", 30*time.Second, func() bool {
		m, ok := c.rec.last(discoveryTopic)
		if !ok {
			return false
		}
		cfg = parseDiscovery(t, m.payload)
		_, tool := cfg.Components["tool0_temperature"]
		_, bed := cfg.Components["bed_target"]
		return tool && bed
	})
	if m, _ := c.rec.last(discoveryTopic); !m.retained && len(c.rec.on(discoveryTopic)) == 0 {
		t.Error("no discovery message recorded")
	}
	checkDiscoveryShape(t, cfg)

	idle := c.waitState("an operational state with temperatures", func(s map[string]any) bool {
		return snapFlag(s, "operational") && hasHeater(s, "tool0") && hasHeater(s, "bed")
	})
	expectRendered(t, cfg, idle, map[string]string{
		"state": "Operational", "connected": "ON", "printing": "OFF", "progress": "None", "file": "None",
		"print_time": "None", "time_left": "None",
	}, map[string][]string{
		"state": nil, "progress": {"online"}, "pause": {"offline"}, "resume": {"offline"}, "cancel": {"offline"},
		"emergency_stop": {"online"}, "connect": {"offline"},
	})
	checkNumeric(t, cfg, idle, "tool0_temperature", "bed_temperature", "tool0_target", "bed_target")

	c.command("job", `{"id": "ha-test-start", "action": "start", "path": "prusaslicer-2.8.1_mk4s_mini-cube.gcode"}`)
	printing := c.waitState("a printing state with progress", func(s map[string]any) bool {
		job, _ := s["job"].(map[string]any)
		progress, _ := job["progress"].(float64)
		return s["state_id"] == "PRINTING" && progress > 0 && job["print_time"] != nil
	})
	expectRendered(t, cfg, printing, map[string]string{
		"state": "Printing", "printing": "ON", "file": "prusaslicer-2.8.1_mk4s_mini-cube.gcode",
	}, map[string][]string{
		"pause": {"online"}, "resume": {"offline"}, "cancel": {"online"}, "connect": {"offline"},
	})
	checkNumeric(t, cfg, printing, "progress", "print_time", "time_left")
	// A pause also works while the print starts (M110 and the
	// beforePrintStarted script), a state that passes too fast to sample.
	starting := strings.Replace(printing, `"state_id":"PRINTING"`, `"state_id":"STARTING"`, 1)
	if starting == printing {
		t.Fatalf("state %s has no state_id PRINTING to replace", printing)
	}
	expectRendered(t, cfg, starting, nil, map[string][]string{"pause": {"online"}, "resume": {"offline"}})

	started := c.waitEvent(bridge.EventPrintStarted)
	state, avail := renderComponent(t, cfg.Components["print_started"], started)
	if len(avail) != 0 {
		t.Errorf("event entity has availability templates %v, want only the edge's marker", avail)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(state), &ev); err != nil {
		t.Fatalf("event template rendered %q, not JSON: %v", state, err)
	}
	if ev["event_type"] != bridge.EventPrintStarted || ev["name"] != "prusaslicer-2.8.1_mk4s_mini-cube.gcode" || ev["event_id"] == "" {
		t.Errorf("event template rendered %v, want event_type PrintStarted with the file name and event id", ev)
	}

	c.command("job", `{"id": "ha-test-cancel", "action": "cancel"}`)
	c.waitEvent(bridge.EventPrintCancelled)
}

// checkDiscoveryShape checks the payload against Home Assistant's rules for
// device discovery: device and origin at the root, and every component
// with a platform, a unique id and availability on the edge's marker.
func checkDiscoveryShape(t *testing.T, cfg discoveryConfig) {
	t.Helper()
	if ids, _ := cfg.Device["identifiers"].([]any); len(ids) != 1 || ids[0] != "printbridge_"+integrationPrinter {
		t.Errorf("device identifiers = %v, want [printbridge_%s]", cfg.Device["identifiers"], integrationPrinter)
	}
	if cfg.Origin["name"] != "printbridge" {
		t.Errorf("origin = %v, want name printbridge", cfg.Origin)
	}
	seen := map[string]string{}
	for id, comp := range cfg.Components {
		uid, _ := comp["unique_id"].(string)
		if !strings.HasPrefix(uid, "printbridge_"+integrationPrinter+"_") {
			t.Errorf("component %s has unique_id %q, want the printbridge_%s_ prefix", id, uid, integrationPrinter)
		}
		if other, dup := seen[uid]; dup {
			t.Errorf("components %s and %s share unique_id %q", id, other, uid)
		}
		seen[uid] = id
		if comp["p"] == nil {
			t.Errorf("component %s has no platform", id)
		}
		if comp["availability_mode"] != "all" {
			t.Errorf("component %s has availability_mode %v, want all", id, comp["availability_mode"])
		}
		avail, _ := comp["availability"].([]any)
		if len(avail) == 0 || avail[0].(map[string]any)["topic"] != "printbridge/"+integrationPrinter+"/availability" {
			t.Errorf("component %s availability %v does not start with the edge's availability topic", id, avail)
		}
		switch comp["p"] {
		case "button":
			if comp["command_topic"] != "printbridge/"+integrationPrinter+"/homeassistant/button" {
				t.Errorf("button %s command_topic = %v", id, comp["command_topic"])
			}
		case "event":
			types, _ := comp["event_types"].([]any)
			if len(types) != 1 || comp["state_topic"] != "printbridge/"+integrationPrinter+"/event/"+types[0].(string) {
				t.Errorf("event %s reads %v with types %v, want its event topic", id, comp["state_topic"], types)
			}
		default:
			if comp["state_topic"] != "printbridge/"+integrationPrinter+"/state" {
				t.Errorf("component %s state_topic = %v, want the state topic", id, comp["state_topic"])
			}
		}
	}
	for _, id := range []string{"state", "progress", "file", "print_time", "time_left", "current_z", "connected", "printing",
		"pause", "resume", "cancel", "emergency_stop", "connect", "print_started", "print_done", "print_failed",
		"print_paused", "error"} {
		if _, ok := cfg.Components[id]; !ok {
			t.Errorf("discovery has no component %s", id)
		}
	}
}

// expectRendered renders components against a state message and compares
// value templates and, for the listed components, their state-based
// availability templates.
func expectRendered(t *testing.T, cfg discoveryConfig, state string, values map[string]string, avail map[string][]string) {
	t.Helper()
	ids := slices.Sorted(func(yield func(string) bool) {
		seen := map[string]bool{}
		for id := range values {
			seen[id] = true
			if !yield(id) {
				return
			}
		}
		for id := range avail {
			if !seen[id] && !yield(id) {
				return
			}
		}
	})
	for _, id := range ids {
		comp, ok := cfg.Components[id]
		if !ok {
			t.Errorf("no component %s", id)
			continue
		}
		if comp["value_template"] == nil {
			comp = map[string]any{"value_template": "", "availability": comp["availability"]}
		}
		got, gotAvail := renderComponent(t, comp, state)
		if want, ok := values[id]; ok && got != want {
			t.Errorf("%s renders %q, want %q", id, got, want)
		}
		if want, ok := avail[id]; ok && !slices.Equal(gotAvail, want) {
			t.Errorf("%s availability renders %q, want %q", id, gotAvail, want)
		}
	}
}

// checkNumeric checks that sensors render numbers, as Home Assistant's
// numeric sensors with a unit require.
func checkNumeric(t *testing.T, cfg discoveryConfig, state string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		got, _ := renderComponent(t, cfg.Components[id], state)
		var f float64
		if _, err := fmt.Sscan(got, &f); err != nil {
			t.Errorf("%s renders %q, want a number", id, got)
		}
	}
}

func TestHomeAssistantButtonCommands(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	button := "printbridge/" + integrationPrinter + "/homeassistant/button"
	// A retained press from before the start must not run.
	pre, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "retained-press"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := pre.PublishRaw(context.Background(), button, true, []byte("connect")); err != nil {
		t.Fatal(err)
	}
	_ = pre.Close()

	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	vcfg.Baud = 9600
	c := startIntegrationChain(t, url, vcfg, integrationOptions{homeAssistant: true, haPrefix: "homeassistant"}, false)
	waitFor(t, "discovery", 30*time.Second, func() bool { return len(c.rec.on(discoveryTopic)) > 0 })
	waitFor(t, "Home Assistant subscription log", 30*time.Second, func() bool {
		return strings.Contains(c.edgeLog.String(), "ignored a retained Home Assistant button message")
	})

	c.command("connection", `{"id": "test-connect", "action": "connect"}`)
	c.waitEvent(bridge.EventConnected)
	c.command("job", `{"id": "test-start", "action": "start", "path": "prusaslicer-2.8.1_mk4s_mini-cube.gcode"}`)
	c.waitState("printing", func(s map[string]any) bool { return s["state_id"] == "PRINTING" })

	commands := "printbridge/" + integrationPrinter + "/command/+"
	// press checks that one button press becomes a command that runs.
	// wantFinal is false for M112, which the edge replies to with accepted only.
	press := func(payload, event, kind string, wantFinal bool, check func(bridge.Command)) {
		t.Helper()
		before := len(c.rec.on(commands))
		c.publish(button, false, payload)
		c.waitEvent(event)
		all := c.rec.on(commands)
		if len(all) <= before {
			t.Fatalf("press %s sent no command", payload)
		}
		m := all[before]
		if !strings.HasSuffix(m.topic, "/command/"+kind) {
			t.Errorf("press %s published on %s, want command/%s", payload, m.topic, kind)
		}
		var cmd bridge.Command
		if err := json.Unmarshal([]byte(m.payload), &cmd); err != nil {
			t.Fatalf("press %s sent %q: %v", payload, m.payload, err)
		}
		if !strings.HasPrefix(cmd.ID, "ha-") || cmd.Source != "homeassistant" {
			t.Errorf("press %s sent id %q source %q, want an ha- id from homeassistant", payload, cmd.ID, cmd.Source)
		}
		check(cmd)
		waitFor(t, "reply to "+cmd.ID, 30*time.Second, func() bool {
			for _, r := range c.rec.on("printbridge/" + integrationPrinter + "/reply") {
				var reply bridge.Reply
				if json.Unmarshal([]byte(r.payload), &reply) == nil && reply.ID == cmd.ID && (reply.Final() || !wantFinal) {
					if reply.Status != bridge.ReplyDone {
						t.Logf("press %s: reply %+v", payload, reply)
					}
					return true
				}
			}
			return false
		})
	}
	action := func(want string) func(bridge.Command) {
		return func(cmd bridge.Command) {
			if cmd.Action != want {
				t.Errorf("command action = %q, want %q", cmd.Action, want)
			}
		}
	}
	// The first command after the test's own is the pause: the retained
	// "connect" was not executed.
	press("pause", bridge.EventPrintPaused, bridge.CommandJob, true, action(bridge.ActionPause))
	press("resume", bridge.EventPrintResumed, bridge.CommandJob, true, action(bridge.ActionResume))
	press("cancel", bridge.EventPrintCancelled, bridge.CommandJob, true, action(bridge.ActionCancel))
	// NOTE: the edge sends no done or failed reply for M112, because it
	// closes the port at once; the check stops at accepted.
	press("emergency_stop", bridge.EventEStop, bridge.CommandGcode, false, func(cmd bridge.Command) {
		if !slices.Equal(cmd.Commands, []string{"M112"}) {
			t.Errorf("emergency stop sent %q, want [M112]", cmd.Commands)
		}
	})
	waitFor(t, "disconnect after M112", 30*time.Second, func() bool {
		return len(c.rec.on("printbridge/"+integrationPrinter+"/event/"+bridge.EventDisconnected)) > 0
	})
	connectedBefore := len(c.rec.on("printbridge/" + integrationPrinter + "/event/" + bridge.EventConnected))
	c.publish(button, false, "connect")
	waitFor(t, "second Connected", 30*time.Second, func() bool {
		return len(c.rec.on("printbridge/"+integrationPrinter+"/event/"+bridge.EventConnected)) > connectedBefore
	})

	c.publish(button, false, "selfdestruct")
	waitFor(t, "warning for an unknown button", 10*time.Second, func() bool {
		return strings.Contains(c.edgeLog.String(), "unknown Home Assistant button payload")
	})
	for _, m := range c.rec.on(commands) {
		if strings.Contains(m.payload, "selfdestruct") {
			t.Errorf("unknown button payload became command %s", m.payload)
		}
	}
}

func TestHomeAssistantBirthAndStaleComponents(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	// An earlier run announced a second extruder and a component that
	// printbridge no longer has.
	old := `{"device": {"identifiers": ["printbridge_ha1"], "name": "ha1"}, "origin": {"name": "printbridge"},
		"components": {
			"tool1_temperature": {"p": "sensor", "unique_id": "printbridge_ha1_tool1_temperature", "state_topic": "printbridge/ha1/state"},
			"old_sensor": {"p": "binary_sensor", "unique_id": "printbridge_ha1_old_sensor", "state_topic": "printbridge/ha1/state"}}}`
	pre, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "earlier-run"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := pre.PublishRaw(context.Background(), discoveryTopic, true, []byte(old)); err != nil {
		t.Fatal(err)
	}
	_ = pre.Close()

	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	c := startIntegrationChain(t, url, vcfg, integrationOptions{homeAssistant: true, haPrefix: "homeassistant"}, true)

	waitFor(t, "removal of the stale components and a final config", 30*time.Second, func() bool {
		msgs := c.rec.on(discoveryTopic)
		removeTool1, removeOld, final := -1, -1, -1
		for i, m := range msgs {
			cfg := parseDiscovery(t, m.payload)
			tool1, hasTool1 := cfg.Components["tool1_temperature"]
			oldSensor, hasOld := cfg.Components["old_sensor"]
			_, hasTool0 := cfg.Components["tool0_temperature"]
			// Removals may come in two messages: old_sensor at once, tool1
			// once the connected printer shows it has one extruder.
			if hasTool1 && len(tool1) == 1 && tool1["p"] == "sensor" {
				removeTool1 = i
			}
			if hasOld && len(oldSensor) == 1 && oldSensor["p"] == "binary_sensor" {
				removeOld = i
			}
			if removeTool1 >= 0 && removeOld >= 0 && !hasTool1 && !hasOld && hasTool0 {
				final = i
			}
		}
		return final > max(removeTool1, removeOld)
	})

	// A client subscribing now, as Home Assistant after a restart, gets
	// the final config.
	late := &recorder{}
	lateBus, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "late-reader"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer lateBus.Close()
	if err := lateBus.SubscribeRaw(context.Background(), discoveryTopic, late.add); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retained discovery", 10*time.Second, func() bool { return len(late.on(discoveryTopic)) > 0 })
	retained := parseDiscovery(t, late.on(discoveryTopic)[0].payload)
	if _, ok := retained.Components["tool1_temperature"]; ok {
		t.Error("the retained config still lists tool1_temperature")
	}
	if !late.on(discoveryTopic)[0].retained {
		t.Error("the discovery config is not retained")
	}

	// Home Assistant's birth message brings discovery and the retained
	// topics again. The availability marker is published only at connect
	// otherwise, so a new one shows that the edge republished.
	availability := "printbridge/" + integrationPrinter + "/availability"
	waitFor(t, "first availability marker", 10*time.Second, func() bool { return len(c.rec.on(availability)) > 0 })
	discoveries := len(c.rec.on(discoveryTopic))
	markers := len(c.rec.on(availability))
	c.publish("homeassistant/status", false, "online")
	waitFor(t, "discovery after the birth message", 20*time.Second, func() bool {
		return len(c.rec.on(discoveryTopic)) > discoveries
	})
	waitFor(t, "availability after the birth message", 20*time.Second, func() bool {
		return len(c.rec.on(availability)) > markers
	})
}

func TestOctoPrintMirrorPrint(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	c := startIntegrationChain(t, url, vcfg, integrationOptions{octoprintMQTT: true, octoprintBaseTopic: "octoPrint"}, true)

	waitFor(t, "connected marker", 30*time.Second, func() bool {
		m, ok := c.rec.last("octoPrint/mqtt")
		return ok && m.payload == "connected"
	})
	c.waitEvent(bridge.EventConnected)
	c.command("job", fmt.Sprintf(`{"id": "mirror-start", "action": "start", "path": %q}`, e2eFile))
	waitFor(t, "mirrored PrintDone", 120*time.Second, func() bool { return len(c.rec.on("octoPrint/event/PrintDone")) > 0 })

	var started map[string]any
	if err := json.Unmarshal([]byte(c.rec.on("octoPrint/event/PrintStarted")[0].payload), &started); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"name", "path", "origin", "size"} {
		if _, ok := started[key]; !ok {
			t.Errorf("mirrored PrintStarted lacks %q: %v", key, started)
		}
	}
	if started["_event"] != "PrintStarted" {
		t.Errorf("mirrored PrintStarted _event = %v", started["_event"])
	}
	checkIntTimestamp(t, "PrintStarted", c.rec.on("octoPrint/event/PrintStarted")[0].payload)

	// Progress goes from 0 to 100 in whole, rising percents.
	var progress []int
	for _, m := range c.rec.on("octoPrint/progress/printing") {
		var p struct {
			Location  string `json:"location"`
			Path      string `json:"path"`
			Progress  *int   `json:"progress"`
			Timestamp *int64 `json:"_timestamp"`
		}
		if err := json.Unmarshal([]byte(m.payload), &p); err != nil || p.Progress == nil || p.Timestamp == nil {
			t.Fatalf("progress message %q lacks an integer progress or _timestamp: %v", m.payload, err)
		}
		if p.Path == e2eFile {
			progress = append(progress, *p.Progress)
			if p.Location != "local" {
				t.Errorf("progress location = %q, want local", p.Location)
			}
		}
	}
	if len(progress) < 3 || progress[0] != 0 || progress[len(progress)-1] != 100 {
		t.Errorf("progress of the print = %v, want 0 first, 100 last and steps between", progress)
	}
	for i := 1; i < len(progress); i++ {
		if progress[i] < progress[i-1] {
			t.Errorf("progress went down: %v", progress)
			break
		}
	}

	for _, heater := range []string{"tool0", "bed"} {
		// Temperatures come with the firmware's reports every 2s.
		waitFor(t, "octoPrint/temperature/"+heater, 20*time.Second, func() bool {
			return len(c.rec.on("octoPrint/temperature/"+heater)) > 0
		})
		msgs := c.rec.on("octoPrint/temperature/" + heater)
		var temp map[string]any
		if err := json.Unmarshal([]byte(msgs[len(msgs)-1].payload), &temp); err != nil {
			t.Fatal(err)
		}
		if _, ok := temp["actual"].(float64); !ok {
			t.Errorf("temperature %s = %v, want a numeric actual", heater, temp)
		}
		if _, ok := temp["target"]; !ok {
			t.Errorf("temperature %s = %v, want a target", heater, temp)
		}
		checkIntTimestamp(t, "temperature/"+heater, msgs[len(msgs)-1].payload)
	}

	// A late subscriber, as a restarted Home Assistant, gets the retained
	// topics: progress, temperatures, ZChange, FirmwareData and the marker.
	late := &recorder{}
	lateBus, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "late-octoprint"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer lateBus.Close()
	if err := lateBus.SubscribeRaw(context.Background(), "octoPrint/#", late.add); err != nil {
		t.Fatal(err)
	}
	want := []string{"octoPrint/mqtt", "octoPrint/progress/printing", "octoPrint/temperature/tool0",
		"octoPrint/event/ZChange", "octoPrint/event/FirmwareData"}
	waitFor(t, "retained OctoPrint-MQTT topics", 10*time.Second, func() bool {
		for _, topic := range want {
			if len(late.on(topic)) == 0 {
				return false
			}
		}
		return true
	})
	for _, m := range late.on("octoPrint/event/+") {
		if m.topic != "octoPrint/event/ZChange" && m.topic != "octoPrint/event/FirmwareData" {
			t.Errorf("%s is retained; the plugin retains only ZChange and FirmwareData", m.topic)
		}
	}

	c.stop()
	waitFor(t, "mirrored Shutdown", 10*time.Second, func() bool { return len(c.rec.on("octoPrint/event/Shutdown")) > 0 })
	waitFor(t, "disconnected marker", 10*time.Second, func() bool {
		m, ok := c.rec.last("octoPrint/mqtt")
		return ok && m.payload == "disconnected"
	})
}

func checkIntTimestamp(t *testing.T, what, payload string) {
	t.Helper()
	var msg map[string]json.RawMessage
	if err := json.Unmarshal([]byte(payload), &msg); err != nil {
		t.Fatalf("%s payload %q: %v", what, payload, err)
	}
	raw := string(msg["_timestamp"])
	var ts int64
	if _, err := fmt.Sscanf(raw, "%d", &ts); err != nil || strings.ContainsAny(raw, ".eE") || ts < time.Now().Add(-time.Hour).Unix() {
		t.Errorf("%s _timestamp = %s, want integer Unix seconds", what, raw)
	}
}
