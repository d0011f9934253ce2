package hooks

import (
	"fmt"
	"strconv"
	"strings"
)

// positionalField returns the first placeholder among the arguments
// after the -c script at words[script] ($0, $1, ...) that the script
// passes where shell code would parse it again, as in
// sh -c '"$1"' sh {path}, sh -c 'echo "$1" | sh' sh {name} or
// sh -c 'awk "$1"' sh {name}. Each positional parameter of the script is
// replaced by the placeholder of its argument, which shell code reads as
// one quoted word, and the result is checked as a shell: true command.
// The replacement is made outside single quotes only, so awk '{print $1}'
// keeps its text.
func positionalField(words []string, script int) *reparsedField {
	args := words[script+1:]
	if fieldIn(args) == "" {
		return nil
	}
	code, used := substitutePositional(words[script], args)
	if len(used) == 0 {
		return nil
	}
	r := shellCodeReparse(code, scriptShell(words, script))
	if r == nil {
		return nil
	}
	param := "a positional parameter"
	for n, a := range args {
		if firstField(a) == r.field && used[n] {
			param = fmt.Sprintf("$%d", n)
			break
		}
	}
	return &reparsedField{r.field, "an argument of a -c script that uses it as " + param + ", and there the value is " + r.where, r.fix}
}

// substitutePositional returns the script with each $N, ${N}, $@ and $*
// outside single quotes replaced by the text of argument N (args[0] is
// $0), and the numbers of the arguments it used. In a template, ${N} is
// written ${{N}}. An argument with a placeholder becomes that
// placeholder, or the whole argument when the rest of it is made of
// characters that need no shell quoting, as in ./{name}. An argument
// without one becomes its own text when it needs no quoting, else a
// plain word, because only the placeholders matter to the checks.
func substitutePositional(script string, args []string) (string, map[int]bool) {
	used := map[int]bool{}
	r := []rune(script)
	var out []rune
	single, double := false, false
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case single:
			single = c != '\''
		case c == '\'' && !double:
			single = true
		case c == '"':
			double = !double
		case c == '\\' && i+1 < len(r):
			out = append(out, c)
			i++
			c = r[i]
		case c == '$':
			n, end := positionalParameter(r, i)
			if end < 0 {
				break
			}
			var text string
			if n < 0 {
				// $@ and $* are every argument from $1 on. "$@" gives
				// one word each, so its quotes go.
				var all []string
				for k := 1; k < len(args); k++ {
					all = append(all, positionalText(args[k]))
					used[k] = true
				}
				text = strings.Join(all, " ")
				if n == atParameter && double && len(out) > 0 && out[len(out)-1] == '"' && end < len(r) && r[end] == '"' {
					out = out[:len(out)-1]
					double = false
					end++
				}
			} else if n < len(args) {
				text = positionalText(args[n])
				used[n] = true
			}
			out = append(out, []rune(text)...)
			i = end - 1
			continue
		}
		out = append(out, c)
	}
	return string(out), used
}

// Numbers that positionalParameter returns for $@ and $*.
const (
	atParameter   = -1
	starParameter = -2
)

// positionalParameter reads the positional parameter at the $ at r[i]:
// $0 to $9, ${{N}}, ${{@}} and ${{*}} as a template writes ${N}, ${@}
// and ${*}, $@ and $*. It returns the number (atParameter or
// starParameter for @ and *) and the index after the parameter, or an
// end of -1 for any other $.
func positionalParameter(r []rune, i int) (n, end int) {
	if i+1 >= len(r) {
		return 0, -1
	}
	switch c := r[i+1]; {
	case c >= '0' && c <= '9':
		return int(c - '0'), i + 2
	case c == '@':
		return atParameter, i + 2
	case c == '*':
		return starParameter, i + 2
	case c != '{' || i+3 >= len(r) || r[i+2] != '{':
		return 0, -1
	}
	// ${{ ... }}
	j := i + 3
	for j < len(r) && r[j] >= '0' && r[j] <= '9' {
		j++
	}
	if j == i+3 && j < len(r) && (r[j] == '@' || r[j] == '*') {
		if j+2 < len(r) && r[j+1] == '}' && r[j+2] == '}' {
			if r[j] == '@' {
				return atParameter, j + 3
			}
			return starParameter, j + 3
		}
		return 0, -1
	}
	if j == i+3 || j+1 >= len(r) || r[j] != '}' || r[j+1] != '}' {
		return 0, -1
	}
	n, err := strconv.Atoi(string(r[i+3 : j]))
	if err != nil {
		return 0, -1
	}
	return n, j + 2
}

// positionalText returns the text that stands for an argument of a -c
// script in substitutePositional.
func positionalText(arg string) string {
	f := firstField(arg)
	plain := true
	r := []rune(arg)
	inField := fieldMask(r)
	for i, c := range r {
		if !inField[i] && (c > 127 || !isShellSafe(byte(c))) {
			plain = false
			break
		}
	}
	switch {
	case plain:
		return arg
	case f != "":
		return f
	}
	return "arg"
}
