package virtual

// LineStats counts the numbered lines that reached the firmware since it
// last accepted an M110, by line number, so a test can tell whether a
// host sent a line more often than the firmware asked for it.
type LineStats struct {
	// Received counts the copies of each line number that arrived intact
	// (with a correct checksum), whether the firmware accepted them or
	// not. M110 lines are not counted.
	Received map[int64]int
	// Accepted counts the copies that passed the line-number and checksum
	// checks. A line is accepted more than once only after a rewind.
	Accepted map[int64]int
	// Repeated counts intact copies of lines that the firmware had already
	// accepted and not asked for again: the host sent them twice. A host
	// that resends a line after a lost ok causes these too.
	Repeated int
	// DuplicateRequests counts the resend requests that DuplicateResend
	// repeated.
	DuplicateRequests int
}

// LineStats returns the counts since the firmware last accepted an M110.
func (p *Printer) LineStats() LineStats {
	p.recordMu.Lock()
	defer p.recordMu.Unlock()
	st := LineStats{
		Received:          make(map[int64]int, len(p.lines.Received)),
		Accepted:          make(map[int64]int, len(p.lines.Accepted)),
		Repeated:          p.lines.Repeated,
		DuplicateRequests: p.lines.DuplicateRequests,
	}
	for n, c := range p.lines.Received {
		st.Received[n] = c
	}
	for n, c := range p.lines.Accepted {
		st.Accepted[n] = c
	}
	return st
}

// countReceived counts an intact numbered line n that arrived while the
// last accepted line was last.
func (p *Printer) countReceived(n, last int64) {
	p.recordMu.Lock()
	defer p.recordMu.Unlock()
	if p.lines.Received == nil {
		p.lines.Received = map[int64]int{}
	}
	p.lines.Received[n]++
	if n <= last {
		p.lines.Repeated++
	}
}

func (p *Printer) countAccepted(n int64) {
	p.recordMu.Lock()
	defer p.recordMu.Unlock()
	if p.lines.Accepted == nil {
		p.lines.Accepted = map[int64]int{}
	}
	p.lines.Accepted[n]++
}

func (p *Printer) countDuplicateRequest() {
	p.recordMu.Lock()
	defer p.recordMu.Unlock()
	p.lines.DuplicateRequests++
}

// resetLineStats starts new counts when an M110 is accepted.
func (p *Printer) resetLineStats() {
	p.recordMu.Lock()
	defer p.recordMu.Unlock()
	p.lines = LineStats{}
}

// RXStats is the serial receive buffer's fill and overrun counts since New.
type RXStats struct {
	// Held is the number of bytes in the receive buffer now. The
	// simulator takes no bytes out of it while a command runs.
	Held int
	// Peak is the most bytes the receive buffer held at once.
	Peak int
	// Overruns counts the times the receive buffer was full while the
	// host had written more bytes. The simulator leaves those bytes in
	// the pty, as USB CDC flow control holds them back; a UART without
	// flow control drops them, as Marlin's AVR serial interrupt does.
	Overruns int
}

// RXStats returns the receive buffer's peak fill and overruns.
func (p *Printer) RXStats() RXStats {
	st := RXStats{Peak: int(p.link.rxPeak.Load()), Overruns: int(p.link.rxOverruns.Load())}
	if rx := p.link.current.Load(); rx != nil {
		st.Held = len(rx.buf) - rx.free()
	}
	return st
}
