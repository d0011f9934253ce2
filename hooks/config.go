package hooks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrInvalidYAML is a config file that is not valid YAML; the returned
// error wraps it and names the file and, when yaml.v3 reports it, the line.
var ErrInvalidYAML = errors.New("invalid YAML")

// HookType is a subscription's type key.
type HookType string

// The two subscription types of OctoPrint, spelled exactly.
const (
	TypeSystem HookType = "system"
	TypeGcode  HookType = "gcode"
)

// Severity of a Problem: whether it skips what it names.
type Severity string

// Severities of a Problem. An error skips the entry it names (or, in the
// printbridge: section, stops the worker from starting); a warning changes
// nothing that is loaded.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Problem is one finding about the config file, with its position.
type Problem struct {
	File     string
	Line     int
	Column   int
	Severity Severity
	Message  string
	// Entry is the 1-based position of the subscription in
	// events.subscriptions, or 0 when the problem is about no single entry.
	Entry int
	// Name is the entry's name key, "" when it has none.
	Name string
	// Key is the dotted path of the setting, such as
	// "events.subscriptions[0].type" (list indexes count from 0) or
	// "printbridge.hook_timeout".
	Key string
}

// String formats the problem as FILE:LINE:COL: severity: message, followed
// by (entry #i "name") when it concerns one subscription.
func (p Problem) String() string {
	s := fmt.Sprintf("%s:%d:%d: %s: %s", p.File, p.Line, p.Column, p.Severity, p.Message)
	switch {
	case p.Entry > 0 && p.Name != "":
		s += fmt.Sprintf(" (entry #%d %q)", p.Entry, p.Name)
	case p.Entry > 0:
		s += fmt.Sprintf(" (entry #%d)", p.Entry)
	}
	return s
}

// HasErrors reports whether any problem has SeverityError.
func HasErrors(problems []Problem) bool {
	for _, p := range problems {
		if p.Severity == SeverityError {
			return true
		}
	}
	return false
}

// CountErrors returns the number of problems with SeverityError.
func CountErrors(problems []Problem) int {
	n := 0
	for _, p := range problems {
		if p.Severity == SeverityError {
			n++
		}
	}
	return n
}

// Command is one command template of a subscription.
type Command struct {
	// Template is the command as written in the file.
	Template string
	// Args is Template split into argv by POSIX shell rules before any
	// placeholder is filled; only set for system hooks without a shell.
	Args []string
	// ScriptArgs are the indexes in Args of the scripts that a POSIX
	// shell runs with -c, as in /bin/sh -c "echo {name}" or
	// nice sh -c "echo {name}" (see shellScriptArgs). Their placeholder
	// values are quoted as with shell: true.
	ScriptArgs []int
	Line       int
	Column     int
}

// Subscription is one loaded entry of events.subscriptions.
type Subscription struct {
	// Entry is the 1-based position in events.subscriptions.
	Entry int
	// Name is the name key, "" when absent.
	Name string
	// Events lists the event names in file order; a name listed twice runs
	// the hook twice, as in OctoPrint.
	Events   []string
	Type     HookType
	Commands []Command
	Debug    bool
	// Shell runs system commands with /bin/sh -c. ShellSet is false when
	// the key is absent, which printbridge reads as shell: false.
	Shell    bool
	ShellSet bool
	// Cwd is the working directory of system commands, "" for the
	// worker's own.
	Cwd string
	// Timeout overrides printbridge.hook_timeout when TimeoutSet (a
	// printbridge extension; OctoPrint ignores the key). Zero means none.
	Timeout    time.Duration
	TimeoutSet bool
	Line       int
	Column     int
}

// HookName returns the name key, or "#<entry> <event>" for an entry
// without a name.
// templates returns the commands as written in the file.
func (s *Subscription) templates() []string {
	out := make([]string, len(s.Commands))
	for i, c := range s.Commands {
		out[i] = c.Template
	}
	return out
}

func (s *Subscription) HookName(event string) string {
	if s.Name != "" {
		return s.Name
	}
	return fmt.Sprintf("#%d %s", s.Entry, event)
}

