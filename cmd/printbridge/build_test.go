package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// buildPrintbridge builds the printbridge binary into a temporary
// directory of t, so a fault test runs the real executable.
func buildPrintbridge(t testing.TB, tags ...string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "printbridge")
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build of printbridge failed: %v\n%s", err, out)
	}
	return bin
}

// TestMain points the default data directories (os.UserConfigDir) at a
// fresh folder, so tests never read or leave state in the user's home:
// the worker remembers event ids there, and tests reuse fixed ids.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "printbridge-test-home-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
