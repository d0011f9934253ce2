package hooks

import (
	"strings"
	"testing"
)

// arithValue is a file name that runs touch PWNED where a shell
// evaluates it as arithmetic (bash runs the command in the subscript),
// inside $((...)) (the quotes are plain characters there) or as a
// script.
const arithValue = "a[$(touch PWNED)]"

// runsPWNED reports whether arithValue as {name} in code creates the
// file PWNED, as runsValue does.
func runsPWNED(t *testing.T, shell, code string) bool {
	t.Helper()
	return runsValue(t, shell, code, arithValue)
}

// TestArithmeticPlaceholderRejected runs each rejected form with the
// real bash and dash to show that the quoted value runs a command there,
// and checks that the form is a config error with shell: true and in an
// sh -c script.
func TestArithmeticPlaceholderRejected(t *testing.T) {
	const (
		arith   = "inside $((...))"
		param   = "inside ${...}"
		cond    = "inside [[ ... ]]"
		command = "the arithmetic command ((...))"
		pipe    = "in a pipeline into"
	)
	cases := []struct {
		code, want string
		// shells lists the shells that run the value as a command.
		shells []string
	}{
		{`echo $(( {name} )) >> log.txt`, arith, []string{"bash", "dash"}},
		{`echo $(( 1 + {name} ))`, arith, []string{"bash", "dash"}},
		{`echo $(( $(printf %s {name}) ))`, arith, []string{"bash"}},
		{`echo "$(( {name} ))"`, "inside shell quotes", []string{"bash", "dash"}},
		{`echo $[ {name} ]`, "inside $[...]", []string{"bash"}},
		{`(( {name} > 1 )) && echo big`, command, []string{"bash"}},
		{`for (( i={name}; i<1; i++ )); do :; done`, command, []string{"bash"}},
		{`[[ {name} -gt 80 ]] && echo hot`, cond, []string{"bash"}},
		{`if [[ -n $HOME && {name} -ge 1 ]]; then echo hot; fi`, cond, []string{"bash"}},
		{`x=abc; echo ${{x:{name}}}`, param, []string{"bash"}},
		{`x=abc; echo ${{x:0:{name}}}`, param, []string{"bash"}},
		{`x=(a b); echo ${{x[{name}]}}`, param, []string{"bash"}},
		{`let n={name}`, "an argument of let", []string{"bash"}},
		{`declare -i n={name}`, "an argument of declare -i", []string{"bash"}},
		{`typeset -i n={name}`, "an argument of typeset -i", []string{"bash"}},
		{`f() {{ local -i n={name}; }}; f`, "an argument of local -i", []string{"bash"}},
		{`declare -i n; n={name}`, "integer attribute", []string{"bash"}},
		{`declare -i n; n+={name}`, "integer attribute", []string{"bash"}},
		{`declare {name}=1`, "a variable name for declare", []string{"bash"}},
		{`printf -v {name} %s 1`, "printf -v", []string{"bash"}},
		{`a[{name}]=1`, "array subscript", []string{"bash"}},
		{`a=(1); unset {name}`, "an argument of unset", []string{"bash"}},
		{`[ -v {name} ] && echo set`, "test -v", []string{"bash"}},
		{`test -v {name}`, "test -v", []string{"bash"}},
		{`echo {name} | sh`, pipe, []string{"bash", "dash"}},
		{`printf '%s\n' {name} | tr x y | nice -n 5 bash -s`, pipe, []string{"bash", "dash"}},
		{`echo {name} | . /dev/stdin`, pipe, []string{"bash", "dash"}},
		{`echo {name} | xargs -I X sh -c 'echo X >> log.txt'`, "pipeline into xargs", []string{"bash", "dash"}},
		{`echo {name} | xargs -i sh -c 'echo {{}}'`, "pipeline into xargs", []string{"bash", "dash"}},
		{`echo {name} | xargs -d '\n' sh -c`, "pipeline into xargs", []string{"bash", "dash"}},
	}
	for _, c := range cases {
		for _, shell := range []string{"bash", "dash"} {
			want := strings.Contains(strings.Join(c.shells, " "), shell)
			if got := runsPWNED(t, shell, c.code); got != want {
				t.Errorf("%s -c %q: value ran a command: %v, want %v", shell, c.code, got, want)
			}
		}
		for _, form := range []struct{ shell, command string }{
			{"shell: true, ", c.code},
			{"shell: false, ", "bash -c " + Quote(c.code)},
		} {
			errs := loadErrors(t, form.shell, form.command)
			if len(errs) != 1 {
				t.Errorf("%s%s: errors %q, want one with %q", form.shell, form.command, errs, c.want)
				continue
			}
			if !strings.Contains(errs[0], c.want) {
				t.Errorf("%s%s: error %q lacks %q", form.shell, form.command, errs[0], c.want)
			}
		}
	}
}

