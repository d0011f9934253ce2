package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// hostileNames are file names that try to break out of their argument.
var hostileNames = []string{
	"a;b", "$(touch pwned)", "`touch pwned`", "it's", `say "hi"`, "new\nline", "-rf", "--help",
	"ünï 😀.gcode", "x' ; touch pwned ; '", "", "*", "~", "a b  c", `back\slash`, "{name}", "{{", "%s", "\t", "& touch pwned &",
}

// testSub loads one subscription from YAML entry text.
func testSub(tb testing.TB, entry string) *Subscription {
	tb.Helper()
	cfg, problems := parseTestConfig(tb, "events:\n  subscriptions:\n  - "+entry+"\n")
	if HasErrors(problems) || len(cfg.Subscriptions) != 1 {
		tb.Fatalf("entry %s did not load: %v", entry, problems)
	}
	return cfg.Subscriptions[0]
}

func testEnvelope(payload bridge.Payload) *bridge.Envelope {
	return &bridge.Envelope{Schema: 1, ID: "0193a6f0-0000-7000-8000-000000000001", Printer: "mk3s-1",
		Event: bridge.EventPrintDone, Payload: payload}
}

// runTestHook renders and runs a system hook for env with a timeout.
func runTestHook(tb testing.TB, sub *Subscription, env *bridge.Envelope, timeout time.Duration) ([]CommandResult, string, error) {
	tb.Helper()
	commands, err := renderSystem(sub, mapLookup(Placeholders(env, time.Now())))
	if err != nil {
		return nil, "", err
	}
	run := systemRun{cwd: sub.Cwd, env: hookEnv(env.Event, env.ID, env.Printer), timeout: timeout, outputLimit: DefaultOutputLimit}
	return run.run(context.Background(), commands)
}

func TestRenderShellQuotesValues(t *testing.T) {
	cases := []struct {
		template, value, want string
	}{
		{"test123 {a}", "a;b", "test123 'a;b'"},
		{"test123 {a}", "a", "test123 a"},
		{"test123 {a}", "test.gcode;rm -rf /;#.gcode", "test123 'test.gcode;rm -rf /;#.gcode'"},
		{"echo {a}", "it's", `echo 'it'"'"'s'`},
		// The spec pads the already quoted value, as in OctoPrint.
		{"echo {a:>8}", "x y", "echo    'x y'"},
	}
	for _, c := range cases {
		sub := testSub(t, fmt.Sprintf("{event: PrintDone, type: system, shell: true, command: %q}", c.template))
		got, err := renderSystem(sub, mapLookup(map[string]string{"a": c.value}))
		if err != nil {
			t.Errorf("render %q with %q: %v", c.template, c.value, err)
			continue
		}
		if got[0].script != c.want {
			t.Errorf("render %q with %q = %q, want %q", c.template, c.value, got[0].script, c.want)
		}
	}
}

func TestRenderArgvKeepsPlaceholderInsideQuotes(t *testing.T) {
	sub := testSub(t, `{event: PrintDone, type: system, shell: false, command: 'notify "Print {name} done" {time}'}`)
	got, err := renderSystem(sub, mapLookup(map[string]string{"name": "my part; rm -rf ~", "time": "1234.5"}))
	if err != nil {
		t.Fatalf("renderSystem: %v", err)
	}
	want := []string{"notify", "Print my part; rm -rf ~ done", "1234.5"}
	if strings.Join(got[0].argv, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("argv = %q, want %q", got[0].argv, want)
	}
}

