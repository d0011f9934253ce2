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

// runsValue renders code with value as {name}, quoted as with shell:
// true, runs it with shell -c in a new folder and reports whether the
// value created the file PWNED.
func runsValue(t *testing.T, shell, code, value string) bool {
	t.Helper()
	script, err := Format(code, map[string]string{"name": Quote(value)})
	if err != nil {
		t.Fatalf("%s: %v", code, err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, shell, "-c", script)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader("")
	// Most of the scripts fail once the value ran, which is fine here.
	_ = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s -c %q did not finish", shell, script)
	}
	_, err = os.Stat(filepath.Join(dir, "PWNED"))
	return err == nil
}

// Values that run touch PWNED as shell code, as awk program text and as
// a GNU sed script.
const (
	awkValue = `BEGIN{system("touch PWNED")}`
	sedValue = `1e touch PWNED`
)

// TestEvaluatedPlaceholderRejected runs each rejected form with the real
// bash and dash to show that the quoted value runs a command there, and
// checks that the form is a config error with shell: true and in a
// bash -c script.
func TestEvaluatedPlaceholderRejected(t *testing.T) {
	const (
		notConstant = "runs eval on text that is not constant"
		procSub     = "in a process substitution"
		pipe        = "in a pipeline into"
	)
	cases := []struct {
		code, value, want string
		// shells lists the shells that run the value as a command.
		shells []string
	}{
		{`trap {name} EXIT`, arithValue, "an argument of trap", []string{"bash", "dash"}},
		{`trap "echo done; {name}" EXIT`, arithValue, "inside shell quotes", []string{"bash", "dash"}},
		{`x={name}; trap "$x" EXIT`, arithValue, "runs trap on text that is not constant", []string{"bash", "dash"}},
		{`a=([{name}]=1)`, arithValue, "compound array assignment", []string{"bash"}},
		{`a+=([{name}]=1)`, arithValue, "compound array assignment", []string{"bash"}},
		{`declare -a a=([{name}]=1)`, arithValue, "compound array assignment", []string{"bash"}},
		{`declare -n r={name}; echo "$r"`, arithValue, "an argument of declare -n", []string{"bash"}},
		{`f() {{ local -n r={name}; echo "$r"; }}; f`, arithValue, "an argument of local -n", []string{"bash"}},
		{`typeset -n r={name}; echo "$r"`, arithValue, "an argument of typeset -n", []string{"bash"}},
		{`echo x | read {name}`, arithValue, "a variable name for read", []string{"bash"}},
		{`echo {name} | sh /dev/stdin`, arithValue, pipe, []string{"bash", "dash"}},
		{`echo {name} | bash /dev/stdin`, arithValue, pipe, []string{"bash", "dash"}},
		{`echo {name} | sh /proc/self/fd/0`, arithValue, pipe, []string{"bash", "dash"}},
		{`echo {name} | bash -c 'source /dev/fd/0'`, arithValue, pipe, []string{"bash", "dash"}},
		{`echo {name} | dash -c '. /dev/stdin'`, arithValue, pipe, []string{"bash", "dash"}},
		{`bash < <(echo {name})`, arithValue, procSub, []string{"bash"}},
		{`bash <(echo {name})`, arithValue, procSub, []string{"bash"}},
		{`source <(echo {name})`, arithValue, procSub, []string{"bash"}},
		{`. <(printf '%s\n' {name})`, arithValue, procSub, []string{"bash"}},
		{`echo {name} | while read l; do eval "$l"; done`, arithValue, notConstant, []string{"bash", "dash"}},
		{`set -- {name}; eval "$1"`, arithValue, notConstant, []string{"bash", "dash"}},
		{`x={name}; eval "$x"`, arithValue, notConstant, []string{"bash", "dash"}},
		{`x={name}; eval $x`, arithValue, notConstant, []string{"bash", "dash"}},
		{`echo {name} > f; eval "$(cat f)"`, arithValue, notConstant, []string{"bash", "dash"}},
		{`echo {name} > f; eval $(cat f)`, arithValue, notConstant, []string{"bash", "dash"}},
		{`echo {name} > f; eval ` + "`cat f`", arithValue, notConstant, []string{"bash", "dash"}},
		{`eval "$SETUP"; echo {name}`, arithValue, notConstant, nil},
		{`awk {name}`, awkValue, "the program text of awk", []string{"bash", "dash"}},
		{`gawk {name} /dev/null`, awkValue, "the program text of gawk", []string{"bash", "dash"}},
		{`mawk -F: {name} /dev/null`, awkValue, "the program text of mawk", []string{"bash", "dash"}},
		{`gawk -e {name}`, awkValue, "in the program text of gawk", []string{"bash", "dash"}},
		{`echo x | sed {name}`, sedValue, "the program text of sed", []string{"bash", "dash"}},
		{`echo x | sed -n -e p -e {name}`, sedValue, "in the program text of sed", []string{"bash", "dash"}},
		{`echo x | sed --expression={name}`, sedValue, "in the program text of sed", []string{"bash", "dash"}},
	}
	for _, c := range cases {
		for _, shell := range []string{"bash", "dash"} {
			want := strings.Contains(strings.Join(c.shells, " "), shell)
			if got := runsValue(t, shell, c.code, c.value); got != want {
				t.Errorf("%s -c %q: value ran a command: %v, want %v", shell, c.code, got, want)
			}
		}
		checkRejected(t, []struct{ shell, command, want string }{
			{"shell: true, ", c.code, c.want},
			{"shell: false, ", "bash -c " + Quote(c.code), c.want},
		})
	}
}

