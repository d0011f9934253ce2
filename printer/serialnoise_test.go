package printer_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
)

// logCapture is an io.Writer for a slog text handler whose output the
// test reads while the printer runs.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *logCapture) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(b)
}

// lines returns the captured log lines that contain every part.
func (c *logCapture) lines(parts ...string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range strings.Split(c.buf.String(), "\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(l, p) }) {
			out = append(out, l)
		}
	}
	return out
}

// teeHandler sends each record to two handlers.
type teeHandler struct{ a, b slog.Handler }

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.a.Enabled(ctx, l) || h.b.Enabled(ctx, l)
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.a.Enabled(ctx, r.Level) {
		_ = h.a.Handle(ctx, r.Clone())
	}
	if h.b.Enabled(ctx, r.Level) {
		return h.b.Handle(ctx, r)
	}
	return nil
}

func (h teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return teeHandler{h.a.WithAttrs(attrs), h.b.WithAttrs(attrs)}
}

func (h teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{h.a.WithGroup(name), h.b.WithGroup(name)}
}

// noiseCounters are the printer metrics that count corrupt serial input.
type noiseCounters struct {
	garbage, overlong, timeouts, strayOKs atomic.Int64
}

func (c *noiseCounters) metrics() printer.Metrics {
	return printer.Metrics{
		Garbage:  func() { c.garbage.Add(1) },
		Overlong: func() { c.overlong.Add(1) },
		Timeout:  func() { c.timeouts.Add(1) },
		StrayOK:  func() { c.strayOKs.Add(1) },
	}
}

