package brokertest

import (
	"testing"

	"github.com/printbridge/printbridge/bridge/natsbus"
)

// StartNATS starts an in-process nats-server on a free loopback port, with
// JetStream in a temporary directory when jetstream is set and the MQTT
// listener when mqtt is set (which needs jetstream). It shuts down when
// the test ends.
//
// Tests of package natsbus cannot use it, because brokertest imports
// natsbus.
func StartNATS(tb testing.TB, jetstream, mqtt bool) *natsbus.Embedded {
	tb.Helper()
	opts := natsbus.EmbeddedOptions{NoJetStream: !jetstream, MQTT: mqtt}
	if jetstream {
		opts.StoreDir = tb.TempDir()
	}
	e, err := natsbus.StartEmbedded(opts, Logger())
	if err != nil {
		tb.Fatalf("start embedded NATS server: %v", err)
	}
	tb.Cleanup(e.Shutdown)
	return e
}