// Config is an OctoPrint config.yaml as the worker uses it: the hooks of
// its events: section and the worker's own printbridge: section.
type Config struct {
	Path string
	// EventsEnabled is events.enabled read by OctoPrint's settings boolean
	// parser; when false no hook runs, though the entries are still checked.
	EventsEnabled bool
	// EventsMissing is set when the file is empty, has no events:
	// section or an empty one, or has no events.subscriptions list
	// (missing or null) while events are enabled; an explicit empty list
	// or enabled: false does not set it. Reload rejects such a file while hooks
	// run, because an editor that truncates the file before it writes
	// produces one.
	EventsMissing bool
	// Subscriptions holds the entries that loaded without error and are
	// enabled, in file order.
	Subscriptions []*Subscription
	// SkippedEntries counts the entries of events.subscriptions that were
	// skipped because of an error. An error outside the entries, such as
	// an events.subscriptions that is not a list, loads no entry and is
	// not counted here.
	SkippedEntries int
	// Errors counts the problems with SeverityError that loading the file
	// reported, skipped entries included.
	Errors   int
	Settings Settings

	byEvent map[string][]*Subscription
}

// Match returns the subscriptions of an exact, case-sensitive event name in
// file order, with a subscription repeated once per listing of the name.
func (c *Config) Match(event string) []*Subscription {
	if !c.EventsEnabled {
		return nil
	}
	return c.byEvent[event]
}

