package hooks

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// checkRejected loads each command as a system hook and checks that it
// has exactly one error, which contains want.
func checkRejected(t *testing.T, cases []struct{ shell, command, want string }) {
	t.Helper()
	for _, c := range cases {
		errs := loadErrors(t, c.shell, c.command)
		if len(errs) != 1 {
			t.Errorf("%s%s: errors %q, want one with %q", c.shell, c.command, errs, c.want)
			continue
		}
		if !strings.Contains(errs[0], c.want) {
			t.Errorf("%s%s: error %q lacks %q", c.shell, c.command, errs[0], c.want)
		}
	}
}

// checkLoads loads each command as a system hook and checks that it has
// no error.
func checkLoads(t *testing.T, cases []struct{ shell, command string }) {
	t.Helper()
	for _, c := range cases {
		if errs := loadErrors(t, c.shell, c.command); len(errs) != 0 {
			t.Errorf("%s%s: errors %q, want none", c.shell, c.command, errs)
		}
	}
}

func TestSSHWords(t *testing.T) {
	cases := []struct {
		line                 string
		destination, command int
	}{
		{`ssh host notify {name}`, 1, 2},
		{`ssh -p 2222 -i key pi@host notify {name}`, 5, 6},
		{`ssh -p2222 -oBatchMode=yes host uptime`, 3, 4},
		{`ssh -vT -J jump host uptime`, 4, 5},
		{`ssh -L 8080:localhost:80 -N host`, 4, 5},
		{`ssh -F /dev/null -E log -W h:22 -b 0.0.0.0 -c aes128-ctr -m hmac-sha2-256 -S none -e none -Q cipher -O check -D 1080 -R 80:h:80 -w 0:1 -B eth0 -l pi -I lib host x`, 33, 34},
		{`ssh host -p 22 uptime`, 1, 4},
		{`ssh host -- -p`, 1, 3},
		{`ssh -- host -p 22`, 2, 3},
		{`ssh -p 22`, -1, 3},
		{`ssh`, -1, 1},
	}
	for _, c := range cases {
		args, err := Split(c.line)
		if err != nil {
			t.Fatal(err)
		}
		destination, command := sshWords(args, 0, sshOptions)
		if destination != c.destination {
			t.Errorf("%s: destination at %d, want %d", c.line, destination, c.destination)
		}
		if command != c.command {
			t.Errorf("%s: remote command at %d, want %d", c.line, command, c.command)
		}
	}
}

func TestSSHPlaceholderRejected(t *testing.T) {
	const remote, destination, option = "in the remote command of", "the destination of ssh", "an option of ssh"
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `ssh pi@host notify {name}`, remote + " ssh"},
		{"shell: false, ", `ssh pi@host "notify {name}"`, remote + " ssh"},
		{"shell: false, ", `ssh host -- notify {name}`, remote + " ssh"},
		{"shell: false, ", `ssh -p 2222 -i /etc/key host -T notify {name}`, remote + " ssh"},
		{"shell: false, ", `/usr/bin/ssh host {name}`, remote + " /usr/bin/ssh"},
		{"shell: false, ", `ssh host sh -c "notify {name}"`, remote + " ssh"},
		{"shell: false, ", `ssh {name} uptime`, destination},
		{"shell: false, ", `ssh -p 22 {name}@printserver uptime`, destination},
		{"shell: false, ", `ssh -l {name} host uptime`, option},
		{"shell: false, ", `ssh -o ProxyJump={name} host uptime`, option},
		{"shell: false, ", `ssh host -o{name} uptime`, option},
		{"shell: false, ", `autossh -M 0 host notify {name}`, remote + " autossh"},
		{"shell: false, ", `autossh -M {name} host`, "an option of autossh"},
		{"shell: false, ", `mosh host -- notify {name}`, "an argument of mosh"},
		{"shell: false, ", `nice -n 10 ssh host notify {name}`, remote + " ssh"},
		{"shell: false, ", `timeout 30 ssh host notify {name}`, remote + " ssh"},
		{"shell: false, ", `sudo -u pi ssh host notify {name}`, remote + " ssh"},
		{"shell: false, ", `env LC_ALL=C ssh host notify {name}`, remote + " ssh"},
		{"shell: false, ", `flock /tmp/lock ssh host notify {name}`, remote + " ssh"},
		{"shell: false, ", `sh -c "ssh host notify {name}"`, remote + " ssh"},
		{"shell: false, ", `env -S "ssh host" {name}`, remote + " ssh"},
		{"shell: true, ", `ssh host notify {name}`, remote + " ssh"},
		{"shell: true, ", `cd /tmp && ssh -p 22 host notify {name} >> log`, remote + " ssh"},
		{"shell: true, ", `ssh {name} uptime`, destination},
		// A word ssh that is only data to the program before it is read
		// as ssh, unless it is the value of rsync -e or scp -S.
		{"shell: false, ", `echo ssh {path}`, destination},
	})
	errs := loadErrors(t, "shell: false, ", `ssh host notify {name}`)
	if len(errs) != 1 {
		t.Fatalf("errors %q, want one", errs)
	}
	for _, want := range []string{"command #1", "joins with spaces", "standard input", "SendEnv"} {
		if !strings.Contains(errs[0], want) {
			t.Errorf("error %q lacks %q", errs[0], want)
		}
	}
}

