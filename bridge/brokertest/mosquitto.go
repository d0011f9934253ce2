package brokertest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	debianMosquitto = "/usr/sbin/mosquitto"
	logTailLines    = 40
	stopTimeout     = 5 * time.Second
)

var errExited = errors.New("process exited")

// Mosquitto is a mosquitto subprocess on a fixed loopback port, which a
// fault test can stop and start again.
type Mosquitto struct {
	tb    testing.TB
	bin   string
	port  int
	nagle bool
	// extraConfig is appended to the generated mosquitto.conf.
	extraConfig []string
	dir         string
	logPath     string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartMosquitto starts mosquitto on a free port and returns its URL,
// tcp://127.0.0.1:<port>. It stops when the test ends.
func StartMosquitto(tb testing.TB) (url string) {
	tb.Helper()
	return StartMosquittoProcess(tb, 0).URL()
}

// StartMosquittoProcess starts mosquitto on port, or on a free port when
// port is 0. It accepts anonymous clients, keeps nothing on disk, and logs
// to a file whose last lines the cleanup prints when the test failed.
func StartMosquittoProcess(tb testing.TB, port int) *Mosquitto {
	tb.Helper()
	return StartMosquittoWithOptions(tb, MosquittoOptions{Port: port})
}

// MosquittoOptions are the settings of StartMosquittoWithOptions.
type MosquittoOptions struct {
	// Port is the listener port, a free one when 0.
	Port int
	// Nagle leaves set_tcp_nodelay true out of the config, so mosquitto
	// keeps Nagle's algorithm on for its client sockets, as its default
	// config does.
	Nagle bool
	// Config holds extra mosquitto.conf lines, such as "max_packet_size 2048".
	Config []string
}

// StartMosquittoWithOptions is StartMosquittoProcess with the options of
// opts.
func StartMosquittoWithOptions(tb testing.TB, opts MosquittoOptions) *Mosquitto {
	tb.Helper()
	bin := findMosquitto(tb)
	port := opts.Port
	if port == 0 {
		port = FreePort(tb)
	}
	m := &Mosquitto{tb: tb, bin: bin, port: port, nagle: opts.Nagle, extraConfig: opts.Config, dir: tb.TempDir()}
	m.logPath = filepath.Join(m.dir, "mosquitto.log")
	m.writeConfig()
	tb.Cleanup(func() {
		m.Stop()
		if tb.Failed() {
			tb.Logf("last lines of %s:\n%s", m.logPath, m.LogTail(logTailLines))
		}
	})
	m.Start()
	return m
}

func findMosquitto(tb testing.TB) string {
	tb.Helper()
	if path, err := exec.LookPath("mosquitto"); err == nil {
		return path
	}
	if _, err := os.Stat(debianMosquitto); err == nil {
		return debianMosquitto
	}
	tb.Fatalf("mosquitto not found in PATH or at %s: install Debian's mosquitto package, which `make test` does", debianMosquitto)
	return ""
}

func (m *Mosquitto) writeConfig() {
	m.tb.Helper()
	// As root, mosquitto switches to the user "mosquitto", which cannot
	// write to the test's directory. Naming the current user keeps root,
	// and a mosquitto started by another user ignores the option.
	runAs := "root"
	if u, err := user.Current(); err == nil {
		runAs = u.Username
	}
	lines := []string{
		fmt.Sprintf("listener %d 127.0.0.1", m.port),
		"allow_anonymous true",
		"persistence false",
		"user " + runAs,
		"log_dest file " + m.logPath,
		"log_type all",
		"log_timestamp_format %H:%M:%S",
	}
	if !m.nagle {
		// Without it mosquitto leaves Nagle's algorithm on, and a small
		// packet such as a PUBACK waits for the peer's ACK, which a client
		// without TCP_QUICKACK delays.
		lines = append(lines, "set_tcp_nodelay true")
	}
	lines = append(lines, m.extraConfig...)
	config := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(m.ConfigPath(), []byte(config), 0o600); err != nil {
		m.tb.Fatalf("write mosquitto config: %v", err)
	}
}

// URL returns tcp://127.0.0.1:<port>.
func (m *Mosquitto) URL() string { return "tcp://" + m.Addr() }

// Addr returns 127.0.0.1:<port>.
func (m *Mosquitto) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.port) }

// Port returns the listener port.
func (m *Mosquitto) Port() int { return m.port }

// ConfigPath returns the path of the mosquitto.conf that the process reads.
func (m *Mosquitto) ConfigPath() string { return filepath.Join(m.dir, "mosquitto.conf") }

// Start starts mosquitto again on the same port after Stop, and returns
// once it accepts TCP connections. It calls tb.Fatal on failure, so call
// it from the test's goroutine only.
func (m *Mosquitto) Start() {
	m.tb.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		m.tb.Fatalf("mosquitto on port %d is already running", m.port)
	}
	cmd := exec.Command(m.bin, "-c", m.ConfigPath())
	out, err := os.OpenFile(filepath.Join(m.dir, "mosquitto.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		m.tb.Fatalf("open mosquitto output file: %v", err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		m.tb.Fatalf("start %s: %v", m.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(exited)
	}()
	m.cmd, m.exited = cmd, exited

	if err := waitForTCP(m.Addr(), exited); err != nil {
		m.tb.Fatalf("mosquitto did not accept connections on %s: %v\n%s", m.Addr(), err, m.LogTail(logTailLines))
	}
}

// Stop terminates mosquitto with SIGTERM, or SIGKILL after 5s, and waits
// for it to exit. Clients see their connections close. Calling Stop on a
// stopped broker does nothing.
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(stopTimeout):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd, m.exited = nil, nil
}

// LogTail returns the last n lines of mosquitto's log and output.
func (m *Mosquitto) LogTail(n int) string {
	var b strings.Builder
	for _, name := range []string{m.logPath, filepath.Join(m.dir, "mosquitto.out")} {
		data, err := os.ReadFile(name)
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "==> %s <==\n%s\n", filepath.Base(name), strings.Join(lines, "\n"))
	}
	return b.String()
}
