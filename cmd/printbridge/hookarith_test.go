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

// TestWorkerRejectsArithmeticHooks starts the worker with hooks that put
// a placeholder where bash or dash evaluates it as arithmetic or as code
// (trap, eval "$x", sh /dev/stdin, awk program text) or pipe it into a
// shell, and sends PrintDone events whose file names are shell
// code. Those hooks must be rejected at start. The safe form that
// docs/hooks.md gives in their place runs for every name, and no name
// may create a PWNED file.
func TestWorkerRejectsArithmeticHooks(t *testing.T) {
	emb := brokertest.StartNATS(t, false, false)
	hookDir := t.TempDir()
	hooks := []wrapperHook{
		{name: "arithmetic expansion", command: `echo $(( {name} )) >> log.txt`, rejected: true},
		{name: "sh -c arithmetic", command: `sh -c 'echo $(( {name} )) >> log.txt'`, rejected: true},
		{name: "bash conditional", command: `bash -c '[[ {name} -gt 80 ]] && touch hot'`, rejected: true},
		{name: "let", command: `bash -c 'let n={name}'`, rejected: true},
		{name: "substring offset", command: `bash -c 'x=abc; echo ${{x:{name}}}'`, rejected: true},
		{name: "xargs into sh", command: `echo {name} | xargs -I X sh -c 'echo X >> log.txt'`, rejected: true},
		{name: "pipe into sh", command: `printf '%s\n' {name} | sh`, rejected: true},
		{name: "trap", command: `trap {name} EXIT`, rejected: true},
		{name: "bash -c trap", command: `bash -c 'trap {name} EXIT'`, rejected: true},
		{name: "eval of a variable", command: `x={name}; eval "$x"`, rejected: true},
		{name: "sh /dev/stdin", command: `echo {name} | sh /dev/stdin`, rejected: true},
		{name: "compound subscript", command: `bash -c 'a=([{name}]=1)'`, rejected: true},
		{name: "awk program", command: `awk {name} /dev/null`, rejected: true},
		{name: "checked number", command: `n={name}; case $n in ''|*[!0-9]*) n=0;; esac; echo $((n + 1)) >> checked.txt`, output: filepath.Join(hookDir, "checked.txt")},
		{name: "plain test", command: `[ {name} -gt 80 ] 2>/dev/null; printf '%s\n' {name} >> test.txt`, output: filepath.Join(hookDir, "test.txt")},
	}
	var config strings.Builder
	config.WriteString("events:\n  subscriptions:\n")
	for _, h := range hooks {
		shell := "true"
		if strings.HasPrefix(h.command, "sh -c") || strings.HasPrefix(h.command, "bash -c") || strings.HasPrefix(h.command, "awk") {
			shell = "false"
		}
		fmt.Fprintf(&config, "  - {name: %q, event: PrintDone, type: system, shell: %s, cwd: %q, timeout: 30s, command: %q}\n", h.name, shell, hookDir, h.command)
	}
	cfg := writeWorkerConfig(t, t.TempDir(), config.String())
	w := startWorker(t, "--config", cfg, "--nats", emb.NATSURL(), "--metrics-listen", "127.0.0.1:0")

	checkHookRejections(t, w, hooks)

	names := []string{"$(touch PWNED9).gcode", "a[$(touch PWNED_ARITH)]", "x';touch PWNED-quote;'", "7"}
	sender := newEventSender(t, emb.NATSURL(), "mk3s")
	for i, name := range names {
		id := fmt.Sprintf("arith-%d", i)
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

	wantOutput := map[string]string{
		"checked number": "1\n1\n1\n8\n",
		"plain test":     strings.Join(names, "\n") + "\n",
	}
	for _, h := range hooks {
		if h.rejected {
			continue
		}
		data, err := os.ReadFile(h.output)
		if err != nil {
			t.Errorf("hook %q: %v", h.name, err)
			continue
		}
		if string(data) != wantOutput[h.name] {
			t.Errorf("hook %q wrote %q, want %q", h.name, data, wantOutput[h.name])
		}
	}
	found, err := filepath.Glob(filepath.Join(hookDir, "*PWNED*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 0 {
		t.Errorf("file names ran commands, which created %q", found)
	}
}
