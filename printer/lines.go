package printer

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"unicode/utf8"
)

// LineReader splits a serial byte stream into lines. It splits on LF,
// drops CR, strips NUL bytes (which firmwares send on reset), and turns
// bytes that are not UTF-8 into Latin-1 runes, so no input makes it fail.
type LineReader struct {
	r   *bufio.Reader
	max int
	// pending holds the rest of a line that NUL bytes split.
	pending []string
	// overlong is the length of the raw line that the last ReadLine
	// returned the end of, or 0 when that line was not longer than max.
	overlong int
}

// NewLineReader reads lines of at most max bytes. Of a longer line it
// keeps only the last max bytes, so a stream without line feeds cannot
// grow memory, and Overlong reports the line's length.
func NewLineReader(r io.Reader, max int) *LineReader {
	if max <= 0 {
		max = 4096
	}
	return &LineReader{r: bufio.NewReaderSize(r, max), max: max}
}

// ReadLine returns the next line without its terminator. A last line
// without LF is returned before io.EOF. NUL bytes split a line: no
// firmware sends them in text, but a board that resets mid-line does,
// right before its `start` banner.
func (lr *LineReader) ReadLine() (string, error) {
	lr.overlong = 0
	if len(lr.pending) > 0 {
		line := lr.pending[0]
		lr.pending = lr.pending[1:]
		return line, nil
	}
	raw, err := lr.readRaw()
	if err != nil {
		return "", err
	}
	if bytes.IndexByte(raw, 0) < 0 {
		return CleanLine(raw), nil
	}
	var parts []string
	for _, part := range bytes.Split(raw, []byte{0}) {
		if line := CleanLine(part); strings.TrimSpace(line) != "" {
			parts = append(parts, line)
		}
	}
	if len(parts) == 0 {
		return "", nil
	}
	lr.pending = parts[1:]
	return parts[0], nil
}

// Overlong returns the length in bytes, without the line feed, of the
// line whose end the last ReadLine returned. It returns 0 unless that
// line was longer than the maximum and its start was dropped. Only the
// first of the lines that NUL bytes split from such a line reports it.
func (lr *LineReader) Overlong() int {
	return lr.overlong
}

func (lr *LineReader) readRaw() ([]byte, error) {
	var buf []byte
	dropped := 0
	for {
		chunk, err := lr.r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if cut := len(buf) - lr.max; cut > 0 {
			// The end of the line is kept because a firmware message that
			// lost its line feed to noise follows it there.
			dropped += cut
			buf = append(buf[:0], buf[cut:]...)
		}
		switch {
		case err == nil, errors.Is(err, io.EOF) && len(buf) > 0:
			if dropped > 0 {
				lr.overlong = dropped + len(bytes.TrimSuffix(buf, []byte{'\n'}))
			}
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
		default:
			return nil, err
		}
	}
}

// CleanLine removes the line terminator, CR and NUL bytes and decodes the
// rest as UTF-8, falling back to Latin-1 for bytes that are not.
func CleanLine(b []byte) string {
	b = bytes.TrimRight(b, "\n")
	if bytes.IndexByte(b, 0) >= 0 || bytes.IndexByte(b, '\r') >= 0 {
		b = bytes.Map(func(r rune) rune {
			if r == 0 || r == '\r' {
				return -1
			}
			return r
		}, b)
	}
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}

// NormalizeCommand strips a `;` comment and surrounding whitespace, as
// OctoPrint and Marlin do. A backslash-escaped `\;` is kept as `;`.
func NormalizeCommand(line string) string {
	if i := strings.IndexByte(line, ';'); i >= 0 {
		if !strings.Contains(line, `\;`) {
			line = line[:i]
		} else {
			line = stripEscapedComment(line)
		}
	}
	return strings.TrimSpace(line)
}

func stripEscapedComment(line string) string {
	var sb strings.Builder
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c == '\\' && i+1 < len(line) && line[i+1] == ';' {
			sb.WriteByte(';')
			i++
			continue
		}
		if c == ';' {
			break
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// CodeOf returns the G-code of a normalized line as OctoPrint reads it
// with the pattern `^([GM])(\d+)(\.\d+)?`. That is the `G<n>` or `M<n>`
// at the start, as written (so `G028` is not `G28`), "T" for a tool
// change (`^T\d+`), or "" for anything else. The result is a prefix of
// line, so the sender's call for each line allocates nothing.
func CodeOf(line string) string {
	if n := codeLength(line); n > 0 {
		return line[:n]
	}
	if isToolChange(line) {
		return "T"
	}
	return ""
}

// codeLength returns the length of the `G<n>` or `M<n>` code, with its
// `.<n>` subcode, at the start of line, or 0 when there is none.
func codeLength[T ~string | ~[]byte](line T) int {
	if len(line) < 2 || (line[0] != 'G' && line[0] != 'M') {
		return 0
	}
	i := 1
	for i < len(line) && isDigit(line[i]) {
		i++
	}
	if i == 1 {
		return 0
	}
	if i+1 < len(line) && line[i] == '.' && isDigit(line[i+1]) {
		i += 2
		for i < len(line) && isDigit(line[i]) {
			i++
		}
	}
	return i
}

// isToolChange reports whether line starts with `T<n>`.
func isToolChange[T ~string | ~[]byte](line T) bool {
	return len(line) >= 2 && line[0] == 'T' && isDigit(line[1])
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// ToASCII replaces every character outside printable ASCII with '?', as
// OctoPrint's default ascii encoding does, so a firmware that reads bytes
// never sees a partial UTF-8 sequence. A tab becomes a space, because it
// separates words in the file, and Marlin's parser skips only spaces
// between them: a '?' or a tab would reach it as a stray parameter.
func ToASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return toASCIISlow(s)
		}
	}
	return s
}

func toASCIISlow(s string) string {
	var sb strings.Builder
	for _, r := range s {
		switch {
		case r == '\t':
			sb.WriteByte(' ')
		case r < 0x20 || r > 0x7e:
			sb.WriteByte('?')
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}