func TestInjectionWithoutShell(t *testing.T) {
	rec := newRecorder(t)
	cwd := t.TempDir()
	sub := testSub(t, fmt.Sprintf(`{event: PrintDone, type: system, shell: false, cwd: %q, command: 'record --file {name} "Print {name} done" {__eventname}'}`, cwd))
	for _, name := range hostileNames {
		if _, out, err := runTestHook(t, sub, testEnvelope(bridge.Payload{{Key: "name", Value: name}}), time.Minute); err != nil {
			t.Fatalf("hook for %q failed: %v (output %q)", name, err, out)
		}
	}
	calls := rec.calls(t)
	if len(calls) != len(hostileNames) {
		t.Fatalf("recorder ran %d times, want %d", len(calls), len(hostileNames))
	}
	for i, name := range hostileNames {
		want := []string{"--file", name, "Print " + name + " done", "PrintDone"}
		if argvString(calls[i].Args) != argvString(want) {
			t.Errorf("name %q: argv %s, want %s", name, argvString(calls[i].Args), argvString(want))
		}
	}
	if _, err := os.Stat(filepath.Join(cwd, "pwned")); err == nil {
		t.Errorf("a file name ran a command")
	}
}

func TestInjectionWithShell(t *testing.T) {
	rec := newRecorder(t)
	cwd := t.TempDir()
	sub := testSub(t, fmt.Sprintf(`{event: PrintDone, type: system, shell: true, cwd: %q, command: 'record --file {name} done | cat; record {__eventname}'}`, cwd))
	for _, name := range hostileNames {
		if _, out, err := runTestHook(t, sub, testEnvelope(bridge.Payload{{Key: "name", Value: name}}), time.Minute); err != nil {
			t.Fatalf("hook for %q failed: %v (output %q)", name, err, out)
		}
	}
	calls := rec.calls(t)
	if len(calls) != 2*len(hostileNames) {
		t.Fatalf("recorder ran %d times, want %d", len(calls), 2*len(hostileNames))
	}
	for i, name := range hostileNames {
		want := []string{"--file", name, "done"}
		if got := calls[2*i].Args; argvString(got) != argvString(want) {
			t.Errorf("name %q: argv %s, want %s", name, argvString(got), argvString(want))
		}
		if got := calls[2*i+1].Args; argvString(got) != "PrintDone" {
			t.Errorf("name %q: second command argv %s, want PrintDone", name, argvString(got))
		}
	}
	if _, err := os.Stat(filepath.Join(cwd, "pwned")); err == nil {
		t.Errorf("a file name ran a command")
	}
}

func TestQuotedPlaceholderRefused(t *testing.T) {
	// OctoPrint 1.11.3+ runs these, and a file name such as
	// "$(touch x).gcode" inside the user's double quotes, or "a; b" inside
	// single quotes, runs as shell code. printbridge refuses the entry.
	for _, command := range []string{`record "{name}"`, `record '{name}'`, `record "Event {__eventname} ({name})"`} {
		_, problems, err := ParseConfig("config.yaml", []byte(fmt.Sprintf(
			"events:\n  subscriptions:\n  - {event: PrintDone, type: system, shell: true, command: %q}\n", command)))
		if err != nil {
			t.Fatal(err)
		}
		if !HasErrors(problems) {
			t.Errorf("%s: no error, want the entry refused", command)
			continue
		}
		found := false
		for _, p := range problems {
			if p.Severity == SeverityError && strings.Contains(p.Message, "inside shell quotes") && strings.Contains(p.Message, "shell commands") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: problems %v lack the injection error", command, problems)
		}
	}
}

