package hooks

import (
	"errors"
	"path"
	"strings"
)

const fixEnvSplit = `write the words after env as separate arguments without -S, as in env sh -c 'echo {name}'`

// expandEnvSplit returns the words that the programs of a command get
// once each env -S (--split-string) in args has split its string, as GNU
// env does. origin holds the index in args of each word, or -1 for a
// word split from such a string. r is set for a placeholder whose
// meaning env's own parsing changes. Those are a placeholder inside a -S
// string, one after a -S string that expands ${VAR} outside an
// assignment, and one at the start of an assignment or the command of
// env.
func expandEnvSplit(args []string) (words []string, origin []int, r *reparsedField) {
	words = append([]string(nil), args...)
	origin = make([]int, len(args))
	for i := range origin {
		origin[i] = i
	}
	expandsAt := -1
	for i := 0; i < len(words); i++ {
		if path.Base(words[i]) != "env" {
			continue
		}
		var at int
		words, origin, at, r = expandEnvAt(words, origin, i)
		if r != nil {
			return words, origin, r
		}
		if expandsAt < 0 {
			expandsAt = at
		}
	}
	if expandsAt >= 0 {
		if f := fieldIn(words[expandsAt:]); f != "" {
			return words, origin, &reparsedField{f, "an argument after an env -S string that expands ${VAR}, so printbridge cannot tell which program gets the value", fixEnvSplit}
		}
	}
	return words, origin, nil
}

// envValueOptions are the short options of GNU env that take a value.
// env of coreutils 9.1 rejects -a, which later releases take.
const envValueOptions = "CSua"

// envOptions are the options of GNU env 9.x. The signal options take an
// optional value after = only. getopt_long takes any unique prefix of a
// long name, such as --chd for --chdir.
var envOptions = cliOptions{
	value:     envValueOptions,
	valueLong: []string{"argv0", "chdir", "split-string", "unset"},
	flagLong: []string{"block-signal", "debug", "default-signal", "help", "ignore-environment", "ignore-signal",
		"list-signal-handling", "null", "version"},
	abbreviations: true,
}

// expandEnvAt reads the options of the env at words[at] as GNU env's
// getopt_long with "+" does, and replaces each -S option and its string
// with the words of the string. env parses the split words as options
// again, so reading goes on at the first of them. expandsAt is the index
// of the first word split from a string that expands ${VAR} outside an
// assignment, or -1.
func expandEnvAt(words []string, origin []int, at int) (_ []string, _ []int, expandsAt int, r *reparsedField) {
	expandsAt = -1
	j := at + 1
	for j < len(words) {
		a := words[j]
		// start and end are the words that hold the -S option and its
		// string, value is that string.
		start, end, value, isSplit := j, j, "", false
		switch {
		case a == "--" || a == "-":
			return words, origin, expandsAt, envCommandField(words, j+1)
		case strings.HasPrefix(a, "--"):
			name, inline, hasValue := strings.Cut(a[2:], "=")
			option, takesValue := envOptions.longOption(name)
			switch {
			case option == "split-string" && hasValue:
				value, isSplit = inline, true
			case option == "split-string" && j+1 < len(words):
				value, isSplit, end = words[j+1], true, j+1
			case takesValue && !hasValue:
				end = j + 1
			}
		case len(a) > 1 && a[0] == '-':
			for k := 1; k < len(a); k++ {
				if strings.IndexByte(envValueOptions, a[k]) < 0 {
					continue
				}
				// An option with a value takes the rest of the word, or
				// the next word.
				if k+1 < len(a) {
					value = a[k+1:]
				} else if j+1 < len(words) {
					value, end = words[j+1], j+1
				}
				isSplit = a[k] == 'S'
				break
			}
		default:
			return words, origin, expandsAt, envCommandField(words, j)
		}
		if !isSplit {
			j = end + 1
			continue
		}
		if f := firstField(value); f != "" {
			return words, origin, expandsAt, &reparsedField{f, "in the string that env -S splits into arguments with its own rules for quotes, backslashes and ${VAR}", fixEnvSplit}
		}
		// value is a template without fields, so {{ and }} are its only
		// braces. The split words go back into template form.
		parts, expands, err := splitEnvString(templateUnescaper.Replace(value))
		if err != nil {
			// env rejects the string before it runs anything, so the
			// words after it reach no program.
			return words, origin, expandsAt, nil
		}
		for k, part := range parts {
			parts[k] = templateEscaper.Replace(part)
		}
		if expands && expandsAt < 0 && expandsOutsideAssignment(parts) {
			expandsAt = start
		}
		words = spliceWords(words, start, end, parts)
		origin = spliceOrigins(origin, start, end, len(parts))
	}
	return words, origin, expandsAt, nil
}

