package bridge

import (
	"fmt"
	"slices"
	"strings"
)

// DefaultBase is the first level of every topic and subject.
const DefaultBase = "printbridge"

// Command kinds accepted on command/<kind>.
const (
	CommandGcode      = "gcode"
	CommandJob        = "job"
	CommandConnection = "connection"
	// CommandEvent asks the edge to fire an event through its normal path
	// (sequence number, context, delivery), for tools and companion
	// programs.
	CommandEvent = "event"
	// CommandFile manages the edge's files directory: add, move, copy,
	// remove, mkdir, list.
	CommandFile = "file"
)

// CommandKinds lists the kinds the edge subscribes to.
var CommandKinds = []string{CommandGcode, CommandJob, CommandConnection, CommandEvent, CommandFile}

// Topics builds the MQTT topics and NATS subjects of one base. MQTT levels
// are joined with '/', NATS tokens with '.'; the printer id is validated
// elsewhere so it contains neither.
type Topics struct {
	Base string
}

// Validate checks the base: one or more MQTT topic levels without
// wildcards, empty levels, '.' (the NATS separator) or spaces.
func (t Topics) Validate() error {
	if t.Base == "" {
		return nil
	}
	for _, level := range strings.Split(t.Base, "/") {
		if level == "" || strings.ContainsAny(level, "+#.* \t\x00") || level[0] == '$' {
			return fmt.Errorf("invalid base topic %q: use levels of letters, digits, '-' and '_' separated by '/', without wildcards, '.', spaces or a leading '$'", t.Base)
		}
	}
	return nil
}

func (t Topics) base() string {
	if t.Base == "" {
		return DefaultBase
	}
	return t.Base
}

func (t Topics) mqtt(levels ...string) string {
	return t.base() + "/" + strings.Join(levels, "/")
}

func (t Topics) nats(tokens ...string) string {
	// Built in one allocation, because the worker names a subject for
	// every hook result it publishes.
	base := t.base()
	n := len(base)
	for _, tok := range tokens {
		n += 1 + len(tok)
	}
	var b strings.Builder
	b.Grow(n)
	for i := range len(base) {
		c := base[i]
		if c == '/' {
			c = '.'
		}
		b.WriteByte(c)
	}
	for _, tok := range tokens {
		b.WriteByte('.')
		b.WriteString(tok)
	}
	return b.String()
}

// MQTTEvent is the topic of one event; name "+" subscribes to all.
func (t Topics) MQTTEvent(printer, name string) string { return t.mqtt(printer, "event", name) }

// MQTTAllEvents is the filter for every event of printer ("+" for all printers).
func (t Topics) MQTTAllEvents(printer string) string { return t.mqtt(printer, "event", "+") }

// MQTTState is the retained state snapshot topic.
func (t Topics) MQTTState(printer string) string { return t.mqtt(printer, "state") }

// MQTTAvailability is the retained online/offline topic and last will.
func (t Topics) MQTTAvailability(printer string) string { return t.mqtt(printer, "availability") }

// MQTTCommand is the topic of one command kind; kind "+" subscribes to all.
func (t Topics) MQTTCommand(printer, kind string) string { return t.mqtt(printer, "command", kind) }

// MQTTCommandTree is the filter for every topic below the command level
// of printer, and that level itself, so that the edge can reject
// commands sent to a topic without a kind or with extra levels.
func (t Topics) MQTTCommandTree(printer string) string { return t.mqtt(printer, "command", "#") }

// MQTTReply is the default reply topic.
func (t Topics) MQTTReply(printer string) string { return t.mqtt(printer, "reply") }

// MQTTHook is the topic of hook results.
func (t Topics) MQTTHook(printer string) string { return t.mqtt(printer, "hook") }

// MQTTPresence is the topic on which the edges of one printer id find
// each other (bridge/edge/presence.go).
func (t Topics) MQTTPresence(printer string) string { return t.mqtt(printer, "presence") }

// MQTTInfo is the retained description of the printer's edge.
func (t Topics) MQTTInfo(printer string) string { return t.mqtt(printer, "info") }

// MQTTBridgeInfo is the retained bridge description.
func (t Topics) MQTTBridgeInfo() string { return t.mqtt("bridge", "info") }

// NATSEvent is the subject of one event; name ">" or "*" subscribes to all.
func (t Topics) NATSEvent(printer, name string) string { return t.nats(printer, "event", name) }

// NATSState is the state snapshot subject.
func (t Topics) NATSState(printer string) string { return t.nats(printer, "state") }

