package hooks

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/printbridge/printbridge/bridge"
)

// checkEvents warns about event names that never fire: misspellings (with
// a suggestion), names printbridge does not fire yet, and duplicates.
// OctoPrint's generated names (GcodeScript...Running, plugin_x_y) are
// accepted as they are.
func (l *loader) checkEvents(sub *Subscription, nodes []*yaml.Node, ref entryRef, path string) {
	seen := map[string]bool{}
	for i, name := range sub.Events {
		node := nodes[i]
		if seen[name] {
			l.report(SeverityWarning, node, ref, path+".event",
				"event %q is listed twice, so the hook runs twice per event, as in OctoPrint", name)
		}
		seen[name] = true
		if def, ok := bridge.LookupEvent(name); ok {
			if what, notYet := bridge.NotFiredYet(def); notYet {
				l.report(SeverityWarning, node, ref, path+".event",
					"printbridge does not fire %s yet (missing: %s), so this hook only runs for %s events that another program publishes", name, what, name)
			}
			continue
		}
		if bridge.IsDynamicEvent(name) {
			continue
		}
		if example, ok := bridge.TemplateExample(name); ok {
			l.report(SeverityWarning, node, ref, path+".event",
				"event %q is a name template and never fires as written; put the script's or plugin's name in place of the placeholders, such as %q", name, example)
			continue
		}
		hint := ""
		if s := bridge.SuggestEvent(name); s != "" {
			hint = fmt.Sprintf("; did you mean %q?", s)
			if s == bridge.EventDwelling {
				hint += " (OctoPrint's docs say Dwell, but the event that fires is Dwelling)"
			}
		}
		l.report(SeverityWarning, node, ref, path+".event", "unknown event %q never fires (names are case-sensitive)%s", name, hint)
	}
}

// compileCommands checks every template of sub, splits system commands
// without a shell into argv, and warns about placeholders that no event of
// the entry provides. It returns false when the entry must be skipped.
func (l *loader) compileCommands(sub *Subscription, ref entryRef, path string) bool {
	ok := true
	used := make([][]string, len(sub.Commands))
	for i := range sub.Commands {
		c := &sub.Commands[i]
		node := &yaml.Node{Line: c.Line, Column: c.Column}
		names, err := l.compileCommand(sub, c)
		// The names before an error are checked too, so that one run of
		// check-config reports them with the error.
		used[i] = names
		if err != nil {
			l.report(SeverityError, node, ref, path+".command", "command #%d %s, so the entry is skipped", i+1, err)
			ok = false
		}
	}
	l.checkPlaceholders(sub, used, ref, path)
	return ok
}

func (l *loader) compileCommand(sub *Subscription, c *Command) ([]string, error) {
	switch {
	case sub.Type == TypeGcode:
		c.Template = strings.TrimRight(c.Template, "\r\n")
		if strings.ContainsAny(c.Template, "\r\n") {
			return nil, errors.New("contains a line break; give each G-code line as its own list entry")
		}
		return checkedTemplate(c.Template)
	case sub.Shell:
		return checkedTemplate(c.Template)
	}
	words, err := splitWords(c.Template)
	if err != nil {
		return nil, fmt.Errorf("cannot be split into arguments (%v)", err)
	}
	if len(words) == 0 {
		return nil, errors.New("is empty")
	}
	var names []string
	for _, w := range words {
		used, err := checkedTemplate(w.text)
		if err != nil {
			return append(names, used...), err
		}
		c.Args = append(c.Args, w.text)
		names = append(names, used...)
	}
	c.ScriptArgs = shellScriptArgs(c.Args)
	return names, nil
}

// checkedTemplate runs checkTemplate and words its error for the user.
// With an error it returns the names of the fields before it.
func checkedTemplate(t string) ([]string, error) {
	names, err := checkTemplate(t)
	if err == nil {
		return names, nil
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		return names, err
	}
	return names, fmt.Errorf("cannot be rendered (%v)%s", fe, templateHint(fe))
}

func templateHint(fe *FormatError) string {
	msg := fe.Message
	switch {
	case fe.Class == "IndexError":
		return "; {} and {0} are positional fields, which OctoPrint never fills: name a placeholder such as {name}"
	case strings.HasPrefix(msg, "Single '") || strings.HasPrefix(msg, "unmatched '{'") || strings.HasPrefix(msg, "expected '}'") ||
		strings.HasPrefix(msg, "unexpected '{'"):
		return "; write a literal brace as {{ or }}, as in awk '{{print $1}}'"
	case strings.HasPrefix(msg, "Unknown format code") || strings.Contains(msg, "not allowed in string format specifier") ||
		strings.HasPrefix(msg, "Cannot specify"):
		return "; every placeholder value is a string since OctoPrint 1.11.3, so numeric formats such as {time:.1f} fail: use {time}, or a string format such as {time:.6}"
	case fe.Class == "TypeError" || fe.Class == "AttributeError":
		return "; every placeholder value is a string since OctoPrint 1.11.3, so keys of nested values such as {position[x]} cannot be reached: use {position} or {__json}"
	}
	return ""
}

