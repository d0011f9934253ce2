package virtual

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// ioPollTimeout bounds every poll on the master, and so how long the
	// I/O goroutines take to notice Close.
	ioPollTimeout = 50 * time.Millisecond
	// hostConnectPoll is how often the read goroutine checks whether a new
	// connection was taken over, or inotify has news, while it cannot
	// read.
	hostConnectPoll = 5 * time.Millisecond
	// pacedChunk is the wire time of the bytes moved per read or write when
	// the line is paced by Config.Baud. It is short, so a line is handed
	// to the firmware soon after its last byte has crossed the wire.
	pacedChunk = time.Millisecond
	// preciseSleepMax is the longest part of a wait taken with nanosleep
	// on the calling thread, and a Go timer covers the rest of a longer
	// wait. A Go timer can end up to a millisecond late (package bench
	// measured 1 ms for a 100 µs timer on a two-core VM), which at 250000
	// baud is almost the wire time of a G-code line.
	preciseSleepMax = 20 * time.Millisecond
	// spinTail is how long before its deadline a precise wait stops
	// sleeping and polls the clock instead. nanosleep ends late by the
	// thread's timer slack (50 µs by default on Linux) plus the
	// scheduler's wake-up latency. For a 500 µs nanosleep that was 73 µs
	// on average and 122 µs at the 99th percentile on the two-core VM of
	// docs/benchmarks.md while a benchmark ran, and the polling cost 20 to
	// 30 µs of CPU per wait there.
	spinTail = 100 * time.Microsecond
)

// serialLink is the pty master, the printer's side of the serial line.
//
// Opens and closes of the slave by hosts are counted with inotify
// (IN_OPEN, IN_CLOSE_WRITE and IN_CLOSE_NOWRITE on the slave device
// node). POLLHUP on the master only shows whether the slave is open at
// the moment of the poll, so it misses a close that is quickly followed
// by an open. An open while no host had the slave open starts a new
// connection and resets the firmware, as the DTR pulse of a USB serial
// adapter resets an Arduino-based board; the close of the last file
// description ends it.
type serialLink struct {
	fd       int // pty master
	notify   int // inotify instance watching the slave
	log      *slog.Logger
	byteTime time.Duration // time of one byte on the line; 0 = no pacing
	rxSize   int
	ep       bool          // EMERGENCY_PARSER on new receive buffers
	txErrors float64       // Config.TXByteErrors
	rand     *randomSource // for txErrors

	connected atomic.Bool   // output goes to the host; set by connect
	gen       atomic.Uint64 // changed by every host open and close

	// writeMu serializes output lines and guards txPace and lineFeedHeld.
	// Changes of connected and gen take it too, so no line lands between
	// the flush of stale output and the change.
	writeMu      sync.Mutex
	txPace       pacer
	lineFeedHeld bool // the last line's line feed is not written yet (see outLine)

	opens chan connection // a new host open, for Run to take over

	// Owned by the read goroutine.
	openFiles int       // open file descriptions of the slave
	rx        *rxBuffer // input buffer of the current connection
	rxPace    pacer
	// rxBacklog is set when more input was waiting in the pty as the last
	// paced bytes finished crossing the wire, and rxStopped when those
	// bytes filled the receive buffer. See readInput.
	rxBacklog, rxStopped bool
	buf                  []byte
	// overrunCounted is set while the receive buffer stays full after an
	// overrun was counted.
	overrunCounted bool

	current    atomic.Pointer[rxBuffer] // receive buffer of the current connection, for RXStats
	rxPeak     atomic.Int64             // most bytes the receive buffer held at once
	rxOverruns atomic.Int64             // see RXStats.Overruns
}

func newSerialLink(fd int, slavePath string, cfg Config, rs *randomSource, log *slog.Logger) (*serialLink, error) {
	notify, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create inotify instance to detect host opens: %w", err)
	}
	if _, err := unix.InotifyAddWatch(notify, slavePath, unix.IN_OPEN|unix.IN_CLOSE_WRITE|unix.IN_CLOSE_NOWRITE); err != nil {
		unix.Close(notify)
		return nil, fmt.Errorf("watch %s with inotify to detect host opens: %w", slavePath, err)
	}
	l := &serialLink{
		fd:       fd,
		notify:   notify,
		log:      log,
		rxSize:   cfg.RXBufferSize,
		ep:       cfg.EmergencyParser,
		txErrors: cfg.TXByteErrors,
		rand:     rs,
		opens:    make(chan connection),
		buf:      make([]byte, 512),
	}
	if cfg.Baud > 0 {
		l.byteTime = time.Second * 10 / time.Duration(cfg.Baud)
	}
	return l, nil
}

func (l *serialLink) close() error {
	return errors.Join(unix.Close(l.notify), unix.Close(l.fd))
}

