package main

import (
	"log/slog"
	"path/filepath"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/edge"
)

// newPresence builds the check for another live edge of o's printer id.
func newPresence(o edgeOptions, log *slog.Logger, metrics *edge.Metrics) (*edge.Presence, error) {
	dataDir := o.dataDir
	if dataDir != "" {
		if abs, err := filepath.Abs(dataDir); err == nil {
			dataDir = abs
		}
	}
	return edge.NewPresence(edge.PresenceConfig{
		Printer: o.printerID, Topics: bridge.Topics{Base: o.bus.baseTopic}, DataDir: dataDir,
		ProbeWait: o.presenceWait, Interval: o.presenceInterval,
	}, log, metrics)
}

// presenceBusOptions returns the options of the presence connection: the
// edge's brokers and credentials with nothing else on them. It is a
// connection of its own, so that on MQTT the check runs before the edge's
// connection, whose client id printbridge-edge-<printer> would take over
// the connection of the other edge, and whose last will and online marker
// would change the printer's availability. Its MQTT client id ends in a
// part of the instance id, so that two edges' presence connections do not
// take over each other.
func presenceBusOptions(o busOptions, presence *edge.Presence) busOptions {
	id := presence.Instance().ID
	o.clientID += "-presence-" + id[len(id)-12:]
	o.printer = ""
	o.jetStream = false
	o.persistentSession = false
	o.onReconnect = nil
	o.onAttach = nil
	o.onLateError = nil
	o.onEventsDropped = nil
	o.onConnectivity = func(_ string, up bool) {
		if up {
			presence.Announce()
		}
	}
	return o
}