// writeJob writes lines as job.gcode into a new files directory.
func writeJob(t *testing.T, lines []string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "job.gcode"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runNoisyJob prints moves(12) on a Marlin that sends the lines answer
// in place of the plain ok of the move `G1 X6 Y6`, and returns once the
// print is done. A print that fails or stalls fails the test.
func runNoisyJob(t *testing.T, cfg printer.Config, answer []string) (*scriptedFirmware, *recorder, *noiseCounters, *logCapture) {
	t.Helper()
	return runNoisyJobAnswers(t, cfg, map[string][]string{"G1 X6 Y6": answer})
}

// runNoisyJobAnswers is runNoisyJob where the firmware sends, once, the
// lines of answers[move] in place of the plain ok of each move named in
// answers. Empty lines send nothing.
func runNoisyJobAnswers(t *testing.T, cfg printer.Config, answers map[string][]string) (*scriptedFirmware, *recorder, *noiseCounters, *logCapture) {
	t.Helper()
	var mu sync.Mutex
	fw := newScriptedFirmware(t, marlinGreeting, scriptFuncs{
		respond: func(fw *scriptedFirmware, n int, cmd string) []string {
			if strings.HasPrefix(cmd, "M115") {
				return m115Lines()
			}
			mu.Lock()
			defer mu.Unlock()
			out, ok := answers[cmd]
			if !ok {
				return nil
			}
			delete(answers, cmd)
			if out == nil {
				out = []string{}
			}
			return out
		},
	})

	job := moves(12)
	cfg.FilesDir = writeJob(t, job)
	counters := &noiseCounters{}
	logs := &logCapture{}
	p, rec := startScriptedWith(t, fw, cfg, counters.metrics(), logs)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Job(ctx, bridge.ActionStart, "job.gcode", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "PrintDone or PrintFailed", 15*time.Second, func() bool {
		return rec.count(bridge.EventPrintDone)+rec.count(bridge.EventPrintFailed) > 0
	})

	for _, name := range []string{bridge.EventPrintFailed, bridge.EventPrinterReset, bridge.EventError} {
		if n := rec.count(name); n != 0 {
			t.Errorf("%s fired %d times; events %v", name, n, rec.names())
		}
	}

	// The job starts after the last M110. The edge's own commands, such
	// as the M105 poll and M21 after connect, may come between its lines
	// and after its M400, so only the job's lines are compared.
	cmds := fw.commands()
	i := len(cmds) - 1
	for i >= 0 && cmds[i] != "M110 N0" {
		i--
	}
	if i < 0 {
		t.Fatalf("job's M110 never accepted: %q", cmds)
	}

	want := append(slices.Clone(job), "M400")
	inJob := map[string]bool{}
	for _, line := range want {
		inJob[line] = true
	}
	var got []string
	for _, cmd := range cmds[i+1:] {
		if inJob[cmd] {
			got = append(got, cmd)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("firmware accepted %q after the job's M110, want %q", got, want)
	}

	return fw, rec, counters, logs
}

func TestInvalidResendNumberIgnored(t *testing.T) {
	// A request for line 1 whose next byte line noise changed: read as
	// line 1 in the middle of the job, it was taken for a firmware reset
	// and failed the print.
	damaged := "Resend: 1\x8b49"
	for _, line := range []string{"Resend: -5", "Resend: abc", "Resend:", "rs -1", damaged} {
		t.Run(line, func(t *testing.T) {
			_, _, counters, logs := runNoisyJob(t, printer.Config{Flow: printer.FlowPingPong}, []string{line, "ok"})
			if got := counters.garbage.Load(); got != 1 {
				t.Errorf("garbage lines counted = %d, want 1", got)
			}
			named := line
			if line == damaged {
				// The log shows the byte as the rune it decodes to.
				named = "Resend: 1"
			}
			if got := logs.lines("level=WARN", "resend request without a valid line number", named); len(got) != 1 {
				t.Errorf("%d warnings naming the line %q, want 1", len(got), named)
			}
			if got := logs.lines("it has reset"); len(got) != 0 {
				t.Errorf("logged a firmware reset: %q", got)
			}
		})
	}
}

// TestDamagedResendAfterChecksumError sends the checksum error of a
// line, then its resend request with a byte that line noise changed
// right after the first digit, then the ok. The request is ignored, and
// the print goes on without a reset.
func TestDamagedResendAfterChecksumError(t *testing.T) {
	answer := []string{"Error:checksum mismatch, Last Line: 5", "Resend: 1\x8b6", "ok"}
	_, rec, _, logs := runNoisyJob(t, printer.Config{Flow: printer.FlowPingPong}, answer)
	if n := rec.count(bridge.EventPrintDone); n != 1 {
		t.Errorf("PrintDone fired %d times, want 1; events %v", n, rec.names())
	}
	if got := logs.lines("it has reset"); len(got) != 0 {
		t.Errorf("logged a firmware reset: %q", got)
	}
}

// TestResendCutByNoiseFollowsErrorLine sends, after the error line that
// names line 5 as the last one the firmware took, a request for line 6
// that line noise changed: into "Resend: 1" and "6", and into
// "Resend: 62ok". Read as requests for lines 1 and 62, they failed the
// print. The error line shows which line the firmware wants.
func TestResendCutByNoiseFollowsErrorLine(t *testing.T) {
	for _, flow := range []string{printer.FlowPingPong, printer.FlowWindow} {
		t.Run(flow, func(t *testing.T) {
			for _, answer := range [][]string{
				{"Error:checksum mismatch, Last Line: 5", "Resend: 1", "6", "ok"},
				// The line feed between the request and its ok became a 2.
				{"Error:checksum mismatch, Last Line: 5", "Resend: 62ok"},
			} {
				_, rec, _, logs := runNoisyJob(t, printer.Config{Flow: flow}, answer)
				if n := rec.count(bridge.EventPrintDone); n != 1 {
					t.Errorf("%q: PrintDone fired %d times, want 1; events %v", answer, n, rec.names())
				}
				if got := logs.lines("level=WARN", "contradicts the firmware's error line", "line_number=6"); len(got) != 1 {
					t.Errorf("%q: %d warnings that line 6 is resent instead, want 1", answer, len(got))
				}
			}
		})
	}
}

// TestJoinedOKsCounted acknowledges two lines with two oks joined by a
// line feed that line noise changed, and a line with an ok that lost its
// o. Counted as one ok, or as none, they shifted every later reply with
// windowed sending, and the print's last ok came 300 s late.
func TestJoinedOKsCounted(t *testing.T) {
	for _, answer := range [][]string{{"ok-ok"}, {"ok\x10ok"}, {"k"}} {
		for _, flow := range []string{printer.FlowPingPong, printer.FlowWindow} {
			t.Run(flow+"/"+answer[0], func(t *testing.T) {
				answers := map[string][]string{"G1 X6 Y6": answer}
				if answer[0] != "k" {
					// The first ok is the move's own, and the second is
					// that of the next move, which so sends no other.
					answers["G1 X7 Y7"] = nil
				}
				_, _, counters, logs := runNoisyJobAnswers(t, printer.Config{Flow: flow}, answers)
				if got := counters.timeouts.Load(); got != 0 {
					t.Errorf("%d communication timeouts, want 0", got)
				}
				if got := logs.lines("level=WARN", "line taken for an ok that line noise damaged"); len(got) != 1 {
					t.Errorf("%d warnings about the damaged ok, want 1", len(got))
				}
			})
		}
	}
}

// TestDamagedOKCounted acknowledges a line with an ok that line noise
// changed a letter of. Taken for output, the ok was lost: ping-pong
// waited for the 30 s communication timeout, and the window shifted
// every later reply to the command before it.
func TestDamagedOKCounted(t *testing.T) {
	for _, answer := range []string{"8k", "o\x02", "0k T:21.0 /0.0"} {
		for _, flow := range []string{printer.FlowPingPong, printer.FlowWindow} {
			t.Run(flow+"/"+answer, func(t *testing.T) {
				_, _, counters, logs := runNoisyJob(t, printer.Config{Flow: flow}, []string{answer})
				if got := counters.timeouts.Load(); got != 0 {
					t.Errorf("%d communication timeouts, want 0", got)
				}
				if got := counters.garbage.Load(); got != 1 {
					t.Errorf("garbage lines counted = %d, want 1", got)
				}
				if got := logs.lines("level=WARN", "line taken for an ok that line noise damaged"); len(got) != 1 {
					t.Errorf("%d warnings about the damaged ok, want 1", len(got))
				}
			})
		}
	}
}

func TestOverlongLineKeepsGluedOK(t *testing.T) {
	// 200 000 bytes without a line feed, then the move's ok glued on. The
	// communication timeout stays at 30 s, longer than the wait for
	// PrintDone, so the print only finishes if the ok is found.
	noise := strings.Repeat("A", 200000)
	_, _, counters, logs := runNoisyJob(t, printer.Config{Flow: printer.FlowPingPong}, []string{noise + "ok"})
	if got := counters.overlong.Load(); got != 1 {
		t.Errorf("overlong lines counted = %d, want 1", got)
	}
	if got := counters.timeouts.Load(); got != 0 {
		t.Errorf("%d communication timeouts, want 0", got)
	}
	if got := logs.lines("level=WARN", "longer than the maximum", "length=200002"); len(got) != 1 {
		t.Errorf("%d warnings naming the length 200002, want 1", len(got))
	}
}

func TestStrayOKsCounted(t *testing.T) {
	// With one line in flight, the move's first ok acknowledges it and the
	// two after it acknowledge nothing.
	_, _, counters, _ := runNoisyJob(t, printer.Config{Flow: printer.FlowPingPong}, []string{"ok", "ok", "ok"})
	if got := counters.strayOKs.Load(); got != 2 {
		t.Errorf("stray oks counted = %d, want 2", got)
	}
}

func TestOKWithUnsentLineNumber(t *testing.T) {
	// Line numbers start at 1 after the job's M110, so `G1 X6 Y6` is N6.
	_, _, counters, logs := runNoisyJob(t, printer.Config{}, []string{"ok N56 P15 B3"})
	if got := counters.garbage.Load(); got != 1 {
		t.Errorf("garbage lines counted = %d, want 1", got)
	}
	if got := logs.lines("level=WARN", "never sent", "ok_line_number=56", "last_sent_line_number="); len(got) != 1 {
		t.Errorf("%d warnings naming line 56 and the last line sent, want 1", len(got))
	}
}

func TestTimeoutMessageMatchesMetric(t *testing.T) {
	fw := newHangingFirmware(t)
	counters := &noiseCounters{}
	p, rec := startScriptedWith(t, fw, printer.Config{Flow: printer.FlowPingPong, CommTimeout: 200 * time.Millisecond, MaxTimeouts: 2},
		counters.metrics(), nil)
	_ = p.SendGcode(context.Background(), moves(3), "test", nil)
	waitFor(t, "Error", 10*time.Second, func() bool { return rec.count(bridge.EventError) == 1 })
	ev, _ := rec.last(bridge.EventError)
	msg, _ := ev.payload.Get("error")
	want := fmt.Sprintf("for %d consecutive timeouts", counters.timeouts.Load())
	if !strings.Contains(fmt.Sprint(msg), want) {
		t.Errorf("Error message %q does not contain %q, the timeouts counted", msg, want)
	}
	if got := counters.timeouts.Load(); got != 3 {
		t.Errorf("timeouts counted = %d, want 3 (MaxTimeouts 2, then the one that gives up)", got)
	}
}

// TestDamagedResentLineSentAgain rejects `G1 X6 Y6` for its checksum and
// then its resent copy for its line number, as when noise hits the
// number of the copy. The firmware requests the line a second time while
// the copy is in flight, which an echo does too. The edge then waits for
// the copy's ok for 5 s, not for the 30 s communication timeout, which
// would outlast the wait for PrintDone.
func TestDamagedResentLineSentAgain(t *testing.T) {
	for _, flow := range []string{printer.FlowAuto, printer.FlowPingPong} {
		t.Run(flow, func(t *testing.T) {
			var rejections atomic.Int32
			fw := newScriptedFirmware(t, marlinGreeting, scriptFuncs{
				respond: respondM115,
				reject: func(fw *scriptedFirmware, n int, cmd string) []string {
					if cmd != "G1 X6 Y6" {
						return nil
					}
					switch rejections.Add(1) {
					case 1:
						return []string{fmt.Sprintf("Error:checksum mismatch, Last Line: %d", n-1), fmt.Sprintf("Resend: %d", n), "ok"}
					case 2:
						return []string{fmt.Sprintf("Error:Line Number is not Last Line Number+1, Last Line: %d", n-1), fmt.Sprintf("Resend: %d", n), "ok"}
					}
					return nil
				},
			})
			job := moves(12)
			counters := &noiseCounters{}
			logs := &logCapture{}
			p, rec := startScriptedWith(t, fw, printer.Config{Flow: flow, FilesDir: writeJob(t, job)}, counters.metrics(), logs)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.Job(ctx, bridge.ActionStart, "job.gcode", nil); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "PrintDone", 20*time.Second, func() bool { return rec.count(bridge.EventPrintDone) > 0 })

			if got := rejections.Load(); got != 3 {
				t.Errorf("G1 X6 Y6 reached the firmware's checks %d times, want 3 (two rejected, one accepted)", got)
			}
			if got := counters.timeouts.Load(); got != 0 {
				t.Errorf("%d communication timeouts, want 0", got)
			}
			if got := logs.lines("level=WARN", "after the printer requested it again", "line_number="); len(got) != 1 {
				t.Errorf("%d warnings about the resent line sent again, want 1", len(got))
			}
			var accepted []string
			for _, cmd := range fw.commands() {
				if slices.Contains(job, cmd) {
					accepted = append(accepted, cmd)
				}
			}
			if !slices.Equal(accepted, job) {
				t.Errorf("firmware accepted %q, want the job %q once each, in order", accepted, job)
			}
		})
	}
}

// TestLostOKAfterBusyTimesOutSooner homes on a firmware that sends busy
// lines while G28 runs, as Marlin's host keepalive does, and then loses
// the ok. Once the busy lines stop, the ok is overdue after the
// communication timeout (1 s here), not the ten times longer limit of a
// long-running command, which gives no sign that it runs.
func TestLostOKAfterBusyTimesOutSooner(t *testing.T) {
	var homed atomic.Bool
	fw := newScriptedFirmware(t, marlinGreeting, scriptFuncs{
		respond: func(fw *scriptedFirmware, n int, cmd string) []string {
			if cmd != "G28" || homed.Swap(true) {
				return respondM115(fw, n, cmd)
			}
			go func() {
				for range 3 {
					time.Sleep(300 * time.Millisecond)
					fw.send("echo:busy: processing")
				}
			}()
			return []string{} // the ok is lost
		},
	})
	counters := &noiseCounters{}
	logs := &logCapture{}
	p, _ := startScriptedWith(t, fw, printer.Config{CommTimeout: time.Second}, counters.metrics(), logs)
	if err := sendAll(t, p, []string{"G28"}, 8*time.Second); err != nil {
		t.Fatalf("G28: %v", err)
	}
	if got := counters.timeouts.Load(); got != 1 {
		t.Errorf("%d communication timeouts, want 1", got)
	}
	if got := fw.commands(); slices.Index(got, "G28") < 0 {
		t.Errorf("firmware accepted %q, want G28 among them", got)
	}
}
