package main

import (
	"sync"

	"github.com/printbridge/printbridge/bridge"
)

// connectivity tracks the edge's broker connections and fires
// ConnectivityChanged when the edge goes from having every configured
// broker connected to missing one, and back. OctoPrint fires the event for
// its internet connectivity check; the edge's equivalent is the bus. An
// event fired while a broker is away waits in the outbox and is published
// after the reconnect, so subscribers see {old: true, new: false} followed
// by {old: false, new: true}.
type connectivity struct {
	mu         sync.Mutex
	configured []string
	up         map[string]bool
	online     bool
	emit       func(name string, payload bridge.Payload, ctx bridge.Context)
}

func newConnectivity(o busOptions) *connectivity {
	c := &connectivity{up: map[string]bool{}}
	if o.mqttURL != "" {
		c.configured = append(c.configured, "mqtt")
	}
	if o.natsURL != "" {
		c.configured = append(c.configured, "nats")
	}
	return c
}

// setEmitter sets where events go. Changes while it is nil, before the
// edge exists and once it stops, are only tracked.
func (c *connectivity) setEmitter(emit func(name string, payload bridge.Payload, ctx bridge.Context)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.emit = emit
}

// set records that bus connected (up) or lost its connection.
func (c *connectivity) set(bus string, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up[bus] = up
	online := len(c.configured) > 0
	for _, b := range c.configured {
		online = online && c.up[b]
	}
	if online == c.online {
		return
	}
	old := c.online
	c.online = online
	if c.emit != nil {
		c.emit(bridge.EventConnectivityChanged, bridge.Payload{{Key: "old", Value: old}, {Key: "new", Value: online}}, bridge.Context{})
	}
}