// readLoop is the receive side: it runs in its own goroutine until ctx is
// done, follows host opens and closes, and moves received bytes into the
// current connection's rxBuffer as far as it has room. When the buffer is
// full it leaves the bytes in the pty, so the host blocks in write. The
// bytes of a host whose connection Run has not taken yet wait there too.
func (l *serialLink) readLoop(ctx context.Context) {
	for ctx.Err() == nil {
		connected := l.connected.Load()
		readable := connected && l.rx.free() > 0
		fds := []unix.PollFd{{Fd: int32(l.notify), Events: unix.POLLIN}}
		timeout := ioPollTimeout
		if connected && !readable {
			l.countOverrun()
			// The buffer is full: go on as soon as the firmware takes a
			// byte, as a UART does, and only glance at inotify meanwhile.
			l.waitForSpace(ctx, hostConnectPoll)
			readable = l.rx.free() > 0
			if !readable {
				timeout = 0
			}
		}
		if readable {
			l.overrunCounted = false
		}
		switch {
		case readable:
			fds = append(fds, unix.PollFd{Fd: int32(l.fd), Events: unix.POLLIN})
		case l.openFiles > 0 && !connected:
			// Run has not taken the connection yet, so check again soon.
			timeout = hostConnectPoll
		}
		if _, err := unix.Poll(fds, int(timeout/time.Millisecond)); err != nil && !errors.Is(err, unix.EINTR) {
			l.log.Error("poll pty failed", "error", err)
			sleepContext(ctx, ioPollTimeout)
			continue
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			if !l.handleNotify(ctx) {
				return
			}
			continue
		}
		if !readable {
			continue
		}
		switch master := fds[1].Revents; {
		case master&unix.POLLIN != 0:
			l.readInput(ctx)
		case master&(unix.POLLHUP|unix.POLLERR) != 0:
			// The host is gone and inotify has not reported the close
			// yet: do not spin on the master meanwhile.
			sleepContext(ctx, hostConnectPoll)
		}
	}
}

// waitForSpace waits until the firmware takes bytes from the receive
// buffer, at most d.
func (l *serialLink) waitForSpace(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-l.rx.space:
	case <-t.C:
	case <-ctx.Done():
	}
}

// readInput moves available bytes into the receive buffer and reports
// whether the master is still readable.
func (l *serialLink) readInput(ctx context.Context) bool {
	chunk := min(l.rx.free(), len(l.buf))
	if l.byteTime > 0 {
		chunk = min(chunk, max(1, int(pacedChunk/l.byteTime)))
	}
	if chunk == 0 {
		return false
	}
	n, _ := unix.Read(l.fd, l.buf[:chunk])
	if n <= 0 {
		// EAGAIN, or EIO once the last host closed the slave and all of
		// its input was read.
		return false
	}
	if l.byteTime == 0 {
		l.rx.write(l.buf[:n])
		l.notePeak()
		return true
	}
	// Bytes that were waiting in the pty when the previous ones had
	// crossed the wire follow them at once, as on a UART, or as soon as
	// the firmware made room if they had filled the receive buffer. The
	// read goroutine's own time between two reads is not idle line time.
	var ready time.Time
	if l.rxBacklog {
		ready = l.rxPace.free
		if l.rxStopped {
			ready = l.rx.roomSince()
		}
	}
	// The bytes reach the receive buffer once they have crossed the wire,
	// so a host that waits for each ok also pays for its line's bytes.
	l.rxPace.pace(ctx, n, l.byteTime, ready)
	l.rxBacklog = l.pendingInput() > 0
	l.rxStopped = l.rx.write(l.buf[:n])
	l.notePeak()
	return true
}

// notePeak records the receive buffer's fill after a write.
func (l *serialLink) notePeak() {
	fill := int64(l.rxSize - l.rx.free())
	if fill > l.rxPeak.Load() {
		l.rxPeak.Store(fill)
	}
}

// countOverrun counts an overrun when the receive buffer is full and the
// host has written more bytes, once until the buffer has room again.
func (l *serialLink) countOverrun() {
	if l.overrunCounted || l.pendingInput() == 0 {
		return
	}
	l.overrunCounted = true
	l.rxOverruns.Add(1)
}

// pendingInput returns the number of bytes the host has written that the
// read goroutine has not read yet (TIOCINQ on the master), or 0 if the
// ioctl fails.
func (l *serialLink) pendingInput() int {
	n, err := unix.IoctlGetInt(l.fd, unix.TIOCINQ)
	if err != nil {
		return 0
	}
	return n
}

