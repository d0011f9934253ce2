package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"golang.org/x/sys/unix"
)

// stateWatcher keeps every retained state snapshot of one printer, in
// the order of their last_seen, because the MQTT client may run handlers
// for two messages at once.
type stateWatcher struct {
	mu    sync.Mutex
	snaps []map[string]any
}

func watchState(t *testing.T, url, printer string) *stateWatcher {
	t.Helper()
	w := &stateWatcher{}
	bus, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "state-watcher"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	err = bus.SubscribeRaw(context.Background(), bridge.Topics{}.MQTTState(printer), func(m mqtt.RawMessage) {
		var snap map[string]any
		if json.Unmarshal(m.Payload, &snap) != nil {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.snaps = append(w.snaps, snap)
		slices.SortStableFunc(w.snaps, func(a, b map[string]any) int {
			return lastSeen(a).Compare(lastSeen(b))
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// lastSeen returns the snapshot's last_seen, the zero time when it is
// missing or invalid.
func lastSeen(snap map[string]any) time.Time {
	s, _ := snap["last_seen"].(string)
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// count returns the number of snapshots received so far, a mark for
// statesSince.
func (w *stateWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.snaps)
}

// statesSince returns the state ids of the snapshots after the first
// from received, in last_seen order.
func (w *stateWatcher) statesSince(from int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ids []string
	for _, snap := range w.snaps[min(from, len(w.snaps)):] {
		id, _ := snap["state_id"].(string)
		ids = append(ids, id)
	}
	return ids
}

func (w *stateWatcher) snapshot() map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.snaps) == 0 {
		return nil
	}
	return w.snaps[len(w.snaps)-1]
}

func (w *stateWatcher) stateID() string {
	id, _ := w.snapshot()["state_id"].(string)
	return id
}

// startKillRig starts the virtual printer and the edge as processes
// against a Mosquitto process and waits for Connected.
func startKillRig(t *testing.T) *faultRig {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and runs real processes")
	}
	bin := buildPrintbridge(t)
	dir := t.TempDir()
	broker := startFaultMosquitto(t, dir)
	scale := faultScale{name: "kill", printerSpeed: 4, phaseDeadline: 2 * time.Minute}
	r := newFaultRig(t, bin, broker, dir, scale, 1)
	r.vp.Start()
	r.edge.Start()
	r.waitUntil("Connected", time.Minute, func() bool { return r.col.countSince(bridge.EventConnected, 0) > 0 })
	return r
}

// TestEdgeSIGKILLMidPrintFailsJob kills the edge process with SIGKILL
// while a file prints: the restarted edge fires one PrintFailed for that
// print, after its Startup and before it connects to the printer.
func TestEdgeSIGKILLMidPrintFailsJob(t *testing.T) {
	r := startKillRig(t)
	mark := r.startJob()
	r.waitPrinting(mark)
	r.edge.Kill()
	record := filepath.Join(r.dir, "edge-data", r.printer+".job.json")
	if _, err := os.Stat(record); err != nil {
		t.Fatalf("running print record after the kill: %v", err)
	}

	before := r.col.arrivals()
	r.edge.Start()
	r.waitUntil("PrintFailed and Connected after the restart", time.Minute, func() bool {
		return r.col.countSince(bridge.EventPrintFailed, mark) > 0 && r.col.countSince(bridge.EventConnected, before) > 0
	})

	var startup, failed, connected *bridge.Envelope
	failedSeqs := map[uint64]bool{}
	for _, env := range r.col.snapshot() {
		switch env.Event {
		case bridge.EventStartup:
			if startup == nil || env.Seq > startup.Seq {
				startup = env
			}
		case bridge.EventPrintFailed:
			failed = env
			failedSeqs[env.Seq] = true
		case bridge.EventPrintDone:
			t.Errorf("PrintDone seq %d for the killed print", env.Seq)
		}
	}
	for _, env := range r.col.snapshot() {
		if env.Event == bridge.EventConnected && env.Seq > startup.Seq && (connected == nil || env.Seq < connected.Seq) {
			connected = env
		}
	}
	if len(failedSeqs) != 1 {
		t.Fatalf("PrintFailed seqs = %v, want exactly one", failedSeqs)
	}
	if failed.Seq < startup.Seq {
		t.Errorf("PrintFailed seq %d comes before the restarted edge's Startup seq %d", failed.Seq, startup.Seq)
	}
	if connected == nil || failed.Seq > connected.Seq {
		t.Errorf("PrintFailed seq %d is not before the restarted edge's Connected %+v", failed.Seq, connected)
	}
	for key, want := range map[string]any{"name": faultFile, "path": faultFile, "origin": "local", "reason": "error"} {
		if got, _ := failed.Payload.Get(key); got != want {
			t.Errorf("PrintFailed %s = %v, want %v", key, got, want)
		}
	}
	if size, _ := failed.Payload.Get("size"); size == nil {
		t.Errorf("PrintFailed has no size")
	}
	if elapsed, _ := failed.Payload.Get("time"); elapsed == nil {
		t.Errorf("PrintFailed time is null, want the time up to the last recorded progress")
	}
	if progress, _ := failed.Payload.Get("progress"); progress == nil {
		t.Errorf("PrintFailed has no progress")
	}

	r.waitUntil("the record removed", 10*time.Second, func() bool {
		_, err := os.Stat(record)
		return os.IsNotExist(err)
	})
	if log := r.edge.Log(); !strings.Contains(log, "the previous run stopped during a print") || !strings.Contains(log, "printer="+r.printer) {
		t.Errorf("edge log does not report the interrupted print with the printer id")
	}

	// The printer is usable: a new print runs to its end.
	mark = r.startJob()
	r.waitUntil("PrintDone of the next print", r.scale.phaseDeadline, func() bool { return r.done(mark) })
}

// TestPrinterUnplugStateClosedWithError kills the virtual printer process
// with SIGKILL mid-print, as pulling its USB cable would. The retained
// state must say CLOSED_WITH_ERROR with the error and no temperatures
// while the edge retries, CLOSED after a disconnect command, and
// OPERATIONAL after the printer is back and a connect command.
func TestPrinterUnplugStateClosedWithError(t *testing.T) {
	r := startKillRig(t)
	states := watchState(t, r.broker.(*mosquittoBroker).url(), r.printer)
	mark := r.startJob()
	r.waitPrinting(mark)
	r.waitUntil("a target temperature in the retained state", time.Minute, func() bool {
		temps, _ := states.snapshot()["temperatures"].(map[string]any)
		return len(temps) > 0
	})

	unplugged := states.count()
	r.vp.Kill()
	// A pulled USB cable takes the device node with it. SIGKILL leaves
	// the link, and its pty number may go to another process at once.
	link := filepath.Join(r.dir, "printer-tty")
	if err := os.Remove(link); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	r.waitUntil("PrintFailed after the unplug", time.Minute, func() bool {
		return r.col.countSince(bridge.EventPrintFailed, mark) > 0
	})
	// Two failed opens after the unplug show that a retry keeps the state.
	r.waitUntil("two failed reopens in the edge log", time.Minute, func() bool {
		return strings.Count(r.edge.Log(), "serial port open failed, retrying") >= 2
	})
	r.waitUntil("CLOSED_WITH_ERROR in the retained state", 30*time.Second, func() bool {
		return states.stateID() == "CLOSED_WITH_ERROR"
	})
	// The retries that follow must not replace the error state.
	if ids := states.statesSince(unplugged); slices.Contains(ids, "OFFLINE") {
		t.Errorf("state ids after the unplug = %v, want no OFFLINE", ids)
	}
	snap := states.snapshot()
	flags, _ := snap["flags"].(map[string]any)
	if flags["error"] != true {
		t.Errorf("flags.error = %v, want true", flags["error"])
	}
	if flags["operational"] != false {
		t.Errorf("flags.operational = %v, want false", flags["operational"])
	}
	if msg, _ := snap["error"].(string); msg == "" {
		t.Errorf("error = %v, want the connection error", snap["error"])
	}
	if temps, _ := snap["temperatures"].(map[string]any); len(temps) != 0 {
		t.Errorf("temperatures = %v, want none while the printer is gone", temps)
	}

	// A disconnect command ends the retries and the error state.
	disconnect := `{"id": "unplug-disconnect", "action": "disconnect"}`
	if err := r.obs.PublishCommand(context.Background(), r.printer, bridge.CommandConnection, []byte(disconnect)); err != nil {
		t.Fatal(err)
	}
	r.waitUntil("CLOSED after the disconnect command", 30*time.Second, func() bool { return states.stateID() == "CLOSED" })
	snap = states.snapshot()
	if _, ok := snap["error"]; ok && snap["error"] != nil && snap["error"] != "" {
		t.Errorf("error = %v after the disconnect command, want none", snap["error"])
	}

	r.vp.Start()
	connect := `{"id": "unplug-connect", "action": "connect"}`
	if err := r.obs.PublishCommand(context.Background(), r.printer, bridge.CommandConnection, []byte(connect)); err != nil {
		t.Fatal(err)
	}
	r.waitUntil("OPERATIONAL after the replug", time.Minute, func() bool { return states.stateID() == "OPERATIONAL" })
}

// TestVirtualPrinterSignalRemovesLink stops the virtual printer with
// SIGTERM and with SIGINT: both remove its --link symlink, so no link
// is left to a pty number that another process may get next.
func TestVirtualPrinterSignalRemovesLink(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs real processes")
	}
	bin := buildPrintbridge(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			link := filepath.Join(dir, "printer-tty")
			p := newProc(t, dir, "virtual-printer", bin, "virtual-printer", "--link", link, "--log-level", "warn")
			p.ready = "virtual printer ready"
			p.Start()
			if _, err := os.Lstat(link); err != nil {
				t.Fatalf("link after start: %v", err)
			}
			p.mu.Lock()
			cmd, exited := p.cmd, p.exited
			p.mu.Unlock()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			<-exited
			if _, err := os.Lstat(link); !os.IsNotExist(err) {
				t.Errorf("link after %s: %v, want it removed", sig, err)
			}
		})
	}
}

