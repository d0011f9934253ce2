package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

// configEdge runs an in-process edge from a YAML config file, the way
// runEdge does, so a reload reads the file again. It returns the edge's
// log buffer.
func configEdge(t *testing.T, configPath string) *syncBuffer {
	t.Helper()
	args := []string{"--config", configPath}
	o, flags, err := reparseEdgeFlags(args)()
	if err != nil {
		t.Fatal(err)
	}
	o.flags, o.reparse = flags, reparseEdgeFlags(args)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runEdgeWith(ctx, o, log, nil) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("edge stopped with error: %v", err)
		}
		if t.Failed() {
			t.Logf("edge log:\n%s", logs.String())
		}
	})
	return logs
}

func startTestVirtualPrinter(t *testing.T) *virtual.Printer {
	t.Helper()
	vp, err := virtual.New(virtual.DefaultConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- vp.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		<-done
	})
	return vp
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func eventsNamed(events []*bridge.Envelope, name string) []*bridge.Envelope {
	var out []*bridge.Envelope
	for _, e := range events {
		if e.Event == name {
			out = append(out, e)
		}
	}
	return out
}

func TestSIGHUPReloadsSettings(t *testing.T) {
	// The test process must not die from the SIGHUP if the edge's
	// handler is not registered yet.
	hup := make(chan os.Signal, 4)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	dir := t.TempDir()
	broker := startFaultMosquitto(t, dir)
	col := &faultCollector{}
	obs := broker.Observer(t, "reload1", col)
	vp := startTestVirtualPrinter(t)
	profile := filepath.Join(dir, "profile.yaml")
	writeFile(t, profile, "id: reload-profile\n")
	base := fmt.Sprintf("port: %s\nprinter: reload1\ndata-dir: %s\nmqtt: %s\nmetrics-listen: \"\"\nprinter-profile: %s\nwatch-interval: 1h\n",
		vp.Path(), filepath.Join(dir, "edge"), broker.url(), profile)
	config := filepath.Join(dir, "edge.yaml")
	writeFile(t, config, base)
	logs := configEdge(t, config)
	waitCollected(t, col, "Connected", 30*time.Second, hasEvent(bridge.EventConnected))

	writeFile(t, profile, "id: reload-profile\nheatedBed: false\n")
	writeFile(t, config, base+"blocked-commands: M0,M1,M300\nbaud: 250000\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitCollected(t, col, "SettingsUpdated", 30*time.Second, hasEvent(bridge.EventSettingsUpdated))
	events := col.snapshot()
	modified := eventsNamed(events, bridge.EventPrinterProfileModified)
	if len(modified) != 1 {
		t.Fatalf("%d PrinterProfileModified events, want 1", len(modified))
	}
	if id, _ := modified[0].Payload.Get("identifier"); id != "reload-profile" {
		t.Errorf("PrinterProfileModified identifier = %v, want reload-profile", id)
	}
	if updated := eventsNamed(events, bridge.EventSettingsUpdated); updated[0].Payload != nil {
		t.Errorf("SettingsUpdated payload = %v, want none", updated[0].Payload)
	}
	if !strings.Contains(logs.String(), "need a restart") || !strings.Contains(logs.String(), "baud") {
		t.Errorf("the changed baud rate is not logged as needing a restart:\n%s", logs.String())
	}

	cmd := `{"id": "after-reload", "commands": ["M300 S440 P10", "M140 S50", "G4 P0"]}`
	if err := obs.PublishCommand(context.Background(), "reload1", bridge.CommandGcode, []byte(cmd)); err != nil {
		t.Fatal(err)
	}
	waitCollected(t, col, "two CommandSuppressed", 30*time.Second, func(evs []*bridge.Envelope) bool {
		return len(eventsNamed(evs, bridge.EventCommandSuppressed)) == 2
	})
	var suppressed []string
	for _, e := range eventsNamed(col.snapshot(), bridge.EventCommandSuppressed) {
		c, _ := e.Payload.Get("command")
		suppressed = append(suppressed, fmt.Sprint(c))
	}
	if !slices.Equal(suppressed, []string{"M300 S440 P10", "M140 S50"}) {
		t.Errorf("suppressed %q, want the newly blocked M300 and the bed command", suppressed)
	}
	waitFor(t, "G4 executed", 10*time.Second, func() bool { return slices.Contains(vp.Executed(), "G4 P0") })
	if slices.Contains(vp.Executed(), "M300 S440 P10") {
		t.Error("M300 reached the firmware after the reload blocked it")
	}
}

func TestConnectivityChangedOnBrokerOutage(t *testing.T) {
	dir := t.TempDir()
	broker := startFaultBroker(t, "mosquitto", dir)
	col := &faultCollector{}
	broker.Observer(t, "conn1", col)
	startInProcessEdge(t, dir, "conn1", edgeBusOptions(broker), 25)
	waitCollected(t, col, "first ConnectivityChanged", 30*time.Second, hasEvent(bridge.EventConnectivityChanged))
	broker.Down()
	time.Sleep(300 * time.Millisecond)
	broker.Start()
	// QoS 1 may deliver an event twice, so the wait counts event ids.
	waitCollected(t, col, "three ConnectivityChanged", 60*time.Second, func(evs []*bridge.Envelope) bool {
		ids := map[string]bool{}
		for _, e := range eventsNamed(evs, bridge.EventConnectivityChanged) {
			ids[e.ID] = true
		}
		return len(ids) >= 3
	})
	var got []string
	seen := map[string]bool{}
	for _, e := range eventsNamed(col.snapshot(), bridge.EventConnectivityChanged) {
		if seen[e.ID] {
			continue // QoS 1 may deliver an event twice
		}
		seen[e.ID] = true
		oldV, _ := e.Payload.Get("old")
		newV, _ := e.Payload.Get("new")
		got = append(got, fmt.Sprintf("%v->%v", oldV, newV))
	}
	want := []string{"false->true", "true->false", "false->true"}
	if !slices.Equal(got[:3], want) {
		t.Errorf("ConnectivityChanged %q, want %q", got, want)
	}
}

// TestRejectedReloadKeepsScripts breaks beforePrintStarted and sends
// SIGHUP: the reload is rejected, and the next print still sends the
// script as it was at start, not the broken file.
func TestRejectedReloadKeepsScripts(t *testing.T) {
	hup := make(chan os.Signal, 4)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	dir := t.TempDir()
	broker := startFaultMosquitto(t, dir)
	col := &faultCollector{}
	obs := broker.Observer(t, "scripts1", col)
	vp := startTestVirtualPrinter(t)
	scripts := filepath.Join(dir, "scripts")
	files := filepath.Join(dir, "files")
	for _, d := range []string{scripts, files} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(scripts, "beforePrintStarted")
	writeFile(t, script, "M117 before v1\n")
	writeFile(t, filepath.Join(files, "tiny.gcode"), "G28\nG1 X5 Y5\n")
	config := filepath.Join(dir, "edge.yaml")
	writeFile(t, config, fmt.Sprintf("port: %s\nprinter: scripts1\ndata-dir: %s\nfiles: %s\nscripts: %s\nmqtt: %s\nmetrics-listen: \"\"\n",
		vp.Path(), filepath.Join(dir, "edge"), files, scripts, broker.url()))
	logs := configEdge(t, config)
	waitCollected(t, col, "Connected", 30*time.Second, hasEvent(bridge.EventConnected))

	// An unclosed block is a template error, so the reload must fail.
	writeFile(t, script, "{% if printer_profile.heatedBed %}\nM117 before v2\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rejected reload in the log", 30*time.Second, func() bool {
		return strings.Contains(logs.String(), "configuration reload failed; the previous settings stay in force")
	})

	cmd := `{"id": "print-after-reload", "action": "start", "path": "tiny.gcode"}`
	if err := obs.PublishCommand(context.Background(), "scripts1", bridge.CommandJob, []byte(cmd)); err != nil {
		t.Fatal(err)
	}
	waitCollected(t, col, "PrintDone", time.Minute, hasEvent(bridge.EventPrintDone))
	executed := vp.Executed()
	if !slices.Contains(executed, "M117 before v1") {
		t.Errorf("the firmware did not get the beforePrintStarted line of the start (M117 before v1): %q", executed)
	}
	if slices.Contains(executed, "M117 before v2") {
		t.Errorf("the firmware got a line of the rejected script file")
	}
	if strings.Contains(logs.String(), "GCODE script not sent") {
		t.Errorf("the edge logged the script as not sent")
	}
	if !strings.Contains(logs.String(), "sending the version loaded at the last start or reload instead") {
		t.Errorf("the edge did not log that it sent the previous version of the script")
	}
	if !hasEvent(printer.ScriptEventName(printer.ScriptBeforePrintStarted, "Finished"))(col.snapshot()) {
		t.Errorf("no GcodeScriptBeforePrintStartedFinished event")
	}
}
