package hooks

import (
	"errors"
	"strings"
)

// Quote is Python's shlex.quote: a string of only ASCII letters, digits
// and _@%+=:,./- is returned as is, the empty string becomes a pair of single quotes, and
// anything else is wrapped in single quotes with each ' written as '"'"'.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for i := 0; i < len(s); i++ {
		if !isShellSafe(s[i]) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

func isShellSafe(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("_@%+=:,./-", c) >= 0
}

// Errors of Split, with Python's shlex messages.
var (
	ErrNoClosingQuote = errors.New("No closing quotation")
	ErrNoEscapedChar  = errors.New("No escaped character")
)

// Split is Python's shlex.split(s), which uses POSIX mode without
// comments. Words are separated by space, tab, CR and LF. Single quotes
// keep everything literal. Inside double quotes a backslash escapes only a
// double quote and a backslash, and outside quotes it escapes any
// character, a newline included. An empty pair of quotes of either kind is
// kept as an empty argument.
func Split(s string) ([]string, error) {
	words, err := splitWords(s)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = w.text
	}
	return out, nil
}

// word is one shlex word and, for the checks at load time, the runes that
// stood outside quotes and escapes in the source.
type word struct {
	text     string
	unquoted []bool
}

func isShlexSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }

// splitWords follows the state machine of Python's shlex.read_token with
// posix=True, whitespace_split=True and commenters="".
func splitWords(s string) ([]word, error) {
	const (
		stateSpace = iota
		stateWord
		stateSingle
		stateDouble
		stateEscape
	)
	var (
		words    []word
		text     []rune
		unquoted []bool
		quoted   bool
		state    = stateSpace
		escaped  = stateWord // the state an escape returns to
	)
	add := func(r rune, plain bool) {
		text = append(text, r)
		unquoted = append(unquoted, plain)
	}
	emit := func() {
		if len(text) > 0 || quoted {
			words = append(words, word{text: string(text), unquoted: unquoted})
		}
		text, unquoted, quoted = nil, nil, false
	}
	for _, r := range s {
		switch state {
		case stateSpace, stateWord:
			switch {
			case isShlexSpace(r):
				if state == stateWord {
					emit()
				}
				state = stateSpace
			case r == '\\':
				escaped, state = stateWord, stateEscape
			case r == '\'':
				state = stateSingle
			case r == '"':
				state = stateDouble
			default:
				add(r, true)
				state = stateWord
			}
		case stateSingle:
			quoted = true
			if r == '\'' {
				state = stateWord
			} else {
				add(r, false)
			}
		case stateDouble:
			quoted = true
			switch r {
			case '"':
				state = stateWord
			case '\\':
				escaped, state = stateDouble, stateEscape
			default:
				add(r, false)
			}
		case stateEscape:
			if escaped == stateDouble && r != '"' && r != '\\' {
				add('\\', false)
			}
			add(r, false)
			state = escaped
		}
	}
	switch state {
	case stateSingle, stateDouble:
		return nil, ErrNoClosingQuote
	case stateEscape:
		return nil, ErrNoEscapedChar
	}
	emit()
	return words, nil
}
