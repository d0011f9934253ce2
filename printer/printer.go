package printer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"go.bug.st/serial"
)

// Config sets up one printer connection.
type Config struct {
	// Port is the serial device, such as /dev/ttyACM0 or a virtual
	// printer's link.
	Port string
	// Baud is the serial speed; 115200 when zero.
	Baud int
	// FilesDir is the folder that job paths are resolved in.
	FilesDir string
	// MaxLineLength is the firmware's MAX_CMD_SIZE: the longest line it
	// accepts, N and checksum included. 96 (Marlin's default) when zero.
	MaxLineLength int
	// HistorySize is how many sent lines are kept for resends; 200 when
	// zero.
	HistorySize int
	// CommTimeout is how long a sent line may wait for its ok before the
	// edge resends it; 30s when zero. Long-running commands (M109, G28,
	// M400, ...) are exempt.
	CommTimeout time.Duration
	// MaxTimeouts is how many consecutive timeouts end the connection with
	// an Error of reason timeout; 5 when zero.
	MaxTimeouts int
	// HelloTimeout is the wait for an answer to the handshake before it is
	// repeated; 3s when zero.
	HelloTimeout time.Duration
	// HelloRetries is how many handshakes are tried; 5 when zero.
	HelloRetries int
	// ResendOKWait is how long to wait for the ok that Marlin 1.1 and 2.1
	// send after a Resend line before acting without it, as Marlin 2.0.x
	// and Prusa 3.1 omit it; 500ms when zero.
	ResendOKWait time.Duration
	// PollInterval is the M105 period when the firmware has no
	// temperature auto-report; 5s when zero.
	PollInterval time.Duration
	// PositionReportInterval is the period requested with M154 when the
	// firmware reports Cap:AUTOREPORT_POS, in whole seconds (at least
	// 1); 5s when zero, as OctoPrint's default.
	PositionReportInterval time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between reopen
	// attempts after the port is lost; 1s and 30s when zero.
	ReconnectMin, ReconnectMax time.Duration
	// AutoConnect connects at start and after a lost port.
	AutoConnect bool
	// Flow is FlowAuto (default), FlowPingPong or FlowWindow.
	Flow string
	// RXBufferSize is the firmware's serial receive buffer in bytes, which
	// windowed sending never overfills; 128 (Marlin's AVR default) when
	// zero.
	RXBufferSize int
	// Settings are the profile, scripts and command filters, which
	// ApplySettings may change later.
	Settings Settings
	// Open opens the port; go.bug.st/serial when nil.
	Open func(port string, baud int) (io.ReadWriteCloser, error)
}

func (c *Config) setDefaults() {
	if c.Baud == 0 {
		c.Baud = 115200
	}
	if c.MaxLineLength == 0 {
		c.MaxLineLength = 96
	}
	if c.HistorySize == 0 {
		c.HistorySize = 200
	}
	if c.CommTimeout == 0 {
		c.CommTimeout = 30 * time.Second
	}
	if c.MaxTimeouts == 0 {
		c.MaxTimeouts = 5
	}
	if c.HelloTimeout == 0 {
		c.HelloTimeout = 3 * time.Second
	}
	if c.HelloRetries == 0 {
		c.HelloRetries = 5
	}
	if c.ResendOKWait == 0 {
		c.ResendOKWait = 500 * time.Millisecond
	}
	if c.PollInterval == 0 {
		c.PollInterval = 5 * time.Second
	}
	if c.PositionReportInterval == 0 {
		c.PositionReportInterval = 5 * time.Second
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = time.Second
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = 30 * time.Second
	}
	if c.Flow == "" {
		c.Flow = FlowAuto
	}
	if c.RXBufferSize == 0 {
		c.RXBufferSize = 128
	}
	if c.Open == nil {
		c.Open = openSerial
	}
	c.Settings = c.Settings.withDefaults()
}