func TestUnsafePlaceholderContexts(t *testing.T) {
	for _, tc := range []struct {
		command, field, where string
	}{
		{`record {name}`, "", ""},
		{`record --file={name} x{name}y`, "", ""},
		{`record $(printf %s {name})`, "", ""},
		{`cat <<< {name}`, "", ""},
		{`record "{{literal}}" {name}`, "", ""},
		{`record "{name}"`, "{name}", "inside shell quotes"},
		{`record '{name}'`, "{name}", "inside shell quotes"},
		{"x=`printf %s {name}`", "{name}", "inside backticks"},
		{`printf '%s\n' \{name}`, "{name}", "right after a backslash"},
		{`printf '%s\n' ${name}`, "{name}", "right after $"},
		{"cat > f <<EOF\n{name}\nEOF\n", "{name}", "inside a here-document"},
		{"cat > f <<'EOF'\nfile {name}\nEOF", "{name}", "inside a here-document"},
		{"cat > f <<-EOF\n\tfile {name}\n\tEOF", "{name}", "inside a here-document"},
		{"cat > f <<EOF\nno field\nEOF\nrecord {name}", "", ""},
		{"cat <<A <<B\na\nA\nb {__eventname}\nB\nrecord {name}", "{__eventname}", "inside a here-document"},
	} {
		field, where := unsafePlaceholder(tc.command)
		if field != tc.field {
			t.Errorf("%q: field %q, expected %q", tc.command, field, tc.field)
		}
		if where != tc.where {
			t.Errorf("%q: place %q, expected %q", tc.command, where, tc.where)
		}
	}
}

