package printer

import (
	"fmt"
	"github.com/printbridge/printbridge/bridge"
	"math"
	"strconv"
	"strings"

	"github.com/printbridge/printbridge/bridge/lazy"
)

// This file renders GCODE scripts. OctoPrint renders them with Jinja2;
// printbridge supports the part of Jinja2 that G-code scripts use:
//
//   - plain text, with {# comments #};
//   - {{ expression }} output;
//   - {% if %} / {% elif %} / {% else %} / {% endif %}, nested;
//   - whitespace control with {%- and -%} (also on {{ }} and {# #});
//   - expressions: variables, attribute and index access (a.b, a['b'],
//     a[0]), string, number, true/false/none literals, parentheses,
//     not/and/or, == != < <= > >=, "is [not] none", "is [not] defined",
//     and the filters default (d), int, float and round.
//
// Anything else ({% for %}, {% set %}, macros, other filters, arithmetic)
// is rejected when the script is loaded, with the file and line, because
// sending a half-understood template to a printer is worse than sending
// nothing.

// TemplateError is a script that cannot be parsed or rendered.
type TemplateError struct {
	File string
	Line int
	Msg  string
}

func (e *TemplateError) Error() string {
	return fmt.Sprintf("GCODE script %s line %d: %s", e.File, e.Line, e.Msg)
}

// undefined is the value of a missing attribute or of a known variable
// that the running script does not get (pause_position outside the pause
// and resume scripts). It may be tested and defaulted, but not output.
type undefinedValue struct{ name string }

type tmplNode interface{}

type textNode struct{ text string }

type outputNode struct {
	expr tmplExpr
	line int
}

type ifBranch struct {
	cond tmplExpr // nil for else
	body []tmplNode
}

type ifNode struct {
	branches []ifBranch
	line     int
}

// Template is a parsed GCODE script.
type Template struct {
	file  string
	nodes []tmplNode
}

type tmplToken struct {
	kind string // text, output, stmt
	text string
	line int
}

// ParseTemplate parses a script; file names it in errors. vars is the set
// of variable names a script may use.
func ParseTemplate(file, src string, vars map[string]bool) (*Template, error) {
	toks, err := tokenizeTemplate(file, src)
	if err != nil {
		return nil, err
	}
	p := &tmplParser{file: file, toks: toks, vars: vars}
	nodes, end, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	if end != nil {
		return nil, &TemplateError{file, end.line, fmt.Sprintf("{%% %s %%} without a matching {%% if %%}", end.text)}
	}
	return &Template{file: file, nodes: nodes}, nil
}

func tokenizeTemplate(file, src string) ([]tmplToken, error) {
	var toks []tmplToken
	line := 1
	trimNext := false
	for len(src) > 0 {
		i := -1
		for _, open := range []string{"{{", "{%", "{#"} {
			if j := strings.Index(src, open); j >= 0 && (i < 0 || j < i) {
				i = j
			}
		}
		if i < 0 {
			toks = appendText(toks, src, line, trimNext)
			break
		}
		text := src[:i]
		open := src[i : i+2]
		closer := map[string]string{"{{": "}}", "{%": "%}", "{#": "#}"}[open]
		rest := src[i+2:]
		trimBefore := strings.HasPrefix(rest, "-")
		if trimBefore {
			rest = rest[1:]
			text = strings.TrimRight(text, " \t\r\n")
		}
		toks = appendText(toks, text, line, trimNext)
		line += strings.Count(src[:i], "\n")
		end := strings.Index(rest, closer)
		if end < 0 {
			return nil, &TemplateError{file, line, fmt.Sprintf("%s is not closed with %s", open, closer)}
		}
		inner := rest[:end]
		trimNext = strings.HasSuffix(inner, "-")
		if trimNext {
			inner = inner[:len(inner)-1]
		}
		switch open {
		case "{{":
			toks = append(toks, tmplToken{kind: "output", text: strings.TrimSpace(inner), line: line})
		case "{%":
			toks = append(toks, tmplToken{kind: "stmt", text: strings.TrimSpace(inner), line: line})
		}
		consumed := i + 2 + end + len(closer)
		if trimBefore {
			consumed++
		}
		line += strings.Count(src[i:consumed], "\n")
		src = src[consumed:]
	}
	return toks, nil
}

func appendText(toks []tmplToken, text string, line int, trimLeft bool) []tmplToken {
	if trimLeft {
		text = strings.TrimLeft(text, " \t\r\n")
	}
	if text == "" {
		return toks
	}
	return append(toks, tmplToken{kind: "text", text: text, line: line})
}

