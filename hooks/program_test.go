package hooks

import (
	"fmt"
	"testing"
)

func TestProgramPlaceholderRejected(t *testing.T) {
	const program, env = "the program of the command", "the command or an assignment of env"
	runs := func(runner string) string { return "the program that " + runner + " runs" }
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `{path}`, program},
		{"shell: false, ", `{path} --file {name}`, program},
		{"shell: false, ", `/usr/local/bin/{name}`, program},
		{"shell: false, ", `./{name} done`, program},
		{"shell: false, ", `exec {path}`, runs("exec")},
		{"shell: false, ", `command {path}`, runs("command")},
		{"shell: false, ", `nohup {path}`, runs("nohup")},
		{"shell: false, ", `nice -n 5 {path}`, runs("nice")},
		{"shell: false, ", `timeout 5 {path}`, runs("timeout")},
		{"shell: false, ", `timeout -s KILL --kill-after=3 5 {path}`, runs("timeout")},
		{"shell: false, ", `nice timeout 5 {path}`, runs("timeout")},
		{"shell: false, ", `sudo -u pi {path}`, runs("sudo")},
		{"shell: false, ", `sudo LC_ALL=C -u pi {path}`, runs("sudo")},
		{"shell: false, ", `doas -u pi {path}`, runs("doas")},
		{"shell: false, ", `setsid -f {path}`, runs("setsid")},
		{"shell: false, ", `stdbuf -oL {path}`, runs("stdbuf")},
		{"shell: false, ", `ionice -c 3 {path}`, runs("ionice")},
		{"shell: false, ", `chroot --userspec=pi /srv {path}`, runs("chroot")},
		{"shell: false, ", `flock -w 5 /tmp/lock {path}`, runs("flock")},
		{"shell: false, ", `time -o /tmp/t {path}`, runs("time")},
		{"shell: false, ", `taskset -c 0 {path}`, runs("taskset")},
		{"shell: false, ", `chrt -f 10 {path}`, runs("chrt")},
		{"shell: false, ", `systemd-run --user --wait -p Nice=5 {path}`, runs("systemd-run")},
		{"shell: false, ", `busybox {name} x`, runs("busybox")},
		{"shell: false, ", `xargs -0 -a list.txt {name}`, runs("xargs")},
		{"shell: false, ", `find /srv -name x -exec {path} ;`, runs("find -exec")},
		{"shell: false, ", `find /srv -execdir nice {path} {{}} +`, runs("nice")},
		{"shell: false, ", `env {path}`, env},
		{"shell: false, ", `env -i PATH=/bin {path}`, env},
		{"shell: false, ", `env --chd /tmp {path}`, env},
		{"shell: true, ", `{path}`, program},
		{"shell: true, ", `{path} >> log.txt`, program},
		{"shell: true, ", `> log.txt {path}`, program},
		{"shell: true, ", `x=1 a[2]=3 {path}`, program},
		{"shell: true, ", `cd /srv && exec {path}`, runs("exec")},
		{"shell: true, ", `if true; then {path}; fi`, program},
		{"shell: true, ", `(cd /srv; {path})`, program},
		{"shell: true, ", `time {path}`, program},
		{"shell: true, ", `command -p {path}`, runs("command")},
		{"shell: true, ", `builtin {name} x`, runs("builtin")},
		{"shell: true, ", `echo {name} | xargs -I X X`, "in a pipeline into xargs, which passes each input line to X, and there the line is the program of the command"},
		{"shell: false, ", `sh -c "{path} --verbose"`, program},
		{"shell: false, ", `bash -c 'cd /srv && nice {path}'`, runs("nice")},
	})
}

