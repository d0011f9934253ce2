package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	"go.bug.st/serial"
)

// Hosts of a streaming run.
const (
	HostPingPong  = "printbridge ping-pong"
	HostWindow    = "printbridge window"
	HostPrintcore = "printcore"
)

// StreamResult is one print of a file through the virtual printer.
type StreamResult struct {
	Host  string
	File  string
	Baud  int
	Speed float64
	// Lines is the number of job lines, WireBytes their size as numbered
	// lines with checksum and line feed.
	Lines, WireBytes int
	// Executed is the number of commands the simulator executed, the
	// host's own (handshake, M110, M400) included.
	Executed int
	// Elapsed runs from the first job line to the acknowledgement of the
	// last: PrintStarted to PrintDone for printbridge, startprint to the
	// end callback for printcore, first write to last ok for the flood.
	Elapsed time.Duration
	// Resends counts resend requests the host received.
	Resends int
}

// LinesPerSecond is the job line rate.
func (r StreamResult) LinesPerSecond() float64 { return float64(r.Lines) / r.Elapsed.Seconds() }

// CeilingShare is the share of the wire ceiling reached: the time the
// job's bytes need at baud/10 bytes per second over the measured time.
func (r StreamResult) CeilingShare() float64 {
	return wireSeconds(r.WireBytes, r.Baud) / r.Elapsed.Seconds()
}

// streamTimeout bounds one print: twenty times its wire time, at least a
// minute.
func streamTimeout(wire, baud int) time.Duration {
	return max(time.Minute, time.Duration(20*wireSeconds(wire, baud)*float64(time.Second)))
}

// StreamPrintbridge prints file with a printer.Printer in this process,
// the edge's serial side, through a virtual printer process started with
// vcfg. flow is printer.FlowPingPong or printer.FlowWindow.
func StreamPrintbridge(ctx context.Context, bin, workDir, file, flow string, vcfg VirtualConfig, log *slog.Logger) (StreamResult, error) {
	host := HostWindow
	if flow == printer.FlowPingPong {
		host = HostPingPong
	}
	res, cmds, err := newStreamResult(host, file, vcfg)
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp(workDir, "stream-")
	if err != nil {
		return res, err
	}
	vcfg.Record = true
	vp, err := startVirtualPrinter(ctx, bin, dir, vcfg)
	if err != nil {
		return res, err
	}
	defer vp.stop()

	rec := newEventRecorder()
	resends := 0
	p := printer.New(printer.Config{
		Port: vp.link, Baud: vcfg.Baud, FilesDir: filepath.Dir(file), AutoConnect: true,
		Flow: flow, RXBufferSize: vcfg.RXBufferSize,
	}, log.With("printer", "bench", "port", vp.link), rec.emit, printer.Metrics{Resend: func() { resends++ }})
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	stopPrinter := sync.OnceFunc(func() {
		stop()
		<-done
	})
	defer stopPrinter()

	if _, err := rec.wait(ctx, readyTimeout, bridge.EventConnected); err != nil {
		return res, fmt.Errorf("printbridge did not connect to the virtual printer: %w\n%s", err, vp.proc.logTail(20))
	}
	if err := awaitSetup(ctx, p); err != nil {
		return res, fmt.Errorf("printbridge connection setup: %w\n%s", err, vp.proc.logTail(20))
	}
	if err := p.Job(ctx, bridge.ActionStart, filepath.Base(file), nil); err != nil {
		return res, fmt.Errorf("start job %s: %w", file, err)
	}
	end, err := rec.wait(ctx, streamTimeout(res.WireBytes, max(vcfg.Baud, 115200)), bridge.EventPrintDone, bridge.EventPrintFailed, bridge.EventError)
	if err != nil {
		return res, fmt.Errorf("print of %s: %w", file, err)
	}
	if end != bridge.EventPrintDone {
		return res, fmt.Errorf("print of %s ended with %s\n%s", file, end, vp.proc.logTail(20))
	}
	started, _ := rec.firstTime(bridge.EventPrintStarted)
	finished, _ := rec.firstTime(bridge.EventPrintDone)
	res.Elapsed = finished.Sub(started)
	stopPrinter()
	// The Run goroutine has ended, so resends is no longer written.
	res.Resends = resends
	return finishStream(res, vp, len(cmds))
}

// setupSettle is how long the edge gets, once the capability report is
// in, for the lines it sends after it: M155, M154, the resend style probe
// and M21. At 250000 baud they took about 15 ms in a traced run.
const setupSettle = 300 * time.Millisecond

// awaitSetup waits until p has read the firmware's capabilities and sent
// its own setup lines, so a print started afterwards is timed alone. The
// edge's M115 report alone keeps the line busy for about 38 ms at 250000
// baud (40 lines, with the simulator's blocking writes), a share of the
// print that an edge connected long before the print never pays.
func awaitSetup(ctx context.Context, p *printer.Printer) error {
	deadline := time.Now().Add(readyTimeout)
	for len(p.Snapshot().Capabilities) == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("no capability report from the firmware within %s", readyTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(setupSettle):
	}
	return nil
}

