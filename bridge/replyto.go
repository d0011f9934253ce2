package bridge

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxReplyToLength is the longest reply_to accepted, in bytes. MQTT 3.1.1
// allows topics up to 65535 bytes, but a reply topic longer than this is
// taken for a mistake, and it would be sent again with every reply.
const MaxReplyToLength = 1024

// ValidateReplyTo checks the syntax of a command's reply_to. The value
// must be a valid MQTT topic and a valid NATS subject at once, because
// an edge on several buses sends each reply to every bus. A broker closes
// the connection of a client that publishes to a wildcard, so a reply_to
// that passed here could otherwise take the edge offline.
func ValidateReplyTo(replyTo string) error {
	switch {
	case replyTo == "":
		return fmt.Errorf(`invalid "reply_to": it is empty; leave "reply_to" out to get replies on the printer's reply topic`)
	case len(replyTo) > MaxReplyToLength:
		return fmt.Errorf(`invalid "reply_to" of %d bytes: the maximum is %d bytes`, len(replyTo), MaxReplyToLength)
	case !utf8.ValidString(replyTo):
		return fmt.Errorf(`invalid "reply_to" %q: it is not valid UTF-8`, truncate(replyTo, 80))
	case replyTo[0] == '$':
		return fmt.Errorf(`invalid "reply_to" %q: topics starting with '$' are reserved for the broker; name a topic of your application, such as app/replies`, truncate(replyTo, 80))
	}
	if i := strings.IndexAny(replyTo, "+#*>"); i >= 0 {
		return fmt.Errorf(`invalid "reply_to" %q: it contains the wildcard %q, but a reply goes to one topic; name that topic without '+', '#', '*' or '>'`, truncate(replyTo, 80), replyTo[i])
	}
	for _, r := range replyTo {
		if r == 0 || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf(`invalid "reply_to" %q: it contains NUL, whitespace or a control character (%U); name a topic without them`, truncate(replyTo, 80), r)
		}
		if IsNoncharacter(r) {
			return fmt.Errorf(`invalid "reply_to" %q: it contains the Unicode noncharacter %U, which MQTT brokers such as Mosquitto reject as malformed; name a topic without it`, truncate(replyTo, 80), r)
		}
	}
	// An empty NATS token ("a..b", a leading or trailing '.') makes the
	// subject invalid for the NATS server.
	for _, token := range strings.Split(replyTo, ".") {
		if token == "" {
			return fmt.Errorf(`invalid "reply_to" %q: it has an empty NATS token (a leading, trailing or doubled '.'); remove the extra '.'`, truncate(replyTo, 80))
		}
	}
	return nil
}

// IsNoncharacter reports whether r is one of Unicode's 66 noncharacters
// (U+FDD0 to U+FDEF, and the last two code points of every plane). MQTT
// 3.1.1 section 1.5.3 says strings should not contain them, and
// Mosquitto 2.0 closes the connection of a client that publishes to a
// topic with U+FFFE or U+FFFF.
func IsNoncharacter(r rune) bool {
	return (r >= 0xFDD0 && r <= 0xFDEF) || r&0xFFFE == 0xFFFE
}

// CheckReplyTarget rejects a reply_to inside the topics and subjects that
// this base publishes: events, state, availability, hooks, commands and
// bridge info of every printer. A client allowed to send commands could
// otherwise have the edge write a forged event into a topic that
// automations trust. protected adds MQTT topic prefixes that the edge
// publishes to outside the base, such as Home Assistant's discovery
// prefix. The printer's own reply topic and the topics below
// it (printbridge/<printer>/reply/...) stay allowed, and so is every
// topic outside the base.
func (t Topics) CheckReplyTarget(printer, replyTo string, protected ...string) error {
	for _, prefix := range protected {
		prefix = strings.TrimSuffix(prefix, "/")
		if prefix != "" && (replyTo == prefix || strings.HasPrefix(replyTo, prefix+"/")) {
			return fmt.Errorf(`invalid "reply_to" %q: it is inside %s/, where this edge publishes for an integration (Home Assistant discovery or the OctoPrint-MQTT mirror) that others trust; use %s or a topic outside it`,
				truncate(replyTo, 80), prefix, t.MQTTReply(printer))
		}
	}
	mqttBase := t.base() + "/"
	natsBase := strings.ReplaceAll(t.base(), "/", ".") + "."
	ownMQTT := t.MQTTReply(printer)
	ownNATS := t.NATSReply(printer)
	switch {
	case replyTo == ownMQTT || strings.HasPrefix(replyTo, ownMQTT+"/"):
		return nil
	case replyTo == ownNATS || strings.HasPrefix(replyTo, ownNATS+"."):
		return nil
	case strings.HasPrefix(replyTo, mqttBase) || strings.HasPrefix(replyTo, natsBase) ||
		replyTo == t.base() || replyTo == strings.TrimSuffix(natsBase, "."):
		return fmt.Errorf(`invalid "reply_to" %q: it is inside the edge's own topics, which carry events and state that others trust; use %s (or a topic below it), or a topic outside %s`,
			truncate(replyTo, 80), ownMQTT, mqttBase)
	}
	return nil
}
