package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/printer"
)

// TestEdgeCommandsAfterDropAtSubscribe runs an edge process against
// Mosquitto through a proxy that cuts the edge's connection when its
// SUBSCRIBE to the command topics passes, before the broker gets it. The
// edge must subscribe again after the reconnect and execute a command.
func TestEdgeCommandsAfterDropAtSubscribe(t *testing.T) {
	bin := buildPrintbridge(t)
	dir := t.TempDir()
	broker := brokertest.StartMosquittoProcess(t, 0)
	proxy := brokertest.StartProxy(t, broker.Addr())
	const printer = "solo2"
	cut := proxy.CutWhenClientSends([]byte(bridge.Topics{}.MQTTCommandTree(printer)))

	col := &collector{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	observerBus, err := mqtt.New(ctx, mqtt.Config{URL: broker.URL(), ClientID: "subscribe-drop-observer"}, brokertest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	observer := subscribeObserver(t, observerBus, printer, col)

	d := newDupEdge(t, bin, dir, "edge", printer, []string{"--mqtt", proxy.URL()})
	d.edge.Start()
	select {
	case <-cut:
	case <-time.After(dupTimeout):
		t.Fatalf("the edge sent no SUBSCRIBE to its command topics within %s:\n%s", dupTimeout, d.edge.Tail(30))
	}
	waitFor(t, "Connected event", dupTimeout, func() bool { return col.has(bridge.EventConnected) })

	reply := sendGcode(t, observer, col, printer, "after-drop", "M117 after the drop")
	if reply.Status != bridge.ReplyDone {
		t.Errorf("command after the drop got %s (%s), want done", reply.Status, reply.Reason)
	}
	if !d.recorded("M117 after the drop") {
		t.Error("the printer did not execute the command")
	}
	if !d.edge.Running() {
		t.Fatalf("the edge exited:\n%s", d.edge.Tail(30))
	}
	log := d.edge.Log()
	if !strings.Contains(log, "subscribing after the reconnect") {
		t.Errorf("the edge did not log that it subscribes after the reconnect:\n%s", d.edge.Tail(30))
	}
	if strings.Contains(log, lateEventLog) {
		t.Errorf("the edge dropped events as stopped:\n%s", d.edge.Tail(30))
	}
	if err := d.edge.Stop(); err != nil {
		t.Errorf("the edge exited with %v after SIGTERM", err)
	}
}

// dynamicSecurityPlugin returns the path of Mosquitto's dynamic security
// plugin, which Debian's mosquitto package installs.
func dynamicSecurityPlugin(t *testing.T) string {
	t.Helper()
	paths, _ := filepath.Glob("/usr/lib/*/mosquitto_dynamic_security.so")
	paths = append(paths, "/usr/lib/mosquitto_dynamic_security.so", "/usr/local/lib/mosquitto_dynamic_security.so")
	for _, path := range paths {
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	t.Fatalf("mosquitto_dynamic_security.so not found in %v: install Debian's mosquitto package, which `make test` does", paths)
	return ""
}

// startRejectingMosquitto starts Mosquitto with its dynamic security
// plugin, which rejects every subscription of an anonymous client except
// those to the topic filters in allowed. Mosquitto 2.0.11's acl_file does
// not check subscriptions, so it cannot stand in.
func startRejectingMosquitto(t *testing.T, allowed ...string) *brokertest.Mosquitto {
	t.Helper()
	type acl struct {
		Type  string `json:"acltype"`
		Topic string `json:"topic"`
		Allow bool   `json:"allow"`
	}
	var acls []acl
	for _, filter := range allowed {
		acls = append(acls, acl{Type: "subscribeLiteral", Topic: filter, Allow: true})
	}
	config := map[string]any{
		"defaultACLAccess": map[string]bool{"publishClientSend": true, "publishClientReceive": true, "subscribe": false, "unsubscribe": true},
		"clients":          []any{},
		"groups":           []any{map[string]any{"groupname": "anonymous", "roles": []any{map[string]any{"rolename": "limited"}}}},
		"roles":            []any{map[string]any{"rolename": "limited", "acls": acls}},
		"anonymousGroup":   "anonymous",
	}
	data, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dynamic-security.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return brokertest.StartMosquittoWithOptions(t, brokertest.MosquittoOptions{Config: []string{
		"plugin " + dynamicSecurityPlugin(t),
		"plugin_opt_config_file " + path,
	}})
}

// TestEdgeExitsWhenCommandsRejected runs an edge process against a
// Mosquitto that rejects its command subscriptions. The edge must not
// keep running without commands: it must publish Shutdown and offline as
// at any stop and exit with status 1, so that a service manager restarts
// it.
func TestEdgeExitsWhenCommandsRejected(t *testing.T) {
	bin := buildPrintbridge(t)
	dir := t.TempDir()
	const printerID = "reject1"
	topics := bridge.Topics{}
	watched := "printbridge/" + printerID + "/#"
	broker := startRejectingMosquitto(t, topics.MQTTPresence(printerID), watched)

	rec := &topicRecorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watcher, err := mqtt.New(ctx, mqtt.Config{URL: broker.URL(), ClientID: "rejected-commands-watcher"}, brokertest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watcher.Close() })
	if err := watcher.SubscribeRaw(ctx, watched, rec.add); err != nil {
		t.Fatal(err)
	}

	d := newDupEdge(t, bin, dir, "edge", printerID, []string{"--mqtt", broker.URL()})
	d.edge.Start()
	err = d.waitExit()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("the edge exited with %v, want exit code 1", err)
	}
	log := d.edge.Log()
	for _, part := range []string{
		"subscribing to commands failed",
		"printbridge edge: subscribe to commands of printer " + printerID,
		"SUBACK return code 0x80",
	} {
		if !strings.Contains(log, part) {
			t.Errorf("the edge's output does not contain %q:\n%s", part, d.edge.Tail(30))
		}
	}

	barrier := "printbridge/" + printerID + "/test-barrier"
	if err := watcher.PublishRaw(ctx, barrier, false, []byte("end")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "barrier message", 20*time.Second, func() bool { return len(rec.payloads(barrier)) > 0 })
	if got := rec.payloads(topics.MQTTAvailability(printerID)); len(got) == 0 || got[len(got)-1] != "offline" {
		t.Errorf("availability markers %q, want offline last", got)
	}
	if got := rec.payloads(topics.MQTTEvent(printerID, bridge.EventShutdown)); len(got) != 1 {
		t.Errorf("%d Shutdown events, want 1", len(got))
	}
	states := rec.payloads(topics.MQTTState(printerID))
	if len(states) == 0 {
		t.Fatal("the edge published no state")
	}
	var last struct {
		State string `json:"state_id"`
	}
	if err := json.Unmarshal([]byte(states[len(states)-1]), &last); err != nil {
		t.Fatalf("last state %q: %v", states[len(states)-1], err)
	}
	if last.State != string(printer.StateOffline) {
		t.Errorf("last state %q, want %s after the stop", last.State, printer.StateOffline)
	}
}