type tmplParser struct {
	file string
	toks []tmplToken
	pos  int
	vars map[string]bool
}

func (p *tmplParser) errorf(line int, format string, args ...any) error {
	return &TemplateError{p.file, line, fmt.Sprintf(format, args...)}
}

// parseBody parses nodes up to an elif, else or endif, which it returns.
func (p *tmplParser) parseBody() ([]tmplNode, *tmplToken, error) {
	var nodes []tmplNode
	for p.pos < len(p.toks) {
		t := p.toks[p.pos]
		p.pos++
		switch t.kind {
		case "text":
			nodes = append(nodes, textNode{t.text})
		case "output":
			e, err := p.parseExpr(t.text, t.line)
			if err != nil {
				return nil, nil, err
			}
			nodes = append(nodes, outputNode{expr: e, line: t.line})
		case "stmt":
			word, rest, _ := strings.Cut(t.text, " ")
			switch word {
			case "if":
				n, err := p.parseIf(rest, t.line)
				if err != nil {
					return nil, nil, err
				}
				nodes = append(nodes, n)
			case "elif", "else", "endif":
				return nodes, &t, nil
			case "":
				return nil, nil, p.errorf(t.line, "empty {%% %%} tag")
			default:
				return nil, nil, p.errorf(t.line, "unsupported tag {%% %s %%}: printbridge's GCODE scripts support only if, elif, else and endif (see docs/scripts.md)", word)
			}
		}
	}
	return nodes, nil, nil
}

func (p *tmplParser) parseIf(cond string, line int) (tmplNode, error) {
	n := ifNode{line: line}
	for {
		var c tmplExpr
		if cond != "\x00else" {
			e, err := p.parseExpr(cond, line)
			if err != nil {
				return nil, err
			}
			c = e
		}
		body, end, err := p.parseBody()
		if err != nil {
			return nil, err
		}
		n.branches = append(n.branches, ifBranch{cond: c, body: body})
		if end == nil {
			return nil, p.errorf(line, "{%% if %%} is not closed with {%% endif %%}")
		}
		word, rest, _ := strings.Cut(end.text, " ")
		switch word {
		case "endif":
			if strings.TrimSpace(rest) != "" {
				return nil, p.errorf(end.line, "unexpected text after endif: %q", rest)
			}
			return n, nil
		case "else":
			if cond == "\x00else" {
				return nil, p.errorf(end.line, "second {%% else %%} in one {%% if %%}")
			}
			cond = "\x00else"
		case "elif":
			if cond == "\x00else" {
				return nil, p.errorf(end.line, "{%% elif %%} after {%% else %%}")
			}
			cond, line = rest, end.line
		}
	}
}

// ---- expressions ----

type tmplExpr interface{}

type litExpr struct{ v any }

type varExpr struct{ name string }

type accessExpr struct {
	target tmplExpr
	key    string
}

type unaryExpr struct {
	op string // not
	x  tmplExpr
}

type binaryExpr struct {
	op   string
	x, y tmplExpr
}

type testExpr struct {
	x      tmplExpr
	test   string // none, defined
	negate bool
}

type filterExpr struct {
	x    tmplExpr
	name string
	args []tmplExpr
}

type exprParser struct {
	p    *tmplParser
	line int
	toks []string
	pos  int
}

func (p *tmplParser) parseExpr(src string, line int) (tmplExpr, error) {
	toks, err := lexExpr(src)
	if err != nil {
		return nil, p.errorf(line, "%v in %q", err, src)
	}
	if len(toks) == 0 {
		return nil, p.errorf(line, "empty expression")
	}
	ep := &exprParser{p: p, line: line, toks: toks}
	e, err := ep.parseOr()
	if err != nil {
		return nil, p.errorf(line, "%v in %q", err, src)
	}
	if ep.pos < len(toks) {
		return nil, p.errorf(line, "unsupported expression syntax at %q in %q: see docs/scripts.md for what scripts may use", toks[ep.pos], src)
	}
	return e, nil
}

func lexExpr(src string) ([]string, error) {
	var toks []string
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'' || c == '"':
			j := strings.IndexByte(src[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated string")
			}
			toks = append(toks, src[i:i+j+2])
			i += j + 2
		case isIdentStart(c):
			j := i
			for j < len(src) && (isIdentStart(src[j]) || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			toks = append(toks, src[i:j])
			i = j
		case c >= '0' && c <= '9' || c == '-' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9' && prevIsOperator(toks):
			j := i + 1
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.') {
				j++
			}
			toks = append(toks, src[i:j])
			i = j
		case strings.HasPrefix(src[i:], "==") || strings.HasPrefix(src[i:], "!=") ||
			strings.HasPrefix(src[i:], "<=") || strings.HasPrefix(src[i:], ">="):
			toks = append(toks, src[i:i+2])
			i += 2
		case strings.ContainsRune(".[]()|,<>", rune(c)):
			toks = append(toks, string(c))
			i++
		default:
			return nil, fmt.Errorf("unsupported character %q", c)
		}
	}
	return toks, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// prevIsOperator tells a negative number from a minus sign, which
