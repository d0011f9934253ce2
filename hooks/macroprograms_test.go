package hooks

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestProgramFilePlaceholderRejected(t *testing.T) {
	const file = "the name of a program file that"
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `awk -f {path} /dev/null`, file + " awk runs"},
		{"shell: false, ", `gawk --file={path}`, file + " gawk runs"},
		{"shell: false, ", `gawk --fil {path}`, file + " gawk runs"},
		{"shell: false, ", `gawk -i {path} 'BEGIN {{ }}'`, file + " gawk runs"},
		{"shell: false, ", `gawk -l {name} 'BEGIN {{ }}'`, file + " gawk runs"},
		{"shell: false, ", `mawk -f ./{path}`, file + " mawk runs"},
		{"shell: false, ", `sed -f {path} log.txt`, file + " sed runs"},
		{"shell: false, ", `sed -i.bak --file={path} log.txt`, file + " sed runs"},
		{"shell: true, ", `echo x | sed -n -f ./{name}`, file + " sed runs"},
	})
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `awk -f ./report.awk {path}`},
		{"shell: false, ", `gawk -i inplace -f ./fix.awk {path}`},
		{"shell: false, ", `sed -f ./fix.sed {path}`},
		{"shell: false, ", `sed -ie s/a/b/ {path}`},
	})
}

// TestProgramFileRuns runs awk, gawk and GNU sed on program files that
// an uploader could have written, named by the value.
func TestProgramFileRuns(t *testing.T) {
	cases := []struct{ command, text string }{
		{`awk -f {name} /dev/null`, `BEGIN {{ system("touch PWNED") }}`},
		{`gawk -i {name} 'BEGIN {{ }}'`, `BEGIN {{ system("touch PWNED") }}`},
		{`sed -n -f {name} /etc/hostname`, "1e touch PWNED\n"},
	}
	for _, c := range cases {
		words := renderArgv(t, c.command, "upload.gcode")
		if _, err := exec.LookPath(words[0]); err != nil {
			t.Logf("%s is not installed", words[0])
			continue
		}
		dir := t.TempDir()
		text := templateUnescaper.Replace(c.text)
		if err := os.WriteFile(filepath.Join(dir, "upload.gcode"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		runProgram(t, dir, nil, words...)
		if !exists(filepath.Join(dir, "PWNED")) {
			t.Errorf("%s: the program file ran no command", c.command)
		}
	}
}

func TestMacroProgramPlaceholderRejected(t *testing.T) {
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `make N={name}`, "an argument of make"},
		{"shell: false, ", `make -C /srv/notify notify FILE={path}`, "an argument of make"},
		{"shell: false, ", `make {name}`, "an argument of make"},
		{"shell: false, ", `make -f {path}`, "an argument of make"},
		{"shell: false, ", `make --eval={name}`, "an argument of make"},
		{"shell: false, ", `make --eval {name}`, "the code that make runs"},
		{"shell: false, ", `gmake -C {path}`, "an argument of gmake"},
		{"shell: false, ", `dc -e {name}`, "an argument of dc"},
		{"shell: false, ", `dc --expression={progress}`, "an argument of dc"},
		{"shell: false, ", `dc -f {path}`, "an argument of dc"},
		{"shell: false, ", `dc {path}`, "an argument of dc"},
		{"shell: false, ", `m4 -D NAME={name} template.m4`, "an argument of m4"},
		{"shell: false, ", `m4 --define=NAME={name} template.m4`, "an argument of m4"},
		{"shell: false, ", `m4 {path}`, "an argument of m4"},
		{"shell: true, ", `echo {progress} 2 '*' p | dc`, "in a pipeline into dc"},
		{"shell: true, ", `echo {progress} | dc -f -`, "in a pipeline into dc"},
		{"shell: true, ", `echo {name} | m4 -P`, "in a pipeline into m4"},
		{"shell: true, ", `echo {name} | m4 header.m4 -`, "in a pipeline into m4"},
		{"shell: true, ", `m4 <<< {name}`, "in a here-string (<<<) into m4"},
	})
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `env NAME={name} make -C /srv/notify notify`},
		{"shell: true, ", `echo {name} | dc -e '2 2 + p'`},
		{"shell: true, ", `echo {name} | m4 template.m4`},
		{"shell: false, ", `env NAME={name} envsubst`},
	})
}

// TestMakeRunsValues runs GNU make with a value that holds
// $(shell ...): as a command-line assignment it runs, and in the
// environment it runs only where the makefile writes $(NAME), not in the
// recipe's "$$NAME".
func TestMakeRunsValues(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	value := "$(shell touch PWNED)"
	// make evaluates a command-line assignment before it sets its default
	// SHELL, so there $(shell ...) runs only when SHELL is in the
	// environment. A login session sets it, and a CI runner may not.
	shellEnv := []string{"SHELL=/bin/sh"}
	cases := []struct {
		makefile string
		argv     []string
		env      []string
		runs     bool
	}{
		{"all: ; @:\n", renderArgv(t, `make N={name}`, value), shellEnv, false},
		{"all: ; @:\n", renderArgv(t, `make N:={name}`, value), shellEnv, true},
		{"all: ; @echo $(N)\n", renderArgv(t, `make N={name}`, value), shellEnv, true},
		{"all: ; @echo \"$$NAME\" > out.txt\n", []string{"make"}, append([]string{"NAME=" + value}, shellEnv...), false},
		{"all: ; @echo \"$(NAME)\"\n", []string{"make"}, append([]string{"NAME=" + value}, shellEnv...), true},
	}
	for _, c := range cases {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "Makefile"), []byte(c.makefile), 0o644); err != nil {
			t.Fatal(err)
		}
		out := runProgram(t, dir, c.env, c.argv...)
		if got := exists(filepath.Join(dir, "PWNED")); got != c.runs {
			t.Errorf("%q with makefile %q: the value ran a command: %v, want %v (make printed %q)", c.argv, c.makefile, got, c.runs, out)
		}
		if out, err := os.ReadFile(filepath.Join(dir, "out.txt")); err == nil && string(out) != value+"\n" {
			t.Errorf("%q with makefile %q: out.txt = %q, want the value", c.argv, c.makefile, out)
		}
	}
}

// TestBCRunsNoCommands checks what docs/hooks.md states about GNU bc:
// it has no command that runs a program, so its input is not checked.
func TestBCRunsNoCommands(t *testing.T) {
	if _, err := exec.LookPath("bc"); err != nil {
		t.Skip("bc is not installed")
	}
	dir := t.TempDir()
	for _, input := range []string{"!touch PWNED\n", "system(\"touch PWNED\")\n"} {
		cmd := exec.Command("bc")
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader(input)
		_ = cmd.Run()
	}
	if exists(filepath.Join(dir, "PWNED")) {
		t.Error("bc ran a command from its input")
	}
}