// envCommandField returns an error for a placeholder at the start of an
// assignment or of the command of env, which begin at words[from]. A
// value there can be an option such as -S'sh -c ...' or an assignment
// such as LD_PRELOAD=..., which makes env run code of the value's
// choosing.
func envCommandField(words []string, from int) *reparsedField {
	for _, w := range words[from:] {
		if strings.HasPrefix(w, "{") && !strings.HasPrefix(w, "{{") {
			return &reparsedField{firstField(w), "the command or an assignment of env, where a value such as -S'sh -c ...' or LD_PRELOAD=... makes env run code of the value's choosing",
				"write the program after env and the names of its variables as fixed text, as in env NAME={name} program"}
		}
		if !isAssignment(w) {
			return nil
		}
	}
	return nil
}

var (
	templateUnescaper = strings.NewReplacer("{{", "{", "}}", "}")
	templateEscaper   = strings.NewReplacer("{", "{{", "}", "}}")
)

// expandsOutsideAssignment reports whether a word that env -S split
// expands ${VAR} outside a NAME=value assignment, so that the variable's
// value may be an option, the program or its arguments. Text such as
// '${X}' that single quotes keep literal counts as well.
func expandsOutsideAssignment(words []string) bool {
	for _, w := range words {
		if strings.Contains(w, "${") && !isAssignment(w) {
			return true
		}
	}
	return false
}

func spliceWords(words []string, start, end int, parts []string) []string {
	out := append([]string(nil), words[:start]...)
	out = append(out, parts...)
	return append(out, words[end+1:]...)
}

func spliceOrigins(origin []int, start, end, n int) []int {
	out := append([]int(nil), origin[:start]...)
	for range n {
		out = append(out, -1)
	}
	return append(out, origin[end+1:]...)
}

var errEnvSplit = errors.New("invalid -S string")

// splitEnvString splits the string of env -S as GNU coreutils 9.x does
// (build_argv in src/env.c). Whitespace outside quotes separates words.
// Inside single quotes only \\ and \' are escapes. Elsewhere a
// backslash escapes \ ' " # $ and _ and writes \f \n \r \t \v, \_
// outside double quotes separates words, and \c ends the string, as
// does a # at the start of a word. ${VAR} is expanded outside single
// quotes, so its text stays in the word and expands is true. An error
// means that env rejects the string and runs nothing. Older versions
// (8.x) reject some strings that 9.x accepts, never the other way round.
func splitEnvString(s string) (words []string, expands bool, err error) {
	var cur strings.Builder
	inWord, single, double := false, false, false
	endWord := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' && !double:
			single = !single
			inWord = true
			continue
		case c == '"' && !single:
			double = !double
			inWord = true
			continue
		case strings.IndexByte(" \t\n\v\f\r", c) >= 0 && !single && !double:
			endWord()
			continue
		case c == '#' && !inWord:
			endWord()
			return words, expands, nil
		case c == '\\' && !(single && i+1 < len(s) && s[i+1] != '\\' && s[i+1] != '\''):
			if i+1 >= len(s) {
				return nil, false, errEnvSplit
			}
			i++
			switch s[i] {
			case '\\', '\'', '#', '$', '"':
				c = s[i]
			case '_':
				if !double {
					endWord()
					continue
				}
				c = ' '
			case 'c':
				if double {
					return nil, false, errEnvSplit
				}
				endWord()
				return words, expands, nil
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'v':
				c = '\v'
			default:
				return nil, false, errEnvSplit
			}
		case c == '$' && !single:
			end := envVarEnd(s, i)
			if end < 0 {
				return nil, false, errEnvSplit
			}
			cur.WriteString(s[i : end+1])
			inWord = true
			expands = true
			i = end
			continue
		}
		cur.WriteByte(c)
		inWord = true
	}
	if single || double {
		return nil, false, errEnvSplit
	}
	endWord()
	return words, expands, nil
}

// envVarEnd returns the index of the } that ends the ${NAME} at s[i], or
// -1 when s[i:] does not start with a valid ${NAME}.
func envVarEnd(s string, i int) int {
	if i+3 >= len(s) || s[i+1] != '{' || !(isLetter(s[i+2]) || s[i+2] == '_') {
		return -1
	}
	for j := i + 3; j < len(s); j++ {
		switch {
		case s[j] == '}':
			return j
		case isLetter(s[j]) || s[j] == '_' || s[j] >= '0' && s[j] <= '9':
		default:
			return -1
		}
	}
	return -1
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