func openSerial(port string, baud int) (io.ReadWriteCloser, error) {
	release, err := lockPort(port)
	if err != nil {
		return nil, err
	}
	p, err := serial.Open(port, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		release()
		var perr *serial.PortError
		if errors.As(err, &perr) {
			if perr.Code() == serial.InvalidSerialPort {
				// go.bug.st/serial reports a file or device without
				// terminal settings (such as /dev/null) this way.
				return nil, fmt.Errorf("open serial port %s: %s: it is not a serial device; check --port (ls /dev/serial/by-id/ lists the connected printers)", port, perr.Error())
			}
			return nil, fmt.Errorf("open serial port %s: %s", port, perr.Error())
		}
		return nil, fmt.Errorf("open serial port %s: %w", port, err)
	}
	return &lockedPort{Port: p, release: release}, nil
}

// lockedPort releases the port's flock after closing it.
type lockedPort struct {
	serial.Port
	release func()
}

func (p *lockedPort) Close() error {
	err := p.Port.Close()
	p.release()
	return err
}

// EventFunc receives every event with the printer context at the moment
// it fired. It runs on the owner goroutine and must not block.
type EventFunc func(name string, payload bridge.Payload, ctx bridge.Context)

// DoneFunc reports the end of an accepted request: the firmware's reply
// lines, or the error that ended it. It runs on the owner goroutine and
// must not block.
type DoneFunc func(replies []string, err error)

// Metrics receives protocol counters; any field may be nil.
type Metrics struct {
	LineSent     func()
	LineReceived func()
	Resend       func()
	Timeout      func()
	ChecksumErr  func()
	OKLatency    func(time.Duration)
	// Garbage counts received lines with bytes that are not printable
	// ASCII.
	Garbage func()
	// Overlong counts received lines longer than the line reader's
	// maximum (8 times MaxLineLength, 768 bytes by default), of which only
	// the end is read.
	Overlong func()
	// Suppressed counts lines not sent because of CommandSuppressed.
	Suppressed func()
	// ScriptError counts GCODE scripts not sent because they failed to
	// load or render.
	ScriptError func()
	// StrayOK counts oks that acknowledged no line in flight.
	StrayOK func()
}

// Printer is one serial connection to a Marlin-style firmware and the
// print job running on it.
type Printer struct {
	cfg     Config
	log     *slog.Logger
	emit    EventFunc
	metrics Metrics

	requests chan request
	changed  chan struct{}
	snap     atomic.Pointer[Snapshot]

	runOnce sync.Once
	// session and the fields below are owned by the Run goroutine.
	s *session
}

// New builds a printer; Run starts it.
func New(cfg Config, log *slog.Logger, emit EventFunc, metrics Metrics) *Printer {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Printer{
		cfg:      cfg,
		log:      log,
		emit:     emit,
		metrics:  metrics,
		requests: make(chan request),
		changed:  make(chan struct{}, 1),
	}
	p.snap.Store(&Snapshot{State: string(StateOffline), StateString: StateOffline.String(), Temperatures: map[string]TemperatureSnapshot{}})
	return p
}

// Changed is signalled (without blocking, coalesced) whenever the
// snapshot changes.
func (p *Printer) Changed() <-chan struct{} { return p.changed }

// Snapshot returns the latest published state.
func (p *Printer) Snapshot() Snapshot { return *p.snap.Load() }

// request is an operation handed to the owner goroutine.
type request struct {
	kind   string
	lines  []string
	path   string
	source string
	// payload is the payload of a reqEvent request.
	payload bridge.Payload
	// settings is the new configuration of a reqSettings request.
	settings *Settings
	done     DoneFunc
	sd       *sdRequest
	// result receives nil when accepted or the rejection.
	result chan error
}

// Request kinds, matching the job and connection actions of commands.
const (
	reqGcode      = "gcode"
	reqSelect     = bridge.ActionSelect
	reqStart      = bridge.ActionStart
	reqPause      = bridge.ActionPause
	reqResume     = bridge.ActionResume
	reqCancel     = bridge.ActionCancel
	reqConnect    = bridge.ActionConnect
	reqDisconnect = bridge.ActionDisconnect
	reqEvent      = "event"
	reqDeselect   = "deselect"
	reqSettings   = "settings"
)

