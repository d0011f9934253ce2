package main

import (
	"strings"
	"testing"

	"github.com/printbridge/printbridge/bridge"
)

// listedNames returns the first column of 'printbridge events', one name
// per line.
func listedNames(t *testing.T) []string {
	t.Helper()
	code, stdout, stderr := runCLI(t, "events")
	if code != 0 {
		t.Fatalf("printbridge events exited with %d: %s", code, stderr)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimRight(stdout, "\n"), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			t.Fatalf("printbridge events printed an empty line in:\n%s", stdout)
		}
		names = append(names, fields[0])
	}
	return names
}

func TestEventsListsTemplatedNames(t *testing.T) {
	names := listedNames(t)
	index := map[string]int{}
	for i, name := range names {
		index[name] = i
	}
	for _, want := range []string{"GcodeScript${ScriptName}Running", "GcodeScript${ScriptName}Finished", "plugin_<id>_<name>"} {
		if _, ok := index[want]; !ok {
			t.Errorf("printbridge events does not list %s", want)
		}
	}
	for _, d := range bridge.Events() {
		if _, ok := index[d.Name]; !ok {
			t.Errorf("printbridge events does not list the catalogue event %s", d.Name)
		}
	}
	// OctoPrint's documentation lists the script events between
	// PrintResumed and ChartMarked.
	running, resumed := index[bridge.TemplateScriptRunning], index[bridge.EventPrintResumed]
	if running != resumed+1 {
		t.Errorf("%s is at line %d, want right after %s at line %d", bridge.TemplateScriptRunning, running+1, bridge.EventPrintResumed, resumed+1)
	}
	if len(names) != len(bridge.Events())+3 {
		t.Errorf("printbridge events lists %d names, want the %d catalogue events and 3 templated names", len(names), len(bridge.Events()))
	}
}

func TestEventsListsPayloadKeys(t *testing.T) {
	code, stdout, stderr := runCLI(t, "events")
	if code != 0 {
		t.Fatalf("printbridge events exited with %d: %s", code, stderr)
	}
	lines := map[string]string{}
	for _, line := range strings.Split(stdout, "\n") {
		if name, _, ok := strings.Cut(line, " "); ok {
			lines[name] = line
		}
	}
	// The keys are the last column, because a group name may contain spaces.
	for name, keys := range map[string]string{
		bridge.EventConnected:           "port,baudrate",
		bridge.EventConnectivityChanged: "old,new",
		bridge.TemplateScriptFinished:   "name,path,origin,size,owner,user,...",
		bridge.TemplatePluginEvent:      "any",
	} {
		line, ok := lines[name]
		if !ok {
			t.Errorf("printbridge events has no line for %s", name)
			continue
		}
		if !strings.HasSuffix(line, " "+keys) {
			t.Errorf("line %q does not end in the payload keys %q", line, keys)
		}
	}
	if got := strings.Fields(lines[bridge.EventStartup]); len(got) != 2 {
		t.Errorf("Startup line has the columns %q, want the name and group only (no payload)", got)
	}
}
