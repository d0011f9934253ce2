package virtual

import (
	"context"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Marlin's serial strings (Marlin/src/core/language.h).
const (
	errLineNumber  = "Line Number is not Last Line Number+1, Last Line: "
	errChecksum    = "checksum mismatch, Last Line: "
	errNoChecksum  = "No Checksum with line number, Last Line: "
	errNoLineNum   = "No Line Number with checksum, Last Line: "
	msgResend      = "Resend: "
	msgKilled      = "Error:Printer halted. kill() called!"
	msgEmergency   = "echo:EMERGENCY SHUTDOWN DETECTED. KILLED."
	msgRunaway     = "Error:Thermal Runaway, system stopped! Heater_ID: 0"
	msgBusy        = "echo:busy: processing"
	msgBusyRep     = "busy:processing" // Repetier's keep-alive
	msgColdExtrude = "echo: cold extrusion prevented"
	msgWait        = "wait"
)

// afterAction is something the firmware does once a command has been
// executed and acknowledged.
type afterAction int

const (
	afterNothing afterAction = iota
	afterReset
	afterFatal
)

// queuedCommand is a command line accepted into the command queue.
type queuedCommand struct {
	*gcode
	after afterAction
	// sd marks a command read from the SD card, which gets no ok.
	sd sdSource
}

// sdSource tells serial commands from those of an SD print.
type sdSource int

const (
	sdNone sdSource = iota
	// sdLine is a line of the printing file.
	sdLine
	// sdEnd is the end of the printing file (Marlin's M1001).
	sdEnd
)

// session is the firmware of one host connection: it starts when a host
// opens the port (the board resets) and ends when the next host opens it
// or the Printer stops. Its fields without a lock belong to the firmware
// goroutine (run), and the comments of the others name who shares them.
type session struct {
	p       *Printer
	cfg     Config
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	rx      *rxBuffer
	planner *planner
	machine *machine

	// Written by the emergency parser in the read goroutine.
	interrupt   chan struct{} // signalled after any emergency command
	killRequest atomic.Bool   // M112 received
	breakWait   atomic.Bool   // M108 received: end a heating wait

	// Read by the report goroutine.
	busy atomic.Bool // a command is executing
	// busyMu orders the keep-alive busy line against the ok that ends the
	// command: Marlin leaves its busy state before it sends that ok, so no
	// busy line may follow it.
	busyMu       sync.Mutex
	halted       atomic.Bool  // mirror of killed
	tempInterval atomic.Int64 // M155 interval in nanoseconds; 0 = off
	posInterval  atomic.Int64 // M154 interval in nanoseconds; 0 = off
	sdInterval   atomic.Int64 // M27 S interval in nanoseconds; 0 = off
	keepalive    atomic.Int64 // M113 interval in nanoseconds; 0 = off

	asm              *lineAssembler
	queue            []queuedCommand
	flushed          bool  // the queue was cleared while its front command ran
	lastN            int64 // last accepted line number
	killed           bool
	okSent           bool // the current command's ok is out
	acceptedNumbered int
	ratioCount       int
	lastInjected     int64
	m110Rejected     int // M110 lines rejected for RejectM110 so far
	resetDone        bool
	fatalDone        bool
	lastWait         time.Time
	okCount          int       // command oks so far, for DroppedOKs
	sinceRewind      int       // numbered lines accepted since the last rewind
	m110Line         int64     // line number set by the last M110
	lastExecutedN    int64     // line number of the last numbered command run
	lastInput        time.Time // when the last byte was taken from the receive buffer
	// Repetier's GCode::waitingForResend: after a resend request, how many
	// more out-of-sequence lines are skipped silently; -1 when none is
	// pending.
	waitingForResend int
	formatErrors     int // consecutive Repetier format errors
}

func newSession(ctx context.Context, p *Printer, rx *rxBuffer) *session {
	ctx, cancel := context.WithCancel(ctx)
	s := &session{
		p:            p,
		cfg:          p.cfg,
		ctx:          ctx,
		cancel:       cancel,
		rx:           rx,
		interrupt:    make(chan struct{}, 1),
		lastInjected: math.MinInt64,
	}
	s.resetFirmware()
	rx.setEmergencyHandler(s.onEmergency)
	return s
}

// start runs the firmware, planner and report goroutines.
func (s *session) start() {
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		s.run()
	}()
	go func() {
		defer s.wg.Done()
		s.planner.run(s.ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.reportLoop()
	}()
}

// stop ends the session's goroutines and waits for them.
func (s *session) stop() {
	s.cancel()
	s.wg.Wait()
}

// resetFirmware puts the firmware into its power-on state. The planner and
// machine of a previous boot are reset in place, because the planner and
// report goroutines use them for the whole session.
func (s *session) resetFirmware() {
	if s.planner == nil {
		s.planner = newPlanner(s.cfg.PlannerSize)
	} else {
		s.planner.clear()
	}
	if s.machine == nil {
		s.machine = newMachine()
	} else {
		s.machine.reset()
	}
	s.asm = newLineAssembler(s.cfg)
	s.queue = nil
	s.flushed = true
	s.lastN = 0
	s.m110Line = 0
	s.lastExecutedN = 0
	s.sinceRewind = 0
	s.waitingForResend = -1
	s.formatErrors = 0
	s.lastInput = time.Now()
	s.killed = false
	s.halted.Store(false)
	s.killRequest.Store(false)
	s.breakWait.Store(false)
	s.tempInterval.Store(0)
	s.posInterval.Store(0)
	s.sdInterval.Store(0)
	s.p.sd.release()
	s.keepalive.Store(int64(2 * time.Second)) // DEFAULT_KEEPALIVE_INTERVAL
	s.lastWait = time.Now()
	s.p.thermal.allOff()
}

// run is the firmware main loop (Marlin's loop()): take complete lines
// from the receive buffer into the command queue, execute the front
// command, and otherwise idle. Like Marlin it does not read the receive
// buffer while a command executes.
func (s *session) run() {
	s.banner(false)
	for s.ctx.Err() == nil {
		s.serviceEmergency()
		s.fillQueue()
		s.fillFromSD()
		if len(s.queue) > 0 && !s.killed {
			s.executeFront()
			continue
		}
		s.idle()
	}
}

// banner prints the boot messages; afterReset selects the start of a
// simulated reset (see resetStart).
func (s *session) banner(afterReset bool) {
	start := []outLine{{text: "start"}}
	if afterReset {
		start = s.resetStart()
	}
	s.p.link.writeLines(s.ctx, start...)
	if s.cfg.repetier() {
		s.send("Info:External Reset")
		s.send("Free RAM:3004")
		s.send("SD card ok")
		return
	}
	s.send("echo:" + s.cfg.bannerVersion())
	s.send("echo: Last Updated: 2023-07-14 | Author: (printbridge virtual printer)")
	s.send("echo: Compiled: Jul 14 2023")
	s.send("echo: Free Memory: 2619  PlannerBufferBytes: " + strconv.Itoa(s.cfg.PlannerSize*72))
	switch {
	case s.cfg.NoSDSupport:
	case s.cfg.NoSDCard:
		s.send(msgSDInitFail)
	default:
		s.send(msgSDOK)
	}
	if s.cfg.GarbageOnOpen {
		s.p.link.writeLines(s.ctx, outLine{text: "\x80"})
	}
}

// idle waits for input, an emergency command, the next `wait` line or
// Repetier's repeated resend request.
func (s *session) idle() {
	var next time.Time
	if s.cfg.WaitWhenIdle && !s.killed {
		// NO_TIMEOUTS: `wait` once a second while nothing is queued or received.
		next = s.lastWait.Add(time.Second)
		if s.rx.empty() && !time.Now().Before(next) {
			s.send(msgWait)
			s.lastWait = time.Now()
			next = s.lastWait.Add(time.Second)
		}
	}
	if s.cfg.repetier() && !s.killed && (s.waitingForResend >= 0 || s.asm.partial()) {
		// A started line that is not continued, or a requested line that
		// does not come, makes Repetier ask again.
		again := s.lastInput.Add(repetierResendAfter)
		if s.rx.empty() && !time.Now().Before(again) {
			s.requestResend(false)
			s.lastInput = time.Now()
			again = s.lastInput.Add(repetierResendAfter)
		}
		if next.IsZero() || again.Before(next) {
			next = again
		}
	}
	var tick <-chan time.Time
	if !next.IsZero() {
		timer := time.NewTimer(time.Until(next))
		defer timer.Stop()
		tick = timer.C
	}
	select {
	case <-s.rx.ready:
	case <-s.interrupt:
	case <-tick:
	case <-s.ctx.Done():
	}
}

// fillQueue moves received bytes into lines and accepted lines into the
// command queue while it has room (Marlin's get_serial_commands). While
// the firmware is halted it reads everything, to catch M999.
func (s *session) fillQueue() {
	for s.killed || len(s.queue) < s.cfg.BufSize {
		if s.ctx.Err() != nil {
			return
		}
		c, ok := s.rx.readByte()
		if !ok {
			return
		}
		s.lastInput = time.Now()
		if s.cfg.prusa() && c >= 0x80 {
			// Prusa's get_command skips bytes with the high bit set.
			continue
		}
		c = s.corruptRX(c)
		if line, done := s.asm.feed(c); done {
			s.acceptLine(line)
		}
	}
}

// onEmergency is called by the emergency parser in the read goroutine.
func (s *session) onEmergency(cmd emergencyCommand) {
	switch cmd {
	case emergencyM108:
		s.breakWait.Store(true)
	case emergencyM112:
		s.killRequest.Store(true)
	case emergencyM410:
		s.planner.clear()
	}
	signal(s.interrupt)
}

func (s *session) serviceEmergency() {
	if s.killRequest.Swap(false) && !s.killed {
		s.p.record("M112")
		s.kill(true)
	}
}

// kill halts the firmware like Marlin's kill(): heaters off, moves and
// queued commands dropped, and no more commands until M999 or a reset.
// byM112 adds the emergency shutdown message.
func (s *session) kill(byM112 bool) {
	if s.killed {
		return
	}
	if byM112 {
		s.send(msgEmergency)
	}
	s.killed = true
	s.halted.Store(true)
	s.queue = nil
	s.flushed = true
	s.planner.clear()
	s.p.thermal.allOff()
	s.send(msgKilled)
	s.p.log.Warn("firmware halted", "by_m112", byM112)
}

// executeFront executes the front command of the queue and then removes
// it, unless the command cleared the queue itself.
func (s *session) executeFront() {
	cmd := s.queue[0]
	s.flushed = false
	s.execute(cmd)
	if !s.flushed && len(s.queue) > 0 {
		s.queue = s.queue[1:]
	}
}

// execute records and runs one command and sends its ok. Repetier sent
// the ok when it queued the line.
func (s *session) execute(cmd queuedCommand) {
	g := cmd.gcode
	if g.hasLine {
		s.lastExecutedN = g.line
	}
	s.okSent = s.cfg.repetier()
	switch {
	case cmd.sd == sdEnd:
		s.finishSDPrint()
		return
	case cmd.sd == sdLine:
		// Lines read from the card get no ok (Marlin queues them with
		// the no-ok flag).
		s.okSent = true
	case g.text != "" && !s.cfg.NoSDSupport && s.writing(g):
		s.writeCommand(g)
		return
	}
	if g.text == "" {
		// A numbered line without a command only advances the line number.
		if !s.okSent {
			s.ok(g)
		}
		return
	}
	s.p.record(g.text)
	s.busy.Store(true)
	defer s.busy.Store(false)

	name := g.name()
	if s.cfg.OKBeforeOutput && !s.okSent && name != "M112" && name != "M999" {
		s.ok(g)
	}
	if s.cfg.ProcessingTime > 0 && !s.sleep(s.cfg.ProcessingTime) {
		return
	}
	ack := s.dispatch(g)
	s.serviceEmergency()
	if s.killed || s.ctx.Err() != nil {
		return
	}
	if ack && !s.okSent {
		s.endBusy()
		s.ok(g)
	}
	switch cmd.after {
	case afterReset:
		s.p.log.Info("simulating firmware reset", "accepted_lines", s.acceptedNumbered)
		s.p.recordFault(FaultReset, 0)
		s.reboot()
	case afterFatal:
		s.p.log.Info("simulating thermal runaway", "accepted_lines", s.acceptedNumbered)
		s.send(msgRunaway)
		s.kill(false)
	}
}

// ok acknowledges g: `ok <n>` in Repetier, else with ADVANCED_OK's N, P
// and B fields if configured. DroppedOKs may swallow it.
func (s *session) ok(g *gcode) {
	s.okSent = true
	if s.dropOK() {
		s.p.log.Debug("dropped ok", "line", g.line, "numbered", g.hasLine)
		return
	}
	if s.cfg.repetier() {
		n := s.lastN
		if g.hasLine {
			n = g.line
		}
		s.send("ok " + strconv.FormatInt(n, 10))
		return
	}
	if !s.cfg.AdvancedOK {
		s.send("ok")
		return
	}
	line := "ok"
	if g.hasLine {
		line += " N" + strconv.FormatInt(g.line, 10)
	}
	line += " P" + strconv.Itoa(s.planner.free()) + " B" + strconv.Itoa(s.cfg.BufSize-len(s.queue))
	s.send(line)
}

// reboot simulates a firmware reset in the middle of a connection: the
// received bytes are lost and the banner is printed again.
func (s *session) reboot() {
	s.rx.drain()
	s.resetFirmware()
	s.banner(true)
}

// stopWaiting reports whether a blocking command must end now.
func (s *session) stopWaiting() bool {
	return s.ctx.Err() != nil || s.killed || s.killRequest.Load()
}

// await blocks until ch is closed and reports false when the command must
// end instead (see stopWaiting).
func (s *session) await(ch <-chan struct{}) bool {
	select {
	case <-ch:
	case <-s.interrupt:
	case <-s.ctx.Done():
	}
	return !s.stopWaiting()
}

// sleep waits for d of wall-clock time and reports false when the command
// must end first. It waits for an absolute deadline and usually ends
// within microseconds of it (see sleepUntil), so a short wait such as
// ProcessingTime lasts the modelled time and not until the Go runtime's
// next millisecond. An emergency command ends the wait early, except in
// its last preciseSleepMax.
func (s *session) sleep(d time.Duration) bool {
	if d <= 0 {
		return !s.stopWaiting()
	}
	deadline := time.Now().Add(d)
	if coarse := d - preciseSleepMax; coarse > 0 {
		timer := time.NewTimer(coarse)
		defer timer.Stop()
	wait:
		for {
			select {
			case <-timer.C:
				break wait
			case <-s.interrupt:
				if s.stopWaiting() {
					return false
				}
			case <-s.ctx.Done():
				return false
			}
		}
	}
	if !sleepUntil(s.ctx, deadline) {
		return false
	}
	return !s.stopWaiting()
}

// scaled converts model time into wall-clock time by Config.Speed.
func (s *session) scaled(d time.Duration) time.Duration {
	if s.cfg.Speed == 0 {
		return 0
	}
	return time.Duration(float64(d) / s.cfg.Speed)
}

// endBusy leaves the busy state before the command's ok is sent.
func (s *session) endBusy() {
	s.busyMu.Lock()
	defer s.busyMu.Unlock()
	s.busy.Store(false)
}

// sendBusy sends the keep-alive line if a command is still running.
func (s *session) sendBusy() {
	s.busyMu.Lock()
	defer s.busyMu.Unlock()
	if s.busy.Load() {
		s.send(s.busyLine())
	}
}
