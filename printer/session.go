package printer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/lazy"
)

// readerMsg is one framed line, or the error that ended a port's reader.
type readerMsg struct {
	gen  int
	line string
	// overlong is the length of the line when line is only its end (see
	// LineReader.Overlong).
	overlong int
	err      error
}

// sentLine is a numbered line waiting for its ok.
type sentLine struct {
	// n is the line's number in the firmware's count, the history key.
	n int
	// wire is the number in the line's N prefix. It differs from n only
	// for an M110, whose prefix carries the number it sets.
	wire int
	// reset marks an M110: the numbering switches to wire+1 only at its
	// ok, because a rejected M110 leaves the firmware in the old count.
	reset bool
	// answersRequest marks a copy sent after the firmware requested its
	// line (a resend, or the line after the resend style probe), so a
	// repeat of that request that arrives while the copy is in flight
	// can be recognised.
	answersRequest bool
	// retry marks a copy sent again after a communication timeout, which
	// took the original's ok for lost.
	retry bool
	// suspect marks a copy whose request the firmware repeated while the
	// copy was in flight. The repeat is an echo, or the firmware rejected
	// the copy because its line number was damaged on the wire. Its ok
	// gets suspectCopyTimeout, not the communication timeout.
	suspect bool
	// runningSignAt is when the firmware last showed that this line, at
	// the head of the window, still runs (a busy line, or a report of a
	// heating wait), and runningSignGap the longest gap between two such
	// signs. Once the signs stop, the ok is overdue much sooner than the
	// long-running limit.
	runningSignAt  time.Time
	runningSignGap time.Duration
	text           string
	owner          *gcodeRequest
	sentAt         time.Time
	longRun        bool
	// emergency marks an unnumbered M108 or M410 written out of band by
	// sendEmergency. Its bytes wait in the firmware's RX buffer and it
	// gets an ok in its place in the stream, like a numbered line, but it
	// has no number and is never sent again.
	emergency bool
	// size is the line's wire length with its line feed.
	size int
}

// queued is a line or a marker waiting to be sent. A marker runs its
// callback once every line before it has been acknowledged, so state
// changes happen in order with the lines around them.
type queued struct {
	text   string
	owner  *gcodeRequest
	marker func()
	// toolScripts marks a T<n> line already wrapped in the tool change
	// scripts, so it is not wrapped again.
	toolScripts bool
}

// gcodeRequest tracks the lines of one SendGcode call.
type gcodeRequest struct {
	pending int
	// acked holds the line numbers already acknowledged, so a line that
	// the firmware asks for again (a rewind) is not counted twice.
	acked   map[int]bool
	replies []string
	done    DoneFunc
	source  string
	failed  bool
}

const maxReplyLines = 200

func (g *gcodeRequest) addReply(line string) {
	if len(g.replies) < maxReplyLines {
		g.replies = append(g.replies, line)
	}
}

func (g *gcodeRequest) finish(err error) {
	if g.failed || g.done == nil {
		return
	}
	if err != nil {
		g.failed = true
	}
	g.done(g.replies, err)
	g.done = nil
}

// longRunningCodes never time out while they wait for their ok, as
// OctoPrint's longRunningCommands plus the blocking heat-ups.
var longRunningCodes = lazy.Map[string, bool]{Build: func() map[string]bool {
	return map[string]bool{
		"G4": true, "G28": true, "G29": true, "G30": true, "G32": true, "M400": true, "M226": true,
		"M600": true, "M109": true, "M190": true, "M191": true, "M116": true, "M0": true, "M1": true,
	}
}}

// dwellOf returns the wait of a G4 line: S in seconds, else P in
// milliseconds, as Marlin's G4 reads them, and zero without either.
func dwellOf(text string) (time.Duration, bool) {
	if CodeOf(text) != "G4" {
		return 0, false
	}
	// Longer than a day counts as a day, so the conversion cannot
	// overflow.
	const longest = 24 * time.Hour
	if s, ok := Param(text, 'S'); ok && s > 0 {
		return time.Duration(min(s, longest.Seconds()) * float64(time.Second)), true
	}
	if p, ok := Param(text, 'P'); ok && p > 0 {
		return time.Duration(min(p, float64(longest.Milliseconds())) * float64(time.Millisecond)), true
	}
	return 0, true
}

// userWaitCodes wait for the user and may block for hours.
var userWaitCodes = lazy.Map[string, bool]{Build: func() map[string]bool {
	return map[string]bool{"M0": true, "M1": true, "M226": true, "M600": true}
}}

// heatingCodes are the blocking heat-ups, which print status lines while
// they wait.
var heatingCodes = lazy.Map[string, bool]{Build: func() map[string]bool {
	return map[string]bool{"M109": true, "M190": true, "M191": true, "M116": true}
}}

// interruptibleCode reports whether code is a wait that M108 ends early:
// Marlin's emergency parser clears wait_for_heatup and wait_for_user.
// M226 waits for a pin, which M108 does not end, so counting it is only
// stricter.
func interruptibleCode(code string) bool {
	return heatingCodes.Get()[code] || userWaitCodes.Get()[code]
}

// gcodeEvents maps a G-code to the event OctoPrint fires when it is
// queued for sending.
var gcodeEvents = lazy.Map[string, string]{Build: func() map[string]string {
	return map[string]string{
		"M0": bridge.EventWaiting, "M1": bridge.EventWaiting, "M226": bridge.EventWaiting,
		"G4":   bridge.EventDwelling,
		"M245": bridge.EventCooling, "M240": bridge.EventConveyor, "M40": bridge.EventEject,
		"M300": bridge.EventAlert, "G28": bridge.EventHome, "M112": bridge.EventEStop,
		"M80": bridge.EventPowerOn, "M81": bridge.EventPowerOff,
		"M600": bridge.EventFilamentChange, "M701": bridge.EventFilamentChange, "M702": bridge.EventFilamentChange,
	}
}}