// handleNotify applies the queued inotify events and reports false when
// ctx ended while a new connection was handed over.
func (l *serialLink) handleNotify(ctx context.Context) bool {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	n, err := unix.Read(l.notify, buf)
	if n <= 0 {
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			l.log.Error("read inotify events failed", "error", err)
		}
		return true
	}
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		off += unix.SizeofInotifyEvent + int(ev.Len)
		switch {
		case ev.Mask&unix.IN_Q_OVERFLOW != 0:
			// Lost events: resynchronize from POLLHUP, which Linux sets
			// on the master while no process has the slave open.
			l.log.Warn("inotify queue overflowed; host open count estimated from the pty state")
			if l.hungUp() {
				l.setOpenFiles(ctx, 0)
			} else if l.openFiles == 0 {
				l.setOpenFiles(ctx, 1)
			}
		case ev.Mask&unix.IN_OPEN != 0:
			if !l.setOpenFiles(ctx, l.openFiles+1) {
				return false
			}
		case ev.Mask&(unix.IN_CLOSE_WRITE|unix.IN_CLOSE_NOWRITE) != 0:
			l.setOpenFiles(ctx, max(0, l.openFiles-1))
		}
	}
	return true
}

func (l *serialLink) hungUp() bool {
	return l.poll(0, 0)&unix.POLLHUP != 0
}

// poll returns the revents of the master for events, waiting at most
// timeout. POLLHUP and POLLERR are reported whatever events is.
func (l *serialLink) poll(events int16, timeout time.Duration) int16 {
	fds := []unix.PollFd{{Fd: int32(l.fd), Events: events}}
	for {
		_, err := unix.Poll(fds, int(timeout/time.Millisecond))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return unix.POLLERR
		}
		return fds[0].Revents
	}
}

// setOpenFiles records the number of open slave file descriptions and
// starts or ends the connection when it leaves or reaches zero. A new
// connection is offered to Run, which stops the previous firmware session
// and then calls connect, so the old session cannot write to the new host.
func (l *serialLink) setOpenFiles(ctx context.Context, n int) bool {
	was := l.openFiles
	l.openFiles = n
	switch {
	case was == 0 && n > 0:
		l.rx = newRXBuffer(l.rxSize, l.ep)
		l.current.Store(l.rx)
		l.rxBacklog, l.rxStopped = false, false
		l.log.Info("host opened serial port")
		select {
		case l.opens <- connection{rx: l.rx, gen: l.gen.Add(1)}:
		case <-ctx.Done():
			return false
		}
	case was > 0 && n == 0:
		if l.connected.Load() {
			// The closing host's last lines are still in the pty: hand
			// them to the firmware, which runs on without a host.
			for l.readInput(ctx) {
			}
		}
		l.writeMu.Lock()
		l.gen.Add(1)
		l.setConnectedLocked(false)
		l.writeMu.Unlock()
		l.log.Info("host closed serial port")
	}
	return true
}

// connection is a host open that the read goroutine offers to Run.
type connection struct {
	rx  *rxBuffer
	gen uint64
}

// connect lets output through to the host of connection gen and reports
// false if that host has closed the port in the meantime.
func (l *serialLink) connect(gen uint64) bool {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.gen.Load() != gen {
		return false
	}
	l.setConnectedLocked(true)
	return true
}

// setConnectedLocked changes the connection state and throws away output
// that the previous host did not read, which Linux would otherwise deliver
// to the next one. The caller holds writeMu.
func (l *serialLink) setConnectedLocked(connected bool) {
	l.connected.Store(connected)
	l.lineFeedHeld = false
	if err := unix.IoctlSetInt(l.fd, unix.TCFLSH, unix.TCOFLUSH); err != nil {
		l.log.Warn("flush stale pty output failed", "error", err)
	}
}

// outLine is one line of output and how it joins the output around it.
type outLine struct {
	text string
	// glue continues a line whose line feed is held back, instead of
	// ending that line first.
	glue bool
	// hold leaves the line open: its line feed goes out with the next
	// output, or never if that output is glued to it.
	hold bool
}

// writeLine sends line and a newline to the host. It blocks while the host
// does not read (as Marlin blocks on a full TX buffer) and drops the line
// when no host has the port open or ctx is done.
func (l *serialLink) writeLine(ctx context.Context, line string) {
	l.writeLines(ctx, outLine{text: line})
}

// writeLines sends lines as one write, so no other output lands between
// them.
func (l *serialLink) writeLines(ctx context.Context, lines ...outLine) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	var data []byte
	for _, o := range lines {
		if l.lineFeedHeld && !o.glue {
			data = append(data, '\n')
		}
		data = append(data, o.text...)
		l.lineFeedHeld = o.hold
		if !o.hold {
			data = append(data, '\n')
		}
	}
	l.writeLocked(ctx, data)
}

// flushHeld ends a held line, so it does not wait for the next output.
func (l *serialLink) flushHeld(ctx context.Context) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.lineFeedHeld {
		l.lineFeedHeld = false
		l.writeLocked(ctx, []byte{'\n'})
	}
}

