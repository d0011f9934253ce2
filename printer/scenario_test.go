package printer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
)

var marlinGreeting = []string{"start", "echo:Marlin 2.0.9.3", "echo:SD card ok"}

func m115Lines() []string {
	return []string{"FIRMWARE_NAME:Marlin 2.0.9.3 (Mar 1 2022) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:Test EXTRUDER_COUNT:1",
		"Cap:AUTOREPORT_TEMP:0", "ok"}
}

// startScripted connects a printer to a scripted firmware.
func startScripted(t *testing.T, fw *scriptedFirmware, cfg printer.Config) (*printer.Printer, *recorder) {
	t.Helper()
	return startScriptedWith(t, fw, cfg, printer.Metrics{}, nil)
}

// startScriptedWith connects a printer to a scripted firmware with the
// given metrics, logging to logs as well when it is not nil.
func startScriptedWith(t *testing.T, fw *scriptedFirmware, cfg printer.Config, metrics printer.Metrics, logs *logCapture) (*printer.Printer, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg.Port = fw.path
	cfg.AutoConnect = true
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Hour
	}
	cfg.ReconnectMin, cfg.ReconnectMax = time.Hour, time.Hour
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("PRINTBRIDGE_TEST_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if logs != nil {
		log = slog.New(teeHandler{log.Handler(), slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})})
	}
	p := printer.New(cfg, log, rec.emit, metrics)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, "Connected", 10*time.Second, func() bool { return rec.count(bridge.EventConnected) == 1 })
	return p, rec
}

// sendAll queues lines and waits for the last one's ok.
func sendAll(t *testing.T, p *printer.Printer, lines []string, timeout time.Duration) error {
	t.Helper()
	res := make(chan error, 1)
	if err := p.SendGcode(context.Background(), lines, "test", func(_ []string, err error) { res <- err }); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-time.After(timeout):
		t.Fatalf("lines not acknowledged within %s", timeout)
	}
	return nil
}

func moves(n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("G1 X%d Y%d", i, i))
	}
	return out
}

func respondM115(fw *scriptedFirmware, n int, cmd string) []string {
	if strings.HasPrefix(cmd, "M115") {
		return m115Lines()
	}
	return nil
}

// onlyMoves returns the G1 commands the firmware accepted.
func onlyMoves(cmds []string) []string {
	var out []string
	for _, c := range cmds {
		if strings.HasPrefix(c, "G1 ") {
			out = append(out, c)
		}
	}
	return out
}