func TestSSHSafeFormsLoad(t *testing.T) {
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `ssh -p 2222 pi@host uptime`},
		{"shell: false, ", `sh -c 'printf "%s\n" "$1" | ssh pi@host read-name' sh {name}`},
		{"shell: true, ", `printf '%s\n' {name} | ssh pi@host read-name`},
		{"shell: true, ", `ssh pi@host uptime; record {name}`},
		{"shell: false, ", `rsync --rsh=ssh ./{path} backup:prints/`},
		{"shell: false, ", `rsync -e ssh ./{path} backup:prints/`},
		{"shell: false, ", `scp -S ssh ./{path} backup:prints/`},
		{"shell: false, ", `sh -c 'NAME="$1" ssh -o SendEnv=NAME pi@printserver notify' sh {name}`},
		// The example of docs/hooks.md.
		{"shell: false, ", `sh -c 'printf "%s\n" "$1" | ssh pi@printserver /usr/local/bin/notify-from-stdin' sh {name}`},
	})
}

// TestSplitEnvStringMatchesEnv splits strings with splitEnvString and
// with the real GNU env -S, which runs the recorder with the words.
func TestSplitEnvStringMatchesEnv(t *testing.T) {
	rec := newRecorder(t)
	t.Setenv("PB_SPLIT", "x y")
	inputs := []string{
		`a b  c`,
		`'a b' "c d" e\_f "g\_h"`,
		`'it''s' "say \"hi\"" 'back\slash' 'q\'q' "x\\y" a\\b`,
		`a\tb "c\nd" '\t'`,
		`a #comment`,
		`a#b '' "" x`,
		`a \c b c`,
		`a "\$b"'${PB_SPLIT}'`,
		"a\tb\nc",
		`  lead`,
	}
	var expected [][]string
	for _, s := range inputs {
		words, expands, err := splitEnvString(s)
		if err != nil {
			t.Fatalf("splitEnvString(%q): %v", s, err)
		}
		if expands {
			t.Errorf("splitEnvString(%q) expands a variable, want none", s)
		}
		expected = append(expected, words)
		if out, err := exec.Command("env", "-S", "record "+s).CombinedOutput(); err != nil {
			t.Fatalf("env -S %q: %v (output %q)", "record "+s, err, out)
		}
	}
	calls := rec.calls(t)
	if len(calls) != len(inputs) {
		t.Fatalf("recorder ran %d times, want %d", len(calls), len(inputs))
	}
	for i, s := range inputs {
		if got, want := argvString(calls[i].Args), argvString(expected[i]); got != want {
			t.Errorf("env -S %q gave %s, splitEnvString gave %s", s, got, want)
		}
	}
}