// TestArithmeticSafeFormsLoad runs forms close to the rejected ones with
// the real bash and dash, shows that the value runs no command there,
// and checks that they load.
func TestArithmeticSafeFormsLoad(t *testing.T) {
	codes := []string{
		`echo {name} >> log.txt`,
		`[ {name} -gt 80 ] && echo hot`,
		`test {name} -eq 1 || test {name} -lt 2`,
		`n={name}; case $n in ''|*[!0-9]*) exit 1;; esac; echo $((n + 1))`,
		`echo $(( 1 + 2 )) {name}`,
		`x=$(printf %s {name}); echo ${{#x}}`,
		`[[ -n $HOME ]] && echo {name}`,
		`declare n={name}; echo "$n"`,
		`export NAME={name}; a[0]={name}`,
		`printf -v n %s {name}`,
		`echo {name} | sh -c 'cat >> log.txt'`,
		`echo {name} | xargs -I X sh -c 'echo "$1"' sh X`,
		`echo {name} | xargs printf '%s\n'`,
		`echo {name} | sh ./notify.sh`,
		`echo {name} | grep sh`,
		`echo '$((' {name}`,
		"# $((\necho {name}",
		"cat <<EOF\n$((\nEOF\necho {name}",
		`echo {name} || sh`,
	}
	for _, code := range codes {
		for _, shell := range []string{"bash", "dash"} {
			if runsPWNED(t, shell, code) {
				t.Errorf("%s -c %q: the value ran a command", shell, code)
			}
		}
		checkLoads(t, []struct{ shell, command string }{
			{"shell: true, ", code},
			{"shell: false, ", "bash -c " + Quote(code)},
		})
	}
}

// TestTestOperandsPerShell checks that the operands of test -gt are
// errors only in the -c scripts of shells whose test evaluates them as
// arithmetic.
func TestTestOperandsPerShell(t *testing.T) {
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `sh -c '[ {name} -gt 1 ]'`},
		{"shell: false, ", `/bin/dash -c 'test {name} -eq 1'`},
		{"shell: false, ", `zsh -c '[ {name} -gt 1 ]'`},
	})
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `ksh -c '[ {name} -gt 1 ]'`, "an operand of test -gt in ksh"},
		{"shell: false, ", `mksh -c 'test 1 -eq {name}'`, "an operand of test -eq in mksh"},
	})
}

// TestPipelineIntoCodeLoadChecks checks the load result of pipelines
// that the real-shell tests leave out (into python3, and into sh behind
// env) and of safe forms that docs/hooks.md gives.
func TestPipelineIntoCodeLoadChecks(t *testing.T) {
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: true, ", `echo {name} | python3 -`, "in a pipeline into python3"},
		{"shell: true, ", `cat {path} | env -i sh`, "in a pipeline into sh"},
		{"shell: true, ", `cat {path} | env -a name sh`, "in a pipeline into sh"},
		{"shell: true, ", `cat {path} | env --argv0 name sh`, "in a pipeline into sh"},
	})
	checkLoads(t, []struct{ shell, command string }{
		{"shell: true, ", `echo {name} | xargs rm --`},
		{"shell: true, ", `n={progress}; case $n in ''|*[!0-9]*) exit 1;; esac; echo $((n + 1)) >> log.txt`},
	})
}
