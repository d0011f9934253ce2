package main

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/printbridge/printbridge/deploy"
)

// TestDemoPrintsOutsideCheckout runs `printbridge demo` from an empty
// folder, as after `go install`: the config and the G-code file are the
// ones built into the binary, and the print runs to PrintDone with every
// hook succeeding.
func TestDemoPrintsOutsideCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and prints a file")
	}
	bin := buildPrintbridge(t)
	demo := exec.Command(bin, "demo")
	demo.Dir = t.TempDir()
	out, err := demo.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}

	text := string(out)
	if !strings.Contains(text, "printing "+deploy.DemoGcodeName) {
		t.Errorf("demo output does not name the built-in file %s:\n%s", deploy.DemoGcodeName, text)
	}
	if !strings.Contains(text, deploy.DemoConfigName+" (built in)") {
		t.Errorf("demo output does not name the built-in config:\n%s", text)
	}
	if !regexp.MustCompile(`PrintDone\s+1`).MatchString(text) {
		t.Errorf("demo output has no PrintDone count of 1:\n%s", text)
	}

	hooks := regexp.MustCompile(`hooks run: (\d+) ok, (\d+) failed`).FindStringSubmatch(text)
	if hooks == nil {
		t.Fatalf("demo output has no hook summary:\n%s", text)
	}
	if ok, _ := strconv.Atoi(hooks[1]); ok == 0 {
		t.Errorf("no hook ran ok:\n%s", text)
	}
	if hooks[2] != "0" {
		t.Errorf("%s hooks failed:\n%s", hooks[2], text)
	}
}