// scripts may not use (arithmetic is not supported).
func prevIsOperator(toks []string) bool {
	if len(toks) == 0 {
		return true
	}
	switch toks[len(toks)-1] {
	case "(", "[", ",", "==", "!=", "<", ">", "<=", ">=", "and", "or", "not":
		return true
	}
	return false
}

func (ep *exprParser) peek() string {
	if ep.pos < len(ep.toks) {
		return ep.toks[ep.pos]
	}
	return ""
}

func (ep *exprParser) next() string {
	t := ep.peek()
	if t != "" {
		ep.pos++
	}
	return t
}

func (ep *exprParser) parseOr() (tmplExpr, error) {
	x, err := ep.parseAnd()
	for err == nil && ep.peek() == "or" {
		ep.next()
		var y tmplExpr
		if y, err = ep.parseAnd(); err == nil {
			x = binaryExpr{op: "or", x: x, y: y}
		}
	}
	return x, err
}

func (ep *exprParser) parseAnd() (tmplExpr, error) {
	x, err := ep.parseNot()
	for err == nil && ep.peek() == "and" {
		ep.next()
		var y tmplExpr
		if y, err = ep.parseNot(); err == nil {
			x = binaryExpr{op: "and", x: x, y: y}
		}
	}
	return x, err
}

func (ep *exprParser) parseNot() (tmplExpr, error) {
	if ep.peek() == "not" {
		ep.next()
		x, err := ep.parseNot()
		return unaryExpr{op: "not", x: x}, err
	}
	return ep.parseCompare()
}

func (ep *exprParser) parseCompare() (tmplExpr, error) {
	x, err := ep.parseFiltered()
	if err != nil {
		return nil, err
	}
	switch op := ep.peek(); op {
	case "==", "!=", "<", ">", "<=", ">=":
		ep.next()
		y, err := ep.parseFiltered()
		if err != nil {
			return nil, err
		}
		return binaryExpr{op: op, x: x, y: y}, nil
	case "is":
		ep.next()
		negate := false
		if ep.peek() == "not" {
			ep.next()
			negate = true
		}
		switch test := ep.next(); test {
		case "none", "None":
			return testExpr{x: x, test: "none", negate: negate}, nil
		case "defined":
			return testExpr{x: x, test: "defined", negate: negate}, nil
		case "undefined":
			return testExpr{x: x, test: "defined", negate: !negate}, nil
		default:
			return nil, fmt.Errorf("unsupported test %q (supported: none, defined, undefined)", test)
		}
	}
	return x, nil
}

var templateFilters = lazy.Map[string, int]{Build: func() map[string]int {
	return map[string]int{"default": 1, "d": 1, "int": 0, "float": 0, "round": 1}
}}

func (ep *exprParser) parseFiltered() (tmplExpr, error) {
	x, err := ep.parsePrimary()
	for err == nil && ep.peek() == "|" {
		ep.next()
		name := ep.next()
		maxArgs, ok := templateFilters.Get()[name]
		if !ok {
			return nil, fmt.Errorf("unsupported filter %q (supported: default, int, float, round)", name)
		}
		f := filterExpr{x: x, name: name}
		if ep.peek() == "(" {
			ep.next()
			for ep.peek() != ")" {
				if len(f.args) > 0 {
					if ep.next() != "," {
						return nil, fmt.Errorf("expected , or ) in the arguments of %s", name)
					}
				}
				a, err := ep.parseOr()
				if err != nil {
					return nil, err
				}
				f.args = append(f.args, a)
			}
			ep.next()
		}
		if len(f.args) > maxArgs || (name == "default" || name == "d") && len(f.args) != 1 {
			return nil, fmt.Errorf("filter %s takes %d argument(s)", name, maxArgs)
		}
		x = f
	}
	return x, err
}