// TestHereDocumentPlaceholderRefused runs the shell: true and sh -c hooks
// that a file name could break out of, as loaded from a config, and checks
// that the entries are refused and no hostile name runs a command.
func TestHereDocumentPlaceholderRefused(t *testing.T) {
	for _, command := range []string{
		"cat > out <<EOF\n{name}\nEOF",
		"printf '%s\\n' \\{name} > out",
		"printf '%s\\n' ${name} > out",
	} {
		for _, entry := range []string{
			fmt.Sprintf("{event: PrintDone, type: system, shell: true, command: %q}", command),
			fmt.Sprintf("{event: PrintDone, type: system, shell: false, command: %q}", `sh -c "`+command+`"`),
		} {
			cfg, problems, err := ParseConfig("config.yaml", []byte("events:\n  subscriptions:\n  - "+entry+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if !HasErrors(problems) {
				t.Errorf("%s: no error, expected the entry refused", entry)
			}
			if len(cfg.Subscriptions) != 0 {
				t.Errorf("%s: %d hooks loaded, expected 0", entry, len(cfg.Subscriptions))
			}
		}
	}
}

func TestHookEnvironmentAndCwd(t *testing.T) {
	rec := newRecorder(t)
	cwd := t.TempDir()
	rec.link(t, cwd)
	t.Setenv("PRINTBRIDGE_EVENT", "stale")
	sub := testSub(t, fmt.Sprintf(`{event: PrintDone, type: system, shell: false, cwd: %q, command: [record, ./record relative]}`, cwd))
	env := testEnvelope(nil)
	if _, _, err := runTestHook(t, sub, env, time.Minute); err != nil {
		t.Fatalf("hook failed: %v", err)
	}
	calls := rec.calls(t)
	if len(calls) != 2 {
		t.Fatalf("recorder ran %d times, want 2", len(calls))
	}
	for _, c := range calls {
		if c.Cwd != cwd {
			t.Errorf("cwd = %q, want %q", c.Cwd, cwd)
		}
		if c.Event != env.Event || c.EventID != env.ID || c.Printer != env.Printer {
			t.Errorf("environment = %+v, want event %s, id %s, printer %s", c, env.Event, env.ID, env.Printer)
		}
	}
	if strings.Join(calls[1].Args, " ") != "relative" {
		t.Errorf("./record got %q", calls[1].Args)
	}
}

func TestCommandListStopsAtFailure(t *testing.T) {
	rec := newRecorder(t)
	sub := testSub(t, `{event: PrintDone, type: system, shell: false, command: ["record one", "sh -c 'exit 3'", "record three"]}`)
	results, _, err := runTestHook(t, sub, testEnvelope(nil), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "command #2") || !strings.Contains(err.Error(), "exited with status 3") {
		t.Errorf("err = %v, want command #2 exited with status 3", err)
	}
	if len(results) != 2 {
		t.Fatalf("ran %d commands, want 2", len(results))
	}
	if results[0].ExitCode != 0 || results[1].ExitCode != 3 {
		t.Errorf("exit codes = %d, %d, want 0, 3", results[0].ExitCode, results[1].ExitCode)
	}
	calls := rec.calls(t)
	if len(calls) != 1 || strings.Join(calls[0].Args, " ") != "one" {
		t.Errorf("recorder calls = %+v, want only the first command", calls)
	}
}

func TestProgramNotFound(t *testing.T) {
	sub := testSub(t, `{event: PrintDone, type: system, shell: false, command: "printbridge-no-such-program arg"}`)
	results, _, err := runTestHook(t, sub, testEnvelope(nil), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("err = %v, want executable file not found", err)
	}
	if len(results) != 1 || results[0].ExitCode != -1 {
		t.Errorf("results = %+v, want one command with exit code -1", results)
	}
}

func TestOutputTailKeepsEnd(t *testing.T) {
	sub := testSub(t, `{event: PrintDone, type: system, shell: true, command: "printf '%05000d' 0; printf END; printf ' ü' >&2"}`)
	_, out, err := runTestHook(t, sub, testEnvelope(nil), time.Minute)
	if err != nil {
		t.Fatalf("hook failed: %v", err)
	}
	if len(out) > DefaultOutputLimit {
		t.Errorf("output tail is %d bytes, want at most %d", len(out), DefaultOutputLimit)
	}
	if !strings.HasSuffix(out, "END ü") {
		t.Errorf("output tail ends with %q, want END ü", out[max(0, len(out)-10):])
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	sub := testSub(t, `{event: PrintDone, type: system, shell: true, command: "sleep 100 & echo $! > {pidfile}; sleep 100"}`)
	results, _, err := runTestHook(t, sub, testEnvelope(bridge.Payload{{Key: "pidfile", Value: pidFile}}), time.Second)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if len(results) != 1 || results[0].ExitCode != -1 {
		t.Errorf("results = %+v, want one killed command", results)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("read pid of the background sleep: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("pid file %q: %v", data, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("background sleep %d still runs after the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processGone reports whether pid has exited; a zombie that no one reaped
// counts as gone.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}

func TestBackgroundChildDoesNotHoldRun(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	sub := testSub(t, `{event: PrintDone, type: system, shell: true, command: "sleep 30 & echo $! > {pidfile}"}`)
	results, _, err := runTestHook(t, sub, testEnvelope(bridge.Payload{{Key: "pidfile", Value: pidFile}}), time.Minute)
	if data, rerr := os.ReadFile(pidFile); rerr == nil {
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(data))); perr == nil {
			defer syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if err != nil {
		t.Fatalf("a hook that started a background program failed: %v", err)
	}
	if len(results) != 1 || results[0].ExitCode != 0 {
		t.Errorf("results = %+v, want exit code 0", results)
	}
}

func TestTailBufferReadFromKeepsEnd(t *testing.T) {
	text := strings.Repeat("0123456789", 1000)
	tail := newTailBuffer(DefaultOutputLimit)
	n, err := tail.ReadFrom(iotest.HalfReader(strings.NewReader(text)))
	if err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	if n != int64(len(text)) {
		t.Errorf("ReadFrom read %d bytes, expected %d", n, len(text))
	}
	if got, expected := tail.String(), text[len(text)-DefaultOutputLimit:]; got != expected {
		t.Errorf("tail is %d bytes ending in %q, expected the last %d bytes of the input", len(got), got[max(0, len(got)-10):], len(expected))
	}
}

func TestTailBufferReadFromReturnsReadError(t *testing.T) {
	failure := errors.New("pipe failed")
	tail := newTailBuffer(DefaultOutputLimit)
	n, err := tail.ReadFrom(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(failure)))
	if !errors.Is(err, failure) {
		t.Errorf("ReadFrom error is %v, expected %v", err, failure)
	}
	if n != 3 {
		t.Errorf("ReadFrom read %d bytes, expected 3", n)
	}
	if got := tail.String(); got != "abc" {
		t.Errorf("tail is %q, expected abc", got)
	}
}

func TestInjectionShellDashC(t *testing.T) {
	rec := newRecorder(t)
	cwd := t.TempDir()
	names := append([]string{"a$(touch X).gcode", "a; touch Y.gcode", "a`touch Z`.gcode"}, hostileNames...)
	commands := []string{
		// The placeholder is inside the outer quotes but a bare word of
		// the script, so the shell would parse the value without quoting.
		`/bin/sh -c "record --file {name} done"`,
		`sh -ec 'printf "started %s\n" {name} >> hooklog.txt; record {__eventname} {name}'`,
		// An argument after the script is $1, not code, so it stays raw.
		`sh -c 'record --arg "$1"' sh {name}`,
	}
	list := ""
	for _, c := range commands {
		list += fmt.Sprintf("%q, ", c)
	}

	for _, shell := range []string{"shell: false, ", ""} {
		sub := testSub(t, fmt.Sprintf(`{event: PrintDone, type: system, %scwd: %q, command: [%s]}`, shell, cwd, list))
		for i, c := range sub.Commands {
			if want := []int{2, 2, 2}[i]; len(c.ScriptArgs) != 1 || c.ScriptArgs[0] != want {
				t.Errorf("command %q: ScriptArgs = %v, want [%d]", c.Template, c.ScriptArgs, want)
			}
		}
		for _, name := range names {
			if _, out, err := runTestHook(t, sub, testEnvelope(bridge.Payload{{Key: "name", Value: name}}), time.Minute); err != nil {
				t.Fatalf("hook for %q failed: %v (output %q)", name, err, out)
			}
		}
	}

	calls := rec.calls(t)
	if len(calls) != 2*3*len(names) {
		t.Fatalf("recorder ran %d times, want %d", len(calls), 2*3*len(names))
	}
	for i, name := range append(names, names...) {
		wants := [][]string{{"--file", name, "done"}, {"PrintDone", name}, {"--arg", name}}
		for j, want := range wants {
			if got := calls[3*i+j].Args; argvString(got) != argvString(want) {
				t.Errorf("name %q, command #%d: argv %s, want %s", name, j+1, argvString(got), argvString(want))
			}
		}
	}

	log, err := os.ReadFile(filepath.Join(cwd, "hooklog.txt"))
	if err != nil {
		t.Fatalf("read hooklog.txt: %v", err)
	}
	var want strings.Builder
	for range 2 {
		for _, name := range names {
			want.WriteString("started " + name + "\n")
		}
	}
	if string(log) != want.String() {
		t.Errorf("hooklog.txt = %q, want %q", log, want.String())
	}

	for _, file := range []string{"X", "Y.gcode", "Z", "pwned"} {
		if _, err := os.Stat(filepath.Join(cwd, file)); err == nil {
			t.Errorf("a file name ran a command that created %s", file)
		}
	}
}

func TestShellScriptArgs(t *testing.T) {
	cases := []struct {
		command string
		want    []int
	}{
		{`/bin/sh -c "echo {name}"`, []int{2}},
		{`bash -lc "echo {name}"`, []int{2}},
		{`/usr/bin/dash -e -c "echo {name}"`, []int{3}},
		{`sh -o pipefail -ec "echo {name}" sh {name}`, []int{4}},
		{`bash --norc -c "echo {name}"`, []int{3}},
		{`sh -c -- "echo {name}"`, []int{3}},
		{`/usr/bin/env sh -c "echo {name}"`, []int{3}},
		{`env -i PATH=/bin bash -c "echo {name}"`, []int{5}},
		{`busybox sh -c "echo {name}"`, []int{3}},
		{`nice sh -c "echo {name}"`, []int{3}},
		{`nice -n 10 sh -c "echo {name}"`, []int{5}},
		{`timeout 10 sh -c "echo {name}"`, []int{4}},
		{`sudo -u pi sh -c "echo {name}"`, []int{5}},
		{`nohup bash -c "echo {name}"`, []int{3}},
		{`setsid sh -c "echo {name}"`, []int{3}},
		{`chroot /srv/root /bin/sh -c "echo {name}"`, []int{4}},
		{`stdbuf -oL sh -c "echo {name}"`, []int{4}},
		{`ionice -c 3 sh -c "echo {name}"`, []int{5}},
		{`xargs -0 sh -c "echo {name}"`, []int{4}},
		{`find . -exec sh -c "echo {name}" ; -exec bash -c "echo {path}" ;`, []int{5, 10}},
		{`sh script.sh {name}`, nil},
		{`sh +c "echo {name}"`, nil},
		{`fish -c "echo {name}"`, nil},
		{`shellcheck -c {name}`, nil},
		{`nice shellcheck -c {name}`, nil},
		{`sh -c`, nil},
		{`nice sh -c`, nil},
	}
	for _, c := range cases {
		args, err := Split(c.command)
		if err != nil {
			t.Fatal(err)
		}
		if got := shellScriptArgs(args); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("shellScriptArgs(%q) = %v, want %v", c.command, got, c.want)
		}
	}
}

func TestSuCommandArg(t *testing.T) {
	cases := []struct {
		command string
		want    int
	}{
		{`su root -c "echo {name} >> f"`, 3},
		{`su -c "echo {name}" root`, 2},
		{`/bin/su - pi -c "echo {name}"`, 4},
		{`su -l -s /bin/bash pi -c "echo {name}"`, 6},
		{`su -lc "echo {name}" pi`, 2},
		{`su -c"echo {name}" pi`, 1},
		{`su --command="echo {name}" pi`, 1},
		{`su --command "echo {name}" pi`, 2},
		{`runuser -u pi -c "echo {name}"`, 4},
		{`sudo su pi -c "echo {name}"`, 4},
		{`su pi`, 0},
		{`su pi -- -c "echo {name}"`, 0},
		{`record su`, 0},
	}
	for _, c := range cases {
		args, err := Split(c.command)
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := ownShellCommandArg(args); got != c.want {
			t.Errorf("ownShellCommandArg(%q) = %d, want %d", c.command, got, c.want)
		}
	}
}

// loadErrors parses one system hook entry with command and returns
// the errors.
func loadErrors(t *testing.T, shell, command string) []string {
	t.Helper()
	_, problems, err := ParseConfig("config.yaml", []byte(fmt.Sprintf(
		"events:\n  subscriptions:\n  - {event: PrintDone, type: system, %scommand: %q}\n", shell, command)))
	if err != nil {
		t.Fatal(err)
	}
	var errs []string
	for _, p := range problems {
		if p.Severity == SeverityError {
			errs = append(errs, p.Message)
		}
	}
	return errs
}

func TestReparsedPlaceholderRefused(t *testing.T) {
	cases := []struct {
		shell, command, want string
	}{
		{"shell: true, ", `eval echo {name} >> out.txt`, "an argument of eval"},
		{"shell: true, ", `X=1 command eval "echo" {name}`, "an argument of eval"},
		{"shell: true, ", `record a; eval {name}`, "an argument of eval"},
		{"shell: true, ", `sh -c 'eval "$1"' sh {name}`, "a -c script that runs eval"},
		{"shell: true, ", `nice sh -c {name}`, "in the script of a shell that shell code runs"},
		{"shell: true, ", `find . -exec sh -c echo\ {name} \;`, "in the script of a shell that shell code runs"},
		{"shell: true, ", `echo \{name}`, "right after a backslash"},
		{"shell: true, ", `su root -c {name}`, "su runs with -c"},
		{"shell: true, ", `python3 -c {name}`, "the code that python3 runs"},
		{"shell: false, ", `sh -c 'eval "$1"' sh {name}`, "a -c script that runs eval"},
		{"shell: false, ", `sh -c "eval echo {name}"`, "an argument of eval"},
		{"shell: false, ", `sh -c "sh -c {name}"`, "in the script of a shell that shell code runs"},
		{"shell: false, ", `timeout 5 sh -c "eval {name}"`, "an argument of eval"},
		{"shell: false, ", `su root -c "echo {name} >> f"`, "su runs with -c"},
		{"shell: false, ", `sudo su -c "echo {name}" pi`, "su runs with -c"},
		{"shell: false, ", `nice sh -c "echo '{name}'"`, "inside shell quotes in the script that sh runs"},
		{"shell: false, ", `perl -e "print q({name})"`, "the code that perl runs"},
		{"shell: false, ", `nice python3 -c 'print("{name}")'`, "the code that python3 runs"},
		{"shell: false, ", `sh -c "python3 -c {name}"`, "the code that python3 runs"},
	}
	for _, c := range cases {
		errs := loadErrors(t, c.shell, c.command)
		if len(errs) != 1 || !strings.Contains(errs[0], c.want) {
			t.Errorf("%s%s: errors %q, want one with %q", c.shell, c.command, errs, c.want)
		}
	}
}

func TestReparseSafeFormsLoad(t *testing.T) {
	cases := []struct{ shell, command string }{
		{"shell: true, ", `eval 'record "$HOME"'; record {name}`},
		{"shell: true, ", `sh -c 'record "$1"' sh {name}`},
		{"shell: true, ", `su root -c 'record "$HOME"'; record {name}`},
		{"shell: false, ", `sh -c 'record "$1"' sh {name}`},
		{"shell: false, ", `nice sh -c "record {name}"`},
		{"shell: false, ", `sh -c "eval record; record {name}"`},
		{"shell: false, ", `python3 -c 'import sys; print(sys.argv[1])' {name}`},
		{"shell: false, ", `record --eval {name}`},
	}
	for _, c := range cases {
		if errs := loadErrors(t, c.shell, c.command); len(errs) != 0 {
			t.Errorf("%s%s: errors %q, want none", c.shell, c.command, errs)
		}
	}
}

func TestInjectionShellWrappers(t *testing.T) {
	checkWrappedShells(t, []string{
		`nice sh -c "record --nice {name}"`,
		`timeout 5 sh -c "record --timeout {name}"`,
		// find runs the -exec command once for the start folder.
		`find . -maxdepth 0 -exec sh -c "record --find {name}" ;`,
		`env nice -n 1 bash -c "record --env {name}"`,
	}, []string{"--nice", "--timeout", "--find", "--env"})
}

// checkWrappedShells runs the commands, which are shell: false entries
// that each run record FLAG {name} through sh -c, with hostile names. It
// checks that each name reaches the recorder as one argument after the
// command's flag in flags and that no name runs a command.
func checkWrappedShells(t *testing.T, commands, flags []string) {
	t.Helper()
	rec := newRecorder(t)
	cwd := t.TempDir()
	names := append([]string{"a$(touch X).gcode", "a; touch Y.gcode", "a`touch Z`.gcode", "a'; touch PWN4; '.gcode"}, hostileNames...)
	list := ""
	for _, c := range commands {
		list += fmt.Sprintf("%q, ", c)
	}
	sub := testSub(t, fmt.Sprintf(`{event: PrintDone, type: system, shell: false, cwd: %q, command: [%s]}`, cwd, list))
	for _, name := range names {
		if _, out, err := runTestHook(t, sub, testEnvelope(bridge.Payload{{Key: "name", Value: name}}), time.Minute); err != nil {
			t.Fatalf("hook for %q failed: %v (output %q)", name, err, out)
		}
	}

	calls := rec.calls(t)
	if len(calls) != len(commands)*len(names) {
		t.Fatalf("recorder ran %d times, want %d", len(calls), len(commands)*len(names))
	}
	for i, name := range names {
		for j, flag := range flags {
			want := []string{flag, name}
			if got := calls[len(commands)*i+j].Args; argvString(got) != argvString(want) {
				t.Errorf("name %q, command #%d: argv %s, want %s", name, j+1, argvString(got), argvString(want))
			}
		}
	}
	for _, file := range []string{"X", "Y.gcode", "Z", "PWN4", "pwned"} {
		if _, err := os.Stat(filepath.Join(cwd, file)); err == nil {
			t.Errorf("a file name ran a command that created %s", file)
		}
	}
}

func TestRenderSuScriptRefused(t *testing.T) {
	// su cannot run in a test, so the check is at the argv level: the
	// entry does not load, and no argv with the raw value is built.
	errs := loadErrors(t, "shell: false, ", `su root -c "echo {name} >> f"`)
	if len(errs) != 1 {
		t.Fatalf("errors %q, want one", errs)
	}
	if !strings.Contains(errs[0], "sudo -u USER sh -c") {
		t.Errorf("error %q does not name the fix", errs[0])
	}
	args, err := Split(`sudo -u pi sh -c "echo {name} >> f"`)
	if err != nil {
		t.Fatal(err)
	}
	sub := &Subscription{Type: TypeSystem, Commands: []Command{{Args: args, ScriptArgs: shellScriptArgs(args)}}}
	got, err := renderSystem(sub, mapLookup(map[string]string{"name": "a'; touch PWN4; '.gcode"}))
	if err != nil {
		t.Fatal(err)
	}
	want := `echo 'a'"'"'; touch PWN4; '"'"'.gcode' >> f`
	if got[0].argv[5] != want {
		t.Errorf("script = %q, want %q", got[0].argv[5], want)
	}
}

func TestQuotedPlaceholderInDashCRefused(t *testing.T) {
	for _, command := range []string{`/bin/sh -c 'record "{name}"'`, `bash -ec "record '{name}'"`, `env sh -c 'echo "Event ({name})"'`} {
		for _, shell := range []string{"shell: false, ", ""} {
			_, problems, err := ParseConfig("config.yaml", []byte(fmt.Sprintf(
				"events:\n  subscriptions:\n  - {event: PrintDone, type: system, %scommand: %q}\n", shell, command)))
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range problems {
				if p.Severity == SeverityError && strings.Contains(p.Message, "inside shell quotes in the script") {
					found = true
				}
			}
			if !found {
				t.Errorf("%s%s: problems %v lack the injection error", shell, command, problems)
			}
		}
	}
}

func TestInterpreterCodeRefused(t *testing.T) {
	errs := loadErrors(t, "shell: false, ", `python3 -c 'print("{name}")'`)
	if len(errs) != 1 {
		t.Fatalf("errors %q, want one", errs)
	}
	if !strings.Contains(errs[0], "is part of the code that python3 runs") || !strings.Contains(errs[0], "sys.argv") {
		t.Errorf("error %q lacks the place or the fix", errs[0])
	}
	if errs := loadErrors(t, "shell: false, ", `python3 -c 'import sys; print(sys.argv[1])' {name}`); len(errs) != 0 {
		t.Errorf("value as an argument: errors %q, want none", errs)
	}
}

func TestOwnShellWarningAdvisesShellFalse(t *testing.T) {
	_, problems, err := ParseConfig("config.yaml", []byte(
		"events:\n  subscriptions:\n  - {event: PrintDone, type: system, command: 'nice sh -c \"echo {name} >> f\"'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var warning string
	for _, p := range problems {
		if strings.Contains(p.Message, "shell is not set") {
			warning = p.Message
		}
	}
	if !strings.Contains(warning, "runs its own shell with -c") {
		t.Errorf("warning %q does not say that the command runs its own shell", warning)
	}
	if strings.Contains(warning, "set shell: true") {
		t.Errorf("warning %q advises shell: true, which would refuse the quoted script", warning)
	}
}
