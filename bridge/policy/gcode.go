package policy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// code is a G-code command as Marlin dispatches it: the letter G, M or T,
// the number and an optional subcode (G29.1). A T entry without a number
// matches every tool.
type code struct {
	letter  byte
	number  int // -1 for a bare T
	subcode int // -1 when absent
}

func (c code) String() string {
	switch {
	case c.number < 0:
		return string(c.letter)
	case c.subcode >= 0:
		return fmt.Sprintf("%c%d.%d", c.letter, c.number, c.subcode)
	default:
		return fmt.Sprintf("%c%d", c.letter, c.number)
	}
}

// param is one parameter word: a letter with an optional numeric value.
type param struct {
	letter   byte
	value    float64
	hasValue bool
}

// command is a parsed line: its code (ok false for text without one, such
// as an OctoPrint @ command) and its parameters in order.
type command struct {
	code   code
	ok     bool
	params []param
}

// parseCommand reads the code and parameters of a line whose comment is
// already stripped, as loosely as Marlin 2.x's GCodeParser does: spaces
// between the letter and the number ("M 0"), leading zeros ("M00" is M0),
// parameters with or without a space ("M104S0", "M104 S 0"), and, for
// firmwares built with GCODE_CASE_INSENSITIVE, letters in either case.
func parseCommand(line string) command {
	s := strings.TrimLeft(line, " \t")
	if s == "" {
		return command{}
	}
	letter := upper(s[0])
	if letter != 'G' && letter != 'M' && letter != 'T' {
		return command{}
	}
	rest := strings.TrimLeft(s[1:], " ")
	digits := leadingDigits(rest)
	if digits == "" {
		if letter != 'T' {
			return command{}
		}
		// A bare T (or "T?" on some firmwares) still selects a tool.
		return command{code: code{letter: 'T', number: -1, subcode: -1}, ok: true, params: parseParams(rest)}
	}
	c := code{letter: letter, number: atoiSaturated(digits), subcode: -1}
	rest = rest[len(digits):]
	if letter != 'T' && strings.HasPrefix(rest, ".") {
		if sub := leadingDigits(rest[1:]); sub != "" {
			c.subcode = atoiSaturated(sub)
			rest = rest[1+len(sub):]
		}
	}
	return command{code: c, ok: true, params: parseParams(rest)}
}

// parseParams reads parameter words. A letter followed by a number has a
// value. Text that is neither (an M117 message) is skipped letter by
// letter, which can only find more parameters, never fewer, so a deny rule
// with parameters errs on the side of matching.
func parseParams(s string) []param {
	var params []param
	for i := 0; i < len(s); {
		c := upper(s[i])
		if c < 'A' || c > 'Z' {
			i++
			continue
		}
		j := i + 1
		// Marlin reads values with strtod, which skips leading spaces.
		for j < len(s) && s[j] == ' ' {
			j++
		}
		n := numberPrefix(s[j:])
		p := param{letter: c}
		if n > 0 {
			if v, err := strconv.ParseFloat(s[j:j+n], 64); err == nil {
				p.value, p.hasValue = v, true
			}
			j += n
		} else {
			j = i + 1
		}
		params = append(params, p)
		i = j
	}
	return params
}

// numberPrefix returns the length of the decimal number at the start of s:
// an optional sign, digits and an optional fraction.
func numberPrefix(s string) int {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	start := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i == start || (i == start+1 && s[start] == '.') {
		return 0
	}
	return i
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i]
}

// atoiSaturated parses digits, capping absurd values instead of failing,
// so that "M000000000000000000000104" still reads as M104.
func atoiSaturated(digits string) int {
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return 0
	}
	if len(digits) > 9 {
		return 1_000_000_000
	}
	n, _ := strconv.Atoi(digits)
	return n
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// rule is one entry of an allow or deny list, such as "M104 S<1" or "T".
type rule struct {
	text   string
	code   code
	params []ruleParam
}

// ruleParam is a parameter condition of a rule: the letter alone (present
// with any value), or the letter with a comparison (S0, S<1, S>=280).
type ruleParam struct {
	letter   byte
	op       string // "", "=", "<", "<=", ">" or ">="
	value    float64
	hasValue bool
}

// parseRule parses a list entry: a code, then parameter conditions that a
// line must all meet.
func parseRule(text string) (rule, error) {
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return rule{}, fmt.Errorf("empty entry: give a code such as M104, G28 or T")
	}
	cmd := parseCommand(fields[0])
	if !cmd.ok || len(cmd.params) > 0 {
		return rule{}, fmt.Errorf("invalid entry %q: start with a G, M or T code such as M104, G29.1 or T", text)
	}
	r := rule{text: strings.Join(fields, " "), code: cmd.code}
	for _, f := range fields[1:] {
		p, err := parseRuleParam(f)
		if err != nil {
			return rule{}, fmt.Errorf("invalid parameter %q in entry %q: %w", f, text, err)
		}
		r.params = append(r.params, p)
	}
	return r, nil
}

func parseRuleParam(f string) (ruleParam, error) {
	const want = "give a letter alone or with a number, optionally compared: S, S0, S<1, S>=280"
	if !isLetter(f[0]) {
		return ruleParam{}, errors.New(want)
	}
	p := ruleParam{letter: upper(f[0])}
	rest := f[1:]
	if rest == "" {
		return p, nil
	}
	for _, op := range []string{"<=", ">=", "<", ">", "="} {
		if strings.HasPrefix(rest, op) {
			p.op, rest = op, rest[len(op):]
			break
		}
	}
	if n := numberPrefix(rest); n == 0 || n != len(rest) {
		return ruleParam{}, errors.New(want)
	}
	v, err := strconv.ParseFloat(rest, 64)
	if err != nil {
		return ruleParam{}, errors.New(want)
	}
	if p.op == "" {
		p.op = "="
	}
	p.value, p.hasValue = v, true
	return p, nil
}

func isLetter(c byte) bool {
	c = upper(c)
	return c >= 'A' && c <= 'Z'
}

// matches reports whether cmd is the rule's code (any subcode when the
// rule gives none, any tool for a bare T) and meets every parameter
// condition of the rule.
func (r rule) matches(cmd command) bool {
	if !cmd.ok || cmd.code.letter != r.code.letter {
		return false
	}
	if r.code.number >= 0 && cmd.code.number != r.code.number {
		return false
	}
	if r.code.subcode >= 0 && cmd.code.subcode != r.code.subcode {
		return false
	}
	for _, want := range r.params {
		if !meetsParam(cmd.params, want) {
			return false
		}
	}
	return true
}

// meetsParam reports whether any parameter with the condition's letter
// meets it. A whole-number condition value is compared with the line's
// value truncated toward zero, because Marlin reads temperatures and
// other integer parameters that way: M104 S0.9 sets a target of 0.
func meetsParam(params []param, want ruleParam) bool {
	for _, p := range params {
		if p.letter != want.letter {
			continue
		}
		if !want.hasValue {
			return true
		}
		if !p.hasValue {
			continue
		}
		v := p.value
		if want.value == math.Trunc(want.value) {
			v = math.Trunc(v)
		}
		if compare(v, want.op, want.value) {
			return true
		}
	}
	return false
}

func compare(v float64, op string, limit float64) bool {
	switch op {
	case "<":
		return v < limit
	case "<=":
		return v <= limit
	case ">":
		return v > limit
	case ">=":
		return v >= limit
	default:
		return v == limit
	}
}
