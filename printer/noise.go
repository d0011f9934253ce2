package printer

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/printbridge/printbridge/bridge/lazy"
)

// logLimiter lets one warning of a kind through per minute and counts
// the occurrences it held back, so line noise cannot flood the log.
type logLimiter struct {
	logged time.Time
	count  int
}

// allow counts one occurrence and reports whether to log it now, with
// the occurrences since the last logged one, this one included.
func (l *logLimiter) allow(now time.Time) (count int, ok bool) {
	l.count++
	if !l.logged.IsZero() && now.Sub(l.logged) < time.Minute {
		return 0, false
	}
	count = l.count
	l.count = 0
	l.logged = now
	return count, true
}

// damagedOK reports whether line is an ok that line noise changed one of
// its two letters in, such as `8k` or `o\x02`, alone or before the rest
// of its line (` T:...`), and returns it repaired. As far as we know, no
// other message of Marlin 2.1 is two characters long or starts with two
// characters and a space. A lost ok costs a communication timeout, or,
// with windowed sending, shifts every later reply to the command before
// it.
func damagedOK(line string) (string, bool) {
	head, rest, _ := strings.Cut(line, " ")
	runes := []rune(head)
	if len(runes) != 2 || (runes[0] == 'o') == (runes[1] == 'k') {
		return "", false
	}
	if rest != "" {
		return "ok " + rest, true
	}
	return "ok", true
}

// joinedOKs returns how many oks line holds when it is two oks whose
// line feed line noise changed into another character (`ok-ok`,
// `ok\x10ok`), or an ok that lost a letter (`k`), and 0 for any other
// line. With windowed sending each lost ok shifts every later reply to
// the command before it.
func joinedOKs(line string) int {
	runes := []rune(line)
	switch {
	case line == "k" || line == "o":
		return 1
	case len(runes) == 5 && string(runes[:2]) == "ok" && string(runes[3:]) == "ok" &&
		!unicode.IsLetter(runes[2]) && !unicode.IsDigit(runes[2]) && !unicode.IsSpace(runes[2]):
		return 2
	}
	return 0
}

// reportDamagedOK counts a damaged ok as a garbage line, unless
// reportGarbage counted it already, and logs it at most once a minute.
func (s *session) reportDamagedOK(line string, counted bool, now time.Time) {
	if !counted {
		if f := s.p.metrics.Garbage; f != nil {
			f()
		}
	}
	if count, ok := s.damagedOKLog.allow(now); ok {
		s.log.Warn("line taken for an ok that line noise damaged", "line", truncateText(line, 80), "count", count, "next_line", s.nextLine)
	}
}

// isResendLine reports whether a lower-cased line is a resend request:
// `resend...`, or `rs` followed by a separator or a digit as Repetier and
// Teacup send it. Other lines that start with "rs" are not.
func isResendLine(lower string) bool {
	if strings.HasPrefix(lower, "resend") {
		return true
	}
	if !strings.HasPrefix(lower, "rs") {
		return false
	}
	if len(lower) == 2 {
		return true
	}
	c := lower[2]
	return c == ' ' || c == ':' || c == '\t' || c == 'n' || isDigit(c)
}

// reportBadResend handles a resend request whose line number is missing,
// not a number or negative (`Resend: -5`, `Resend: abc`, `Resend:`). No
// firmware numbers lines below 0, so the line is corrupt: acting on it
// would resend a line the firmware never requested, or take the request
// for a reset. OctoPrint (comm.py, _handle_resend_request) also ignores a
// request without a number. The line is counted as serial garbage and
// logged at most once a minute.
func (s *session) reportBadResend(line string, now time.Time) {
	if !hasGarbage(line) {
		// hasGarbage lines were already counted by reportGarbage.
		if f := s.p.metrics.Garbage; f != nil {
			f()
		}
	}
	count, ok := s.badResendLog.allow(now)
	if !ok {
		return
	}
	s.log.Warn("resend request without a valid line number ignored as line noise",
		"line", truncateText(line, 80), "count", count, "next_line", s.nextLine)
}

// overlongOKPattern finds an ok at the end of the last bytes of an
// overlong line, the ok that the firmware sent after output that lost its
// line feed: `AAAAok`, `...ok N12 P15 B3`, `...ok T:21.0 /0.0 B:20.0 /0.0`.
// Unlike gluedTailPattern it takes an ok after a letter too (see
// overlongMessage).
var overlongOKPattern = lazy.Regexp{Expr: `^.*(ok(?: N\d+)?(?: P\d+ B\d+)?(?: T:[ -~]*)?)$`}

// overlongMessage returns the firmware message at the end of tail, the
// last bytes of a line longer than the line reader's maximum, or "" when
// there is none. No firmware sends a line that long on purpose (Marlin's
// longest replies are a few hundred bytes), so the line is noise or output
// that lost its line feeds. The firmware's next message follows the noise
// directly, so a message at the very end of the line is taken as real,
// even after a letter. `Error:`, `Resend:` or `echo:busy:` is taken
// wherever it starts, and an ok only as the last word. Noise that happens
// to end in "ok" gives one false ok, which costs less than a lost ok,
// because that stalls the print until the communication timeout, 300 s
// behind a long-running command. A `start` banner is not looked for,
// because a false one would abort the print, and a reset mid-line sends
// NUL bytes, which split the line before the banner (see LineReader).
func overlongMessage(tail string) string {
	start := -1
	for _, tok := range gluedHeadTokens {
		if i := strings.LastIndex(tail, tok); i > start {
			start = i
		}
	}
	if m := overlongOKPattern.Get().FindStringSubmatchIndex(tail); m != nil && m[2] > start {
		start = m[2]
	}
	if start < 0 {
		return ""
	}
	return tail[start:]
}

// handleOverlong handles a line of length bytes of which the line reader
// kept only tail: it logs the length at most once a minute, counts the
// line, and handles a firmware message at its end.
func (s *session) handleOverlong(tail string, length int, now time.Time) {
	if f := s.p.metrics.Overlong; f != nil {
		f()
	}
	if count, ok := s.overlongLog.allow(now); ok {
		s.log.Warn("line from the printer longer than the maximum ignored; check the baud rate and the cable if this repeats",
			"length", length, "tail", lastRunes(tail, 40), "count", count)
	}
	if msg := overlongMessage(tail); msg != "" {
		s.log.Debug("firmware message at the end of an overlong line", "line", msg)
		s.handleLine(msg)
	}
}

// lastRunes returns the last n characters of s. A cut by bytes could
// split a character, and the log would show a broken one.
func lastRunes(s string, n int) string {
	i := len(s)
	for ; n > 0 && i > 0; n-- {
		_, size := utf8.DecodeLastRuneInString(s[:i])
		i -= size
	}
	return s[i:]
}
