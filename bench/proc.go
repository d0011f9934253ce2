package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// stopTimeout is how long a process may take to exit after SIGTERM
	// before it is killed.
	stopTimeout = 10 * time.Second
	// readyTimeout bounds the wait for a started process to be usable.
	readyTimeout = 30 * time.Second
	pollInterval = 10 * time.Millisecond
)

// goTool is the go command: go test and make put the toolchain's bin
// directory on PATH for the processes they start.
const goTool = "go"

// BuildBinary builds ./cmd/printbridge of the module at repoRoot into
// dir, with the build tags given, and returns the binary's path. It
// builds as the Dockerfile does: static (CGO_ENABLED=0) and without
// symbol table and DWARF, so the memory measured is that of the deployed
// binary. A cgo build also maps libc and the dynamic loader, about
// 1.5 MiB more RSS.
func BuildBinary(ctx context.Context, repoRoot, dir string, tags ...string) (string, error) {
	name := "printbridge"
	args := []string{"build", "-trimpath", "-ldflags=-s -w"}
	if len(tags) > 0 {
		name += "-" + strings.Join(tags, "-")
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, goTool, append(args, "-o", out, "./cmd/printbridge")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = repoRoot
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build printbridge in %s: %w\n%s", repoRoot, err, msg)
	}
	return out, nil
}

// FindRepoRoot walks up from dir to the directory holding go.mod.
func FindRepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod in %s or its parents: run from inside the printbridge checkout", dir)
		}
	}
}

// process is a child process whose stdout and stderr go to one log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
	// maxRSS is the largest VmRSS read so far. It has no lock because only
	// the goroutine that measures the process reads its memory.
	maxRSS int64
}

// startProcess starts bin with args, its output appended to logPath.
func startProcess(name, logPath, bin string, args ...string) (*process, error) {
	return startProcessEnv(name, logPath, nil, bin, args...)
}

// startProcessEnv is startProcess with env added to the benchmark's
// own environment.
func startProcessEnv(name, logPath string, env []string, bin string, args ...string) (*process, error) {
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log file of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, kills it after stopTimeout,
// and waits for the process to exit. A process that had already exited
// returns its wait error.
func (p *process) stop() error {
	if p.exited() {
		return p.exitError()
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM and was killed\n%s", p.name, stopTimeout, p.logTail(20))
	}
}

func (p *process) exitError() error {
	if p.waitErr == nil {
		return nil
	}
	return fmt.Errorf("%s exited: %w\n%s", p.name, p.waitErr, p.logTail(20))
}

// waitForLog polls the log until it contains text, the process exits or
// the timeout passes.
func (p *process) waitForLog(ctx context.Context, text string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(p.logPath)
		if bytes.Contains(data, []byte(text)) {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before printing %q\n%s", p.name, text, p.logTail(20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not print %q within %s\n%s", p.name, text, timeout, p.logTail(20))
		}
		if err := sleepContext(ctx, pollInterval); err != nil {
			return err
		}
	}
}

func (p *process) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// peakRSS returns the process's peak resident set size in bytes: VmHWM,
// or the largest VmRSS that rss, rssKinds or this call read if that is
// higher. Linux updates the high-water mark behind VmHWM only when it is
// about to lower the RSS, and its note in task_mem (fs/proc/task_mmu.c)
// warns that such snapshots can be inconsistent. So a VmRSS read earlier
// can exceed a later VmHWM by some pages.
func (p *process) peakRSS() (int64, error) {
	st, err := p.readMemory()
	if err != nil {
		return 0, err
	}
	return max(st.hwm, p.maxRSS), nil
}

// rss returns the process's current resident set size (VmRSS) in bytes.
func (p *process) rss() (int64, error) {
	st, err := p.readMemory()
	return st.rss, err
}

// rssKinds returns the process's current resident memory by kind.
func (p *process) rssKinds() (RSSKinds, error) {
	st, err := p.readMemory()
	return RSSKinds{Anon: st.anon, File: st.file}, err
}

// readMemory reads the process's memory counters and keeps the largest
// VmRSS seen for peakRSS.
func (p *process) readMemory() (memoryStatus, error) {
	st, err := readMemoryStatus(p.pid())
	if err != nil {
		return st, err
	}
	p.maxRSS = max(p.maxRSS, st.rss)
	return st, nil
}

// RSSKinds splits a process's resident memory: Anon is its heap, stacks
// and other private memory (RssAnon), File the pages of its executable
// and other mapped files that it has touched (RssFile), which the kernel
// can drop and read again.
type RSSKinds struct {
	Anon, File int64
}

// memoryStatus is a process's memory counters from one read of
// /proc/<pid>/status, in bytes.
type memoryStatus struct {
	hwm, rss, anon, file int64 // VmHWM, VmRSS, RssAnon, RssFile
}

func readMemoryStatus(pid int) (memoryStatus, error) {
	var st memoryStatus
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	data, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("read memory counters of process %d: %w", pid, err)
	}
	fields := []struct {
		name  string
		value *int64
	}{{"VmHWM:", &st.hwm}, {"VmRSS:", &st.rss}, {"RssAnon:", &st.anon}, {"RssFile:", &st.file}}
	for _, f := range fields {
		if *f.value, err = statusKB(data, f.name); err != nil {
			return st, fmt.Errorf("%s: %w", path, err)
		}
	}
	return st, nil
}

// statusKB returns a kB field of a /proc/<pid>/status text, such as
// VmHWM:, in bytes.
func statusKB(status []byte, field string) (int64, error) {
	for line := range strings.Lines(string(status)) {
		value, ok := strings.CutPrefix(line, field)
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(value), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s %q: %w", field, strings.TrimSpace(value), err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no %s line: the process has exited or has no memory of its own", field)
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}

// mosquittoBinary is the path of the broker in Debian's mosquitto package.
const mosquittoBinary = "/usr/sbin/mosquitto"

// mosquitto is a mosquitto process on a free loopback port.
type mosquitto struct {
	proc *process
	url  string
}

// startMosquitto starts mosquitto in dir with anonymous access and no
// persistence, and returns once it accepts TCP connections. noDelay adds
// set_tcp_nodelay true; without it mosquitto 2.0 leaves Nagle's algorithm
// on for its client sockets, as its default config does.
func startMosquitto(ctx context.Context, dir string, noDelay bool) (*mosquitto, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = mosquittoBinary
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("mosquitto not found in PATH or at %s: install Debian's mosquitto package (make test-deps)", mosquittoBinary)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}

	// As root, mosquitto switches to the user "mosquitto" unless the
	// config names the current user.
	runAs := "root"
	if u, err := user.Current(); err == nil {
		runAs = u.Username
	}
	config := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nuser %s\nlog_type error\nlog_type warning\n", port, runAs)
	if noDelay {
		config += "set_tcp_nodelay true\n"
	}
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("write mosquitto config: %w", err)
	}
	proc, err := startProcess("mosquitto", filepath.Join(dir, "mosquitto.log"), bin, "-c", confPath)
	if err != nil {
		return nil, err
	}

	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(readyTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return &mosquitto{proc: proc, url: "tcp://" + addr}, nil
		}
		if proc.exited() || time.Now().After(deadline) {
			_ = proc.stop()
			return nil, fmt.Errorf("mosquitto did not accept connections on %s: %w\n%s", addr, err, proc.logTail(20))
		}
		if err := sleepContext(ctx, 20*time.Millisecond); err != nil {
			_ = proc.stop()
			return nil, err
		}
	}
}

func (m *mosquitto) stop() error { return m.proc.stop() }