// NATSAvailability is the online/offline subject.
func (t Topics) NATSAvailability(printer string) string { return t.nats(printer, "availability") }

// NATSCommand is the subject of one command kind; kind "*" subscribes to all.
func (t Topics) NATSCommand(printer, kind string) string { return t.nats(printer, "command", kind) }

// NATSCommandMisplaced lists the subjects of printer that look like
// commands but have no kind token or tokens after the kind. Together with
// NATSCommand(printer, "*") they cover every subject at and below the
// command token, without overlap.
func (t Topics) NATSCommandMisplaced(printer string) []string {
	return []string{t.nats(printer, "command"), t.nats(printer, "command", "*", ">")}
}

// CheckCommandTopic returns an error when kind, the part of topic after
// the command level, is not one of CommandKinds. The error names the
// topic and the form to publish to, in MQTT or NATS spelling as topic has
// it.
func (t Topics) CheckCommandTopic(printer, topic, kind string) error {
	if slices.Contains(CommandKinds, kind) {
		return nil
	}
	expected, separator := t.mqtt(printer, "command", "<kind>"), "/"
	if strings.HasPrefix(topic, t.nats()+".") {
		expected, separator = t.nats(printer, "command", "<kind>"), "."
	}
	var problem string
	switch {
	case kind == "":
		problem = "has no command kind"
	case strings.Contains(kind, separator):
		problem = fmt.Sprintf("has levels after the command kind (%q)", kind)
	default:
		problem = fmt.Sprintf("has the unknown command kind %q", kind)
	}
	return fmt.Errorf("command topic %q %s: publish to %s, where <kind> is one of %s",
		topic, problem, expected, strings.Join(CommandKinds, ", "))
}

// NATSReply is the default reply subject.
func (t Topics) NATSReply(printer string) string { return t.nats(printer, "reply") }

// NATSHook is the subject of hook results.
func (t Topics) NATSHook(printer string) string { return t.nats(printer, "hook") }

// NATSPresence is the subject on which the edges of one printer id find
// each other (bridge/edge/presence.go).
func (t Topics) NATSPresence(printer string) string { return t.nats(printer, "presence") }

// NATSInfo is the subject of the description of the printer's edge.
func (t Topics) NATSInfo(printer string) string { return t.nats(printer, "info") }

// NATSBridgeInfo is the bridge description subject.
func (t Topics) NATSBridgeInfo() string { return t.nats("bridge", "info") }

// ParseMQTT splits a topic of this base into printer, section (event,
// command, ...) and the rest. ok is false for topics outside the base.
func (t Topics) ParseMQTT(topic string) (printer, section, rest string, ok bool) {
	return t.parse(topic, t.base()+"/", "/")
}

// ParseNATS does what ParseMQTT does for a NATS subject. It allocates
// nothing, because the worker parses the subject of every event.
func (t Topics) ParseNATS(subject string) (printer, section, rest string, ok bool) {
	base := t.base()
	if len(subject) <= len(base) || subject[len(base)] != '.' {
		return "", "", "", false
	}
	// The base's MQTT levels are NATS tokens.
	for i := range len(base) {
		c := base[i]
		if c == '/' {
			c = '.'
		}
		if subject[i] != c {
			return "", "", "", false
		}
	}
	return splitTopic(subject[len(base)+1:], ".")
}

func (t Topics) parse(s, prefix, sep string) (printer, section, rest string, ok bool) {
	if !strings.HasPrefix(s, prefix) {
		return "", "", "", false
	}
	return splitTopic(strings.TrimPrefix(s, prefix), sep)
}

// splitTopic splits what follows the base into printer, section and the
// rest, which may contain sep.
func splitTopic(s, sep string) (printer, section, rest string, ok bool) {
	printer, after, found := strings.Cut(s, sep)
	if !found {
		return "", "", "", false
	}
	section, rest, _ = strings.Cut(after, sep)
	return printer, section, rest, true
}

// EventOfMQTT returns the printer id and event name of an event topic of
// this base. ok is false for any other topic.
func (t Topics) EventOfMQTT(topic string) (printer, event string, ok bool) {
	return eventOf(t.ParseMQTT(topic))
}

// EventOfNATS does what EventOfMQTT does for a NATS subject. An event name
// that contains '.' spans several subject tokens and is returned whole.
func (t Topics) EventOfNATS(subject string) (printer, event string, ok bool) {
	return eventOf(t.ParseNATS(subject))
}

func eventOf(printer, section, rest string, ok bool) (string, string, bool) {
	if !ok || section != "event" || printer == "" || rest == "" {
		return "", "", false
	}
	return printer, rest, true
}
