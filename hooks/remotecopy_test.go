package hooks

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRemoteCopyPlaceholderRejected(t *testing.T) {
	const (
		local  = "a local file of"
		remote = "a remote path of"
		option = "an option of"
	)
	checkRejected(t, []struct{ shell, command, want string }{
		{"shell: false, ", `scp {path} backup:/srv/prints/`, local + " scp"},
		{"shell: false, ", `scp -r {name}/ backup:`, local + " scp"},
		{"shell: false, ", `scp -P 22 ./x {name}:/srv/`, local + " scp"},
		{"shell: false, ", `scp ./{path} backup:/srv/{name}`, remote + " scp"},
		{"shell: false, ", `scp backup:/srv/{path} ./copy/`, remote + " scp"},
		{"shell: false, ", `scp -O ./x pi@backup:{name}`, remote + " scp"},
		{"shell: false, ", `scp -o ProxyJump={name} ./x backup:`, option + " scp"},
		{"shell: false, ", `scp -S {path} ./x backup:`, option + " scp"},
		{"shell: false, ", `rsync -av {path} backup:prints/`, local + " rsync"},
		{"shell: false, ", `rsync -av ./{path} backup:prints/{name}`, remote + " rsync"},
		{"shell: false, ", `rsync -av ./{path} backup::prints/{name}`, remote + " rsync"},
		{"shell: false, ", `rsync -av ./{path} rsync://backup/prints/{name}`, remote + " rsync"},
		{"shell: false, ", `rsync --rsync-path={name} ./x backup:`, option + " rsync"},
		{"shell: false, ", `rsync -e "ssh -p {name}" ./x backup:`, option + " rsync"},
		{"shell: false, ", `rsync ./x backup: --exclude {name}`, option + " rsync"},
		{"shell: false, ", `sftp {name}`, "the destination of sftp"},
		{"shell: false, ", `sftp backup:/srv/{path}`, "the destination of sftp"},
		{"shell: false, ", `sftp -b {path} backup`, option + " sftp"},
		{"shell: false, ", `nice scp {path} backup:`, local + " scp"},
		{"shell: true, ", `scp {path} backup:prints/ && record done`, local + " scp"},
		{"shell: true, ", `echo {path} | xargs -I X scp X backup:`, "and there the line is " + local + " scp"},
	})
	checkLoads(t, []struct{ shell, command string }{
		{"shell: false, ", `scp ./{path} backup:/srv/prints/`},
		{"shell: false, ", `scp /home/pi/.octoprint/uploads/{path} backup:/srv/prints/`},
		{"shell: false, ", `scp -P 2222 -i /etc/key ./{path} pi@backup:prints/`},
		{"shell: false, ", `scp prints/{path} ./copy:{name} backup:`},
		{"shell: false, ", `rsync -av ./{path} backup:prints/`},
		{"shell: false, ", `rsync -a --exclude '*.tmp' --backup-dir /srv/old /srv/uploads/{path} backup:/srv/`},
		{"shell: false, ", `rsync -e 'ssh -p 2222' ./{path} backup:prints/`},
		{"shell: true, ", `rsync -a ./{path} backup:prints/ && record {name}`},
	})
	errs := loadErrors(t, "shell: false, ", `scp {path} backup:/srv/prints/`)
	if len(errs) == 1 && !strings.Contains(errs[0], "scp ./{path} host:/srv/prints/") {
		t.Errorf("error %q does not give the form with ./", errs[0])
	}
}

// fakeSSH writes a program that reads the arguments that scp and rsync
// give ssh, appends the host to hosts.txt in dir and runs the remote
// command with sh -c in dir, as the login shell of sshd does.
func fakeSSH(t *testing.T, dir string) string {
	t.Helper()
	script := `#!/bin/sh
while [ $# -gt 0 ]; do
	case $1 in
	--) shift; break ;;
	-*) shift ;;
	*) break ;;
	esac
done
printf '%s\n' "$1" >> hosts.txt
shift
exec sh -c "$*" < /dev/null
`
	file := filepath.Join(dir, "ssh")
	if err := os.WriteFile(file, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestRemoteCopyRunsValues runs OpenSSH scp and rsync with an ssh that
// acts as sshd does, to show that a file name in a local operand picks
// the host and that one in a remote path runs on the remote host.
func TestRemoteCopyRunsValues(t *testing.T) {
	for _, program := range []string{"scp", "rsync"} {
		if _, err := exec.LookPath(program); err != nil {
			t.Skipf("%s is not installed", program)
		}
	}
	cases := []struct {
		command, value string
		hosts          string
		pwned          bool
	}{
		// rsync finds ssh in PATH, scp only through -S.
		{`rsync {name} ./dest/`, "evil:x", "evil\n", false},
		{`scp -S ./ssh {name} ./dest/`, "evil:x", "evil\n", false},
		{`scp -S ./ssh ./{name} good:/srv/`, "evil:x", "good\n", false},
		{`scp -O -S ./ssh good:{name} ./dest/`, "$(touch PWNED)", "good\n", true},
		{`rsync --old-args good:{name} ./dest/`, "$(touch PWNED)", "good\n", true},
	}
	for _, c := range cases {
		dir := t.TempDir()
		fakeSSH(t, dir)
		if err := os.Mkdir(filepath.Join(dir, "dest"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "evil:x"), []byte("G28\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		runProgram(t, dir, []string{"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")}, renderArgv(t, c.command, c.value)...)
		hosts, _ := os.ReadFile(filepath.Join(dir, "hosts.txt"))
		if string(hosts) != c.hosts {
			t.Errorf("%s with %q: ssh hosts %q, want %q", c.command, c.value, hosts, c.hosts)
		}
		if got := exists(filepath.Join(dir, "PWNED")); got != c.pwned {
			t.Errorf("%s with %q: the value ran a command on the remote host: %v, want %v", c.command, c.value, got, c.pwned)
		}
	}
}
