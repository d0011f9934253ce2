package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// readSegments returns the contents of the outbox segment files in dir
// by file name.
func readSegments(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	segments := map[string][]byte{}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		segments[filepath.Base(path)] = data
	}
	return segments
}

// TestEdgeStateLockRejectsSecondEdge starts a second edge process with
// the printer and --data-dir of a running one but a serial port that
// does not exist, so the port lock cannot stop it. It must exit on the
// state lock before it opens the outbox or connects to the broker. After
// the first edge is killed with SIGKILL, an edge starts again.
func TestEdgeStateLockRejectsSecondEdge(t *testing.T) {
	r := startKillRig(t)
	dataDir := filepath.Join(r.dir, "edge-data")
	outboxDir := filepath.Join(dataDir, r.printer+".outbox")
	before := readSegments(t, outboxDir)
	if len(before) == 0 {
		t.Fatalf("no outbox segment in %s while the first edge runs", outboxDir)
	}

	bin := r.edge.bin
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	second := exec.CommandContext(ctx, bin, "edge", "--port", filepath.Join(r.dir, "no-such-port"), "--printer", r.printer,
		"--data-dir", dataDir, "--metrics-listen", "", "--mqtt", r.broker.(*mosquittoBroker).url())
	var stderr bytes.Buffer
	second.Stderr = &stderr
	err := second.Run()
	if ctx.Err() != nil {
		t.Fatalf("the second edge ran until the test's timeout instead of stopping on the lock:\n%s", stderr.String())
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("second edge exited with %v, want exit code 1", err)
	}
	lockPath := filepath.Join(dataDir, r.printer+".lock")
	want := "printer " + r.printer + " state in " + dataDir + " is in use by another edge on this host (" + lockPath +
		" is locked); stop the other edge first, or, for another printer, give this edge its own --printer id, because two edges with one id also share its broker client id and topics"
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("second edge stderr does not contain %q:\n%s", want, stderr.String())
	}
	if !strings.Contains(stderr.String(), "locking the printer's state in the data folder failed; the edge does not start") {
		t.Errorf("second edge did not log the locked state:\n%s", stderr.String())
	}
	for _, forbidden := range []string{"connecting to MQTT broker", "outbox", "edge starting"} {
		if strings.Contains(stderr.String(), forbidden) {
			t.Errorf("second edge logged %q before it stopped:\n%s", forbidden, stderr.String())
		}
	}

	// The first edge may append events of its own meanwhile, but every
	// byte it had written stays.
	after := readSegments(t, outboxDir)
	for name, old := range before {
		cur, ok := after[name]
		if !ok {
			t.Errorf("outbox segment %s is gone after the rejected start", name)
			continue
		}
		if !bytes.HasPrefix(cur, old) {
			t.Errorf("outbox segment %s changed: %d bytes before, %d after, and the old bytes are not a prefix", name, len(old), len(cur))
		}
	}
	if !r.edge.Running() {
		t.Fatalf("the first edge exited after the rejected start:\n%s", r.edge.Tail(30))
	}
	if log := r.edge.Log(); strings.Contains(log, "in use") || strings.Contains(log, "truncating") {
		t.Errorf("the first edge logged a lock or truncation message:\n%s", r.edge.Tail(30))
	}
	if n := r.col.countSince(bridge.EventStartup, 0); n != 1 {
		t.Errorf("%d Startup events on the broker, want 1 from the first edge", n)
	}

	// flock belongs to the open file, so the kernel releases it when the
	// killed process's files are closed.
	r.edge.Kill()
	mark := r.col.arrivals()
	r.edge.Start()
	r.waitUntil("Startup and Connected of the edge started after the kill", time.Minute, func() bool {
		return r.col.countSince(bridge.EventStartup, mark) > 0 && r.col.countSince(bridge.EventConnected, mark) > 0
	})
	if !r.edge.Running() {
		t.Errorf("the edge started after the kill exited:\n%s", r.edge.Tail(30))
	}
}
