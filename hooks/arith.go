package hooks

import (
	"path"
	"slices"
	"strings"
)

// fixArithmetic is the advice for a placeholder that a shell evaluates
// as arithmetic. Once a case pattern has checked that the variable holds
// only digits, bash cannot find a subscript or command in it.
const fixArithmetic = `assign the value to a variable and check that it is a number with a case pattern before any arithmetic, as in n={progress}; case $n in ''|*[!0-9]*) exit 1;; esac; echo $((n + 1)), or pass the value to a program that parses it`

// plainTestShells are the shells whose test and [ builtins compare the
// operands of -eq, -gt and the like as plain integers. arith_test.go
// runs this on bash 5.2 and dash 0.5.12, and zsh's manual says its test
// expects integers rather than arithmetic expressions. ksh evaluates the
// operands as arithmetic (the ksh-compat-test example of bash emulates
// it), so a placeholder there is an error in the -c scripts of ksh and
// of every shell not listed here.
var plainTestShells = map[string]bool{"sh": true, "bash": true, "dash": true, "zsh": true}

// expansionKind is a construct of shell code that a placeholder may sit in.
type expansionKind int

const (
	kindNone expansionKind = iota
	kindParen
	kindCommandSub
	kindBacktick
	kindDouble
	kindArith
	kindArithBracket
	kindArithCommand
	kindCond
	kindParam
)

// expansionWhere words the place of a placeholder inside an expansion
// of the given kind for the reparse error.
var expansionWhere = map[expansionKind]string{
	kindArith:        "inside $((...)), where the shell reads the value's quotes as plain characters, so $(...) in the value runs, and bash also runs the command in an array subscript such as a[$(cmd)]",
	kindArithBracket: "inside $[...], bash's old form of $((...)), where the value's quotes are plain characters, so $(...) in the value runs",
	kindArithCommand: "inside the arithmetic command ((...)) of bash, which evaluates the value as an arithmetic expression and runs the command in an array subscript such as a[$(cmd)]",
	kindCond:         "inside [[ ... ]], whose -eq, -ne, -lt, -le, -gt and -ge operands bash evaluates as arithmetic, which runs the command in an array subscript such as a[$(cmd)]",
	kindParam:        "inside ${...}, where bash evaluates array subscripts and substring offsets such as ${var:offset} as arithmetic, which runs the command in a subscript such as a[$(cmd)]",
}

// expansionFrame is one open construct while expansionField reads code.
// depth counts the parentheses, brackets or braces opened inside it.
type expansionFrame struct {
	kind  expansionKind
	depth int
}

// expansionField returns the first placeholder in shell code that sits
// inside an arithmetic expansion or command, [[ ... ]] or ${...}, also
// when a command substitution lies between, because the output of
// $(...) inside $((...)) is evaluated too. Placeholders inside quotes,
// backticks and here-documents are errors of unsafePlaceholder already.
// The reader errs towards finding a construct: an unmatched ) or ]]
// leaves the construct open.
func expansionField(code string) *reparsedField {
	r := []rune(code)
	inField := fieldMask(r)
	var stack []expansionFrame
	var heredocs []string
	top := func() expansionKind {
		if len(stack) == 0 {
			return kindNone
		}
		return stack[len(stack)-1].kind
	}
	push := func(k expansionKind) { stack = append(stack, expansionFrame{kind: k}) }
	pop := func() { stack = stack[:len(stack)-1] }
	wordStart := func(i int) bool { return i == 0 || strings.ContainsRune(" \t\n;&|(!", r[i-1]) }
	for i := 0; i < len(r); i++ {
		c := r[i]
		if inField[i] {
			for k := len(stack) - 1; k >= 0; k-- {
				if where, ok := expansionWhere[stack[k].kind]; ok {
					return &reparsedField{fieldAt(r, i), where, fixArithmetic}
				}
			}
			for i+1 < len(r) && inField[i+1] {
				i++
			}
			continue
		}
		// Outside fields, a template writes a literal brace twice.
		if (c == '{' || c == '}') && i+1 < len(r) && r[i+1] == c {
			i++
		}
		if top() == kindDouble {
			switch c {
			case '\\':
				i++
			case '"':
				pop()
			case '`':
				push(kindBacktick)
			case '$':
				i = openDollar(r, i, push)
			}
			continue
		}
		switch c {
		case '\\':
			if i+1 < len(r) && !inField[i+1] {
				i++
			}
		case '\'':
			for i++; i < len(r) && r[i] != '\''; i++ {
			}
		case '"':
			push(kindDouble)
		case '`':
			if top() == kindBacktick {
				pop()
			} else {
				push(kindBacktick)
			}
		case '$':
			i = openDollar(r, i, push)
		case '(':
			switch top() {
			case kindArith, kindArithCommand:
				stack[len(stack)-1].depth++
			default:
				if i+1 < len(r) && r[i+1] == '(' {
					push(kindArithCommand)
					i++
				} else {
					push(kindParen)
				}
			}
		case ')':
			switch top() {
			case kindArith, kindArithCommand:
				if stack[len(stack)-1].depth > 0 {
					stack[len(stack)-1].depth--
				} else if i+1 < len(r) && r[i+1] == ')' {
					pop()
					i++
				}
			case kindParen, kindCommandSub:
				pop()
			}
		case '[':
			switch {
			case top() == kindArithBracket:
				stack[len(stack)-1].depth++
			case top() != kindCond && wordStart(i) && i+2 < len(r) && r[i+1] == '[' && strings.ContainsRune(" \t\n", r[i+2]):
				push(kindCond)
				i++
			}
		case ']':
			switch {
			case top() == kindArithBracket:
				if stack[len(stack)-1].depth > 0 {
					stack[len(stack)-1].depth--
				} else {
					pop()
				}
			case top() == kindCond && i+1 < len(r) && r[i+1] == ']' && i > 0 && strings.ContainsRune(" \t\n", r[i-1]):
				pop()
				i++
			}
		case '{':
			if top() == kindParam {
				stack[len(stack)-1].depth++
			}
		case '}':
			if top() == kindParam {
				if stack[len(stack)-1].depth > 0 {
					stack[len(stack)-1].depth--
				} else {
					pop()
				}
			}
		case '#':
			if k := top(); wordStart(i) && (k == kindNone || k == kindParen || k == kindCommandSub || k == kindBacktick) {
				for i+1 < len(r) && r[i+1] != '\n' {
					i++
				}
			}
		case '<':
			if delimiter, next, ok := heredocStart(r, i); ok {
				heredocs = append(heredocs, delimiter)
				i = next - 1
			}
		case '\n':
			// Here-document bodies hold no placeholders (unsafePlaceholder
			// rejects them), so they are skipped whole.
			for _, delimiter := range heredocs {
				i = heredocEnd(r, i, delimiter)
			}
			heredocs = nil
		}
	}
	return nil
}

