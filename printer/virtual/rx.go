package virtual

import (
	"sync"
	"time"
)

// rxBuffer is the serial receive ring buffer of one host connection: the
// read goroutine fills it and the firmware goroutine takes bytes from it.
type rxBuffer struct {
	mu          sync.Mutex // guards buf, head, n, parser, onEmergency and roomAt
	buf         []byte
	head, n     int
	parser      *emergencyParser // nil unless EMERGENCY_PARSER is on
	onEmergency func(emergencyCommand)
	// roomAt is when the firmware last took bytes out of a full buffer,
	// which is when a line stopped by the full buffer goes on.
	roomAt time.Time

	ready chan struct{} // signalled after bytes were added
	space chan struct{} // signalled after bytes were taken
}

func newRXBuffer(size int, emergency bool) *rxBuffer {
	r := &rxBuffer{
		buf:   make([]byte, size),
		ready: make(chan struct{}, 1),
		space: make(chan struct{}, 1),
	}
	if emergency {
		r.parser = &emergencyParser{}
	}
	return r
}

// setEmergencyHandler sets the function that the emergency parser calls,
// from the read goroutine, when a complete M108, M112 or M410 arrived.
func (r *rxBuffer) setEmergencyHandler(f func(emergencyCommand)) {
	r.mu.Lock()
	r.onEmergency = f
	r.mu.Unlock()
}

func (r *rxBuffer) free() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buf) - r.n
}

// write appends p, which must fit into the free space, feeds each byte
// to the emergency parser as Marlin's receive interrupt does, and reports
// whether the buffer is full afterwards.
func (r *rxBuffer) write(p []byte) (full bool) {
	var fired []emergencyCommand
	r.mu.Lock()
	for _, c := range p {
		if r.n == len(r.buf) {
			break
		}
		r.buf[(r.head+r.n)%len(r.buf)] = c
		r.n++
		if r.parser != nil {
			if cmd := r.parser.update(c); cmd != emergencyNone {
				fired = append(fired, cmd)
			}
		}
	}
	handler := r.onEmergency
	full = r.n == len(r.buf)
	r.mu.Unlock()
	signal(r.ready)
	if handler != nil {
		for _, cmd := range fired {
			handler(cmd)
		}
	}
	return full
}

// roomSince returns when the firmware last took bytes out of a full
// buffer, or zero if it never did.
func (r *rxBuffer) roomSince() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.roomAt
}

// readByte takes the oldest byte, if any.
func (r *rxBuffer) readByte() (byte, bool) {
	r.mu.Lock()
	if r.n == 0 {
		r.mu.Unlock()
		return 0, false
	}
	if r.n == len(r.buf) {
		r.roomAt = time.Now()
	}
	c := r.buf[r.head]
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.mu.Unlock()
	signal(r.space)
	return c, true
}

// drain discards everything received so far, as Marlin does after a
// rejected line, and reports whether the dropped bytes ended a line.
func (r *rxBuffer) drain() (lineEnd bool) {
	r.mu.Lock()
	for i := range r.n {
		if c := r.buf[(r.head+i)%len(r.buf)]; c == '\n' || c == '\r' {
			lineEnd = true
			break
		}
	}
	if r.n == len(r.buf) {
		r.roomAt = time.Now()
	}
	r.head, r.n = 0, 0
	r.mu.Unlock()
	signal(r.space)
	return lineEnd
}

func (r *rxBuffer) empty() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n == 0
}

// signal wakes the waiter of a one-slot notification channel without
// blocking when it was already signalled.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// emergencyCommand is a command that Marlin's emergency parser handles
// out of band.
type emergencyCommand int

const (
	emergencyNone emergencyCommand = iota
	emergencyM108
	emergencyM112
	emergencyM410
)

// emergencyParser is Marlin's EmergencyParser byte state machine: it skips
// leading spaces and an N<number> prefix, recognises M108, M112 and M410,
// ignores anything after the code (such as *checksum) and fires at the end
// of the line. Any other line is ignored up to its end.
type emergencyParser struct {
	state epState
}

type epState int

const (
	epReset epState = iota
	epN
	epM
	epM1
	epM10
	epM11
	epM4
	epM41
	epM108
	epM112
	epM410
	epIgnore
)

func (p *emergencyParser) update(c byte) emergencyCommand {
	eol := c == '\n' || c == '\r'
	switch p.state {
	case epReset:
		switch c {
		case ' ', '\n', '\r':
		case 'N':
			p.state = epN
		case 'M':
			p.state = epM
		default:
			p.state = epIgnore
		}
	case epN:
		switch {
		case c >= '0' && c <= '9', c == '-', c == ' ':
		case c == 'M':
			p.state = epM
		default:
			p.state = p.ignoreOrReset(eol)
		}
	case epM:
		switch c {
		case ' ':
		case '1':
			p.state = epM1
		case '4':
			p.state = epM4
		default:
			p.state = p.ignoreOrReset(eol)
		}
	case epM1:
		switch c {
		case '0':
			p.state = epM10
		case '1':
			p.state = epM11
		default:
			p.state = p.ignoreOrReset(eol)
		}
	case epM10:
		p.state = p.next(c == '8', epM108, eol)
	case epM11:
		p.state = p.next(c == '2', epM112, eol)
	case epM4:
		p.state = p.next(c == '1', epM41, eol)
	case epM41:
		p.state = p.next(c == '0', epM410, eol)
	case epIgnore:
		if eol {
			p.state = epReset
		}
	case epM108, epM112, epM410:
		if !eol {
			return emergencyNone
		}
		fired := emergencyM410
		switch p.state {
		case epM108:
			fired = emergencyM108
		case epM112:
			fired = emergencyM112
		}
		p.state = epReset
		return fired
	}
	return emergencyNone
}

func (p *emergencyParser) next(match bool, to epState, eol bool) epState {
	if match {
		return to
	}
	return p.ignoreOrReset(eol)
}

func (p *emergencyParser) ignoreOrReset(eol bool) epState {
	if eol {
		return epReset
	}
	return epIgnore
}