// ErrStopped is returned for requests after Run has ended.
var ErrStopped = errors.New("printer connection is stopped")

func (p *Printer) submit(ctx context.Context, r request) error {
	r.result = make(chan error, 1)
	select {
	case p.requests <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SendGcode queues lines for the printer, ahead of the next line of a
// running job. It returns an error when the lines are rejected; done is
// called once the last line is acknowledged or the connection ends.
func (p *Printer) SendGcode(ctx context.Context, lines []string, source string, done DoneFunc) error {
	return p.submit(ctx, request{kind: reqGcode, lines: lines, source: source, done: done})
}

// Job runs a job action (select, start, pause, resume, cancel); path is
// only used by select and start. done is called when the action has
// completed (for start: when the print has started).
func (p *Printer) Job(ctx context.Context, action, path string, done DoneFunc) error {
	switch action {
	case reqSelect, reqStart, reqPause, reqResume, reqCancel:
	default:
		return fmt.Errorf("unknown job action %q", action)
	}
	return p.submit(ctx, request{kind: action, path: path, done: done})
}

// FireEvent emits a custom or test event from the owner goroutine, so it
// carries the current context and keeps its place among the printer's
// own events. The caller validates name and payload.
func (p *Printer) FireEvent(ctx context.Context, name string, payload bridge.Payload) error {
	return p.submit(ctx, request{kind: reqEvent, path: name, payload: payload})
}

// Deselect drops the selection of path (after the file was removed or
// moved away) and fires FileDeselected, unless a print of it is running.
func (p *Printer) Deselect(ctx context.Context, path string) error {
	return p.submit(ctx, request{kind: reqDeselect, path: path})
}

// Context returns the event context of the latest snapshot, for events
// that other components fire (file storage).
func (p *Printer) Context() bridge.Context {
	snap := p.Snapshot()
	c := bridge.Context{State: snap.State}
	if snap.CurrentZ != nil {
		z := *snap.CurrentZ
		c.CurrentZ = &z
	}
	if j := snap.Job; j != nil {
		c.File = &bridge.FileRef{Name: j.Name, Path: j.Path, Origin: j.Origin}
		prog := j.Progress
		c.Progress = &prog
	}
	return c
}

// Connection connects or disconnects the serial port.
func (p *Printer) Connection(ctx context.Context, action string, done DoneFunc) error {
	if action != reqConnect && action != reqDisconnect {
		return fmt.Errorf("unknown connection action %q", action)
	}
	return p.submit(ctx, request{kind: action, done: done})
}

// Run owns the connection until ctx ends: it opens the port, performs the
// handshake, streams jobs, and reopens the port with capped, jittered
// backoff when it is lost (unless AutoConnect is off).
func (p *Printer) Run(ctx context.Context) error {
	s := newSession(p)
	p.s = s
	defer s.shutdown()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	if p.cfg.AutoConnect {
		s.wantConnected = true
		s.nextAttempt = time.Now()
	}
	for {
		select {
		case <-ctx.Done():
			if s.job != nil {
				s.log.Warn("edge stopping during a print: the print ends here and is reported as failed", "file", s.selected.path)
			}
			s.wantConnected = false
			s.disconnect("edge is shutting down", false)
			s.publishSnapshot()
			p.drainRequests()
			return nil
		case r := <-p.requests:
			r.result <- s.handleRequest(r)
		case m := <-s.lineCh:
			s.handleReader(m)
		case now := <-tick.C:
			s.onTick(now)
		}
		s.publishSnapshot()
	}
}

func (p *Printer) drainRequests() {
	for {
		select {
		case r := <-p.requests:
			r.result <- ErrStopped
		default:
			return
		}
	}
}

// backoff returns the wait before reopen attempt n (0-based): doubling
// from ReconnectMin, capped at ReconnectMax, with ±20% jitter so that a
// farm of edges does not retry in lockstep after a shared outage.
func backoff(n int, minWait, maxWait time.Duration) time.Duration {
	d := minWait
	for i := 0; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}