func newStreamResult(host, file string, vcfg VirtualConfig) (StreamResult, []string, error) {
	cmds, err := jobCommands(file)
	if err != nil {
		return StreamResult{}, nil, err
	}
	res := StreamResult{Host: host, File: filepath.Base(file), Baud: vcfg.Baud, Speed: vcfg.Speed,
		Lines: len(cmds), WireBytes: wireBytes(cmds)}
	return res, cmds, nil
}

// finishStream stops the simulator and checks that it executed at least
// every job line, so a host that skipped lines cannot look fast.
func finishStream(res StreamResult, vp *virtualPrinter, jobLines int) (StreamResult, error) {
	if err := vp.stop(); err != nil {
		return res, err
	}
	n, err := vp.executedCount()
	if err != nil {
		return res, err
	}
	res.Executed = n
	if n < jobLines {
		return res, fmt.Errorf("%s: the virtual printer executed %d commands, fewer than the %d job lines of %s", res.Host, n, jobLines, res.File)
	}
	return res, nil
}

// python3 is Debian's interpreter, which has the printrun package; a
// python3 earlier on PATH (pyenv, a venv) usually does not.
const python3 = "/usr/bin/python3"

// printcoreDriver prints a file with printrun.printcore as
// /usr/bin/printcore does, minus its fixed two-second sleep after
// connecting and its one-second polling for the end, which would blur
// the time. It prints one JSON object with the seconds from startprint
// to the end callback.
//
// printcore's print thread calls the end callback and only then, in its
// finally block, creates and starts a new send thread. A disconnect()
// that runs in between joins a thread that was created but not started,
// and Python raises "cannot join thread before it is started" (seen with
// Debian's printrun 2.0.0~rc8 in printcore._stop_sender). So the driver
// waits for that finally block before it disconnects, and reports the
// RuntimeError if it still comes.
const printcoreDriver = `
import json, sys, threading, time
from printrun.printcore import printcore
from printrun import gcoder
port, path, baud, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
gcode = gcoder.LightGCode([line.strip() for line in open(path)])

def disconnect(p):
    if p.printer is not None:
        # Stops a print that is still running after a timeout, as
        # printcore's disconnect does. Then wait for the print thread's
        # finally block: print_thread gone and the new send thread alive.
        p.printing = False
        deadline = time.monotonic() + 30
        while p.print_thread is not None or p.send_thread is None or not p.send_thread.is_alive():
            if time.monotonic() > deadline:
                sys.exit("printcore: send thread not running 30 s after the print ended; printcore's print thread is stuck")
            time.sleep(0.01)
    try:
        p.disconnect()
    except RuntimeError as e:
        if "before it is started" not in str(e):
            raise
        sys.exit("printcore: disconnect failed because its send thread was not started yet: %s" % e)

p = printcore(port, baud)
deadline = time.monotonic() + 30
while not p.online:
    if time.monotonic() > deadline:
        disconnect(p)
        sys.exit("printcore: printer did not come online within 30 s")
    time.sleep(0.01)
done = threading.Event()
p.endcb = done.set
start = time.monotonic()
if not p.startprint(gcode):
    disconnect(p)
    sys.exit("printcore: startprint refused to start the print (printing %s, online %s)" % (p.printing, p.online))
finished = done.wait(timeout)
elapsed = time.monotonic() - start
disconnect(p)
if not finished:
    sys.exit("printcore: print did not end within %.0f s" % timeout)
print(json.dumps({"seconds": elapsed}))
`

