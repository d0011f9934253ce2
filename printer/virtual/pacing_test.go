package virtual

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSleepUntilNotEarly(t *testing.T) {
	// Around spinTail and preciseSleepMax, where sleepUntil switches from
	// a Go timer to nanosleep to polling the clock.
	waits := []time.Duration{
		-time.Millisecond, 0, 30 * time.Microsecond, spinTail, spinTail + 50*time.Microsecond,
		2 * time.Millisecond, preciseSleepMax + 5*time.Millisecond,
	}
	for _, d := range waits {
		deadline := time.Now().Add(d)
		if !sleepUntil(context.Background(), deadline) {
			t.Errorf("sleepUntil(%v) = false without a cancelled context", d)
		}
		if now := time.Now(); now.Before(deadline) {
			t.Errorf("sleepUntil(%v) returned %v before its deadline", d, deadline.Sub(now))
		}
	}
}

func TestSleepUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A wait that ignored ctx would outlast the test timeout.
	if sleepUntil(ctx, time.Now().Add(time.Hour)) {
		t.Error("sleepUntil with a cancelled context = true, want false")
	}
}

func TestPacerReadyStartsOnSchedule(t *testing.T) {
	const byteTime = time.Millisecond
	ctx := context.Background()

	// Bytes that were waiting when the line became free follow the
	// previous bytes at once, however late the caller comes back.
	var p pacer
	p.free = time.Now().Add(-time.Second)
	free := p.free
	p.pace(ctx, 10, byteTime, free)
	if want := free.Add(10 * byteTime); !p.free.Equal(want) {
		t.Errorf("line free at %v after 10 waiting bytes, want %v, 10 ms after the previous bytes", p.free.Sub(free), want.Sub(free))
	}

	// Bytes that became ready after the line was free start then.
	free = p.free
	ready := free.Add(5 * byteTime)
	p.pace(ctx, 10, byteTime, ready)
	if want := ready.Add(10 * byteTime); !p.free.Equal(want) {
		t.Errorf("line free at %v after bytes ready 5 ms late, want %v", p.free.Sub(free), want.Sub(free))
	}

	// Bytes without a ready time on an idle line start no earlier than
	// the call, so the idle time is not made up.
	p.free = time.Now().Add(-time.Second)
	p.credit = 0
	before := time.Now()
	p.pace(ctx, 10, byteTime, time.Time{})
	if earliest := before.Add(10 * byteTime); p.free.Before(earliest) {
		t.Errorf("idle line free %v before the bytes' wire time from the call", earliest.Sub(p.free))
	}
}

func TestRXBufferRoomSince(t *testing.T) {
	r := newRXBuffer(4, false)
	if full := r.write([]byte("G1")); full {
		t.Error("write of 2 bytes into a 4-byte buffer reports it full")
	}
	if full := r.write([]byte("X1")); !full {
		t.Error("write of the last 2 free bytes does not report the buffer full")
	}
	if at := r.roomSince(); !at.IsZero() {
		t.Errorf("roomSince = %v before any byte was taken, want zero", at)
	}

	before := time.Now()
	if _, ok := r.readByte(); !ok {
		t.Fatal("readByte on a full buffer found no byte")
	}
	first := r.roomSince()
	if first.Before(before) {
		t.Errorf("roomSince = %v, before the byte was taken from the full buffer", first)
	}
	if _, ok := r.readByte(); !ok {
		t.Fatal("readByte found no second byte")
	}
	if at := r.roomSince(); !at.Equal(first) {
		t.Errorf("roomSince moved from %v to %v on a take from a buffer that was not full", first, at)
	}

	r.write([]byte("Y2"))
	before = time.Now()
	r.drain()
	if at := r.roomSince(); at.Before(before) {
		t.Errorf("roomSince = %v after draining a full buffer, want the time of the drain", at)
	}
}

func TestPendingInputCountsHostBytes(t *testing.T) {
	master, slavePath, err := openPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(master)
	slave, err := unix.Open(slavePath, unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(slave)
	l := &serialLink{fd: master}

	line := []byte(numbered(1, "G28") + "\n")
	if _, err := unix.Write(slave, line); err != nil {
		t.Fatal(err)
	}
	// The pty moves the bytes to the master in a kernel worker, so they
	// show up shortly after the write.
	deadline := time.Now().Add(waitTimeout)
	for l.pendingInput() < len(line) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := l.pendingInput(); got != len(line) {
		t.Fatalf("pendingInput = %d after the host wrote %d bytes, want %d", got, len(line), len(line))
	}

	buf := make([]byte, 64)
	n, err := unix.Read(master, buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(line) {
		t.Fatalf("read %d bytes from the master, want %d", n, len(line))
	}
	if got := l.pendingInput(); got != 0 {
		t.Errorf("pendingInput = %d after every byte was read, want 0", got)
	}
}

func TestPacedFloodThroughFullRXBuffer(t *testing.T) {
	cfg := fastConfig()
	cfg.Baud = 250000
	// The firmware takes longer per command than a line takes on the
	// wire, so its command queue stays full, and the receive buffer,
	// smaller than a line, fills and stops reception on every line.
	cfg.RXBufferSize = 16
	cfg.ProcessingTime = 2 * time.Millisecond
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.command("M110 N0")

	const lines = 300
	var wire strings.Builder
	var want []string
	for i := 1; i <= lines; i++ {
		cmd := "G1 X" + strconv.Itoa(i%200) + " Y" + strconv.Itoa(i%150) + " F3000"
		want = append(want, cmd)
		wire.WriteString(numbered(i, cmd) + "\n")
	}
	// One write: the pty holds what the receive buffer has no room for,
	// as a host without flow control would have it on the wire.
	h.send(strings.TrimSuffix(wire.String(), "\n"))
	for range lines {
		if line := h.until("ok", func(l string) bool { return isOK(l) || strings.HasPrefix(l, "Error") }); !isOK(line[len(line)-1]) {
			t.Fatalf("firmware rejected a line of the flood: %q", line)
		}
	}

	got := waitExecuted(t, p, lines+1)[1:]
	if !slices.Equal(got, want) {
		t.Errorf("executed %d commands that differ from the %d sent; first executed %q", len(got), len(want), got[:min(3, len(got))])
	}
	if st := p.LineStats(); st.Repeated != 0 {
		t.Errorf("LineStats.Repeated = %d, want 0", st.Repeated)
	}
}

func TestProcessingTimeEndsOnM112(t *testing.T) {
	cfg := fastConfig()
	// Longer than any test: only the emergency command ends the wait.
	cfg.ProcessingTime = time.Hour
	cfg.EmergencyParser = true
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.send("G90")
	waitExecuted(t, p, 1)
	h.send("M112")
	h.untilLine(msgEmergency)
	h.untilLine(msgKilled)
	if got := p.Executed(); !slices.Equal(got, []string{"G90", "M112"}) {
		t.Errorf("executed = %q, want G90 and M112", got)
	}
}
