package virtual

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.bug.st/serial"
)

// waitTimeout bounds every wait for simulator output in the tests.
const waitTimeout = 20 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if os.Getenv("VIRTUAL_PRINTER_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startPrinter creates and runs a printer; cleanup stops and closes it.
func startPrinter(t testing.TB, cfg Config) *Printer {
	t.Helper()
	p, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return %v after cancel", waitTimeout)
		}
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// host is a test serial host on the pty slave, using the serial library
// of the edge.
type host struct {
	t     testing.TB
	port  serial.Port
	lines chan string

	mu  sync.Mutex // guards log
	log []string   // every line received, for failure messages

	done chan struct{}
}

func openHost(t testing.TB, path string) *host {
	t.Helper()
	port, err := serial.Open(path, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	if err := port.SetReadTimeout(50 * time.Millisecond); err != nil {
		t.Fatalf("set read timeout: %v", err)
	}
	h := &host{t: t, port: port, lines: make(chan string, 10000), done: make(chan struct{})}
	go h.readLoop()
	t.Cleanup(h.close)
	return h
}

func (h *host) close() {
	select {
	case <-h.done:
		return
	default:
	}
	h.port.Close()
	<-h.done
}

func (h *host) readLoop() {
	defer close(h.done)
	buf := make([]byte, 1024)
	var partial []byte
	for {
		n, err := h.port.Read(buf)
		if err != nil {
			return
		}
		partial = append(partial, buf[:n]...)
		for {
			i := strings.IndexByte(string(partial), '\n')
			if i < 0 {
				break
			}
			line := strings.TrimRight(string(partial[:i]), "\r")
			partial = partial[i+1:]
			h.mu.Lock()
			h.log = append(h.log, line)
			h.mu.Unlock()
			select {
			case h.lines <- line:
			default:
			}
		}
	}
}

func (h *host) send(line string) {
	h.t.Helper()
	if _, err := h.port.Write([]byte(line + "\n")); err != nil {
		h.t.Fatalf("write %q: %v", line, err)
	}
}

// numbered returns cmd as a numbered line with Marlin's checksum.
func numbered(n int, cmd string) string {
	prefix := fmt.Sprintf("N%d %s", n, cmd)
	return fmt.Sprintf("%s*%d", prefix, checksum([]byte(prefix)))
}

func (h *host) sendNumbered(n int, cmd string) {
	h.t.Helper()
	h.send(numbered(n, cmd))
}

func (h *host) recent() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	from := max(0, len(h.log)-30)
	return strings.Join(h.log[from:], "\n")
}

// next returns the next received line or fails after waitTimeout.
func (h *host) next() string {
	h.t.Helper()
	select {
	case line := <-h.lines:
		return line
	case <-time.After(waitTimeout):
		h.t.Fatalf("no line within %v; last lines received:\n%s", waitTimeout, h.recent())
		return ""
	}
}

// until collects lines up to and including the first one for which match
// is true.
func (h *host) until(desc string, match func(string) bool) []string {
	h.t.Helper()
	var got []string
	deadline := time.After(waitTimeout)
	for {
		select {
		case line := <-h.lines:
			got = append(got, line)
			if match(line) {
				return got
			}
		case <-deadline:
			h.t.Fatalf("no %s within %v; last lines received:\n%s", desc, waitTimeout, h.recent())
			return nil
		}
	}
}

func (h *host) untilLine(want string) []string {
	h.t.Helper()
	return h.until(fmt.Sprintf("line %q", want), func(l string) bool { return l == want })
}

func isOK(line string) bool { return line == "ok" || strings.HasPrefix(line, "ok ") }

// command sends an unnumbered command and returns its output up to and
// including its ok.
func (h *host) command(cmd string) []string {
	h.t.Helper()
	h.send(cmd)
	return h.until("ok for "+cmd, isOK)
}

// waitBanner reads the boot banner up to its last line.
func (h *host) waitBanner() []string {
	h.t.Helper()
	return h.untilLine("echo:SD card ok")
}

// connect opens a host on p and reads the banner.
func connect(t testing.TB, p *Printer) *host {
	t.Helper()
	h := openHost(t, p.Path())
	h.waitBanner()
	return h
}

// waitExecuted polls until p has executed at least n commands.
func waitExecuted(t testing.TB, p *Printer, n int) []string {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		got := p.Executed()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("executed %d commands within %v, want %d: %q", len(got), waitTimeout, n, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fastConfig() Config {
	cfg := DefaultConfig()
	cfg.Speed = 0
	return cfg
}
