package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// buildPrintbridge builds the printbridge binary into a temporary
// directory of t, so a fault test runs the real executable.
func buildPrintbridge(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "printbridge")
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build of printbridge failed: %v\n%s", err, out)
	}
	return bin
}