// session is the owner goroutine's state: the port, the protocol state
// and the job. Only the Run goroutine touches it.
type session struct {
	p   *Printer
	log *slog.Logger

	// connection
	wantConnected bool
	nextAttempt   time.Time
	attempts      int
	port          io.ReadWriteCloser
	// wireBuffer holds the numbered line being written, reused for every
	// line so a print does not allocate one per line.
	wireBuffer    []byte
	gen           int
	lineCh        chan readerMsg
	state         State
	lastError     string
	outageEmitted bool
	pendingOnConn []DoneFunc

	// handshake
	helloSent  int
	helloAt    time.Time
	connectedN int

	// protocol
	nextLine      int
	history       map[int]sentLine
	historyOrder  []int
	inflight      []sentLine
	inflightBytes int
	advancedOK    bool
	// maxWire is the highest N prefix sent since the last M110, the
	// highest line number an ADVANCED_OK ok may name.
	maxWire     int
	freeSlots   int
	sentSinceOK int
	// recovering sends one line at a time after a resend request, from
	// settleUntil on, until recoverLine is acknowledged.
	recovering  bool
	recoverLine int
	settleUntil time.Time
	// resendWithOK and resendWithoutOK record whether this firmware sends
	// an ok after a Resend line, learned from the first resend.
	resendWithOK    bool
	resendWithoutOK bool
	// probing is set while the resend style probe is on the wire, and
	// probeAt is when it was sent.
	probing bool
	probeAt time.Time
	// noWindow is set when the firmware accepted the probe's
	// out-of-sequence line: it does not check line numbers, so only one
	// line may be in flight.
	noWindow bool
	// capBlockOpen is set while Cap lines arrive; capBlockEnded once a
	// line after them did. capsApplied is set when applyCapabilities ran,
	// and capsDeadline is when it runs at the latest.
	capBlockOpen  bool
	capBlockEnded bool
	capsApplied   bool
	capsDeadline  time.Time
	queue         []queued
	// emergencies are out-of-band M108 and M410 lines waiting for room in
	// the firmware's RX buffer (flushEmergencies).
	emergencies   []string
	resend        []int
	resendLast    int
	resendRepeats int
	// lineError is the last error line that announced a resend request,
	// until that request arrives.
	lineError string
	// requestedLine is the line of the last resend request that was
	// answered, -1 when none.
	requestedLine  int
	expectResendOK bool
	resendAt       time.Time
	lastProgress   time.Time
	lastRx         time.Time
	timeouts       int
	recentLines    []string
	// pendingError is an error line waiting for the line that completes
	// it, received at pendingErrorAt.
	pendingError   string
	pendingErrorAt time.Time
	// garbageLog, badResendLog, damagedOKLog, overlongLog and okNumberLog rate-limit
	// the warnings about corrupt serial input, and rejectedLog and
	// resendLog those about rejected lines and resend requests, which a
	// noisy line sends many times a second.
	garbageLog   logLimiter
	badResendLog logLimiter
	damagedOKLog logLimiter
	overlongLog  logLimiter
	okNumberLog  logLimiter
	rejectedLog  logLimiter
	resendLog    logLimiter

	// firmware
	firmwareName string
	firmwareData map[string]string
	caps         map[string]bool
	autoReport   bool
	nextPoll     time.Time
	pollQueued   bool
	// posAutoReport and sdAutoReport are set while M154 and M27 S
	// auto-reports are on.
	posAutoReport bool
	sdAutoReport  bool

	// tracked printer state
	temps          map[string]TemperatureSnapshot
	position       *Position
	positionReason string
	tool           int
	// toolBefore is the tool selected before the last T<n>, the fallback
	// when the firmware reports the new one invalid.
	toolBefore int
	// invalidTools are the tools the firmware reported invalid on this
	// connection.
	invalidTools map[int]bool
	feedrate     *float64
	commZ        *float64
	printerZ     *float64

	// job
	selected *selectedFile
	job      *job
	sd       sdState
	// pausePosition and pauseTemperatures are recorded when a print
	// pauses, for the afterPrintPaused and beforePrintResumed scripts.
	pausePosition     map[string]any
	pauseTemperatures map[string]any

	// settings are the profile, scripts folder and command filters.
	settings Settings
	// pendingDisconnect is a requested disconnect that waits for the
	// beforePrinterDisconnected script to be sent.
	pendingDisconnect *pendingDisconnect
}

type pendingDisconnect struct {
	done     DoneFunc
	deadline time.Time
}

func newSession(p *Printer) *session {
	return &session{
		p:        p,
		log:      p.log,
		lineCh:   make(chan readerMsg, 256),
		state:    StateOffline,
		history:  map[int]sentLine{},
		temps:    map[string]TemperatureSnapshot{},
		caps:     map[string]bool{},
		settings: p.cfg.Settings,
	}
}

func (s *session) emit(name string, payload bridge.Payload) {
	if s.p.emit != nil {
		s.p.emit(name, payload.Clone(), s.context())
	}
}

func (s *session) context() bridge.Context {
	c := bridge.Context{State: string(s.state)}
	if s.printerZ != nil {
		z := *s.printerZ
		c.CurrentZ = &z
	}
	if s.selected != nil {
		c.File = &bridge.FileRef{Name: s.selected.name, Path: s.selected.path, Origin: s.selected.originName()}
		prog := s.selected.progress()
		c.Progress = &prog
	}
	return c
}