func TestLineDroppedWithoutResend(t *testing.T) {
	// A line that reached the firmware without its N gets
	// "No Line Number with checksum" and nothing else: no Resend, no ok.
	var once sync.Once
	fw := newScriptedFirmware(t, marlinGreeting, scriptFuncs{
		respond: respondM115,
		reject: func(fw *scriptedFirmware, n int, cmd string) []string {
			var out []string
			if cmd == "G1 X5 Y5" {
				once.Do(func() { out = []string{fmt.Sprintf("Error:No Line Number with checksum, Last Line: %d", fw.last)} })
			}
			return out
		},
	})
	p, rec := startScripted(t, fw, printer.Config{Flow: printer.FlowPingPong, CommTimeout: time.Hour})
	if err := sendAll(t, p, moves(10), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := onlyMoves(fw.commands()); !slices.Equal(got, moves(10)) {
		t.Fatalf("firmware executed %q, want %q", got, moves(10))
	}
	if rec.count(bridge.EventError) != 0 {
		t.Errorf("Error events: %v", rec.names())
	}
}

func TestFirmwareRewindResendsFromHistory(t *testing.T) {
	// Prusa's filament sensor rewinds: after accepting a line the
	// firmware asks again for a line 8 back, which the host must take
	// from its history.
	var once sync.Once
	fw := newScriptedFirmware(t, marlinGreeting, scriptFuncs{
		respond: func(fw *scriptedFirmware, n int, cmd string) []string {
			if strings.HasPrefix(cmd, "M115") {
				return m115Lines()
			}
			var out []string
			if cmd == "G1 X20 Y20" {
				once.Do(func() {
					fw.last = n - 8
					out = []string{"ok", fmt.Sprintf("Resend: %d", n-7), "ok"}
				})
			}
			return out
		},
	})
	p, rec := startScripted(t, fw, printer.Config{Flow: printer.FlowPingPong, CommTimeout: time.Hour})
	// The capabilities start with one M105 poll, which goes ahead of
	// queued lines. Among the moves it would take one of the line numbers
	// that the rewind counts back over.
	waitFor(t, "the first M105 poll", 10*time.Second, func() bool { return slices.Contains(fw.commands(), "M105") })
	if err := sendAll(t, p, moves(30), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	got := onlyMoves(fw.commands())
	want := append(append(moves(20), moves(20)[12:]...), moves(30)[20:]...)
	if !slices.Equal(got, want) {
		t.Fatalf("firmware executed %d moves %q, want %d %q", len(got), got, len(want), want)
	}
	if rec.count(bridge.EventError) != 0 {
		t.Errorf("Error events: %v", rec.names())
	}
}

func TestBusyKeepsLongCommandAlive(t *testing.T) {
	// A firmware paused for the user holds its ok and sends busy lines;
	// the host must neither time out nor send the line again.
	fw := newScriptedFirmware(t, marlinGreeting, scriptFuncs{
		respond: func(fw *scriptedFirmware, n int, cmd string) []string {
			if strings.HasPrefix(cmd, "M115") {
				return m115Lines()
			}
			if cmd == "G1 X3 Y3" {
				go func() {
					for range 10 {
						time.Sleep(100 * time.Millisecond)
						fw.send("echo:busy: paused for user")
					}
					fw.send("ok")
				}()
				return []string{}
			}
			return nil
		},
	})
	p, rec := startScripted(t, fw, printer.Config{Flow: printer.FlowPingPong, CommTimeout: 300 * time.Millisecond})
	if err := sendAll(t, p, moves(5), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := onlyMoves(fw.commands()); !slices.Equal(got, moves(5)) {
		t.Fatalf("firmware executed %q, want each move once", got)
	}
	if rec.count(bridge.EventError) != 0 {
		t.Errorf("Error events: %v", rec.names())
	}
}

// newHangingFirmware returns a Marlin that stops responding to every
// command once it receives `G1 X2`, the second line of moves.
func newHangingFirmware(t *testing.T) *scriptedFirmware {
	t.Helper()
	return newScriptedFirmware(t, marlinGreeting, scriptFuncs{
		respond: func(fw *scriptedFirmware, n int, cmd string) []string {
			if strings.HasPrefix(cmd, "M115") {
				return m115Lines()
			}
			if strings.HasPrefix(cmd, "G1 X2") {
				// The firmware hangs: no answer to anything from now on.
				fw.silent = true
				return []string{}
			}
			return nil
		},
	})
}

func TestSilentFirmwareTimesOut(t *testing.T) {
	fw := newHangingFirmware(t)
	p, rec := startScripted(t, fw, printer.Config{Flow: printer.FlowPingPong, CommTimeout: 200 * time.Millisecond, MaxTimeouts: 2})
	_ = p.SendGcode(context.Background(), moves(3), "test", nil)
	waitFor(t, "Error", 10*time.Second, func() bool { return rec.count(bridge.EventError) == 1 })
	ev, _ := rec.last(bridge.EventError)
	if reason, _ := ev.payload.Get("reason"); reason != "timeout" {
		t.Errorf("Error reason = %v, want timeout", reason)
	}
	waitFor(t, "Disconnected", 5*time.Second, func() bool { return rec.count(bridge.EventDisconnected) == 1 })
}

func TestResetWithNULPrefix(t *testing.T) {
	// A Prusa MK3S on a GPIO UART announced its reset as NUL + start.
	var once sync.Once
	fw := newScriptedFirmware(t, marlinGreeting, scriptFuncs{
		respond: func(fw *scriptedFirmware, n int, cmd string) []string {
			if strings.HasPrefix(cmd, "M115") {
				return m115Lines()
			}
			var out []string
			if cmd == "G1 X4 Y4" {
				once.Do(func() {
					fw.last = 0
					out = []string{"\x00start", "echo:Marlin 2.0.9.3"}
				})
			}
			return out
		},
	})
	p, rec := startScripted(t, fw, printer.Config{Flow: printer.FlowPingPong})
	_ = p.SendGcode(context.Background(), moves(6), "test", nil)
	waitFor(t, "PrinterReset", 10*time.Second, func() bool { return rec.count(bridge.EventPrinterReset) == 1 })
	waitFor(t, "second Connected", 10*time.Second, func() bool { return rec.count(bridge.EventConnected) == 2 })
	if err := sendAll(t, p, []string{"G1 X9 Y9"}, 10*time.Second); err != nil {
		t.Fatalf("after the reset the printer does not take commands: %v", err)
	}
}

func TestResendLoopFails(t *testing.T) {
	// A line the firmware rejects every time (content it cannot parse)
	// must end in a clear resend_loop error, not an endless loop.
	fw := newScriptedFirmware(t, marlinGreeting, scriptFuncs{
		respond: respondM115,
		reject: func(fw *scriptedFirmware, n int, cmd string) []string {
			if cmd == "G1 X2 Y2" {
				return []string{fmt.Sprintf("Error:checksum mismatch, Last Line: %d", fw.last), fmt.Sprintf("Resend: %d", n), "ok"}
			}
			return nil
		},
	})
	p, rec := startScripted(t, fw, printer.Config{Flow: printer.FlowPingPong})
	_ = p.SendGcode(context.Background(), moves(3), "test", nil)
	waitFor(t, "Error", 10*time.Second, func() bool { return rec.count(bridge.EventError) == 1 })
	ev, _ := rec.last(bridge.EventError)
	if reason, _ := ev.payload.Get("reason"); reason != "resend_loop" {
		t.Errorf("Error reason = %v, want resend_loop (%v)", reason, ev.payload)
	}
	// A firmware with a short MAX_CMD_SIZE rejects long lines this way,
	// so the error names the line and the flag to lower.
	msg, _ := ev.payload.Get("error")
	for _, want := range []string{`"G1 X2 Y2"`, "bytes on the wire", "MAX_CMD_SIZE", "--max-line-length"} {
		if text, _ := msg.(string); !strings.Contains(text, want) {
			t.Errorf("Error message %q does not contain %q", msg, want)
		}
	}
}

func TestTimeoutRetriesOneAtATime(t *testing.T) {
	// The oks of the last four moves are lost, so the firmware already
	// has the lines that the communication timeout sends again and
	// rejects each copy. Marlin discards its RX buffer at each rejection:
	// a copy pipelined behind the first one would be cut, and the rest of
	// it would run as an unnumbered command. The first rejection shows
	// that the firmware has every line, so no other copy may follow it.
	all := moves(30)
	lostOK := map[string]bool{}
	for _, m := range all[len(all)-4:] {
		lostOK[m] = true
	}
	var copies []string // guarded by fw.mu
	fw := newScriptedFirmware(t, marlinGreeting, scriptFuncs{
		respond: func(fw *scriptedFirmware, n int, cmd string) []string {
			if lostOK[cmd] {
				delete(lostOK, cmd)
				return []string{}
			}
			return respondM115(fw, n, cmd)
		},
		onBadLine: func(fw *scriptedFirmware, raw string, expected int) []string {
			if m := numberedLine.FindStringSubmatch(raw); m != nil {
				if n, _ := strconv.Atoi(m[1]); n < expected {
					copies = append(copies, raw)
				}
			}
			return []string{
				fmt.Sprintf("Error:Line Number is not Last Line Number+1, Last Line: %d", expected-1),
				fmt.Sprintf("Resend: %d", expected),
				"ok",
			}
		},
	})
	p, rec := startScripted(t, fw, printer.Config{Flow: printer.FlowWindow, CommTimeout: 200 * time.Millisecond})
	if err := sendAll(t, p, all, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The firmware reads in order, so once this line's ok is back it has
	// replied to every copy written before it.
	if err := sendAll(t, p, []string{"M400"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	if got := onlyMoves(fw.commands()); !slices.Equal(got, all) {
		t.Errorf("firmware executed %q, want %q", got, all)
	}
	fw.mu.Lock()
	received := slices.Clone(copies)
	fw.mu.Unlock()
	if len(received) != 1 {
		t.Errorf("firmware received %d copies of lines it already had, want 1: %q", len(received), received)
	}
	if n := rec.count(bridge.EventError); n != 0 {
		t.Errorf("%d Error events: %v", n, rec.names())
	}
}
