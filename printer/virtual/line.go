package virtual

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// lineAssembler collects received bytes into lines as Marlin's
// process_stream_char does. CR and LF end a line. A `;` starts a comment
// that is dropped up to the end of the line, and so are the bytes beyond
// MAX_CMD_SIZE-1. With colonEnds (Config.ColonSplits) a `:` outside a
// comment ends the line too, and with nulEnds (Repetier) a NUL does.
type lineAssembler struct {
	buf       []byte
	max       int  // bytes kept per line: MAX_CMD_SIZE-1
	skipTo    bool // in a comment or past the size limit
	colonEnds bool
	nulEnds   bool
	// splitOpen is set when the last line returned ended at a `:` or NUL,
	// so the rest of the received line is still to come.
	splitOpen bool
	// discard drops everything up to the next CR or LF, the rest of a
	// line whose first part was rejected.
	discard bool
}

func newLineAssembler(cfg Config) *lineAssembler {
	return &lineAssembler{
		buf:       make([]byte, 0, cfg.MaxCmdSize),
		max:       cfg.MaxCmdSize - 1,
		colonEnds: cfg.ColonSplits,
		nulEnds:   cfg.repetier(),
	}
}

// feed adds one byte and returns the finished line when c ends one. The
// returned slice is valid until the next call.
func (a *lineAssembler) feed(c byte) ([]byte, bool) {
	if c == '\n' || c == '\r' {
		line := a.buf
		a.buf = a.buf[:0]
		a.skipTo = false
		a.splitOpen = false
		if a.discard {
			a.discard = false
			return nil, false
		}
		return line, true
	}
	if a.discard {
		return nil, false
	}
	if !a.skipTo && (a.colonEnds && c == ':' || a.nulEnds && c == 0) {
		line := a.buf
		a.buf = a.buf[:0]
		a.splitOpen = true
		return line, true
	}
	if a.skipTo {
		return nil, false
	}
	if c == ';' {
		a.skipTo = true
		return nil, false
	}
	a.buf = append(a.buf, c)
	if len(a.buf) >= a.max {
		a.skipTo = true
	}
	return nil, false
}

func (a *lineAssembler) reset() {
	a.buf = a.buf[:0]
	a.skipTo = false
}

// rejected resets the assembler after a rejected line. If that line was
// the first part of a line split at `:` and the rest has not arrived yet
// (restInBuffer is false), the rest is dropped when it comes.
func (a *lineAssembler) rejected(restInBuffer bool) {
	a.reset()
	a.discard = a.splitOpen && !restInBuffer
	a.splitOpen = false
}

// numbered reports whether the line being received starts with N.
func (a *lineAssembler) numbered() bool {
	return len(a.buf) > 0 && a.buf[0] == 'N'
}

// partial reports whether part of a line has been received.
func (a *lineAssembler) partial() bool { return len(a.buf) > 0 }

// checksum is the Marlin line checksum: the XOR of all bytes.
func checksum(b []byte) byte {
	var cs byte
	for _, c := range b {
		cs ^= c
	}
	return cs
}

// cString returns b up to its first NUL byte, the way Marlin's C string
// functions see the line buffer.
func cString(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// strtol parses a leading signed decimal integer like C's strtol: leading
// spaces are skipped and parsing stops at the first non-digit; no digits
// give 0.
func strtol(b []byte) int64 {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		neg = b[i] == '-'
		i++
	}
	var v int64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if v < 1<<40 {
			v = v*10 + int64(b[i]-'0')
		}
	}
	if neg {
		return -v
	}
	return v
}