// openDollar pushes the construct that the $ at r[i] opens and returns
// the index of its last rune.
func openDollar(r []rune, i int, push func(expansionKind)) int {
	switch {
	case i+2 < len(r) && r[i+1] == '(' && r[i+2] == '(':
		push(kindArith)
		return i + 2
	case i+1 < len(r) && r[i+1] == '(':
		push(kindCommandSub)
		return i + 1
	case i+1 < len(r) && r[i+1] == '[':
		push(kindArithBracket)
		return i + 1
	case i+2 < len(r) && r[i+1] == '{' && r[i+2] == '{':
		// ${ in a template is ${{.
		push(kindParam)
		return i + 2
	}
	return i
}

// heredocEnd returns the index of the newline that ends the line equal
// to delimiter (after leading tabs) from the newline at r[i] on, or the
// end of r.
func heredocEnd(r []rune, i int, delimiter string) int {
	for i < len(r) {
		lineEnd := i + 1
		for lineEnd < len(r) && r[lineEnd] != '\n' {
			lineEnd++
		}
		if strings.TrimLeft(string(r[i+1:lineEnd]), "\t") == delimiter {
			return lineEnd
		}
		i = lineEnd
	}
	return len(r)
}

// builtinArithmeticField returns the first placeholder in the words of
// one simple command that a builtin evaluates as arithmetic or reads as
// a variable name, whose array subscript bash evaluates as arithmetic.
// integerCode is true when the code gives a variable the integer
// attribute, so that bash evaluates every assigned value. shell is the
// base name of the shell that runs the code.
func builtinArithmeticField(words []string, integerCode bool, shell string) *reparsedField {
	first := commandName(words)
	last := first
	if first < 0 {
		last = len(words) - 1
	}
	for _, w := range words[:last+1] {
		if r := assignmentField(w, integerCode, "an assignment"); r != nil {
			return r
		}
	}
	if first < 0 {
		return nil
	}
	name, args := words[first], words[first+1:]
	switch name {
	case "let":
		if f := fieldIn(args); f != "" {
			return &reparsedField{f, "an argument of let, which evaluates it as an arithmetic expression and runs the command in an array subscript such as a[$(cmd)]", fixArithmetic}
		}
	case "declare", "typeset", "local", "export", "readonly":
		integer := setsInteger(words[first:])
		for _, a := range args {
			f := firstField(a)
			if f == "" {
				continue
			}
			if integer {
				return &reparsedField{f, "an argument of " + name + " -i, which evaluates the value as arithmetic and runs the command in an array subscript such as a[$(cmd)]", fixArithmetic}
			}
			if r := assignmentField(a, integerCode, "an argument of "+name); r != nil {
				return r
			}
			if !isAssignment(a) && !strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "+") {
				return &reparsedField{f, "a variable name for " + name + ", where bash evaluates an array subscript such as a[$(cmd)]=1 as arithmetic, which runs the command", "write the variable name as fixed text and the placeholder only after its =, as in " + name + " n={name}"}
			}
		}
	case "printf":
		options, _ := walkOptions(words, first, cliOptions{value: "v"})
		if f := optionValueField(words, options, "v"); f != "" {
			return &reparsedField{f, "the variable name of printf -v, where bash evaluates an array subscript such as a[$(cmd)] as arithmetic, which runs the command", "write the variable name as fixed text, as in printf -v n %s {name}"}
		}
	case "unset":
		if f := fieldIn(args); f != "" {
			return &reparsedField{f, "an argument of unset, where bash evaluates an array subscript such as a[$(cmd)] as arithmetic, which runs the command", "write the variable names of unset as fixed text"}
		}
	case "test", "[":
		return testField(args, shell)
	}
	return nil
}

