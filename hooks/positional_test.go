package hooks

import (
	"fmt"
	"path/filepath"
	"testing"
)

func TestSubstitutePositional(t *testing.T) {
	args := []string{"sh", "{name}", "./{path}", "a b", "notify"}
	cases := []struct{ script, want string }{
		{`echo "$1"`, `echo "{name}"`},
		{`echo $2 ${{1}} $0`, `echo ./{path} {name} sh`},
		{`exec "$@"`, `exec {name} ./{path} arg notify`},
		{`echo "$*"`, `echo "{name} ./{path} arg notify"`},
		{`echo "${{@}}" x`, `echo {name} ./{path} arg notify x`},
		{`awk '{{print $1}}' "$1"`, `awk '{{print $1}}' "{name}"`},
		{`echo \$1 "\$1" $9 $$`, `echo \$1 "\$1"  $$`},
		{`echo "it's $1"`, `echo "it's {name}"`},
	}
	for _, c := range cases {
		if got, _ := substitutePositional(c.script, args); got != c.want {
			t.Errorf("substitutePositional(%q) = %q, want %q", c.script, got, c.want)
		}
	}
}

func TestPositionalPlaceholderRejected(t *testing.T) {
	const uses = "an argument of a -c script that uses it as $1, and there the value is "
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `sh -c '"$1" --verbose' sh {path}`, uses + "the program of the command"},
		{"shell: false, ", `sh -c 'exec "$@"' sh {path} x`, uses + "the program that exec runs"},
		{"shell: false, ", `sh -c '. "$1"' sh {path}`, uses + "the file that . runs as shell code"},
		{"shell: false, ", `sh -c 'sh "$1"' sh {path}`, uses + "the script that sh runs"},
		{"shell: false, ", `sh -c 'echo "$1" | sh' sh {name}`, uses + "in a pipeline into sh"},
		{"shell: false, ", `sh -c 'awk "$1" /dev/null' sh {name}`, uses + "the program text of awk"},
		{"shell: false, ", `bash -c 'source <(echo "$1")' bash {name}`, uses + "in a process substitution"},
		{"shell: false, ", `sh -c 'ssh host notify "$1"' sh {name}`, uses + "in the remote command of ssh"},
		{"shell: false, ", `sh -c 'echo $(( $1 + 1 ))' sh {progress}`, uses + "inside $((...))"},
		{"shell: false, ", `bash -c '[[ ${{1}} -gt 80 ]]' bash {progress}`, uses + "inside [[ ... ]]"},
		{"shell: false, ", `sh -c 'sh -c "$1"' sh {name}`, uses + "in the script of a shell that shell code runs with -c"},
		{"shell: false, ", `sh -c 'python3 -c "$1"' sh {name}`, uses + "part of the code that python3 runs"},
		{"shell: false, ", `sh -c 'record "$1"; "$2"' sh x {path}`, "an argument of a -c script that uses it as $2"},
		{"shell: true, ", `sh -c 'echo "$1" | sh' sh {name}`, uses + "in a pipeline into sh"},
		{"shell: true, ", `echo {name} | xargs sh -c '"$1"' sh`, "in a pipeline into xargs"},
		{"shell: true, ", `echo {name} | sh -c 'eval "$(cat)"'`, "in a pipeline into sh"},
		{"shell: true, ", `echo {name} | bash -c 'read -r l; eval "$l"'`, "in a pipeline into bash"},
		{"shell: true, ", `mapfile -t {name} < /dev/null`, "the array name of mapfile"},
		{"shell: true, ", `getopts ab {name}`, "the variable name of getopts"},
	})
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `sh -c 'notify "$1"' sh {name}`},
		{"shell: false, ", `sh -c 'exec "$@"' sh notify {name}`},
		{"shell: false, ", `sh -c 'cd /srv && exec notify "$@"' sh {name}`},
		{"shell: false, ", `sh -c 'awk "{{print}}" "$1"' sh {path}`},
		{"shell: false, ", `sh -c "awk '{{print \$1}}' f" sh {name}`},
		{"shell: false, ", `sh -c '[ "$1" -gt 80 ] && notify' sh {progress}`},
		{"shell: false, ", `sh -c 'n=$1; case $n in ""|*[!0-9]*) exit 1;; esac; echo $((n + 1))' sh {progress}`},
		{"shell: false, ", `sh -c 'printf "%s\n" "$1" | ssh pi@host read-name' sh {name}`},
		{"shell: false, ", `sh -c 'NAME="$1" ssh -o SendEnv=NAME pi@host notify' sh {name}`},
		{"shell: true, ", `echo {name} | xargs -I X sh -c 'echo "$1"' sh X`},
		{"shell: true, ", `echo {name} | sh -c 'read -r l; printf "%s\n" "$l"'`},
		{"shell: true, ", `mapfile -t lines < {path}`},
	})
}

// TestPositionalValueRuns runs bash and dash with -c scripts that pass
// an argument on to code, to show that the value runs there.
func TestPositionalValueRuns(t *testing.T) {
	cases := []struct {
		script, value string
		// shells lists the shells that run the value as a command.
		shells []string
	}{
		{`"$1" PWNED`, "touch", []string{"bash", "dash"}},
		{`exec "$@" PWNED`, "touch", []string{"bash", "dash"}},
		{`echo "$1" | sh`, "touch PWNED", []string{"bash", "dash"}},
		{`awk "$1" /dev/null`, awkValue, []string{"bash", "dash"}},
		// dash has no arrays, so it runs no subscript.
		{`echo $(( $1 + 1 ))`, arithValue, []string{"bash"}},
	}
	for _, c := range cases {
		for _, shell := range c.shells {
			dir := t.TempDir()
			runProgram(t, dir, nil, shell, "-c", c.script, "sh", c.value)
			if !exists(filepath.Join(dir, "PWNED")) {
				t.Errorf("%s -c %q with %q: the value ran no command", shell, c.script, c.value)
			}
		}
		command := fmt.Sprintf("sh -c %s sh {name}", Quote(c.script))
		checkRejected(t, []struct{ shell, command, want string }{{"shell: false, ", command, "an argument of a -c script"}})
	}
}