func (ep *exprParser) parsePrimary() (tmplExpr, error) {
	t := ep.next()
	var x tmplExpr
	switch {
	case t == "":
		return nil, fmt.Errorf("expression ends early")
	case t == "(":
		e, err := ep.parseOr()
		if err != nil {
			return nil, err
		}
		if ep.next() != ")" {
			return nil, fmt.Errorf("missing )")
		}
		x = e
	case t[0] == '\'' || t[0] == '"':
		x = litExpr{t[1 : len(t)-1]}
	case t[0] >= '0' && t[0] <= '9' || t[0] == '-':
		if i, err := strconv.Atoi(t); err == nil {
			x = litExpr{i}
		} else if f, err := strconv.ParseFloat(t, 64); err == nil {
			x = litExpr{f}
		} else {
			return nil, fmt.Errorf("invalid number %q", t)
		}
	case t == "true" || t == "True":
		x = litExpr{true}
	case t == "false" || t == "False":
		x = litExpr{false}
	case t == "none" || t == "None":
		x = litExpr{nil}
	case isIdentStart(t[0]):
		switch t {
		case "and", "or", "not", "is", "in", "if", "else":
			return nil, fmt.Errorf("unexpected %q", t)
		}
		if !ep.p.vars[t] {
			return nil, fmt.Errorf("unknown variable %q (printbridge's scripts have %s)", t, strings.Join(sortedVarNames(ep.p.vars), ", "))
		}
		x = varExpr{t}
	default:
		return nil, fmt.Errorf("unexpected %q", t)
	}
	for {
		switch ep.peek() {
		case ".":
			ep.next()
			name := ep.next()
			if name == "" || !isIdentStart(name[0]) {
				return nil, fmt.Errorf("expected an attribute name after '.'")
			}
			if ep.peek() == "(" {
				return nil, fmt.Errorf("method calls such as %s() are not supported", name)
			}
			x = accessExpr{target: x, key: name}
		case "[":
			ep.next()
			k := ep.next()
			if ep.next() != "]" {
				return nil, fmt.Errorf("index must be one number or string followed by ]")
			}
			switch {
			case k == "":
				return nil, fmt.Errorf("empty index")
			case k[0] == '\'' || k[0] == '"':
				k = k[1 : len(k)-1]
			case k[0] >= '0' && k[0] <= '9':
			default:
				return nil, fmt.Errorf("index %q must be a number or a quoted string", k)
			}
			x = accessExpr{target: x, key: k}
		case "(":
			return nil, fmt.Errorf("function calls are not supported")
		default:
			return x, nil
		}
	}
}

