package hooks

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runProgram runs argv in dir with the environment env added, returns
// its combined output and fails the test when it does not finish within
// a minute. Its exit status does not matter to the callers. The
// variables a parent make exports (the test command runs under make)
// are left out, so a make run here reads only its own arguments.
func runProgram(t *testing.T, dir string, env []string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "MAKEFLAGS", "MFLAGS", "GNUMAKEFLAGS", "MAKELEVEL", "MAKEOVERRIDES":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%q did not finish (output %q)", argv, out)
	}
	return string(out)
}

// renderArgv renders the words of a command without a shell as a hook
// does, with value as {name}.
func renderArgv(t *testing.T, command, value string) []string {
	t.Helper()
	words, err := Split(command)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range words {
		if words[i], err = Format(w, map[string]string{"name": value}); err != nil {
			t.Fatal(err)
		}
	}
	return words
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestWatchPlaceholderRejected(t *testing.T) {
	const word = "a command word of watch, which joins its command words with spaces and runs the line with sh -c"
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `watch record {name}`, word},
		{"shell: false, ", `watch -n 5 -d record --file {name}`, word},
		{"shell: false, ", `watch -t -- record {name}`, word},
		{"shell: false, ", `watch record -x {name}`, word},
		{"shell: false, ", `nice watch --interval 5 record {name}`, word},
		{"shell: true, ", `watch -n 1 record {name} > /dev/null`, word},
		{"shell: false, ", `watch -x {path}`, "the program that watch -x runs"},
	})
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `watch -x record {name}`},
		{"shell: false, ", `watch -n 5 --ex record {name}`},
		{"shell: false, ", `watch -n {time} record`},
	})
	errs := loadErrors(t, "shell: false, ", `watch record {name}`)
	if len(errs) == 1 && !strings.Contains(errs[0], "watch -x notify {name}") {
		t.Errorf("error %q does not name watch -x", errs[0])
	}
}

// TestWatchRunsWordsAsShellCode runs procps watch with a hostile value
// as one argument: without -x the value runs a command, with -x it does
// not. -q 1 makes watch exit once the output stays the same.
func TestWatchRunsWordsAsShellCode(t *testing.T) {
	if _, err := exec.LookPath("watch"); err != nil {
		t.Skip("watch is not installed")
	}
	for _, c := range []struct {
		command string
		runs    bool
	}{
		{`watch -q 1 -n 0.1 -t echo {name}`, true},
		{`watch -q 1 -n 0.1 -t -x echo {name}`, false},
	} {
		dir := t.TempDir()
		runProgram(t, dir, []string{"TERM=dumb"}, renderArgv(t, c.command, "a; touch PWNED")...)
		if got := exists(filepath.Join(dir, "PWNED")); got != c.runs {
			t.Errorf("%s: the value ran a command: %v, want %v", c.command, got, c.runs)
		}
	}
}

func TestTmuxPlaceholderRejected(t *testing.T) {
	const tmux = "an argument of tmux"
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `tmux new-session -d 'record {name}'`, tmux},
		{"shell: false, ", `tmux new -d record {name}`, tmux},
		{"shell: false, ", `tmux send-keys -t printer 'echo {name}' Enter`, tmux},
		{"shell: false, ", `tmux display-message {name}`, tmux},
		{"shell: false, ", `tmux new-session -d -s {name}`, tmux},
		{"shell: false, ", `tmux -c 'record {name}'`, tmux},
		{"shell: false, ", `tmux -S /tmp/s new -d -e N={name} 'record "$N"'`, tmux},
		{"shell: false, ", `tmux set-environment -g NAME {name} ; new-window x`, tmux},
		{"shell: false, ", `tmux set-environment -F -g NAME {name}`, tmux},
		{"shell: false, ", `tmux set-environment -g {name} x`, tmux},
		{"shell: false, ", `tmux -L {name} set-environment -g NAME x`, tmux},
		{"shell: true, ", `tmux run-shell {name}`, tmux},
	})
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `tmux set-environment -g NAME {name}`},
		{"shell: false, ", `tmux -S /tmp/s setenv -t printer NAME {name}`},
		{"shell: false, ", `tmux new-session -d -s printer ; set-environment -g NAME {name}`},
		{"shell: true, ", `tmux set-environment -g PB_NAME {name} && tmux new-window -d 'record "$PB_NAME"'`},
	})
}