func TestSplitEnvStringRejectsWhatEnvRejects(t *testing.T) {
	for _, s := range []string{`a 'b`, `a "b`, `a\q`, `a\`, `$HOME`, `${1X}`, `${X`, `"a\cb"`} {
		if _, _, err := splitEnvString(s); !errors.Is(err, errEnvSplit) {
			t.Errorf("splitEnvString(%q) error = %v, want errEnvSplit", s, err)
		}
		cmd := exec.Command("env", "-S", "true "+s)
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 125 {
			t.Errorf("env -S %q: %v, want exit status 125", "true "+s, err)
		}
	}
	words, expands, err := splitEnvString(`${HOME}/x y`)
	if err != nil || !expands || argvString(words) != argvString([]string{"${HOME}/x", "y"}) {
		t.Errorf("splitEnvString(${HOME}/x y) = %q, %v, %v, want the variable kept and expands", words, expands, err)
	}
}

func TestExpandEnvSplit(t *testing.T) {
	cases := []struct {
		command, words string
		origin         []int
	}{
		{`env -S "sh -c" "echo {name}"`, `env sh -c 'echo {name}'`, []int{0, -1, -1, 3}},
		{`env -iS"sh -c" x`, `env sh -c x`, []int{0, -1, -1, 2}},
		{`env --split-string="sh -c" x`, `env sh -c x`, []int{0, -1, -1, 2}},
		{`env --split "sh -c" x`, `env sh -c x`, []int{0, -1, -1, 3}},
		{`env -u HOME -S "-i A=1 sh -c" x`, `env -u HOME -i A=1 sh -c x`, []int{0, 1, 2, -1, -1, -1, -1, 5}},
		{`env -S "-S 'sh -c'" x`, `env sh -c x`, []int{0, -1, -1, 3}},
		{`nice env -vS "bash -c" x`, `nice env bash -c x`, []int{0, 1, -1, -1, 4}},
		{`env A=1 sh -c x`, `env A=1 sh -c x`, []int{0, 1, 2, 3, 4}},
		{`env -S "A={{x}} sh -c" y`, `env 'A={{x}}' sh -c y`, []int{0, -1, -1, -1, 3}},
		{`env -S "a 'b" x`, `env -S 'a '"'"'b' x`, []int{0, 1, 2, 3}},
	}
	for _, c := range cases {
		args, err := Split(c.command)
		if err != nil {
			t.Fatal(err)
		}
		words, origin, r := expandEnvSplit(args)
		if r != nil {
			t.Errorf("%s: error %+v, want none", c.command, r)
			continue
		}
		if got := argvString(words); got != c.words {
			t.Errorf("%s: words %s, want %s", c.command, got, c.words)
		}
		if fmt.Sprint(origin) != fmt.Sprint(c.origin) {
			t.Errorf("%s: origins %v, want %v", c.command, origin, c.origin)
		}
	}
}

func TestEnvSplitPlaceholderRejected(t *testing.T) {
	const inString, command = "in the string that env -S splits", "the command or an assignment of env"
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `env -S "sh -c 'echo {name}'"`, inString},
		{"shell: false, ", `env -S "record {name}"`, inString},
		{"shell: false, ", `env --split-string="record {name}"`, inString},
		{"shell: false, ", `env -vS"record {name}"`, inString},
		{"shell: false, ", `nice env -S "record {name}"`, inString},
		{"shell: false, ", `env -S '${{SHELL}} -c' {name}`, "an argument after an env -S string that expands ${VAR}"},
		{"shell: false, ", `env {name} record`, command},
		{"shell: false, ", `env -i PATH=/bin {name}`, command},
		{"shell: false, ", `env -S "python3 -c" {name}`, "the code that python3 runs"},
		{"shell: false, ", `env -S "su -c" {name} root`, "su runs with -c"},
		{"shell: false, ", `env -S "sh -c" "echo '{name}'"`, "inside shell quotes in the script"},
		{"shell: true, ", `env -S "sh -c" {name}`, "in the script of a shell that shell code runs"},
		{"shell: true, ", `env -S record\ {name}`, inString},
	})
	errs := loadErrors(t, "shell: false, ", `env -S "record {name}"`)
	if len(errs) == 1 && !strings.Contains(errs[0], "env sh -c 'echo {name}'") {
		t.Errorf("error %q does not show the form without -S", errs[0])
	}
}

func TestEnvSafeFormsLoad(t *testing.T) {
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `env NAME={name} sh -c 'record "$NAME"'`},
		{"shell: false, ", `env -S "sh -c" "record {name}"`},
		{"shell: false, ", `env -i PATH=/usr/bin:/bin record {name}`},
		{"shell: false, ", `env -C /tmp record {name}`},
		{"shell: false, ", `env -- record {name}`},
		{"shell: false, ", `env - PATH=/bin record {name}`},
		{"shell: false, ", `env -S "-i PATH=/bin" record {name}`},
		{"shell: true, ", `NAME={name} env record "$NAME"`},
	})
}

func TestEnvSplitScriptArgs(t *testing.T) {
	cases := []struct {
		command string
		want    []int
	}{
		{`env -S "sh -c" "echo {name}"`, []int{3}},
		{`env -S"sh -ec" "echo {name}" sh {name}`, []int{2}},
		{`env -S "sh -c 'echo hi'" sh {name}`, nil},
		{`env -S "-i PATH=/bin" bash -c "echo {name}"`, []int{5}},
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

func TestScriptFilePlaceholderRejected(t *testing.T) {
	const script, option = "the script that", "the value of an option of"
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: true, ", `. {path}`, "the file that . runs as shell code"},
		{"shell: true, ", `source {path}`, "the file that source runs"},
		{"shell: true, ", `. -- ./{name}`, "the file that . runs"},
		{"shell: true, ", `cd /srv && . ./{name}`, "the file that . runs"},
		{"shell: false, ", `sh -c ". {path}"`, "the file that . runs"},
		{"shell: false, ", `bash -c "source ./{name}; record"`, "the file that source runs"},
		{"shell: false, ", `sh {path}`, script + " sh runs"},
		{"shell: false, ", `bash -e -o pipefail {path}`, script + " bash runs"},
		{"shell: false, ", `bash -- {path} x`, script + " bash runs"},
		{"shell: false, ", `nice /bin/sh ./{name}`, script + " /bin/sh runs"},
		{"shell: true, ", `sh {path}`, script + " sh runs"},
		{"shell: false, ", `python3 {path}`, script + " python3 runs"},
		{"shell: false, ", `python3.11 -u {path}`, script + " python3.11 runs"},
		{"shell: false, ", `python3 -m {name}`, script + " python3 runs"},
		{"shell: false, ", `node -r {name} app.js`, option + " node"},
		{"shell: false, ", `node --require {name} app.js`, option + " node"},
		{"shell: false, ", `perl -I {path} x.pl`, option + " perl"},
		{"shell: false, ", `bash --rcfile {path} -i`, option + " bash"},
		{"shell: false, ", `php -f {path}`, script + " php runs"},
	})
}

func TestScriptFileSafeFormsLoad(t *testing.T) {
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `sh ./notify.sh {name}`},
		{"shell: false, ", `bash -e ./notify.sh {path} {name}`},
		{"shell: false, ", `sh -s {name}`},
		{"shell: false, ", `sh -c 'record "$1"' sh {name}`},
		{"shell: false, ", `bash -c 'record "$1"' bash {name}`},
		{"shell: false, ", `python3 ./notify.py {path}`},
		{"shell: false, ", `python3 -m notify {path}`},
		{"shell: false, ", `python3 - {name}`},
		{"shell: false, ", `perl -ne print {path}`},
		{"shell: false, ", `node app.js --file {path}`},
		{"shell: true, ", `. ./settings.sh; record {name}`},
		{"shell: true, ", `record {name} > notify.sh`},
	})
}

func TestOwnShellPlaceholderRejected(t *testing.T) {
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `flock /tmp/lock -c "record {name}"`, "in the command that flock runs with -c through $SHELL"},
		{"shell: false, ", `flock -w 5 -E 3 /tmp/lock --command "record {name}"`, "flock runs with -c"},
		{"shell: true, ", `flock -n /tmp/lock -c "record $HOME" && flock /tmp/lock -c {name}`, "flock runs with -c"},
		{"shell: false, ", `script -qc "record {name}" /dev/null`, "in the command that script runs with -c through $SHELL"},
		{"shell: false, ", `script -q /dev/null --command "record {name}"`, "script runs with -c"},
		{"shell: false, ", `runuser -u pi -c "record {name}"`, "runuser runs with -c"},
		{"shell: false, ", `sudo -s record {name}`, "sudo -s or -i joins"},
		{"shell: false, ", `sudo -iu pi record {name}`, "sudo -s or -i joins"},
		{"shell: false, ", `sudo --login -u pi record {name}`, "sudo -s or -i joins"},
		{"shell: false, ", `sudo LC_ALL=C -s record {name}`, "sudo -s or -i joins"},
	})
	errs := loadErrors(t, "shell: false, ", `flock /tmp/lock -c "record {name}"`)
	if len(errs) == 1 && !strings.Contains(errs[0], `flock FILE sh -c 'echo "$1"' sh {name}`) {
		t.Errorf("error %q does not name the form with sh -c", errs[0])
	}
}

func TestOwnShellSafeFormsLoad(t *testing.T) {
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `flock /tmp/lock record {name}`},
		{"shell: false, ", `flock -w 5 /tmp/lock sh -c 'record "$1"' sh {name}`},
		{"shell: false, ", `flock /tmp/lock -c "record done"`},
		{"shell: false, ", `sudo -u pi record {name}`},
		{"shell: false, ", `sudo -u pi -- record -s {name}`},
		{"shell: false, ", `sudo LC_ALL=C record -s {name}`},
		{"shell: false, ", `script -q -c "record" /dev/null`},
		{"shell: false, ", `runuser -u pi -- record -c {name}`},
	})
}

func TestWrapperScriptArgs(t *testing.T) {
	cases := []struct {
		command string
		want    []int
	}{
		{`flock /tmp/lock sh -c "echo {name}"`, []int{4}},
		{`flock -w 5 /tmp/lock bash -c "echo {name}"`, []int{6}},
		{`setsid -f sh -c "echo {name}"`, []int{4}},
		{`stdbuf -oL -eL sh -c "echo {name}"`, []int{5}},
		{`ionice -c2 -n7 sh -c "echo {name}"`, []int{5}},
		{`chroot --userspec=pi /srv sh -c "echo {name}"`, []int{5}},
		{`doas -u pi sh -c "echo {name}"`, []int{5}},
		{`systemd-run --user --wait -p Nice=5 sh -c "echo {name}"`, []int{7}},
		{`docker exec -i printer sh -c "echo {name}"`, []int{6}},
		{`docker exec -u root printer bash -lc "echo {name}"`, []int{7}},
		{`kubectl exec octoprint -c main -- sh -c "echo {name}"`, []int{8}},
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

// TestInjectionMoreWrappers runs sh -c behind wrappers that are on every
// Linux host, and env -S, with hostile names, and checks that each name
// reaches the recorder as one argument and runs no command.
func TestInjectionMoreWrappers(t *testing.T) {
	checkWrappedShells(t, []string{
		`flock lockfile sh -c "record --flock {name}"`,
		`setsid -w sh -c "record --setsid {name}"`,
		`stdbuf -oL sh -c "record --stdbuf {name}"`,
		`env -S "sh -c" "record --env-split {name}"`,
		`env -S "-u HOME PATH=${{PATH}}" sh -c "record --env-split-path {name}"`,
	}, []string{"--flock", "--setsid", "--stdbuf", "--env-split", "--env-split-path"})
}