func TestProgramSafeFormsLoad(t *testing.T) {
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `record {name}`},
		{"shell: false, ", `nice -n 5 record {name}`},
		{"shell: false, ", `timeout 5 record {path}`},
		{"shell: false, ", `sudo -u pi record {name}`},
		{"shell: false, ", `flock /tmp/lock record {name}`},
		{"shell: false, ", `taskset -p 1 {name}`},
		{"shell: false, ", `find /srv -name {name} -exec rm -- {{}} +`},
		{"shell: true, ", `command -v {name} > /dev/null`},
		{"shell: true, ", `echo $(date) {name}`},
		{"shell: true, ", "echo `date` {name}"},
		{"shell: true, ", `x=$(printf %s {name}); record "$x"`},
		{"shell: true, ", `record {name} 2>&1 | tee -a log.txt`},
		{"shell: true, ", `record > {name}.log`},
		{"shell: true, ", `> {name}.log record`},
		{"shell: true, ", `cat < {path} > /tmp/copy`},
		{"shell: true, ", `read -r x < {path}`},
		{"shell: true, ", `echo {name} | xargs -I X record X`},
		{"shell: true, ", `echo $(( 1 + 2 )) {name}`},
	})
}

// TestProgramValueRuns runs the real bash and dash with a value that
// names a program, to show that the value chooses what runs.
func TestProgramValueRuns(t *testing.T) {
	for _, code := range []string{`{name} PWNED`, `exec {name} PWNED`, `nice -n 1 {name} PWNED`, `timeout 30 {name} PWNED`} {
		for _, shell := range []string{"bash", "dash"} {
			if !runsValue(t, shell, code, "touch") {
				t.Errorf("%s -c %q with the value touch did not create PWNED", shell, code)
			}
		}
		checkRejected(t, []struct{ shell, command, want string }{{"shell: true, ", code, "so the value chooses which program runs"}})
	}
}

func TestWrappedProgram(t *testing.T) {
	cases := []struct {
		command string
		program int
		runner  string
	}{
		{`record x`, 0, ""},
		{`nice -n 5 record`, 3, "nice"},
		{`timeout -k 3 10 record`, 4, "timeout"},
		{`env -i A=1 B=2 record`, 4, "env"},
		{`env --chd /tmp record`, 3, "env"},
		{`sudo -hhostc record`, 2, "sudo"},
		{`sudo -hu pi record`, 2, "sudo"},
		{`sudo -h -u pi record`, 4, "sudo"},
		{`sudo A=1 -u pi B=2 record`, 5, "sudo"},
		{`sudo --us pi record`, 3, "sudo"},
		{`flock /tmp/lock record`, 2, "flock"},
		{`flock /tmp/lock -c record`, -1, "flock"},
		{`xargs -I X -n1 record X`, 4, "xargs"},
		{`command -v record`, -1, "command"},
		{`nice`, -1, "nice"},
		{`ionice -p 1`, -1, "ionice"},
	}
	for _, c := range cases {
		words, err := Split(c.command)
		if err != nil {
			t.Fatal(err)
		}
		program, runner := wrappedProgram(words, 0, false)
		if program != c.program || runner != c.runner {
			t.Errorf("wrappedProgram(%q) = %d, %q, want %d, %q", c.command, program, runner, c.program, c.runner)
		}
	}
}

func TestSplitShellCommandsRedirections(t *testing.T) {
	cases := []struct{ code, want string }{
		{`echo {name} 2>&1 | sh`, `[echo {name} >&:1]| [sh]`},
		{`sh 2>/dev/null <<< {name}`, `[sh >:/dev/null <<<:{name}]`},
		{`> log record &>> all x`, `[>:log record &>>:all x]`},
		{`cat <<-EOF`, `[cat <<-:EOF]`},
		{`echo $(date) {name}; a=(1 2)`, `[echo] [date] +[{name}] [a=] +[1 2]`},
		{"echo `date` x", "[echo] [date] +[x]"},
		{`echo $(( 1 + {n} ))`, `[echo] +[1 + {n}]`},
		{`diff <(echo {name}) f`, `[diff] [echo {name}] +[f]`},
	}
	for _, c := range cases {
		got := ""
		for i, command := range splitShellCommands(c.code) {
			if i > 0 {
				got += " "
			}
			if command.continued {
				got += "+"
			}
			got += "["
			for k, w := range command.words {
				if k > 0 {
					got += " "
				}
				if command.redirects[k] != "" {
					got += command.redirects[k] + ":"
				}
				got += w
			}
			got += "]"
			if command.pipe {
				got += "|"
			}
		}
		if got != c.want {
			t.Errorf("splitShellCommands(%q) = %s, want %s", c.code, got, c.want)
		}
	}
}