// testField returns the first placeholder in the arguments of test or [
// that the builtin evaluates. bash evaluates the array subscript in the
// variable name of -v as arithmetic. A shell outside plainTestShells
// evaluates the operands of the integer comparisons.
func testField(args []string, shell string) *reparsedField {
	for i, a := range args {
		f := firstField(a)
		if f == "" {
			continue
		}
		if i > 0 && args[i-1] == "-v" {
			return &reparsedField{f, "the variable name of test -v, where bash evaluates an array subscript such as a[$(cmd)] as arithmetic, which runs the command", "write the variable name as fixed text"}
		}
		if plainTestShells[shell] {
			continue
		}
		if i > 0 && isIntegerComparison(args[i-1]) || i+1 < len(args) && isIntegerComparison(args[i+1]) {
			return &reparsedField{f, "an operand of test " + comparisonNear(args, i) + " in " + shell + ", which evaluates it as an arithmetic expression", fixArithmetic}
		}
	}
	return nil
}

func isIntegerComparison(w string) bool {
	return slices.Contains([]string{"-eq", "-ne", "-lt", "-le", "-gt", "-ge"}, w)
}

func comparisonNear(args []string, i int) string {
	if i > 0 && isIntegerComparison(args[i-1]) {
		return args[i-1]
	}
	return args[i+1]
}

// assignmentField returns the placeholder in an assignment word, such as
// a[{i}]=x or n={value}, that bash evaluates as arithmetic: one in an
// array subscript, or anywhere when the code gives variables the integer
// attribute. It returns nil for other words.
func assignmentField(w string, integerCode bool, what string) *reparsedField {
	name, ok := assignedName(w)
	if !ok {
		return nil
	}
	if open := strings.IndexByte(name, '['); open > 0 {
		if f := firstField(name[open:]); f != "" {
			return &reparsedField{f, "in the array subscript of " + what + ", which bash evaluates as arithmetic and which runs the command in a subscript such as a[$(cmd)]", "write the subscript as fixed text, as in a[0]={name}"}
		}
	}
	if f := firstField(w); f != "" && integerCode {
		return &reparsedField{f, "assigned in " + what + " in code that gives variables the integer attribute (declare -i, typeset -i or local -i), so bash may evaluate the value as arithmetic", fixArithmetic}
	}
	return nil
}

// assignedName returns the variable part of an assignment word, such as
// n or a[0] in n=1, a[0]+=x, and false for any other word.
func assignedName(w string) (string, bool) {
	eq := strings.IndexByte(w, '=')
	if eq <= 0 {
		return "", false
	}
	name := strings.TrimSuffix(w[:eq], "+")
	base := name
	if open := strings.IndexByte(name, '['); open > 0 && strings.HasSuffix(name, "]") {
		base = name[:open]
	}
	return name, isAssignment(base + "=")
}

// setsInteger reports whether the declare, typeset or local command in
// words gives the integer attribute with -i, alone or in a group such as
// -ri.
func setsInteger(words []string) bool {
	for _, w := range words[1:] {
		if len(w) > 1 && w[0] == '-' && !strings.HasPrefix(w, "--") && strings.ContainsRune(w[1:], 'i') {
			return true
		}
	}
	return false
}

// declaresInteger reports whether shell code gives a variable the
// integer attribute, with declare, typeset or local and -i.
func declaresInteger(commands []shellCommand) bool {
	for _, c := range commands {
		first := commandName(c.words)
		if first < 0 {
			continue
		}
		switch c.words[first] {
		case "declare", "typeset", "local":
			if setsInteger(c.words[first:]) {
				return true
			}
		}
	}
	return false
}

// fieldIn returns the first placeholder in words, or "".
func fieldIn(words []string) string {
	for _, w := range words {
		if f := firstField(w); f != "" {
			return f
		}
	}
	return ""
}

// arithmeticReparse returns the first placeholder in shell code that
// the shell evaluates as arithmetic or as a variable name: in $((...)),
// $[...], ((...)), [[ ... ]] or ${...}, in an array subscript, or among
// the arguments of let, declare, local, printf -v, unset and test -v.
// shell is the base name of the shell that runs the code.
func arithmeticReparse(code string, commands []shellCommand, shell string) *reparsedField {
	if r := expansionField(code); r != nil {
		return r
	}
	integerCode := declaresInteger(commands)
	for _, c := range commands {
		if r := builtinArithmeticField(c.arguments().words, integerCode, path.Base(shell)); r != nil {
			return r
		}
	}
	return nil
}
