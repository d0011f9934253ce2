package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
)

// wrapperHook is one system hook of TestWorkerRejectsHostileWrapperHooks.
type wrapperHook struct {
	name, command string
	// rejected is true for a hook that must not load, because a file name
	// in its placeholder could run code.
	rejected bool
	// output is the file, in the hook's folder or the SSH server's, that
	// a loaded hook appends each name to.
	output string
}

// TestWorkerRejectsHostileWrapperHooks starts the worker with hooks that
// pass a placeholder through ssh, env -S, ., sh FILE and flock -c, and
// sends PrintDone events whose file names are shell code. The hooks whose
// program would run a name as code must be rejected at start, and the
// safe forms that docs/hooks.md gives in their place must pass each name
// through unchanged. The hooks run real programs: OpenSSH's ssh against
// an SSH server that runs commands with /bin/sh -c as sshd does, GNU env
// and util-linux flock.
func TestWorkerRejectsHostileWrapperHooks(t *testing.T) {
	server := startSSHServer(t)
	server.sshClientWorks(t)
	emb := brokertest.StartNATS(t, false, false)
	hookDir := t.TempDir()
	// flock -c runs its command with $SHELL.
	t.Setenv("SHELL", "/bin/sh")
	// An uploaded G-code file whose content is shell code, in both places
	// where a hook may run it by name.
	for _, dir := range []string{hookDir, server.dir} {
		if err := os.WriteFile(filepath.Join(dir, "evil.gcode"), []byte("touch PWNED-script\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ssh := server.clientCommand()
	hooks := []wrapperHook{
		{name: "ssh remote command", command: ssh + ` touch {name}.seen`, rejected: true},
		{name: "ssh destination", command: `ssh -F /dev/null -o BatchMode=yes -o ConnectTimeout=5 {name} uptime`, rejected: true},
		{name: "env split string", command: `env -S "sh -c \"touch {name}.seen\""`, rejected: true},
		{name: "source", command: `sh -c ". ./{name}"`, rejected: true},
		{name: "script file", command: `sh {name}`, rejected: true},
		{name: "flock command", command: `flock lockfile -c "touch {name}.seen"`, rejected: true},
		{name: "ssh stdin", command: `sh -c 'printf "%s\n" "$1" | ` + ssh + ` "cat >> received.txt"' sh {name}`, output: filepath.Join(server.dir, "received.txt")},
		{name: "env split script", command: `env -S "sh -c" "printf '%s\n' {name} >> env-split.txt"`, output: filepath.Join(hookDir, "env-split.txt")},
		{name: "flock script", command: `flock lockfile sh -c 'printf "%s\n" "$1" >> flock.txt' sh {name}`, output: filepath.Join(hookDir, "flock.txt")},
	}
	var config strings.Builder
	config.WriteString("events:\n  subscriptions:\n")
	for _, h := range hooks {
		fmt.Fprintf(&config, "  - {name: %q, event: PrintDone, type: system, shell: false, cwd: %q, timeout: 30s, command: %q}\n", h.name, hookDir, h.command)
	}
	cfg := writeWorkerConfig(t, t.TempDir(), config.String())
	w := startWorker(t, "--config", cfg, "--nats", emb.NATSURL(), "--metrics-listen", "127.0.0.1:0")

	checkHookRejections(t, w, hooks)

	names := []string{"a;touch PWNED-semicolon", "$(touch PWNED-subst)", "x';touch PWNED-quote;'", "-oProxyCommand=touch PWNED-proxy", "evil.gcode"}
	sender := newEventSender(t, emb.NATSURL(), "mk3s")
	for i, name := range names {
		id := fmt.Sprintf("hostile-%d", i)
		sender.send("mk3s", id, bridge.EventPrintDone, bridge.Payload{{Key: "name", Value: name}, {Key: "path", Value: name}, {Key: "origin", Value: "local"}})
		for _, h := range hooks {
			if h.rejected {
				continue
			}
			result := sender.waitResult(id, h.name)
			if result["exit_code"] != float64(0) {
				t.Errorf("hook %q for name %q: result %v, want exit code 0", h.name, name, result)
			}
		}
	}

	want := strings.Join(names, "\n") + "\n"
	for _, h := range hooks {
		if h.rejected {
			continue
		}
		data, err := os.ReadFile(h.output)
		if err != nil {
			t.Errorf("hook %q: %v", h.name, err)
			continue
		}
		if string(data) != want {
			t.Errorf("hook %q wrote %q, want each name on a line of its own: %q", h.name, data, want)
		}
	}
	for _, dir := range []string{hookDir, server.dir} {
		found, err := filepath.Glob(filepath.Join(dir, "*PWNED*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != 0 {
			t.Errorf("file names ran commands, which created %q", found)
		}
	}
	for _, command := range server.executed() {
		if command != "echo ready" && command != "cat >> received.txt" {
			t.Errorf("the SSH server ran %q, want only the fixed command of the hook", command)
		}
	}
}

// checkHookRejections checks the log and the metrics of the worker w,
// started with hooks in config order: each rejected hook has one error
// line that names its placeholder, the others have none, and
// printbridge_worker_config_entries_skipped counts the rejected ones.
func checkHookRejections(t *testing.T, w *workerRun, hooks []wrapperHook) {
	t.Helper()
	loaded := 0
	for i, h := range hooks {
		errors := w.lines("level=ERROR", fmt.Sprintf(`(entry #%d \"%s\")`, i+1, h.name))
		if !h.rejected {
			loaded++
			if len(errors) != 0 {
				t.Errorf("hook %q was rejected: %s", h.name, errors)
			}
			continue
		}
		if len(errors) != 1 {
			t.Errorf("hook %q: %d error lines, want 1 that rejects it:\n%s", h.name, len(errors), w.log.String())
			continue
		}
		for _, want := range []string{"placeholder {name} in command #1", "lets a value such as a file name run code"} {
			if !strings.Contains(errors[0], want) {
				t.Errorf("hook %q: error line lacks %q: %s", h.name, want, errors[0])
			}
		}
	}
	m := metricsAddress.FindStringSubmatch(w.log.String())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", w.log.String())
	}
	families := scrapeMetricFamilies(t, "http://"+m[1]+"/metrics")
	if got := metricSample(families, "printbridge_worker_config_entries_skipped", nil); got != float64(len(hooks)-loaded) {
		t.Errorf("entries_skipped = %v, want %d", got, len(hooks)-loaded)
	}
}