func TestRedirectedStdinRejected(t *testing.T) {
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: true, ", `echo {name} | sh 2>/dev/null`, "in a pipeline into sh"},
		{"shell: true, ", `echo {name} 2>&1 | sh`, "in a pipeline into sh"},
		{"shell: true, ", `echo {name} | sh > out.log`, "in a pipeline into sh"},
		{"shell: true, ", `sh <<< {name}`, "in a here-string (<<<) into sh"},
		{"shell: true, ", `bash -s <<< {name}`, "in a here-string (<<<) into bash"},
		{"shell: true, ", `python3 - <<< {name}`, "in a here-string (<<<) into python3"},
		{"shell: true, ", `bash -s < {path}`, "the name of a file that < gives as standard input to bash"},
		{"shell: false, ", `bash -c 'sh < ./{path}'`, "the name of a file that < gives as standard input to sh"},
	})
	for _, code := range []string{`bash -s <<< {name}`, `sh 2>/dev/null <<< {name}`} {
		if !runsValue(t, "bash", code, "touch PWNED") {
			t.Errorf("bash -c %q with the value touch PWNED did not create PWNED", code)
		}
	}
}

// TestAbbreviatedLongOptions checks that walkOptions reads a unique
// prefix of a long option as GNU getopt_long does, and that pipelines
// and wrappers with such options are checked.
func TestAbbreviatedLongOptions(t *testing.T) {
	cases := []struct {
		command string
		want    string
	}{
		{`env --chd /tmp sh`, "[chdir=/tmp] 3"},
		{`env --ch=/tmp sh`, "[chdir=/tmp] 2"},
		{`env --ignore-e --uns HOME sh`, "[ignore-environment unset=HOME] 4"},
		{`env --i sh`, "[i] 2"},
		{`env --de sh`, "[de] 2"},
		{`env --split-string sh`, "[split-string=sh] 3"},
		{`sudo --us pi --she x`, "[user=pi shell] 4"},
		{`sudo --log x`, "[log] 2"},
		{`sudo -hhostc x`, "[h=hostc] 2"},
		{`sudo -h x`, "[h] 2"},
	}
	for _, c := range cases {
		words, err := Split(c.command)
		if err != nil {
			t.Fatal(err)
		}
		spec := envOptions
		if words[0] == "sudo" {
			spec = sudoOptions
		}
		options, operand := walkOptions(words, 0, spec)
		got := "["
		for i, o := range options {
			if i > 0 {
				got += " "
			}
			got += o.name
			if o.value >= 0 {
				got += "=" + o.text
			}
		}
		got += fmt.Sprintf("] %d", operand)
		if got != c.want {
			t.Errorf("walkOptions(%q) = %s, want %s", c.command, got, c.want)
		}
	}
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: true, ", `echo {name} | env --chd /tmp sh`, "in a pipeline into sh"},
		{"shell: true, ", `echo {name} | env --unse HOME --ch=/tmp bash -s`, "in a pipeline into bash"},
		{"shell: true, ", `echo {name} | sudo --us pi sh`, "in a pipeline into sh"},
		{"shell: true, ", `echo {name} | timeout --sig KILL 5 sh`, "in a pipeline into sh"},
		{"shell: true, ", `echo {name} | nice --adj 5 sh`, "in a pipeline into sh"},
		{"shell: true, ", `echo {name} | stdbuf --out L sh`, "in a pipeline into sh"},
		{"shell: false, ", `sudo --she -u pi record {name}`, "sudo -s or -i joins"},
		{"shell: false, ", `su --comm "record {name}" pi`, "su runs with -c"},
		{"shell: false, ", `sudo -hu {name} record`, "the program that sudo runs"},
	})
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `sudo -hhostc record {name}`},
		{"shell: false, ", `sudo -hs record {name}`},
		{"shell: true, ", `echo {name} | env --chd /tmp record`},
	})
}