// checkPlaceholders warns about names that are neither built-ins nor a
// payload key of the entry's events, because OctoPrint skips the hook
// with a KeyError when a placeholder is missing. used holds the names of
// each command.
func (l *loader) checkPlaceholders(sub *Subscription, used [][]string, ref entryRef, path string) {
	done := map[string]bool{}
	for i, names := range used {
		node := &yaml.Node{Line: sub.Commands[i].Line, Column: sub.Commands[i].Column}
		for _, name := range names {
			if done[name] || containsString(builtinPlaceholders, name) || name == PlaceholderFileorigin {
				continue
			}
			done[name] = true
			if containsString(unsetPayloadKeys, name) {
				l.report(SeverityWarning, node, ref, path+".command",
					"placeholder {%s} is never set by printbridge, which has no OctoPrint user accounts, so the hook is skipped every time the event fires", name)
				continue
			}
			if missing, detail := missingPayloadKey(sub.Events, name); len(missing) > 0 {
				l.report(SeverityWarning, node, ref, path+".command",
					"placeholder {%s} is not in the payload of %s (%s) and is not a built-in, so the hook is skipped when the event fires, as in OctoPrint",
					name, strings.Join(missing, ", "), detail)
			}
		}
	}
}

// unsetPayloadKeys are optional payload keys of the catalogue that
// OctoPrint fills from its logged-in user and printbridge never fills.
var unsetPayloadKeys = []string{"owner", "user"}

// missingPayloadKey returns the catalogue events that lack the payload key
// name, and the keys they have.
func missingPayloadKey(events []string, name string) ([]string, string) {
	var missing, keys []string
	for _, ev := range events {
		def, ok := bridge.LookupEvent(ev)
		if !ok || hasField(def, name) || containsString(missing, ev) {
			continue
		}
		missing = append(missing, ev)
		if names := fieldNames(def); names != "" {
			keys = append(keys, ev+" has "+names)
		} else {
			keys = append(keys, ev+" has no payload keys")
		}
	}
	return missing, strings.Join(keys, "; ")
}

func hasField(def *bridge.EventDef, name string) bool {
	for _, f := range def.Fields {
		if f.Name == name {
			return true
		}
	}
	return false
}

