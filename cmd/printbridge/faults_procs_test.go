package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// procStopTimeout bounds the wait for a process after SIGTERM before it
// gets SIGKILL.
const procStopTimeout = 15 * time.Second

// proc is one real process that a fault test kills and starts again with
// the same arguments. Its stdout and stderr are appended to one log file
// across restarts.
type proc struct {
	t       testing.TB
	name    string
	bin     string
	args    []string
	logPath string
	// ready, if set, is a line prefix on stdout that Start waits for.
	ready string
	// readyLog, if set, is text that Start waits for in the log this run
	// writes.
	readyLog string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr *error // set by the run's Wait before exited is closed
	starts  int
	kills   int
}

func newProc(t testing.TB, dir, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, bin: bin, args: args, logPath: filepath.Join(dir, name+".log")}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", p.logPath, p.Tail(60))
		}
	})
	return p
}

// Start starts the process and waits for its ready line, if it has one.
func (p *proc) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.t.Fatalf("%s is already running", p.name)
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatalf("open log of %s: %v", p.name, err)
	}
	fmt.Fprintf(logFile, "=== start %d of %s %s\n", p.starts+1, p.bin, strings.Join(p.args, " "))
	logStart := int64(len(p.Log()))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stderr = logFile
	cmd.Stdout = logFile
	var stdout *os.File
	if p.ready != "" {
		r, w, err := os.Pipe()
		if err != nil {
			p.t.Fatal(err)
		}
		cmd.Stdout, stdout = w, r
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}

	readyCh := make(chan struct{}, 1)
	if stdout != nil {
		cmd.Stdout.(*os.File).Close()
		go p.relayStdout(stdout, logFile, readyCh)
	}
	exited := make(chan struct{})
	exitErr := new(error)
	go func() {
		// Stop reads exitErr after exited is closed, without p.mu, which
		// it holds while waiting.
		*exitErr = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	p.cmd, p.exited, p.exitErr = cmd, exited, exitErr
	p.starts++
	if p.readyLog != "" {
		p.waitLogLocked(logStart, exited)
	}
	if p.ready == "" {
		return
	}
	select {
	case <-readyCh:
	case <-exited:
		p.t.Fatalf("%s exited before it was ready:\n%s", p.name, p.Tail(30))
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s printed no %q line within 30s:\n%s", p.name, p.ready, p.Tail(30))
	}
}

// relayStdout copies the process's stdout to its log and signals ready
// at the first line that starts with p.ready.
func (p *proc) relayStdout(stdout, logFile *os.File, ready chan<- struct{}) {
	defer stdout.Close()
	sc := bufio.NewScanner(stdout)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(logFile, line)
		if !sent && strings.HasPrefix(line, p.ready) {
			ready <- struct{}{}
			sent = true
		}
	}
}

// waitLogLocked waits until the log after offset from contains readyLog.
func (p *proc) waitLogLocked(from int64, exited <-chan struct{}) {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if log := p.Log(); int64(len(log)) > from && strings.Contains(log[from:], p.readyLog) {
			return
		}
		select {
		case <-exited:
			p.t.Fatalf("%s exited before logging %q:\n%s", p.name, p.readyLog, p.Tail(30))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not log %q within 60s:\n%s", p.name, p.readyLog, p.Tail(30))
		}
	}
}

// signal sends sig to the running process, such as SIGSTOP to freeze a
// broker.
func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		p.t.Fatalf("%s is not running", p.name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s to %s: %v", sig, p.name, err)
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *proc) Kill() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		p.t.Fatalf("%s is not running", p.name)
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd, p.exited = nil, nil
	p.kills++
}

// Stop sends SIGTERM, then SIGKILL after procStopTimeout, and returns the
// exit error. Stopping a stopped process does nothing.
func (p *proc) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(procStopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd, p.exited = nil, nil
	return *p.exitErr
}

// Running reports whether the process is started and has not exited.
func (p *proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Log returns the whole log of the process.
func (p *proc) Log() string {
	data, _ := os.ReadFile(p.logPath)
	return string(data)
}

// Tail returns the last n lines of the log.
func (p *proc) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