// openSilentPTY returns the slave path of a pty whose master the test
// holds and never answers on, like a pty number that another program got
// after a virtual printer was killed.
func openSilentPTY(t *testing.T) string {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { _ = master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	// The master is drained so the edge's writes never block.
	go func() { _, _ = io.Copy(io.Discard, master) }()
	return "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
}

// TestEdgeSilentPTYErrorState points the edge at a pty that is not a
// printer: after its handshakes go unanswered, the edge logs which port
// did not answer and what to check, and the retained state is
// CLOSED_WITH_ERROR with that text.
func TestEdgeSilentPTYErrorState(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs real processes")
	}
	bin := buildPrintbridge(t)
	dir := t.TempDir()
	broker := startFaultMosquitto(t, dir)
	link := filepath.Join(dir, "printer-tty")
	if err := os.Symlink(openSilentPTY(t), link); err != nil {
		t.Fatal(err)
	}
	states := watchState(t, broker.url(), "silent1")
	edge := newProc(t, dir, "edge", bin, append([]string{"edge", "--port", link, "--printer", "silent1",
		"--data-dir", filepath.Join(dir, "edge-data"), "--metrics-listen", ""}, broker.EdgeArgs()...)...)
	edge.Start()

	want := "no answer from the printer on " + link
	waitFor(t, "the handshake error in the edge log", time.Minute, func() bool { return strings.Contains(edge.Log(), want) })
	waitFor(t, "a reconnect scheduled after the handshake error", 10*time.Second, func() bool {
		return strings.Contains(edge.Log(), "reconnect scheduled")
	})
	waitFor(t, "CLOSED_WITH_ERROR in the retained state", 30*time.Second, func() bool {
		return states.stateID() == "CLOSED_WITH_ERROR"
	})
	if msg, _ := states.snapshot()["error"].(string); !strings.Contains(msg, want) {
		t.Errorf("state error = %q, want it to contain %q", msg, want)
	}
}