// LoadConfig reads an OctoPrint config.yaml. The error is only for a file
// that cannot be read or parsed as YAML; everything else is a Problem, and
// entries with an error Problem are left out of the Config, as OctoPrint
// skips them.
func LoadConfig(path string) (*Config, []Problem, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read OctoPrint config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig is LoadConfig for data already read; file names the source
// in problems.
func ParseConfig(file string, data []byte) (*Config, []Problem, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, yamlError(file, data, err)
	}
	l := &loader{file: file, cfg: &Config{Path: file, Settings: DefaultSettings(), byEvent: map[string][]*Subscription{}}}
	l.load(&doc)
	l.cfg.Errors = CountErrors(l.problems)
	sort.SliceStable(l.problems, func(i, j int) bool {
		a, b := l.problems[i], l.problems[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return l.cfg, l.problems, nil
}

// yamlLine matches the position yaml.v3 puts into a syntax error.
var yamlLine = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// yamlError words a YAML syntax error as FILE:LINE: like every other
// problem. yaml.v3 (v3.0.1) puts the line where the enclosing block starts
// into its message when it has that position, and keeps the line of the
// mistake itself to itself, so yamlErrorLine looks for that line.
func yamlError(file string, data []byte, err error) error {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return fmt.Errorf("%s: %w: %s; fix the syntax", file, ErrInvalidYAML, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	blockLine, _ := strconv.Atoi(m[1])
	line := yamlErrorLine(data, blockLine, m[2])
	if line == blockLine {
		return fmt.Errorf("%s:%d: %w: %s; fix the syntax on this line or further down in its block", file, line, ErrInvalidYAML, m[2])
	}
	return fmt.Errorf("%s:%d: %w: %s (in the block that starts at line %d); fix the syntax on this line",
		file, line, ErrInvalidYAML, m[2], blockLine)
}

// yamlErrorLine parses one prefix of the file per line, so it gives up
// on files larger than these bounds. OctoPrint config files have a few
// hundred lines.
const (
	maxYAMLErrorSearchLines = 2000
	maxYAMLErrorSearchBytes = 256 << 10
)

// yamlErrorLine returns the first line at or after blockLine whose
// prefix of the file, cut after that line, fails to parse with the same
// message as the whole file. Lines before it parse, so the mistake is on
// it. It returns blockLine when no prefix fails that way.
//
// NOTE: a value that legitimately spans lines (a flow sequence, a quoted
// scalar) fails when cut in the middle. Only the message separates the
// two cases, so in rare cases the line is that value's.
func yamlErrorLine(data []byte, blockLine int, message string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > maxYAMLErrorSearchLines || len(data) > maxYAMLErrorSearchBytes {
		return blockLine
	}
	prefixLen := 0
	for i, l := range lines {
		prefixLen += len(l)
		if i+1 < blockLine {
			continue
		}
		var doc yaml.Node
		err := yaml.NewDecoder(bytes.NewReader(data[:prefixLen])).Decode(&doc)
		if err == nil || errors.Is(err, io.EOF) {
			continue
		}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil && m[2] == message {
			return i + 1
		}
	}
	return blockLine
}

type loader struct {
	file     string
	cfg      *Config
	problems []Problem
}

// entryRef names the subscription a problem is about.
type entryRef struct {
	index int
	name  string
}

func (l *loader) report(sev Severity, n *yaml.Node, ref entryRef, key, format string, args ...any) {
	p := Problem{File: l.file, Line: 1, Column: 1, Severity: sev, Message: fmt.Sprintf(format, args...),
		Entry: ref.index, Name: ref.name, Key: key}
	if n != nil && n.Line > 0 {
		p.Line, p.Column = n.Line, n.Column
	}
	l.problems = append(l.problems, p)
}

func (l *loader) load(doc *yaml.Node) {
	root := resolve(doc)
	if root.kind == pyNull {
		l.cfg.EventsMissing = true
		l.report(SeverityWarning, nil, entryRef{}, "", "the file is empty, so no hooks are loaded")
		return
	}
	if root.kind != pyMap {
		l.report(SeverityError, root.node, entryRef{}, "", "the file is %s, not a mapping of settings like OctoPrint's config.yaml", root.kind)
		return
	}
	var events, settings *yamlPair
	topKeys := l.uniquePairs(root.node, entryRef{}, "")
	for i := range topKeys {
		switch topKeys[i].key.Value {
		case "events":
			events = &topKeys[i]
		case "printbridge":
			settings = &topKeys[i]
		}
	}
	if settings != nil {
		l.loadSettings(settings.value)
	} else {
		l.reportMisspelledSettings(topKeys)
	}
	if events == nil {
		l.cfg.EventsMissing = true
		l.reportNoEvents(topKeys)
		return
	}
	l.loadEvents(events)
}

// reportMisspelledSettings reports a top-level key that looks like a
// misspelling of printbridge: as an error. OctoPrint's config.yaml has many
// other sections, so only a near miss counts: with it the worker would run
// on the defaults instead of the settings written there.
func (l *loader) reportMisspelledSettings(topKeys []yamlPair) {
	for _, p := range topKeys {
		k := p.key.Value
		if strings.EqualFold(k, "printbridge") || levenshtein(strings.ToLower(k), "printbridge") <= 2 {
			l.report(SeverityError, p.key, entryRef{}, "printbridge",
				"top-level key %q is not the worker's printbridge: section, so its settings are not read; did you mean \"printbridge\"?", k)
			return
		}
	}
}

// reportNoEvents reports a config without events:, and a top-level key
// that looks like a misspelling of it as an error.
func (l *loader) reportNoEvents(topKeys []yamlPair) {
	for _, p := range topKeys {
		k := p.key.Value
		if k != "events" && (strings.EqualFold(k, "events") || levenshtein(strings.ToLower(k), "events") <= 2) {
			// An error, though OctoPrint just runs no hooks: the file was
			// meant to have hooks, and check-config should fail on it.
			l.report(SeverityError, p.key, entryRef{}, k,
				"top-level key %q is not read by OctoPrint, so the file has no events: section and no hooks are loaded; did you mean \"events\"?", k)
			return
		}
	}
	l.report(SeverityWarning, nil, entryRef{}, "events", "the file has no events: section, so no hooks are loaded")
}

// uniquePairs returns a mapping's pairs with duplicate keys reduced to the
// last one, as PyYAML keeps the last value, and warns about each duplicate.
func (l *loader) uniquePairs(n *yaml.Node, ref entryRef, path string) []yamlPair {
	pairs := mappingPairs(n)
	last := map[string]int{}
	for i, p := range pairs {
		last[p.key.Value] = i
	}
	var out []yamlPair
	for i, p := range pairs {
		if j := last[p.key.Value]; j != i {
			l.report(SeverityWarning, p.key, ref, joinKey(path, p.key.Value),
				"key %q appears again at line %d, which wins, as in OctoPrint (PyYAML keeps the last value)", p.key.Value, pairs[j].key.Line)
			continue
		}
		out = append(out, p)
	}
	return out
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (l *loader) loadEvents(events *yamlPair) {
	section := resolve(events.value)
	if !section.truth {
		l.cfg.EventsMissing = true
		l.report(SeverityWarning, events.key, entryRef{}, "events", "events: is empty, so no hooks are loaded")
		return
	}
	if section.kind != pyMap {
		l.report(SeverityError, section.node, entryRef{}, "events",
			"events must be a mapping with the keys enabled and subscriptions, not %s", section.kind)
		return
	}
	l.cfg.EventsEnabled = true
	var subs *yamlPair
	for _, p := range l.uniquePairs(section.node, entryRef{}, "events") {
		switch p.key.Value {
		case "enabled":
			l.cfg.EventsEnabled = l.eventsEnabled(p.value)
		case "subscriptions":
			p := p
			subs = &p
		default:
			// An error, though OctoPrint ignores the key: a misspelled
			// subscriptions or enabled would silently run no hooks or
			// the wrong ones.
			hint := ""
			for _, k := range []string{"subscriptions", "enabled"} {
				if strings.EqualFold(k, p.key.Value) || levenshtein(strings.ToLower(p.key.Value), k) <= 3 {
					hint = fmt.Sprintf("; did you mean %q?", k)
					break
				}
			}
			l.report(SeverityError, p.key, entryRef{}, "events."+p.key.Value,
				"unknown key events.%s is not read by OctoPrint, which reads only enabled and subscriptions%s", p.key.Value, hint)
		}
	}
	if subs == nil {
		// A file cut off after "events:" or "enabled:" by an editor's
		// save looks like this, so it counts as missing for a reload,
		// unless enabled: false turns the hooks off on purpose.
		l.cfg.EventsMissing = l.cfg.EventsEnabled
		l.report(SeverityWarning, events.key, entryRef{}, "events.subscriptions", "events has no subscriptions, so no hooks are loaded")
		return
	}
	list := resolve(subs.value)
	switch list.kind {
	case pyNull:
		l.cfg.EventsMissing = true
		l.report(SeverityWarning, subs.key, entryRef{}, "events.subscriptions",
			"events.subscriptions is null, so no hooks are loaded (OctoPrint fails to load any hook with this value)")
		return
	case pyList:
	default:
		l.report(SeverityError, list.node, entryRef{}, "events.subscriptions",
			"events.subscriptions must be a list of subscriptions, not %s", list.kind)
		return
	}
	for i, item := range list.node.Content {
		errorsBefore := l.errorCount()
		sub := l.loadEntry(i+1, item)
		if sub == nil {
			// A disabled entry is skipped too, but without an error.
			if l.errorCount() > errorsBefore {
				l.cfg.SkippedEntries++
			}
			continue
		}
		l.cfg.Subscriptions = append(l.cfg.Subscriptions, sub)
		for _, ev := range sub.Events {
			l.cfg.byEvent[ev] = append(l.cfg.byEvent[ev], sub)
		}
	}
}

func (l *loader) errorCount() int {
	var n int
	for _, p := range l.problems {
		if p.Severity == SeverityError {
			n++
		}
	}
	return n
}

// eventsEnabled reads events.enabled with OctoPrint's settings boolean
// parser: a bool as is, numbers true unless zero, the strings true, yes, y
// and 1 (any case) true and every other string false, null false, and
// anything else true.
func (l *loader) eventsEnabled(n *yaml.Node) bool {
	v := resolve(n)
	var enabled bool
	switch v.kind {
	case pyNull:
		l.report(SeverityWarning, v.node, entryRef{}, "events.enabled",
			"events.enabled is null, which OctoPrint reads as false: no hooks run")
		return false
	case pyBool, pyInt, pyFloat:
		enabled = v.truth
	case pyStr:
		switch strings.ToLower(v.text) {
		case "true", "yes", "y", "1":
			enabled = true
		}
	default:
		enabled = true
	}
	if !enabled {
		l.report(SeverityWarning, v.node, entryRef{}, "events.enabled",
			"events.enabled is %q, which OctoPrint reads as false: no hooks run, and the entries are only checked", v.text)
	}
	return enabled
}