// normalize returns the command text that Marlin's G-code parser works on
// and that the record stores: the N<number> prefix skipped, everything
// from the first `*` cut (the parser ends the line there), and spaces and
// tabs around it trimmed.
func normalize(line []byte) string {
	p := bytes.TrimLeft(line, " \t")
	if len(p) > 1 && p[0] == 'N' && (isDigit(p[1]) || p[1] == '-') {
		p = p[2:]
		for len(p) > 0 && isDigit(p[0]) {
			p = p[1:]
		}
	}
	if i := bytes.IndexByte(p, '*'); i >= 0 {
		p = p[:i]
	}
	return string(bytes.Trim(p, " \t"))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// CommandsOf returns the commands of a G-code file the way the simulator
// records them when a host sends the file line by line: a line ends at LF
// or CR, the text from `;` on is a comment, everything from the first `*`
// on is dropped, an N<number> prefix is removed, a NUL byte ends the line,
// surrounding spaces and tabs are trimmed and empty lines are skipped.
// Hosts that strip more (printcore also removes `(...)` comments) send
// commands that differ from these on lines with such comments.
func CommandsOf(r io.Reader) ([]string, error) {
	var cmds []string
	br := bufio.NewReader(r)
	var line []byte
	flush := func() {
		if cmd := normalize(cString(stripComment(line))); cmd != "" {
			cmds = append(cmds, cmd)
		}
		line = line[:0]
	}
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			flush()
			return cmds, nil
		}
		if err != nil {
			return cmds, fmt.Errorf("read G-code: %w", err)
		}
		if c == '\n' || c == '\r' {
			flush()
			continue
		}
		line = append(line, c)
	}
}

func stripComment(line []byte) []byte {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		return line[:i]
	}
	return line
}

// gcode is one parsed command.
type gcode struct {
	text    string // normalized command text
	letter  byte   // 'G', 'M', 'T', or 0 when the text starts with no command letter
	code    int    // number after the letter; -1 if there is none
	sub     int    // number after a '.', as in M862.3; -1 if there is none
	args    string // text after the command code, for M117, M118 and M23
	params  map[byte]string
	line    int64 // N of a numbered line
	hasLine bool
}

// parseGcode splits normalized command text into letter, code and
// parameters. Letters are case-insensitive as with Marlin's
// GCODE_CASE_INSENSITIVE, and parameters may be written without spaces
// (G1X10Y20).
func parseGcode(text string) *gcode {
	g := &gcode{text: text, code: -1, sub: -1, params: map[byte]string{}}
	if text == "" {
		return g
	}
	letter := upper(text[0])
	if letter != 'G' && letter != 'M' && letter != 'T' {
		return g
	}

	i := 1
	for i < len(text) && text[i] == ' ' {
		i++
	}
	start := i
	for i < len(text) && isDigit(text[i]) {
		i++
	}
	if i == start {
		if letter == 'T' {
			g.letter = letter
		}
		return g
	}

	g.letter = letter
	g.code, _ = strconv.Atoi(text[start:i])
	if i+1 < len(text) && text[i] == '.' && isDigit(text[i+1]) {
		j := i + 1
		for j < len(text) && isDigit(text[j]) {
			j++
		}
		g.sub, _ = strconv.Atoi(text[i+1 : j])
		i = j
	}
	g.args = strings.TrimLeft(text[i:], " ")
	parseParams(g.args, g.params)
	return g
}

// parseParams records the first value of every parameter letter in s.
func parseParams(s string, params map[byte]string) {
	for i := 0; i < len(s); {
		c := upper(s[i])
		if c < 'A' || c > 'Z' {
			i++
			continue
		}
		j := i + 1
		for j < len(s) && s[j] == ' ' {
			j++
		}
		k := j
		for k < len(s) && strings.IndexByte("+-.0123456789", s[k]) >= 0 {
			k++
		}
		if _, seen := params[c]; !seen {
			params[c] = s[j:k]
		}
		if k == j {
			k = i + 1
		}
		i = k
	}
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// name returns the command code as Marlin names it, such as G1, M862.3
// or T0.
func (g *gcode) name() string {
	if g.letter == 0 || g.code < 0 {
		return ""
	}
	n := string(g.letter) + strconv.Itoa(g.code)
	if g.sub >= 0 {
		n += "." + strconv.Itoa(g.sub)
	}
	return n
}

func (g *gcode) has(letter byte) bool {
	_, ok := g.params[letter]
	return ok
}

// float returns the value of a parameter; a parameter without a number
// counts as absent, as with Marlin's seenval.
func (g *gcode) float(letter byte) (float64, bool) {
	v, ok := g.params[letter]
	if !ok || v == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, false
	}
	return f, true
}

func (g *gcode) int(letter byte) (int, bool) {
	f, ok := g.float(letter)
	if !ok {
		return 0, false
	}
	return int(f), true
}