func (s *session) setState(st State) {
	if st == s.state {
		return
	}
	prev := s.state
	s.state = st
	s.log.Info("printer state changed", "from", string(prev), "to", string(st))
	id, text := st.EventID()
	text = s.sdStateText(st, text)
	prevID, _ := prev.EventID()
	if id == prevID {
		return
	}
	s.emit(bridge.EventPrinterStateChanged, bridge.Payload{{Key: "state_id", Value: id}, {Key: "state_string", Value: text}})
}

// ---- connection lifecycle ----

func (s *session) onTick(now time.Time) {
	switch {
	case s.port == nil:
		if s.wantConnected && !now.Before(s.nextAttempt) {
			s.open(now)
		}
	case s.state == StateConnecting:
		if !now.Before(s.helloAt.Add(s.p.cfg.HelloTimeout)) {
			if s.helloSent >= s.p.cfg.HelloRetries {
				s.fail("timeout", fmt.Sprintf("no answer from the printer on %s after %d handshakes; check the port and the baud rate (%d)",
					s.p.cfg.Port, s.helloSent, s.p.cfg.Baud), "disconnect", false)
				return
			}
			s.log.Warn("no answer to handshake, retrying", "attempt", s.helloSent+1)
			s.sendHello()
		}
	default:
		s.checkTimeouts(now)
		if s.expectResendOK && now.Sub(s.resendAt) >= s.p.cfg.ResendOKWait {
			s.missedResendOK()
		}
		if s.pendingError != "" && now.Sub(s.pendingErrorAt) > 200*time.Millisecond {
			line := s.pendingError
			s.pendingError = ""
			s.classifyErrorLine(line)
			if s.port == nil {
				return
			}
		}
		if s.recovering && !now.Before(s.settleUntil) {
			s.pump()
		}
		if !s.capsApplied && !s.capsDeadline.IsZero() && now.After(s.capsDeadline) {
			s.applyCapabilities()
			s.pump()
		}
		if d := s.pendingDisconnect; d != nil && now.After(d.deadline) {
			s.log.Warn("beforePrinterDisconnected script not sent in time; disconnecting anyway", "wait", beforeDisconnectWait)
			s.finishDisconnect()
			return
		}
		if s.probing && now.Sub(s.probeAt) > s.p.cfg.HelloTimeout {
			s.probing = false
			s.noWindow = true
			s.log.Warn("no answer to the resend style probe; sending one line at a time")
			s.pump()
		}
		s.maybePoll(now)
		s.sdTick(now)
	}
}

func (s *session) open(now time.Time) {
	cfg := s.p.cfg
	// Retries after a failed open stay Offline until the port opens, so
	// a printer that is switched off does not fire events on every retry.
	if !s.outageEmitted {
		s.emit(bridge.EventConnecting, nil)
		s.setState(StateOpenSerial)
	}
	s.log.Info("opening serial port", "baud", cfg.Baud, "attempt", s.attempts+1)
	port, err := cfg.Open(cfg.Port, cfg.Baud)
	if err != nil {
		wait := backoff(s.attempts, cfg.ReconnectMin, cfg.ReconnectMax)
		s.attempts++
		s.nextAttempt = now.Add(wait)
		s.log.Warn("serial port open failed, retrying", "error", err, "retry_in", wait.Round(time.Millisecond))
		if !s.outageEmitted {
			s.outageEmitted = true
			s.emit(bridge.EventError, bridge.Payload{{Key: "error", Value: err.Error()}, {Key: "reason", Value: "connection"}})
		}
		// OctoPrint shows a failed open as CLOSED_WITH_ERROR. During an
		// outage the first error stays, because it names the cause.
		if s.state != StateClosedWithError {
			s.lastError = "serial port open failed: " + err.Error()
		}
		s.setState(StateClosedWithError)
		if !cfg.AutoConnect {
			s.wantConnected = false
			s.finishConnectWaiters(err)
		}
		return
	}
	// NOTE: invalid tools are forgotten on a new connection, because a
	// firmware update may have added the tool.
	s.port = port
	s.setState(StateOpenSerial)
	s.gen++
	gen := s.gen
	go readLoop(port, gen, s.lineCh, cfg.MaxLineLength*8)
	s.resetProtocol()
	s.commZ = nil
	s.firmwareName = ""
	s.advancedOK = false
	s.maxWire = 0
	s.capBlockOpen, s.capBlockEnded, s.capsApplied = false, false, false
	s.capsDeadline = time.Time{}
	s.noWindow = false
	s.probing = false
	s.resendWithOK = false
	s.resendWithoutOK = false
	s.caps = map[string]bool{}
	s.autoReport = false
	s.invalidTools = nil
	s.posAutoReport = false
	s.sdAutoReport = false
	s.setState(StateConnecting)
	s.helloSent = 0
	s.sendHello()
}

// readLoop is the only reader of port. It ends when the port is closed or
// fails, and reports that as its last message.
func readLoop(port io.Reader, gen int, out chan<- readerMsg, max int) {
	lr := NewLineReader(retryReader{port}, max)
	for {
		line, err := lr.ReadLine()
		if err != nil {
			out <- readerMsg{gen: gen, err: err}
			return
		}
		out <- readerMsg{gen: gen, line: line, overlong: lr.Overlong()}
		// The send made the owner goroutine runnable on this thread's P.
		// Yielding before the next read, which blocks in a system call,
		// lets the owner handle the line (and write the next one after an
		// ok) at once on this thread, not on a second thread that the
		// runtime must wake first. In streaming runs on the two-core VM
		// of docs/benchmarks.md this cut the median hand-over from 42 to
		// 12 µs.
		runtime.Gosched()
	}
}

