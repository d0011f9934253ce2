package hooks

import (
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// entryKeys are the keys of a subscription that OctoPrint 1.11 reads, plus
// printbridge's timeout.
var entryKeys = []string{"event", "command", "type", "enabled", "name", "debug", "shell", "cwd", "timeout"}

// loadEntry checks one item of events.subscriptions in OctoPrint's order
// (event, command and type first, then enabled) and returns nil when the
// entry is skipped.
func (l *loader) loadEntry(index int, n *yaml.Node) *Subscription {
	ref := entryRef{index: index}
	path := fmt.Sprintf("events.subscriptions[%d]", index-1)
	v := resolve(n)
	if v.kind != pyMap {
		l.report(SeverityError, deref(n), ref, path,
			"the entry is %s, not a mapping with event, command and type, so it is skipped (as OctoPrint does)", v.kind)
		return nil
	}
	for _, p := range mappingPairs(v.node) {
		if p.key.Value == "name" {
			nv := resolve(p.value)
			if nv.kind != pyList && nv.kind != pyMap {
				ref.name = nv.text
			}
			if nv.kind != pyStr && nv.kind != pyNull {
				l.reportNameType(p.value, nv, ref, path)
			}
		}
	}
	fields := map[string]*yaml.Node{}
	for _, p := range l.uniquePairs(v.node, ref, path) {
		fields[p.key.Value] = p.value
		if !containsString(entryKeys, p.key.Value) {
			l.reportUnknownKey(p.key, ref, path)
		}
	}
	node := deref(n)
	sub := &Subscription{Entry: index, Name: ref.name, Line: node.Line, Column: node.Column}

	events, eventNodes, ok := l.entryEvents(fields, node, ref, path)
	sub.Events = events
	cmdOK := l.entryCommands(sub, fields, node, ref, path)
	typeOK := l.entryType(sub, fields, node, ref, path)
	if !ok || !cmdOK || !typeOK {
		return nil
	}
	if en, present := fields["enabled"]; present && !l.entryEnabled(en, ref, path) {
		return nil
	}
	if !l.entryOptions(sub, fields, ref, path) {
		return nil
	}
	l.checkEvents(sub, eventNodes, ref, path)
	if !l.compileCommands(sub, ref, path) {
		return nil
	}
	if !l.checkHook(sub, fields, node, ref, path) {
		return nil
	}
	return sub
}

// reportNameType warns about a name that is not a string. The hook name
// is the label of logs, metrics and G-code command ids, so a list or
// mapping falls back to "#<entry> <event>", and a number or boolean is
// used as written.
func (l *loader) reportNameType(n *yaml.Node, v pyValue, ref entryRef, path string) {
	use := fmt.Sprintf("its text %q is used as the hook name", v.text)
	if v.kind == pyList || v.kind == pyMap {
		use = fmt.Sprintf("the hook is named \"#%d <event>\" in logs and metrics instead", ref.index)
	}
	l.report(SeverityWarning, deref(n), ref, path+".name", "name is %s, not a string, so %s; quote it to make it a string", v.kind, use)
}

func (l *loader) reportUnknownKey(key *yaml.Node, ref entryRef, path string) {
	hint := ""
	for _, k := range entryKeys {
		if strings.EqualFold(k, key.Value) || levenshtein(strings.ToLower(key.Value), k) <= 2 {
			hint = fmt.Sprintf("; did you mean %q?", k)
			break
		}
	}
	l.report(SeverityWarning, key, ref, path+"."+key.Value,
		"unknown key %q is ignored, as OctoPrint ignores it%s", key.Value, hint)
}

// entryEvents reads event: a string or a list of strings. ok is false when
// the entry must be skipped.
func (l *loader) entryEvents(fields map[string]*yaml.Node, entry *yaml.Node, ref entryRef, path string) ([]string, []*yaml.Node, bool) {
	n, present := fields["event"]
	v := resolve(n)
	if !present || v.kind == pyNull {
		l.report(SeverityError, keyOrEntry(n, entry), ref, path+".event",
			"missing event: OctoPrint skips entries without event, command and type")
		return nil, nil, false
	}
	switch v.kind {
	case pyStr:
		return []string{v.text}, []*yaml.Node{v.node}, true
	case pyMap:
		l.report(SeverityError, v.node, ref, path+".event", "event must be an event name or a list of names, not a mapping")
		return nil, nil, false
	case pyList:
	default:
		l.report(SeverityWarning, v.node, ref, path+".event",
			"event is %s (%s), not an event name, so this hook never runs", v.kind, v.text)
		return nil, nil, true
	}
	if len(v.node.Content) == 0 {
		l.report(SeverityWarning, v.node, ref, path+".event", "the event list is empty, so this hook never runs")
	}
	var names []string
	var nodes []*yaml.Node
	for _, item := range v.node.Content {
		iv := resolve(item)
		switch iv.kind {
		case pyStr:
			names = append(names, iv.text)
			nodes = append(nodes, iv.node)
		case pyList, pyMap:
			l.report(SeverityError, iv.node, ref, path+".event",
				"an element of the event list is %s, not an event name (OctoPrint fails to load hooks with it)", iv.kind)
			return nil, nil, false
		default:
			l.report(SeverityWarning, iv.node, ref, path+".event",
				"an element of the event list is %s (%s), not an event name, so it never fires", iv.kind, iv.text)
		}
	}
	return names, nodes, true
}

func keyOrEntry(n, entry *yaml.Node) *yaml.Node {
	if n = deref(n); n != nil {
		return n
	}
	return entry
}

// entryCommands reads command: a string or a list of strings, kept in
// order and never split on commas or newlines.
func (l *loader) entryCommands(sub *Subscription, fields map[string]*yaml.Node, entry *yaml.Node, ref entryRef, path string) bool {
	n, present := fields["command"]
	v := resolve(n)
	if !present || v.kind == pyNull {
		l.report(SeverityError, keyOrEntry(n, entry), ref, path+".command",
			"missing command: OctoPrint skips entries without event, command and type")
		return false
	}
	switch v.kind {
	case pyStr:
		sub.Commands = []Command{{Template: v.text, Line: v.node.Line, Column: v.node.Column}}
		return true
	case pyList:
	default:
		l.report(SeverityError, v.node, ref, path+".command",
			"command is %s, not a string or a list of strings (OctoPrint fails when the event fires)", v.kind)
		return false
	}
	if len(v.node.Content) == 0 {
		l.report(SeverityWarning, v.node, ref, path+".command", "the command list is empty, so this hook does nothing")
	}
	ok := true
	for i, item := range v.node.Content {
		iv := resolve(item)
		if iv.kind != pyStr {
			l.report(SeverityError, keyOrEntry(iv.node, v.node), ref, path+".command",
				"command #%d is %s, not a string (OctoPrint fails when the event fires); quote it", i+1, iv.kind)
			ok = false
			continue
		}
		sub.Commands = append(sub.Commands, Command{Template: iv.text, Line: iv.node.Line, Column: iv.node.Column})
	}
	return ok
}

func (l *loader) entryType(sub *Subscription, fields map[string]*yaml.Node, entry *yaml.Node, ref entryRef, path string) bool {
	n, present := fields["type"]
	v := resolve(n)
	if !present || v.kind == pyNull {
		l.report(SeverityError, keyOrEntry(n, entry), ref, path+".type",
			"missing type: OctoPrint skips entries without type: system or type: gcode")
		return false
	}
	if v.kind == pyStr && (v.text == string(TypeSystem) || v.text == string(TypeGcode)) {
		sub.Type = HookType(v.text)
		return true
	}
	hint := ""
	for _, t := range []string{string(TypeSystem), string(TypeGcode)} {
		if strings.EqualFold(v.text, t) || levenshtein(strings.ToLower(v.text), t) <= 2 {
			hint = fmt.Sprintf("; did you mean %q?", t)
		}
	}
	l.report(SeverityError, v.node, ref, path+".type",
		"type %q is not \"system\" or \"gcode\" (exact, lower case), so OctoPrint skips the entry%s", v.text, hint)
	return false
}

// entryEnabled applies Python truthiness, as OctoPrint does: a quoted
// "false" is a non-empty string and so enables the hook.
func (l *loader) entryEnabled(n *yaml.Node, ref entryRef, path string) bool {
	v := resolve(n)
	if v.kind == pyStr && v.truth {
		switch strings.ToLower(strings.TrimSpace(v.text)) {
		case "false", "no", "off", "n", "0", "null", "none", "disabled":
			l.report(SeverityWarning, v.node, ref, path+".enabled",
				"enabled is the string %q, which OctoPrint treats as true (any non-empty string is), so the hook stays enabled; write enabled: false without quotes to disable it", v.text)
		}
	}
	return v.truth
}

// entryOptions reads debug, shell, cwd and timeout.
func (l *loader) entryOptions(sub *Subscription, fields map[string]*yaml.Node, ref entryRef, path string) bool {
	ok := true
	if n, present := fields["debug"]; present {
		sub.Debug = resolve(n).truth
	}
	if n, present := fields["shell"]; present {
		v := resolve(n)
		sub.Shell, sub.ShellSet = v.truth, true
		if v.kind == pyStr && sub.Shell {
			// OctoPrint tests shell by Python truthiness, so the string
			// "false" turns the shell on; printbridge does the same, but
			// it is the key that decides about injection, so say so.
			l.report(SeverityWarning, v.node, ref, path+".shell",
				"shell is the string %q, which OctoPrint (and printbridge) take as true, so the command runs under /bin/sh; write shell: false or shell: true without quotes", v.text)
		}
		if sub.Type == TypeGcode {
			l.report(SeverityWarning, v.node, ref, path+".shell", "shell has no effect on gcode hooks")
		}
	}
	if n, present := fields["cwd"]; present {
		v := resolve(n)
		switch v.kind {
		case pyNull:
		case pyStr:
			sub.Cwd = v.text
			if st, err := os.Stat(v.text); sub.Type == TypeSystem && (err != nil || !st.IsDir()) {
				l.report(SeverityWarning, v.node, ref, path+".cwd", "cwd %q is not an existing directory here; the hook fails to start until it is", v.text)
			}
			if sub.Type == TypeGcode {
				l.report(SeverityWarning, v.node, ref, path+".cwd", "cwd has no effect on gcode hooks")
			}
		default:
			l.report(SeverityError, v.node, ref, path+".cwd", "cwd must be a directory path, not %s", v.kind)
			ok = false
		}
	}
	if n, present := fields["timeout"]; present {
		d, err := parseSeconds(resolve(n))
		if err != nil {
			l.report(SeverityError, deref(n), ref, path+".timeout", "invalid timeout: %v", err)
			ok = false
		} else {
			sub.Timeout, sub.TimeoutSet = d, true
		}
	}
	return ok
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