// TestTmuxRunsValues runs tmux 3 on a server of its own with hostile
// values in the forms that load errors, and with the form that
// docs/hooks.md gives in their place.
func TestTmuxRunsValues(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed")
	}
	dir := t.TempDir()
	socket := filepath.Join(dir, "tmux.sock")
	env := []string{"SHELL=/bin/sh", "TERM=dumb"}
	tmux := func(args ...string) {
		t.Helper()
		runProgram(t, dir, env, append([]string{"tmux", "-S", socket}, args...)...)
	}
	tmux("new-session", "-d", "-s", "keep", "sleep 600")
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", socket, "kill-server").Run() })

	// run-shell waits for its command. The jobs of #(...) in formats run
	// in the background, and not every time, so they are not tried here.
	tmux(renderArgv(t, `run-shell 'echo {name}'`, "x; touch PWNED-run")...)
	// A value that ends in ; ends set-environment, and the fixed words
	// after it run as another tmux command.
	tmux(renderArgv(t, `set-environment -g N {name} run-shell 'touch PWNED-end'`, "x;")...)
	for _, file := range []string{"PWNED-run", "PWNED-end"} {
		if !exists(filepath.Join(dir, file)) {
			t.Errorf("tmux did not create %s, so the value ran no command", file)
		}
	}

	values := []string{"a; touch PWNED-a", "#(touch PWNED-b)", "$(touch PWNED-c)", "x;", "-u", "q'uote"}
	for _, v := range values {
		tmux(renderArgv(t, `set-environment -g PB_NAME {name}`, v)...)
		tmux("run-shell", `printf '%s\n' "$PB_NAME" >> names.txt`)
	}
	data, err := os.ReadFile(filepath.Join(dir, "names.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// tmux drops the ; that ends its command.
	want := "a; touch PWNED-a\n#(touch PWNED-b)\n$(touch PWNED-c)\nx\n-u\nq'uote\n"
	if string(data) != want {
		t.Errorf("names.txt = %q, want %q", data, want)
	}
	for _, file := range []string{"PWNED-a", "PWNED-b", "PWNED-c"} {
		if exists(filepath.Join(dir, file)) {
			t.Errorf("a value passed through set-environment created %s", file)
		}
	}
}

func TestScreenPlaceholderRejected(t *testing.T) {
	const screen = "an argument of screen"
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `screen -dmS print record {name}`, screen},
		{"shell: false, ", `screen -S print -X stuff {name}`, screen},
		{"shell: false, ", `screen -dm {path}`, screen},
		{"shell: true, ", `screen -t {name} -dm record`, screen},
	})
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `env NAME={name} screen -dm sh -c 'record "$NAME"'`},
	})
}

func TestAtPlaceholderRejected(t *testing.T) {
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: true, ", `echo record {name} | at now`, "in a pipeline into at, which runs its standard input as a shell script later"},
		{"shell: true, ", `printf '%s\n' {name} | batch`, "in a pipeline into batch"},
		{"shell: true, ", `echo {name} | nice at -m now + 1 minute`, "in a pipeline into at"},
		{"shell: true, ", `at now <<< {name}`, "in a here-string (<<<) into at"},
		{"shell: true, ", `at now < {path}`, "the name of a file that < gives as standard input to at"},
		{"shell: false, ", `at -f {path} now`, "the file that at -f runs as a shell script"},
		{"shell: false, ", `at now + 1 minute -f ./{path}`, "the file that at -f runs"},
		{"shell: false, ", `batch -f {path}`, "the file that batch -f runs"},
	})
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `env NAME={name} at now -f ./job.sh`},
		{"shell: true, ", `echo ./job.sh | at now + {time} minutes`},
		{"shell: true, ", `echo {name} | at -l`},
	})
	errs := loadErrors(t, "shell: false, ", `at -f {path} now`)
	if len(errs) == 1 && !strings.Contains(errs[0], "env NAME={name} at now -f ./job.sh") {
		t.Errorf("error %q does not give the form with env", errs[0])
	}
}