// retryReader hides go.bug.st/serial's (0, nil) reads, which bufio would
// turn into io.ErrNoProgress.
type retryReader struct{ r io.Reader }

func (rr retryReader) Read(b []byte) (int, error) {
	for i := 0; ; i++ {
		n, err := rr.r.Read(b)
		if n > 0 || err != nil {
			return n, err
		}
		if i > 10 {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (s *session) resetProtocol() {
	s.nextLine = 0
	s.history = map[int]sentLine{}
	s.historyOrder = nil
	s.inflight = nil
	s.inflightBytes = 0
	s.sentSinceOK = 0
	s.recovering = false
	s.pendingError = ""
	s.queue = nil
	s.emergencies = nil
	s.resend = nil
	s.resendRepeats = 0
	s.resendLast = -1
	s.lineError = ""
	s.requestedLine = -1
	s.expectResendOK = false
	s.timeouts = 0
	s.pollQueued = false
	now := time.Now()
	s.lastProgress = now
	s.lastRx = now
}

func (s *session) sendHello() {
	s.helloSent++
	s.helloAt = time.Now()
	// The hello resets the firmware's line number, so it is written
	// directly instead of through the queue: N0 M110 N0, next line N1.
	// Its numbering applies at once, because the firmware's count is
	// unknown before the handshake and no earlier line can be resent.
	s.nextLine = 1
	s.history = map[int]sentLine{}
	s.historyOrder = nil
	s.resend = nil
	s.writeLine(sentLine{n: 0, wire: 0, text: "M110 N0"})
	s.inflight = nil
	s.inflightBytes = 0
}

func (s *session) onConnected() {
	s.attempts = 0
	s.outageEmitted = false
	s.lastError = ""
	s.inflight = nil
	s.inflightBytes = 0
	s.setState(StateOperational)
	s.log.Info("printer connected", "baud", s.p.cfg.Baud)
	s.emit(bridge.EventConnected, bridge.Payload{{Key: "port", Value: s.p.cfg.Port}, {Key: "baudrate", Value: s.p.cfg.Baud}})
	s.enqueue(queued{text: "M115"})
	s.enqueue(queued{marker: s.m115Answered})
	s.runScript(ScriptAfterPrinterConnected, bridge.Payload{{Key: "port", Value: s.p.cfg.Port}, {Key: "baudrate", Value: s.p.cfg.Baud}}, nil)
	s.finishConnectWaiters(nil)
	s.pump()
}

func (s *session) finishConnectWaiters(err error) {
	for _, d := range s.pendingOnConn {
		if d != nil {
			d(nil, err)
		}
	}
	s.pendingOnConn = nil
}

// capabilitiesWait is how long after the M115 ok the Cap lines may still
// arrive: firmwares that send ok before their output (Repetier style)
// print the capability block after the ok.
const capabilitiesWait = time.Second

// m115Answered runs once the M115 line is acknowledged. The capabilities
// apply when the Cap block has ended, or after capabilitiesWait.
func (s *session) m115Answered() {
	if s.capsApplied {
		return
	}
	if s.capBlockEnded {
		s.applyCapabilities()
		return
	}
	s.capsDeadline = time.Now().Add(capabilitiesWait)
}

// endCapBlock runs at the first line after the Cap lines.
func (s *session) endCapBlock() {
	s.capBlockOpen = false
	s.capBlockEnded = true
	if !s.capsDeadline.IsZero() && !s.capsApplied {
		s.applyCapabilities()
	}
}

// applyCapabilities switches on the temperature auto-report when the
// firmware has it, else polls M105, switches on the position auto-report
// when the firmware has it, and probes the resend style before windowed
// sending starts.
func (s *session) applyCapabilities() {
	s.capsApplied = true
	s.capsDeadline = time.Time{}
	if s.caps["AUTOREPORT_TEMP"] {
		s.autoReport = true
		s.enqueue(queued{text: "M155 S2"})
		s.log.Info("temperature auto-report enabled", "interval_seconds", 2)
	} else {
		s.nextPoll = time.Now()
	}
	if s.caps["AUTOREPORT_POS"] {
		// Marlin's AUTO_REPORT_POSITION. Prusa's firmware reports
		// AUTOREPORT_POSITION instead and is left alone, as OctoPrint
		// does, because its M154 is not known to behave the same.
		sec := s.positionReportSeconds()
		s.enqueue(queued{text: "M154 S" + strconv.Itoa(sec)})
		s.log.Info("position auto-report enabled", "interval_seconds", sec)
	}
	if s.windowed() && !s.resendWithOK && !s.resendWithoutOK {
		s.probeResendStyle()
	}
	s.sdOnCapabilities()
}

// positionReportSeconds returns Config.PositionReportInterval in whole
// seconds, at least 1, as M154 takes it.
func (s *session) positionReportSeconds() int {
	return max(1, int(s.p.cfg.PositionReportInterval.Round(time.Second)/time.Second))
}

// enableSDAutoReport switches the firmware's SD print status report
// (M27 S<seconds>) on or off, for an SD print that starts or ends. It
// returns false, and sends nothing, when the firmware lacks
// Cap:AUTOREPORT_SD_STATUS, so the caller has to poll M27 itself.
func (s *session) enableSDAutoReport(on bool) bool {
	if !s.caps["AUTOREPORT_SD_STATUS"] {
		return false
	}
	sec := 0
	if on {
		sec = sdReportSeconds
	}
	s.enqueue(queued{text: "M27 S" + strconv.Itoa(sec)})
	s.log.Info("SD status auto-report switched", "on", on, "interval_seconds", sec)
	s.pump()
	return true
}

// sdReportSeconds is the M27 S interval while an SD print runs, as
// OctoPrint's sdStatusAutoreport default.
const sdReportSeconds = 1

// requestPosition asks for the position at a pause or cancel with M114.
// With the position auto-report on, it is switched off around the M114,
// as OctoPrint 1.11 does, so that a report sent before the pause's M400
// finished is not taken for the position the pause recorded.
func (s *session) requestPosition() {
	if !s.posAutoReport {
		s.enqueue(queued{text: "M114"})
		return
	}
	s.enqueue(queued{text: "M154 S0"})
	s.enqueue(queued{text: "M114"})
	s.enqueue(queued{text: "M154 S" + strconv.Itoa(s.positionReportSeconds())})
}

// disconnect closes the port. userRequested keeps it closed; otherwise
// the reconnect loop reopens it.
func (s *session) disconnect(reason string, withError bool) {
	if s.port == nil {
		return
	}
	if s.job != nil {
		s.failJob(reason)
	}
	s.sdConnectionLost("printer disconnected: " + reason)
	s.failPending(errors.New("printer disconnected: " + reason))
	_ = s.port.Close()
	s.port = nil
	s.gen++
	s.printerZ = nil
	s.autoReport = false
	s.posAutoReport = false
	s.sdAutoReport = false
	// Readings and targets of a printer that is gone are unknown.
	clear(s.temps)
	if withError {
		s.setState(StateClosedWithError)
	} else {
		s.setState(StateClosed)
	}
	s.log.Info("serial port closed", "reason", reason)
	s.emit(bridge.EventDisconnected, nil)
	if d := s.pendingDisconnect; d != nil {
		s.pendingDisconnect = nil
		if d.done != nil {
			d.done(nil, nil)
		}
	}
	if s.wantConnected {
		wait := backoff(s.attempts, s.p.cfg.ReconnectMin, s.p.cfg.ReconnectMax)
		s.attempts++
		s.nextAttempt = time.Now().Add(wait)
		s.outageEmitted = true
		s.log.Info("reconnect scheduled", "retry_in", wait.Round(time.Millisecond))
	}
}

// fail handles an unrecoverable error the way OctoPrint does: state
// ERROR, the Error event, PrintFailed for a running job, then the port is
// closed.
func (s *session) fail(reason, msg, consequence string, firmware bool) {
	s.log.Error("printer error", "reason", reason, "error", msg)
	s.lastError = msg
	s.setState(StateError)
	payload := bridge.Payload{{Key: "error", Value: msg}, {Key: "reason", Value: reason}}
	if consequence != "" {
		payload = payload.Set("consequence", consequence)
	}
	if firmware {
		if faq := ErrorFAQ(msg); faq != "" {
			payload = payload.Set("faq", faq)
		}
		logs := make([]any, len(s.recentLines))
		for i, l := range s.recentLines {
			logs[i] = l
		}
		payload = payload.Set("logs", logs)
	}
	s.emit(bridge.EventError, payload)
	if s.job != nil {
		s.failJob(msg)
	}
	s.disconnect(msg, true)
}

func (s *session) failPending(err error) {
	for _, f := range s.inflight {
		if f.owner != nil {
			f.owner.finish(err)
		}
	}
	for _, q := range s.queue {
		if q.owner != nil {
			q.owner.finish(err)
		}
	}
	for _, n := range s.resend {
		if h, ok := s.history[n]; ok && h.owner != nil {
			h.owner.finish(err)
		}
	}
	s.inflight = nil
	s.inflightBytes = 0
	s.queue = nil
	s.emergencies = nil
	s.resend = nil
}

func (s *session) shutdown() {
	if s.port != nil {
		_ = s.port.Close()
		s.port = nil
	}
}

// ---- received lines ----

func (s *session) handleReader(m readerMsg) {
	if m.gen != s.gen || s.port == nil {
		return
	}
	if m.err != nil {
		msg := fmt.Sprintf("serial port %s failed: %v", s.p.cfg.Port, m.err)
		if errors.Is(m.err, io.EOF) {
			msg = fmt.Sprintf("serial port %s was closed by the device (unplugged?)", s.p.cfg.Port)
		}
		s.fail("connection", msg, "disconnect", false)
		return
	}
	if m.overlong > 0 {
		s.handleOverlong(m.line, m.overlong, time.Now())
		return
	}
	s.handleLine(m.line)
}

func (s *session) remember(line string) {
	const keep = 20
	if len(s.recentLines) >= keep {
		copy(s.recentLines, s.recentLines[1:])
		s.recentLines = s.recentLines[:keep-1]
	}
	s.recentLines = append(s.recentLines, line)
}

// gluedOK matches old Marlin's `File deleted:<name>ok`, where the ok lost
// its line feed and would otherwise never be counted.
func gluedOK(line string) bool {
	return strings.HasPrefix(line, "File deleted") && strings.HasSuffix(line, "ok")
}

// gluedTailPattern finds an ok or a reset banner that lost its line feed
// and stuck to the end of the previous output (`...B@:17ok`,
// `Cap:CONFIG_EXPORT:0ok`, `T:22.00 /0.00 B:22start`,
// `echo:Unknown command: "M486 S0"ok`). Only a tail after a digit or one
// of ? " ) . counts, so words that end in "ok" stay whole. A colon does
// not count, because `echo:ok` is what `M118 E1 ok` prints before its
// own ok.
var gluedTailPattern = lazy.Regexp{Expr: `^(.*[0-9?").])(ok(?: N\d+)?(?: P\d+ B\d+)?|start)$`}

// gluedHeadTokens start a message of their own when they appear inside
// another line.
var gluedHeadTokens = []string{"Error:", "Resend:", "echo:busy:"}

// splitGlued splits a line that holds two messages because a line feed
// was lost; it returns nil when the line is whole.
func splitGlued(line string) []string {
	if parts := splitGluedSD(line); parts != nil {
		return parts
	}
	for _, tok := range gluedHeadTokens {
		if i := strings.Index(line, tok); i > 0 {
			return []string{line[:i], line[i:]}
		}
	}
	if strings.HasPrefix(line, "ok") || strings.HasPrefix(line, "Resend") || line == "start" {
		return nil
	}
	if m := gluedTailPattern.Get().FindStringSubmatch(line); m != nil {
		return []string{m[1], m[2]}
	}
	return nil
}

func (s *session) handleLine(raw string) {
	if parts := splitGlued(strings.TrimSpace(raw)); parts != nil {
		for _, part := range parts {
			s.handleLine(part)
		}
		return
	}
	if f := s.p.metrics.LineReceived; f != nil {
		f()
	}
	now := time.Now()
	s.lastRx = now
	line := strings.TrimSpace(raw)
	if line == "" {
		return
	}
	s.remember("Recv: " + line)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("recv", "line", line)
	}
	if hasGarbage(line) {
		s.reportGarbage(line, now)
	}
	if s.sdListLine(line) {
		return
	}
	if s.capBlockOpen {
		if _, _, isCap := ParseCapability(line); !isCap {
			s.endCapBlock()
		}
	}
	if s.pendingError != "" {
		joined := JoinErrorLines(s.pendingError, line)
		s.pendingError = ""
		s.classifyErrorLine(joined)
		return
	}

	if strings.HasPrefix(raw, "echo:busy:") || strings.HasPrefix(raw, "busy:") {
		s.noteRunning(now)
		s.timeouts = 0
		return
	}
	if s.state == StateConnecting {
		s.handleConnectingLine(line)
		return
	}
	if line == "start" {
		s.handleFirmwareReset()
		return
	}
	if strings.HasPrefix(line, "//") {
		s.handleHostAction(line)
		return
	}
	if IsErrorLine(line) {
		s.handleErrorLine(line)
		return
	}
	if n := joinedOKs(line); n > 0 {
		s.reportDamagedOK(line, hasGarbage(line), now)
		for range n {
			s.handleOK("ok", now)
		}
		return
	}
	lower := strings.ToLower(line)
	if strings.HasPrefix(lower, "ok") {
		s.handleOK(line, now)
		return
	}
	if gluedOK(line) {
		s.handleOK("ok", now)
		return
	}
	if repaired, ok := damagedOK(line); ok {
		s.reportDamagedOK(line, hasGarbage(line), now)
		s.handleOK(repaired, now)
		return
	}
	if line == "wait" {
		s.handleWait(now)
		return
	}
	if isResendLine(lower) {
		if n, ok := ParseResend(line); ok && n >= 0 {
			s.handleResend(n)
			return
		}
		s.reportBadResend(line, now)
		return
	}
	// A non-ok line after a resend request means the firmware did not
	// send that request's ok, as Marlin 2.0.x and Prusa 3.1 do not.
	if s.expectResendOK {
		defer s.missedResendOK()
	}
	if len(s.inflight) > 0 && s.inflight[0].owner != nil && !s.unrequestedReport(line, s.inflight[0].text) {
		s.inflight[0].owner.addReply(line)
	}
	s.parseReport(line)
}

// unrequestedReport reports whether line is a temperature or position
// auto-report that arrived while sent ran, rather than output of sent.
// Such reports come every few seconds, so a long command (a dwell, a
// homing) would otherwise carry them in its reply. A heating wait's
// reports (with W:) and the replies of M105 and M114 stay.
func (s *session) unrequestedReport(line, sent string) bool {
	code := CodeOf(sent)
	switch {
	case s.autoReport && IsTemperatureLine(line) && !strings.Contains(line, "W:"):
		return code != "M105" && !heatingCodes.Get()[code]
	case s.posAutoReport && strings.Contains(line, "X:") && strings.Contains(line, "Y:") && strings.Contains(line, "Z:"):
		_, isPosition := ParsePosition(line)
		return isPosition && code != "M114"
	}
	return false
}

func (s *session) handleConnectingLine(line string) {
	switch {
	case strings.HasPrefix(line, "start") || strings.Contains(line, "start") && len(line) < 16:
		// A firmware that resets when the port opens loses the first
		// hello while it boots; answer its banner with another.
		// A firmware that prints its banner when the port opens answers
		// the first hello right after it; one that reset on open lost
		// that hello while booting. Waiting a moment before the next
		// hello tells the two apart without a second, unmatched ok.
		s.log.Info("firmware start banner received")
		s.helloAt = time.Now().Add(-s.p.cfg.HelloTimeout + 300*time.Millisecond)
	case strings.HasPrefix(strings.ToLower(line), "ok"), line == "wait":
		s.onConnected()
	}
}

func (s *session) handleFirmwareReset() {
	idle := s.job == nil
	s.log.Warn("firmware reset detected (start received while connected)", "printing", !idle)
	s.emit(bridge.EventPrinterReset, bridge.Payload{{Key: "idle", Value: idle}})
	if s.job != nil {
		s.failJob("printer reset while printing (firmware sent start)")
	}
	s.sdConnectionLost("printer reset (firmware sent start)")
	s.failPending(errors.New("printer reset"))
	s.resetProtocol()
	s.commZ = nil
	s.setState(StateConnecting)
	s.helloSent = 0
	s.sendHello()
}

func (s *session) handleErrorLine(line string) {
	if ErrorContinues(line) {
		// Wait for the line that completes the report (see
		// ErrorContinues); onTick handles it alone if none comes.
		s.pendingError = line
		s.pendingErrorAt = time.Now()
		return
	}
	s.classifyErrorLine(line)
}

func (s *session) classifyErrorLine(line string) {
	switch ClassifyError(line) {
	case ErrorRecoverable:
		// The firmware dropped the line and sends no resend request; an
		// ok lets the next numbered line provoke one.
		s.log.Warn("firmware dropped a line without resend request", "line", line)
		s.handleOK("ok", time.Now())
	case ErrorResendFollows:
		if s.probing {
			s.log.Debug("firmware rejected the resend style probe, as intended", "line", line)
			return
		}
		if f := s.p.metrics.ChecksumErr; f != nil {
			f()
		}
		s.lineError = line
		if count, ok := s.rejectedLog.allow(time.Now()); ok {
			s.log.Warn("firmware rejected a line; logged at most once a minute, printbridge_serial_checksum_errors_total counts them all",
				"line", line, "count", count)
		} else {
			s.log.Debug("firmware rejected a line", "line", line)
		}
	case ErrorIgnored:
		s.log.Info("firmware reported a recoverable error", "line", line)
		if len(s.inflight) > 0 && s.inflight[0].owner != nil {
			s.inflight[0].owner.addReply(line)
		}
		s.sdErrorLine(line)
	case ErrorFatal:
		s.fail("firmware", strings.TrimSpace(line), "disconnect", true)
	}
}

func (s *session) checkTimeouts(now time.Time) {
	if len(s.inflight) == 0 || s.expectResendOK {
		return
	}
	head := s.inflight[0]
	limit := s.p.cfg.CommTimeout
	since := now.Sub(maxTime(s.lastProgress, head.sentAt))
	if head.longRun {
		// User waits (M0, M600) may last hours. Other long-running
		// commands get ten times the limit since the last sign of
		// progress (busy lines, or the status lines of a heating wait),
		// so a lost ok cannot stall a print for good.
		if userWaitCodes.Get()[CodeOf(head.text)] {
			return
		}
		if dwell, ok := dwellOf(head.text); ok {
			// A dwell's length is known. Marlin waits for the moves in
			// its planner first, but sends busy lines meanwhile with
			// HOST_KEEPALIVE_FEATURE, on by default (below), and an ok
			// lost after `G4 S0` held the print 300 s.
			limit += dwell
		} else {
			limit *= 10
		}
		if !head.runningSignAt.IsZero() {
			// The command showed that it ran and then went quiet: it
			// ended and its ok was lost, or the firmware hangs. Marlin
			// sends a busy line every 2 s (M113), so three of its gaps,
			// and at least the communication timeout, are long enough.
			limit = max(s.p.cfg.CommTimeout, 3*head.runningSignGap)
		}
	}
	if head.suspect && since >= min(limit, suspectCopyTimeout) {
		// Sending the copy again is safe either way: a firmware that has
		// the line rejects the new copy with a line-number error and
		// requests the next one, which acknowledges it.
		s.log.Warn("no ok for a resent line after the printer requested it again; sending it again",
			"line_number", head.n, "waited", since.Round(time.Millisecond))
		s.lastProgress = now
		s.requeueInflight()
		s.pump()
		return
	}
	if since < limit {
		return
	}
	s.timeouts++
	if f := s.p.metrics.Timeout; f != nil {
		f()
	}
	if s.timeouts > s.p.cfg.MaxTimeouts {
		// s.timeouts counts this timeout too, as the Timeout metric does:
		// the edge sent the lines again after each of the first
		// MaxTimeouts and gives up at the next one.
		s.fail("timeout", fmt.Sprintf("no answer from the printer for %d consecutive timeouts of %s (%d retries); it may be frozen or disconnected",
			s.timeouts, limit, s.timeouts-1), "disconnect", false)
		return
	}
	s.log.Warn("communication timeout, sending the line again", "line_number", head.n, "timeouts", s.timeouts)
	s.lastProgress = now
	s.requeueInflight()
	s.pump()
}

// noteRunning records a sign that the line at the head of the window
// still runs, and counts as progress.
func (s *session) noteRunning(now time.Time) {
	s.lastProgress = now
	if len(s.inflight) == 0 {
		return
	}
	head := &s.inflight[0]
	if !head.runningSignAt.IsZero() {
		head.runningSignGap = max(head.runningSignGap, now.Sub(head.runningSignAt))
	}
	head.runningSignAt = now
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (s *session) maybePoll(now time.Time) {
	if s.autoReport || s.state == StateConnecting || s.pollQueued || s.nextPoll.IsZero() || now.Before(s.nextPoll) {
		return
	}
	if len(s.inflight) > 0 && s.inflight[0].longRun {
		return
	}
	s.nextPoll = now.Add(s.p.cfg.PollInterval)
	s.pollQueued = true
	// The poll goes ahead of job lines, like OctoPrint's typed
	// temperature_poll command, and at most one is queued.
	s.queue = append([]queued{{text: "M105", marker: nil}}, s.queue...)
	s.pump()
}

// ---- reports ----

func (s *session) parseReport(line string) {
	body := line
	if strings.HasPrefix(strings.ToLower(body), "ok") {
		body = strings.TrimSpace(body[2:])
	}
	if strings.Contains(body, "X:") && strings.Contains(body, "Y:") && strings.Contains(body, "Z:") {
		if pos, ok := ParsePosition(body); ok {
			s.onPosition(pos)
			return
		}
	}
	if s.sdReport(body) {
		return
	}
	if IsTemperatureLine(body) {
		s.onTemperatures(ParseTemperatures(body))
		if len(s.inflight) > 0 && heatingCodes.Get()[CodeOf(s.inflight[0].text)] && strings.Contains(body, "W:") {
			// A heating wait reports once a second with its W: (wait)
			// field; that is its progress. Auto-reports have no W: and
			// keep coming after a lost ok, so they do not count.
			s.noteRunning(time.Now())
		}
		return
	}
	if name, enabled, ok := ParseCapability(body); ok {
		s.caps[name] = enabled
		s.capBlockOpen = true
		return
	}
	// Cap lines such as Cap:LONG_FILENAME:1 also contain NAME:, so they
	// are handled first.
	if strings.Contains(body, "FIRMWARE_NAME:") || strings.HasPrefix(body, "NAME:") || strings.HasPrefix(body, "NAME.") {
		s.onFirmwareLine(body)
		return
	}
	if strings.Contains(strings.ToLower(body), "invalid extruder") {
		s.onInvalidTool(body)
	}
}

func (s *session) onTemperatures(temps map[string]Temperature) {
	for name, t := range temps {
		key := heaterKey(name)
		cur := s.temps[key]
		cur.Actual = t.Actual
		if t.Target != nil {
			target := *t.Target
			cur.Target = &target
		}
		s.temps[key] = cur
	}
}

// heaterKey names heaters as OctoPrint's API does: tool0, bed, chamber.
func heaterKey(name string) string {
	switch {
	case name == "B":
		return "bed"
	case name == "C":
		return "chamber"
	case strings.HasPrefix(name, "T"):
		return "tool" + strings.TrimPrefix(name, "T")
	}
	return name
}

func (s *session) onPosition(pos Position) {
	s.position = &pos
	reason := any(nil)
	if s.positionReason != "" {
		reason = s.positionReason
		s.positionReason = ""
	}
	var f any
	if s.feedrate != nil {
		f = *s.feedrate
	}
	s.emit(bridge.EventPositionUpdate, bridge.Payload{
		{Key: "reason", Value: reason}, {Key: "x", Value: pos.X}, {Key: "y", Value: pos.Y},
		{Key: "z", Value: pos.Z}, {Key: "e", Value: pos.E}, {Key: "t", Value: s.tool}, {Key: "f", Value: f},
	})
}

func (s *session) onFirmwareLine(line string) {
	data := ParseFirmwareLine(line)
	name := data["FIRMWARE_NAME"]
	if name == "" && data["NAME"] != "" {
		name = strings.TrimSpace(data["NAME"] + " " + data["VER"])
	}
	s.firmwareName = name
	s.firmwareData = data
	dataPayload := bridge.Payload{}
	for _, k := range sortedKeys(data) {
		dataPayload = append(dataPayload, bridge.Field{Key: k, Value: data[k]})
	}
	s.log.Info("firmware identified", "firmware", name)
	s.emit(bridge.EventFirmwareData, bridge.Payload{{Key: "name", Value: name}, {Key: "data", Value: dataPayload}})
}

func (s *session) handleHostAction(line string) {
	action, params, ok := ParseHostAction(line)
	if !ok {
		return
	}
	s.log.Info("host action from firmware", "action", action, "params", params)
	switch action {
	case "pause":
		if s.job != nil && s.state == StatePrinting {
			_ = s.pauseJob(nil)
		}
	case "paused":
		// The firmware paused on its own (filament runout, M600); follow
		// it without sending anything, as OctoPrint does.
		if s.job != nil && s.state == StatePrinting {
			s.job.pausedAt = time.Now()
			s.setState(StatePaused)
			s.chartMark("pause", "Pause")
			s.emit(bridge.EventPrintPaused, s.jobPayload(
				bridge.Field{Key: "fileposition", Value: s.selected.pos},
				bridge.Field{Key: "progress", Value: int(s.selected.progress())}))
		}
	case "resume":
		if s.job != nil && s.state == StatePaused {
			_ = s.resumeJob(nil)
		}
	case "resumed":
		if s.job != nil && s.state == StatePaused {
			s.job.pausedTotal += time.Since(s.job.pausedAt)
			s.job.pausedAt = time.Time{}
			s.chartMark("resume", "Resume")
			s.emit(bridge.EventPrintResumed, s.jobPayload())
			s.setState(StatePrinting)
			s.pump()
		}
	case "cancel":
		if s.job != nil {
			_ = s.cancelJob(nil, "")
		}
	case "disconnect":
		s.wantConnected = false
		s.disconnect("firmware requested disconnect", false)
	}
}

// hasGarbage reports bytes that no firmware sends on purpose: control
// characters, and anything outside ASCII (line noise at the wrong baud
// rate, or a firmware resetting mid-line).
func hasGarbage(line string) bool {
	for _, r := range line {
		if r < 0x20 && r != '\t' || r >= 0x7f {
			return true
		}
	}
	return false
}

// reportGarbage logs unreadable lines at most once a minute, with the
// count since the last report, and counts each in metrics. The line is
// still handled, and goes into replies as it came: an ok or a reply after
// line noise must not be lost.
func (s *session) reportGarbage(line string, now time.Time) {
	if f := s.p.metrics.Garbage; f != nil {
		f()
	}
	count, ok := s.garbageLog.allow(now)
	if !ok {
		return
	}
	s.log.Warn("unreadable bytes from the printer (control characters or bytes outside ASCII), in a line handled as received; check the baud rate and the cable if this repeats",
		"line", truncateText(line, 80), "count", count)
}
