package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeanBuildDemoNamesTheTag builds printbridge without the embedded
// nats-server, as a Raspberry Pi install may. The demo needs that server,
// so it must stop with an error that names the build tag, and the other
// commands must still work.
func TestLeanBuildDemoNamesTheTag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPrintbridge(t, "noembeddedbroker")
	out, err := exec.Command(bin, "demo").CombinedOutput()
	if err == nil {
		t.Fatalf("demo of the lean build succeeded, want an error; output:\n%s", out)
	}
	if !strings.Contains(string(out), "-tags noembeddedbroker") {
		t.Errorf("demo output does not name the build tag:\n%s", out)
	}
	if !strings.Contains(string(out), "go build ./cmd/printbridge") {
		t.Errorf("demo output does not say how to get a build with the demo:\n%s", out)
	}
	if out, err := exec.Command(bin, "worker", "--help").CombinedOutput(); err != nil {
		t.Errorf("worker --help of the lean build failed: %v\n%s", err, out)
	}
}