// writeLocked applies TXByteErrors to data and writes it. The caller
// holds writeMu.
func (l *serialLink) writeLocked(ctx context.Context, data []byte) {
	if !l.connected.Load() || ctx.Err() != nil {
		l.lineFeedHeld = false
		return
	}
	if l.txErrors > 0 {
		for i, c := range data {
			if l.rand.chance(l.txErrors) {
				data[i] = l.rand.otherByte(c, "")
			}
		}
	}
	// ready is zero for the first chunk, which starts when the line is
	// free or now. The following chunks were waiting all along, so they
	// follow at once, unless the host stopped reading in between.
	var ready time.Time
	for len(data) > 0 {
		chunk := data
		if l.byteTime > 0 {
			chunk = data[:min(len(data), max(1, int(pacedChunk/l.byteTime)))]
			// The host can read the bytes once they have crossed the wire.
			// The firmware goroutine waits meanwhile, as Marlin does with
			// its default TX_BUFFER_SIZE of 0 (blocking serial writes).
			l.txPace.pace(ctx, len(chunk), l.byteTime, ready)
		}
		n, err := unix.Write(l.fd, chunk)
		if n > 0 {
			if n < len(chunk) {
				// The pty took part of the chunk, so the rest's wire time
				// is charged again when it is written.
				l.txPace.refund(len(chunk)-n, l.byteTime)
			}
			data = data[n:]
			ready = l.txPace.free
			continue
		}
		if l.byteTime > 0 {
			l.txPace.refund(len(chunk), l.byteTime)
		}
		switch {
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			ready = time.Time{}
			if l.poll(unix.POLLOUT, ioPollTimeout)&unix.POLLHUP != 0 || ctx.Err() != nil {
				return
			}
		default:
			l.log.Debug("write to pty master failed", "error", err)
			return
		}
	}
}

// pacer schedules the bytes of one direction of the line against an
// absolute timeline, so a sleep that ends late does not slow the line
// down: the next bytes start when the previous ones ended on the
// schedule, not when the sleeping goroutine woke up.
type pacer struct {
	free time.Time // when the bytes scheduled so far have crossed the wire
	// credit is how long after free the last sleep returned. Until the
	// caller comes back, the line counts as busy for that long, because
	// only the oversleep, not the host or the firmware, kept it idle.
	credit time.Duration
}

// pace waits until n more bytes have crossed the line at byteTime each.
// They start when the line is free or at ready, whichever is later. A
// zero ready means that the caller does not know when the bytes became
// available, and they start no earlier than now, less the previous
// sleep's oversleep.
//
// NOTE: bytes with a zero ready that the host wrote during an oversleep
// are scheduled as if they had been there when the line became free,
// which makes them up to one oversleep early.
func (p *pacer) pace(ctx context.Context, n int, byteTime time.Duration, ready time.Time) {
	if byteTime == 0 {
		return
	}
	now := time.Now()
	start := p.free
	switch {
	case !ready.IsZero():
		if start.Before(ready) {
			start = ready
		}
	case start.Before(now.Add(-p.credit)):
		// The line was idle since the previous bytes, beyond the time the
		// previous sleep overslept, and idle time is not made up later.
		start = now.Add(-p.credit)
	}
	p.free = start.Add(time.Duration(n) * byteTime)
	sleepUntil(ctx, p.free)
	p.credit = max(0, time.Since(p.free))
}

// refund takes n bytes that were scheduled but not moved off the
// schedule.
func (p *pacer) refund(n int, byteTime time.Duration) {
	p.free = p.free.Add(-time.Duration(n) * byteTime)
}

// sleepUntil waits until deadline and reports false if ctx ended first.
// A Go timer covers all but the last preciseSleepMax of the wait,
// nanosleep all but the last spinTail, and the rest polls the clock, so
// the wait usually ends within microseconds of deadline instead of on the
// Go runtime's next millisecond. A thread that the kernel does not run
// in time still ends late. The last preciseSleepMax does not end
// early when ctx is done.
func sleepUntil(ctx context.Context, deadline time.Time) bool {
	if d := time.Until(deadline) - preciseSleepMax; d > 0 && !sleepContext(ctx, d) {
		return false
	}
	for d := time.Until(deadline) - spinTail; d > 0; d = time.Until(deadline) - spinTail {
		// After EINTR the loop sleeps for the rest.
		ts := unix.NsecToTimespec(int64(d))
		_ = unix.Nanosleep(&ts, nil)
	}
	for time.Now().Before(deadline) {
	}
	return ctx.Err() == nil
}

// sleepContext waits for d or until ctx is done and reports whether the
// full time passed.
func sleepContext(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