func sortedVarNames(vars map[string]bool) []string {
	out := make([]string, 0, len(vars))
	for k := range vars {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// ---- rendering ----

// Render returns the script text for the variables in ctx. Values are
// nil, bool, int, int64, float64, string and map[string]any; a known
// variable missing from ctx is undefined.
func (t *Template) Render(ctx map[string]any) (string, error) {
	var b strings.Builder
	if err := t.renderNodes(&b, t.nodes, ctx); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (t *Template) renderNodes(b *strings.Builder, nodes []tmplNode, ctx map[string]any) error {
	for _, n := range nodes {
		switch n := n.(type) {
		case textNode:
			b.WriteString(n.text)
		case outputNode:
			v, err := evalExpr(n.expr, ctx)
			if err != nil {
				return &TemplateError{t.file, n.line, err.Error()}
			}
			if u, ok := v.(undefinedValue); ok {
				return &TemplateError{t.file, n.line, fmt.Sprintf("%s is undefined here; test it with {%% if %s is defined %%} or give a default with | default(...)", u.name, u.name)}
			}
			b.WriteString(pythonString(v))
		case ifNode:
			for _, br := range n.branches {
				ok := true
				if br.cond != nil {
					v, err := evalExpr(br.cond, ctx)
					if err != nil {
						return &TemplateError{t.file, n.line, err.Error()}
					}
					ok = truthy(v)
				}
				if ok {
					if err := t.renderNodes(b, br.body, ctx); err != nil {
						return err
					}
					break
				}
			}
		}
	}
	return nil
}

func evalExpr(e tmplExpr, ctx map[string]any) (any, error) {
	switch e := e.(type) {
	case litExpr:
		return e.v, nil
	case varExpr:
		v, ok := ctx[e.name]
		if !ok {
			return undefinedValue{e.name}, nil
		}
		return v, nil
	case accessExpr:
		target, err := evalExpr(e.target, ctx)
		if err != nil {
			return nil, err
		}
		switch m := target.(type) {
		case map[string]any:
			if v, ok := m[e.key]; ok {
				return v, nil
			}
		case undefinedValue:
			return undefinedValue{m.name + "." + e.key}, nil
		case nil:
			return nil, fmt.Errorf("cannot read %q of none", e.key)
		}
		return undefinedValue{describeExpr(e)}, nil
	case unaryExpr:
		v, err := evalExpr(e.x, ctx)
		return !truthy(v), err
	case testExpr:
		v, err := evalExpr(e.x, ctx)
		if err != nil {
			return nil, err
		}
		_, undef := v.(undefinedValue)
		var r bool
		if e.test == "none" {
			r = v == nil
		} else {
			r = !undef
		}
		return r != e.negate, nil
	case binaryExpr:
		x, err := evalExpr(e.x, ctx)
		if err != nil {
			return nil, err
		}
		switch e.op {
		case "and":
			if !truthy(x) {
				return x, nil
			}
			return evalExpr(e.y, ctx)
		case "or":
			if truthy(x) {
				return x, nil
			}
			return evalExpr(e.y, ctx)
		}
		y, err := evalExpr(e.y, ctx)
		if err != nil {
			return nil, err
		}
		return compareValues(e.op, x, y)
	case filterExpr:
		return applyFilter(e, ctx)
	}
	return nil, fmt.Errorf("unknown expression %T", e)
}

func describeExpr(e tmplExpr) string {
	switch e := e.(type) {
	case varExpr:
		return e.name
	case accessExpr:
		return describeExpr(e.target) + "." + e.key
	}
	return "value"
}

func applyFilter(f filterExpr, ctx map[string]any) (any, error) {
	v, err := evalExpr(f.x, ctx)
	if err != nil {
		return nil, err
	}
	_, undef := v.(undefinedValue)
	switch f.name {
	case "default", "d":
		if undef {
			return evalExpr(f.args[0], ctx)
		}
		return v, nil
	}
	if undef {
		return nil, fmt.Errorf("%s is undefined, so filter %s cannot apply", v.(undefinedValue).name, f.name)
	}
	n, isNum := toFloat(v)
	if s, ok := v.(string); ok {
		if parsed, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
			n, isNum = parsed, true
		}
	}
	switch f.name {
	case "int":
		if !isNum {
			return 0, nil
		}
		return int(n), nil
	case "float":
		if !isNum {
			return 0.0, nil
		}
		return n, nil
	case "round":
		if !isNum {
			return nil, fmt.Errorf("round needs a number, not %s", pythonString(v))
		}
		digits := 0
		if len(f.args) == 1 {
			a, err := evalExpr(f.args[0], ctx)
			if err != nil {
				return nil, err
			}
			d, ok := a.(int)
			if !ok {
				return nil, fmt.Errorf("round takes a whole number of digits")
			}
			digits = d
		}
		scale := math.Pow(10, float64(digits))
		return math.RoundToEven(n*scale) / scale, nil
	}
	return nil, fmt.Errorf("unsupported filter %s", f.name)
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func compareValues(op string, x, y any) (any, error) {
	if _, ok := x.(undefinedValue); ok {
		return nil, fmt.Errorf("%s is undefined and cannot be compared", x.(undefinedValue).name)
	}
	if _, ok := y.(undefinedValue); ok {
		return nil, fmt.Errorf("%s is undefined and cannot be compared", y.(undefinedValue).name)
	}
	fx, xNum := toFloat(x)
	fy, yNum := toFloat(y)
	if _, ok := x.(bool); ok {
		xNum = false
	}
	if _, ok := y.(bool); ok {
		yNum = false
	}
	switch op {
	case "==", "!=":
		eq := false
		if xNum && yNum {
			eq = fx == fy
		} else {
			eq = x == y
		}
		return eq == (op == "=="), nil
	}
	if xNum && yNum {
		switch op {
		case "<":
			return fx < fy, nil
		case ">":
			return fx > fy, nil
		case "<=":
			return fx <= fy, nil
		case ">=":
			return fx >= fy, nil
		}
	}
	sx, xs := x.(string)
	sy, ys := y.(string)
	if xs && ys {
		switch op {
		case "<":
			return sx < sy, nil
		case ">":
			return sx > sy, nil
		case "<=":
			return sx <= sy, nil
		case ">=":
			return sx >= sy, nil
		}
	}
	return nil, fmt.Errorf("cannot compare %s %s %s", pythonString(x), op, pythonString(y))
}

// truthy is Python's truth value, which Jinja2 uses.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil, undefinedValue:
		return false
	case bool:
		return x
	case int:
		return x != 0
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// pythonString is Python's str() of a value, which Jinja2 outputs: None,
// True/False, and floats with their shortest round-trip digits and a
// fractional part (10.0, not 10).
func pythonString(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return pythonFloat(x)
	case string:
		return x
	case map[string]any:
		return fmt.Sprint(x)
	}
	return fmt.Sprint(v)
}

func pythonFloat(f float64) string { return bridge.PythonFloatRepr(f) }
