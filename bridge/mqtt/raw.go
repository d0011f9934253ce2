package mqtt

import (
	"context"
	"fmt"
	"github.com/printbridge/printbridge/bridge"
	"strings"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// RawMessage is one message received on a topic outside the printbridge
// tree, such as Home Assistant's discovery and status topics.
type RawMessage struct {
	Topic   string
	Payload []byte
	// Retained is set for a retained message the broker sent because of
	// the subscription, not for one that was published while subscribed.
	Retained bool
}

// PublishRaw publishes data on any topic at QoS 1, retained or not. It is
// for integrations whose topics bridge.Topics does not build, such as
// Home Assistant discovery configs. An empty retained payload deletes the
// retained message of that topic on the broker.
func (b *Bus) PublishRaw(ctx context.Context, topic string, retained bool, data []byte) error {
	if err := validatePublishTopic(topic); err != nil {
		return err
	}
	return b.publish(ctx, topic, retained, data)
}

// SubscribeRaw delivers every message matching the topic filter, which
// may contain + and # wildcards. Like the other subscriptions, it is made
// again after every reconnect and lasts until Close, and one bus accepts
// each filter only once.
func (b *Bus) SubscribeRaw(ctx context.Context, filter string, h func(RawMessage)) error {
	if filter == "" {
		return fmt.Errorf("invalid MQTT topic filter: it is empty")
	}
	return b.subscribe(ctx, filter, func(msg paho.Message) bool {
		h(RawMessage{Topic: msg.Topic(), Payload: msg.Payload(), Retained: msg.Retained()})
		return false
	})
}

// maxTopicLength is the longest topic, in bytes, that the 16-bit length
// of an MQTT 3.1.1 string can carry.
const maxTopicLength = 65535

// validatePublishTopic rejects a topic that makes the broker close the
// connection (MQTT 3.1.1 sections 3.3.2.1 and 4.7.1).
func validatePublishTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("invalid MQTT topic: it is empty")
	}
	if strings.ContainsAny(topic, "+#\x00") {
		return fmt.Errorf("invalid MQTT topic %q: a published topic must not contain '+', '#' or NUL", topic)
	}
	if len(topic) > maxTopicLength {
		return fmt.Errorf("invalid MQTT topic of %d bytes: the maximum is %d bytes", len(topic), maxTopicLength)
	}
	if !utf8.ValidString(topic) {
		return fmt.Errorf("invalid MQTT topic %q: it is not valid UTF-8", topic)
	}
	for _, r := range topic {
		if bridge.IsNoncharacter(r) {
			return fmt.Errorf("invalid MQTT topic %q: it contains the Unicode noncharacter %U, which Mosquitto rejects as malformed", topic, r)
		}
	}
	return nil
}