// TestEvaluatedSafeFormsLoad runs forms close to the rejected ones with
// the real bash and dash, shows that the value runs no command there,
// and checks that they load.
func TestEvaluatedSafeFormsLoad(t *testing.T) {
	cases := []struct{ code, value string }{
		{`trap 'rm -f "$tmp"' EXIT; tmp=$(mktemp); echo {name} > "$tmp"`, arithValue},
		{`eval 'echo "$1"'; echo {name}`, arithValue},
		{`a=([0]={name}); echo "${{a[0]}}"`, arithValue},
		{`declare -A m=([key]={name})`, arithValue},
		{`declare -n r=HOME; echo {name} "$r"`, arithValue},
		{`echo {name} | while read -r l; do printf '%s\n' "$l"; done`, arithValue},
		{`echo {name} | sh ./missing.sh`, arithValue},
		{`cat < <(echo {name})`, arithValue},
		{`diff <(echo {name}) /dev/null`, arithValue},
		{`awk -v n={name} 'BEGIN {{ print n }}'`, awkValue},
		{`awk '{{ print }}' {name}`, awkValue},
		{`echo x | sed -e p {name}`, sedValue},
	}
	for _, c := range cases {
		for _, shell := range []string{"bash", "dash"} {
			if runsValue(t, shell, c.code, c.value) {
				t.Errorf("%s -c %q: the value ran a command", shell, c.code)
			}
		}
		checkLoads(t, []struct{ shell, command string }{
			{"shell: true, ", c.code},
			{"shell: false, ", "bash -c " + Quote(c.code)},
		})
	}
}

// TestInterpreterProgramTextRejected checks the load result of program
// text that the real-shell tests leave out: commands without a shell,
// and interpreters whose program a placeholder must not be part of.
func TestInterpreterProgramTextRejected(t *testing.T) {
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `awk {name} /dev/null`, "the program text of awk"},
		{"shell: false, ", `nice gawk --source {name}`, "in the program text of gawk"},
		{"shell: false, ", `sed -i -e {name} log.txt`, "in the program text of sed"},
		{"shell: false, ", `gdb -batch -ex {name}`, "the code that gdb runs"},
		{"shell: false, ", `vim -es -c {name}`, "the code that vim runs"},
		{"shell: false, ", `ex -c {name} file`, "the code that ex runs"},
		{"shell: false, ", `make --eval {name}`, "the code that make runs"},
		{"shell: false, ", `tclsh {path}`, "the script that tclsh runs"},
		{"shell: true, ", `echo {name} | tclsh`, "in a pipeline into tclsh"},
		{"shell: true, ", `echo awk {name}`, "the program text of awk"},
		{"shell: true, ", `trap 'echo done' {name}`, "an argument of trap"},
		{"shell: true, ", `read -a {name} < /dev/null`, "the array name of read -a"},
		{"shell: false, ", `sh -c 'trap "$1" EXIT' sh {name}`, "a -c script that runs eval or trap"},
		{"shell: true, ", `bash -c 'trap "$1" EXIT' bash {name}`, "a -c script that runs eval or trap"},
	})
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `awk -f ./report.awk {name}`},
		{"shell: false, ", `sed -f ./fix.sed {name}`},
		{"shell: false, ", `sed s/a/b/ {name}`},
		{"shell: false, ", `tclsh ./notify.tcl {name}`},
		{"shell: true, ", `w=awk; echo "$w" {name}`},
	})
}