func fieldNames(def *bridge.EventDef) string {
	names := make([]string, len(def.Fields))
	for i, f := range def.Fields {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

var gcodeCommaList = regexp.MustCompile(`,\s*[GMTgmt][0-9]`)

// checkHook warns about the traps of each hook type. It returns false for
// an entry that must not load.
func (l *loader) checkHook(sub *Subscription, fields map[string]*yaml.Node, entry *yaml.Node, ref entryRef, path string) bool {
	compiled := true
	if sub.Type == TypeGcode {
		for i, c := range sub.Commands {
			node := &yaml.Node{Line: c.Line, Column: c.Column}
			if gcodeCommaList.MatchString(c.Template) {
				l.report(SeverityWarning, node, ref, path+".command",
					"G-code command #%d contains commas; it is sent as one line, as OctoPrint does (comma lists only work in pre-1.2 configs): give each line as its own list entry", i+1)
			}
			for _, ev := range sub.Events {
				if templateFiresEvent(c.Template, ev) {
					l.report(SeverityWarning, node, ref, path+".command",
						"G-code command #%d fires %s itself, which would run this hook again without end; printbridge does not send it (OctoPrint loops)", i+1, ev)
				}
			}
		}
		return compiled
	}
	if !sub.ShellSet {
		if runsOwnShell(sub.Commands) {
			// shell: true would put the user's own -c script inside
			// another shell's quotes, which the quoting check rejects.
			l.report(SeverityWarning, entry, ref, path+".shell",
				"shell is not set, so printbridge runs the command without a shell, unlike OctoPrint 1.11; the command runs its own shell with -c, whose script gets quoted placeholder values, so set shell: false to silence this warning")
		} else {
			l.report(SeverityWarning, entry, ref, path+".shell",
				"shell is not set, so printbridge runs the command without a shell, unlike OctoPrint 1.11; set shell: true if it needs one (placeholder values are then quoted), or shell: false to silence this warning")
		}
	}
	for i, c := range sub.Commands {
		node := &yaml.Node{Line: c.Line, Column: c.Column}
		if sub.Shell {
			if field, where := unsafePlaceholder(c.Template); field != "" {
				// printbridge refuses what OctoPrint 1.11.3 runs: the
				// value's own quoting is undone there, so a file name
				// with ;, $(...) or backticks runs as shell code.
				l.report(SeverityError, node, ref, path+".command",
					"placeholder %s in command #%d is %s, which lets a value such as a file name run shell commands ($(...), `...` or ;) because the value's own quoting is undone; %s (with shell: true every value is already quoted as one word)",
					field, i+1, where, placeholderFix(where))
				compiled = false
			} else if r := shellCodeReparse(c.Template, "/bin/sh"); r != nil {
				l.reportReparsed(node, ref, path, i, r)
				compiled = false
			}
			continue
		}
		unsafe := false
		for _, s := range c.ScriptArgs {
			if field, where := unsafePlaceholder(c.Args[s]); field != "" {
				// The shell parses its -c script as it parses a shell:
				// true command, so the same quoting rule applies.
				l.report(SeverityError, node, ref, path+".command",
					"placeholder %s in command #%d is %s in the script that %s runs with -c, which lets a value such as a file name run shell commands ($(...), `...` or ;) because the value's own quoting is undone; %s (placeholder values in a -c script are already quoted as one word)",
					field, i+1, where, scriptShell(c.Args, s), placeholderFix(where))
				compiled = false
				unsafe = true
				break
			}
		}
		if r := argvReparse(c.Args, false); r != nil && !unsafe {
			l.reportReparsed(node, ref, path, i, r)
			compiled = false
		}
		words, _ := splitWords(c.Template)
		if syntax := shellSyntax(words); syntax != "" {
			l.report(SeverityWarning, node, ref, path+".command",
				"command #%d contains shell syntax %q, but runs without a shell, so the program gets it as a plain argument; set shell: true if it needs a shell", i+1, syntax)
		}
	}
	return compiled
}

// reportReparsed reports the error for a placeholder that a program
// parses as code again, found by shellCodeReparse or argvReparse.
func (l *loader) reportReparsed(node *yaml.Node, ref entryRef, path string, i int, r *reparsedField) {
	l.report(SeverityError, node, ref, path+".command",
		"placeholder %s in command #%d is %s, which lets a value such as a file name run code; %s",
		r.field, i+1, r.where, r.fix)
}

// runsOwnShell reports whether every command of a hook runs a shell with
// a -c script of its own, such as nice sh -c "...".
func runsOwnShell(commands []Command) bool {
	for _, c := range commands {
		if len(c.ScriptArgs) == 0 {
			return false
		}
	}
	return len(commands) > 0
}

// placeholderFix returns what to change for a placeholder that
// unsafePlaceholder found where.
func placeholderFix(where string) string {
	switch where {
	case "inside backticks":
		return "write $(...) in place of the backticks, with the placeholder outside quotes"
	case "right after a backslash", "right after $":
		return "write the placeholder as a word of its own, without the character before it"
	case "inside a here-document":
		return "pass the value as an argument, such as printf '%s\\n' {name} > file, in place of the here-document"
	}
	return "write the placeholder without quotes"
}

// fieldMask marks the runes that belong to a replacement field, so that
// the shell checks ignore format specs such as {name:*^9}.
func fieldMask(r []rune) []bool {
	mask := make([]bool, len(r))
	for i := 0; i < len(r); i++ {
		if r[i] != '{' {
			continue
		}
		if i+1 < len(r) && r[i+1] == '{' {
			i++
			continue
		}
		depth := 0
		for j := i; j < len(r); j++ {
			mask[j] = true
			if r[j] == '{' {
				depth++
			} else if r[j] == '}' {
				depth--
				if depth == 0 {
					i = j
					break
				}
			}
		}
	}
	return mask
}

// shellSyntax returns the first unquoted shell operator, expansion or
// glob in the words of a command, or "".
func shellSyntax(words []word) string {
	for _, w := range words {
		r := []rune(w.text)
		inField := fieldMask(r)
		plain := func(i int) bool { return i < len(r) && w.unquoted[i] && !inField[i] }
		for i, c := range r {
			if !plain(i) {
				continue
			}
			switch c {
			case ';', '|', '<', '>', '`', '*':
				return string(c)
			case '&':
				if plain(i+1) && r[i+1] == '&' {
					return "&&"
				}
				if len(r) == 1 {
					return "&"
				}
			case '$':
				if plain(i+1) && (r[i+1] == '(' || r[i+1] == '_' || r[i+1] >= 'A' && r[i+1] <= 'Z' || r[i+1] >= 'a' && r[i+1] <= 'z') {
					return "$" + string(r[i+1])
				}
			case '~':
				if i == 0 {
					return "~"
				}
			}
		}
	}
	return ""
}

// unsafePlaceholder returns the first replacement field of a shell
// command that sits where the shell does not read the value's own
// quoting as quoting, with that place in words for an error message. It
// returns "", "" when every field is a word of its own. A value quoted as
// 'a$(touch x)' stays one word only outside quotes, backticks and
// here-documents, and only when no \ or $ comes right before it. A \
// makes its opening quote a plain character, bash reads $'...' as
// another kind of quoting, and a here-document expands $(...) and ends
// at a line of the value that matches its delimiter.
func unsafePlaceholder(t string) (field, where string) {
	r := []rune(t)
	const (
		none = iota
		single
		double
		backtick
	)
	state := none
	// heredocs are the delimiters of here-documents whose body starts at
	// the next newline, and body is the delimiter of the body being read.
	var heredocs []string
	body := ""
	for i := 0; i < len(r); i++ {
		c := r[i]
		if body != "" {
			// A body ends at a line equal to its delimiter, after the
			// leading tabs that <<- strips.
			if c == '\n' || i == 0 {
				lineStart := i
				if c == '\n' {
					lineStart = i + 1
				}
				lineEnd := lineStart
				for lineEnd < len(r) && r[lineEnd] != '\n' {
					lineEnd++
				}
				if strings.TrimLeft(string(r[lineStart:lineEnd]), "\t") == body {
					body = ""
					if len(heredocs) > 0 {
						body, heredocs = heredocs[0], heredocs[1:]
					}
					i = lineEnd - 1
					continue
				}
			}
			if c == '{' && i+1 < len(r) && r[i+1] == '{' {
				i++
				continue
			}
			if c == '{' {
				return fieldAt(r, i), "inside a here-document"
			}
			continue
		}
		if c == '{' || c == '}' {
			if i+1 < len(r) && r[i+1] == c {
				i++
				continue
			}
			if c == '}' {
				continue
			}
			switch {
			case state == single || state == double:
				return fieldAt(r, i), "inside shell quotes"
			case state == backtick:
				return fieldAt(r, i), "inside backticks"
			case i > 0 && r[i-1] == '\\':
				return fieldAt(r, i), "right after a backslash"
			case i > 0 && r[i-1] == '$':
				return fieldAt(r, i), "right after $"
			}
			end := i
			for end < len(r) && r[end] != '}' {
				end++
			}
			i = end
			continue
		}
		switch state {
		case none, backtick:
			switch c {
			case '\\':
				// An escaped { is still the start of a field in the
				// template, so only skip what is not one.
				if i+1 < len(r) && r[i+1] != '{' {
					i++
				}
			case '\'':
				state = single
			case '"':
				state = double
			case '`':
				if state == backtick {
					state = none
				} else {
					state = backtick
				}
			case '<':
				if delimiter, next, ok := heredocStart(r, i); ok {
					heredocs = append(heredocs, delimiter)
					i = next - 1
				}
			case '\n':
				if len(heredocs) > 0 {
					body, heredocs = heredocs[0], heredocs[1:]
				}
			}
		case single:
			if c == '\'' {
				state = none
			}
		case double:
			switch c {
			case '\\':
				i++
			case '"':
				state = none
			}
		}
	}
	return "", ""
}

// fieldAt returns the replacement field that starts at r[i].
func fieldAt(r []rune, i int) string {
	end := i
	for end < len(r) && r[end] != '}' {
		end++
	}
	return string(r[i:min(end+1, len(r))])
}

// heredocStart reads a here-document operator (<< or <<-, not the
// here-string <<<) and its delimiter word at r[i], with the quotes of
// the word removed. next is the index after the word.
func heredocStart(r []rune, i int) (delimiter string, next int, ok bool) {
	if i+1 >= len(r) || r[i+1] != '<' || (i+2 < len(r) && r[i+2] == '<') || (i > 0 && r[i-1] == '<') {
		return "", 0, false
	}
	j := i + 2
	if j < len(r) && r[j] == '-' {
		j++
	}
	for j < len(r) && (r[j] == ' ' || r[j] == '\t') {
		j++
	}
	var word []rune
	quote := rune(0)
	for ; j < len(r); j++ {
		c := r[j]
		if quote != 0 {
			if c == quote {
				quote = 0
			} else {
				word = append(word, c)
			}
			continue
		}
		if c == '\'' || c == '"' {
			quote = c
			continue
		}
		if c == '\\' {
			continue
		}
		if strings.ContainsRune(" \t\n;&|<>()", c) {
			break
		}
		word = append(word, c)
	}
	if len(word) == 0 {
		return "", 0, false
	}
	return string(word), j, true
}