// StreamPrintcore prints file with Debian's printcore library through a
// virtual printer process started with vcfg.
func StreamPrintcore(ctx context.Context, bin, workDir, file string, vcfg VirtualConfig) (StreamResult, error) {
	res, cmds, err := newStreamResult(HostPrintcore, file, vcfg)
	if err != nil {
		return res, err
	}
	if err := checkPrintrun(ctx); err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp(workDir, "printcore-")
	if err != nil {
		return res, err
	}
	vcfg.Record = true
	vp, err := startVirtualPrinter(ctx, bin, dir, vcfg)
	if err != nil {
		return res, err
	}
	defer vp.stop()

	baud := vcfg.Baud
	if baud == 0 {
		baud = 115200
	}
	timeout := streamTimeout(res.WireBytes, max(vcfg.Baud, 115200))
	cctx, cancel := context.WithTimeout(ctx, timeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, python3, "-c", printcoreDriver, vp.link, file, strconv.Itoa(baud),
		strconv.FormatFloat(timeout.Seconds(), 'f', 0, 64))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("printcore print of %s: %w\n%s", file, err, tail(stderr.String(), 20))
	}
	var out struct {
		Seconds float64 `json:"seconds"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(lastLine(stdout.Bytes())), &out); err != nil {
		return res, fmt.Errorf("printcore driver output %q: %w", stdout.String(), err)
	}
	res.Elapsed = time.Duration(out.Seconds * float64(time.Second))
	res.Resends = bytes.Count(stderr.Bytes(), []byte("Resend"))
	return finishStream(res, vp, len(cmds))
}

// checkPrintrun fails with an install hint when Debian's printrun
// package (apt-get install printcore) is missing.
func checkPrintrun(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, python3, "-c", "import printrun.printcore, printrun.gcoder").CombinedOutput()
	if err != nil {
		return fmt.Errorf("printrun is not importable by %s: %w (%s); install Debian's printcore package (make test-deps)",
			python3, err, bytes.TrimSpace(out))
	}
	return nil
}

func lastLine(b []byte) []byte {
	b = bytes.TrimRight(b, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

func tail(s string, n int) string {
	lines := bytes.Split(bytes.TrimRight([]byte(s), "\n"), []byte("\n"))
	return string(bytes.Join(lines[max(0, len(lines)-n):], []byte("\n")))
}

// HostFlood is a host without flow control: it writes every numbered line
// at once and lets the pty and the simulator's receive buffer hold them
// back. Its rate is the most the simulator itself delivers at a baud.
const HostFlood = "flood (no flow control)"

// floodQuiet is how long the simulator must be silent after its boot
// banner before the flood starts, so the banner's lines are not counted.
const floodQuiet = 300 * time.Millisecond

// StreamFlood measures the simulator's own ceiling at vcfg.Baud: it
// writes every job line of file, numbered and with checksum, as fast as
// the pty takes them, and times the first write to the last ok. The
// simulator's receive side never reads more than its buffer has room
// for, so no line is lost.
func StreamFlood(ctx context.Context, bin, workDir, file string, vcfg VirtualConfig) (StreamResult, error) {
	res, cmds, err := newStreamResult(HostFlood, file, vcfg)
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp(workDir, "flood-")
	if err != nil {
		return res, err
	}
	vcfg.Record = true
	vp, err := startVirtualPrinter(ctx, bin, dir, vcfg)
	if err != nil {
		return res, err
	}
	defer vp.stop()
	port, err := serial.Open(vp.link, &serial.Mode{BaudRate: 115200})
	if err != nil {
		return res, fmt.Errorf("open virtual printer %s: %w", vp.link, err)
	}
	defer port.Close()

	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		lr := printer.NewLineReader(port, 4096)
		for {
			line, err := lr.ReadLine()
			if err != nil {
				return
			}
			lines <- line
		}
	}()
	if err := awaitQuiet(ctx, lines, floodQuiet); err != nil {
		return res, err
	}

	// M110 resets the line number when it executes, so numbered lines
	// sent before its ok would be rejected, as in Marlin.
	if _, err := port.Write([]byte("M110 N0\n")); err != nil {
		return res, fmt.Errorf("flood: write to %s: %w", vp.link, err)
	}
	if err := awaitOK(ctx, lines); err != nil {
		return res, err
	}
	var wire bytes.Buffer
	for i, c := range cmds {
		wire.WriteString(printer.FormatNumbered(i+1, printer.ToASCII(c)))
		wire.WriteByte('\n')
	}
	start := time.Now()
	writeErr := make(chan error, 1)
	go func() {
		_, err := port.Write(wire.Bytes())
		writeErr <- err
	}()
	oks := 0
	timeout := time.NewTimer(streamTimeout(res.WireBytes, max(vcfg.Baud, 115200)))
	defer timeout.Stop()
	for oks < len(cmds) {
		select {
		case line, ok := <-lines:
			if !ok {
				return res, fmt.Errorf("flood: the virtual printer closed the port after %d oks", oks)
			}
			switch {
			case strings.HasPrefix(line, "ok"):
				oks++
			case strings.HasPrefix(line, "Resend"):
				res.Resends++
			}
		case <-timeout.C:
			return res, fmt.Errorf("flood: %d of %d oks within the timeout", oks, len(cmds))
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	res.Elapsed = time.Since(start)
	if err := <-writeErr; err != nil {
		return res, fmt.Errorf("flood: write to %s: %w", vp.link, err)
	}
	port.Close()
	return finishStream(res, vp, len(cmds))
}

func awaitOK(ctx context.Context, lines <-chan string) error {
	deadline := time.After(readyTimeout)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return errors.New("the virtual printer closed the port before the ok of M110")
			}
			if strings.HasPrefix(line, "ok") {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("no ok for M110 within %s", readyTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// awaitQuiet reads lines until none arrived for quiet, after at least
// one arrived.
func awaitQuiet(ctx context.Context, lines <-chan string, quiet time.Duration) error {
	deadline := time.After(readyTimeout)
	seen := false
	for {
		wait := time.After(quiet)
		select {
		case _, ok := <-lines:
			if !ok {
				return errors.New("the virtual printer closed the port before its boot banner")
			}
			seen = true
			continue
		case <-wait:
			if seen {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("no boot banner from the virtual printer within %s", readyTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
