package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// Brokers that the event measurements run through.
const (
	BrokerNATS      = "NATS core (embedded)"
	BrokerJetStream = "NATS JetStream (embedded)"
	BrokerMosquitto = "Mosquitto (default config)"
	// BrokerMosquittoNoDelay is mosquitto with set_tcp_nodelay true.
	BrokerMosquittoNoDelay = "Mosquitto (set_tcp_nodelay true)"
	// BrokerMosquittoNoQuickAck is mosquitto's default config with
	// mqtt.Config.DisableTCPQuickAck set on the edge's and the worker's
	// connections in this process, to show what TCP_QUICKACK changes.
	// printbridge processes started with busFlags set TCP_QUICKACK
	// regardless.
	BrokerMosquittoNoQuickAck = "Mosquitto (default config), client without TCP_QUICKACK"
)

// broker is one running broker and the way to connect printbridge's bus
// adapters to it.
type broker struct {
	name string
	// natsURL or mqttURL is set, for the binaries' flags.
	natsURL, mqttURL string
	jetStream        bool
	noQuickAck       bool
	log              *slog.Logger
	stop             func()
}

// startBroker starts the named broker on a free loopback port: nats-server
// in this process (as the edge's demo does), or a mosquitto process.
func startBroker(ctx context.Context, name, dir string, log *slog.Logger) (*broker, error) {
	b := &broker{name: name, log: log}
	switch name {
	case BrokerNATS, BrokerJetStream:
		opts := natsbus.EmbeddedOptions{NoJetStream: name == BrokerNATS}
		if name == BrokerJetStream {
			store, err := os.MkdirTemp(dir, "jetstream-")
			if err != nil {
				return nil, err
			}
			opts.StoreDir = store
			b.jetStream = true
		}
		emb, err := natsbus.StartEmbedded(opts, log)
		if err != nil {
			return nil, err
		}
		b.natsURL, b.stop = emb.NATSURL(), emb.Shutdown
	case BrokerMosquitto, BrokerMosquittoNoDelay, BrokerMosquittoNoQuickAck:
		m, err := startMosquitto(ctx, dir, name == BrokerMosquittoNoDelay)
		if err != nil {
			return nil, err
		}
		b.mqttURL = m.url
		b.noQuickAck = name == BrokerMosquittoNoQuickAck
		b.stop = func() { _ = m.stop() }
	default:
		return nil, fmt.Errorf("unknown broker %q", name)
	}
	return b, nil
}

// workerMaxInFlight is the default of printbridge worker's
// --max-in-flight, which it passes as the MaxAckPending of its JetStream
// consumer. The in-process workers of the pipeline and latency runs use
// it too, so they measure the consumer as the worker binary runs it.
const workerMaxInFlight = 32

// connect opens one bus adapter connection named client.
func (b *broker) connect(ctx context.Context, client string) (bridge.Bus, error) {
	// The adapters return typed pointers, which must not reach the
	// interface as a non-nil Bus when they fail.
	if b.mqttURL != "" {
		cfg := mqtt.Config{URL: b.mqttURL, ClientID: client, Topics: bridge.Topics{}, ConnectTimeout: 10 * time.Second,
			DisableTCPQuickAck: b.noQuickAck}
		bus, err := mqtt.New(ctx, cfg, b.log.With("bus", "mqtt", "client", client))
		if err != nil {
			return nil, err
		}
		return bus, nil
	}
	cfg := natsbus.Config{URL: b.natsURL, Name: client, JetStream: b.jetStream, MaxAckPending: workerMaxInFlight}
	bus, err := natsbus.New(ctx, cfg, b.log.With("bus", "nats", "client", client))
	if err != nil {
		return nil, err
	}
	return bus, nil
}

// busFlags returns the broker flags of the edge and worker commands.
func (b *broker) busFlags() []string {
	if b.mqttURL != "" {
		return []string{"--mqtt", b.mqttURL}
	}
	flags := []string{"--nats", b.natsURL}
	if b.jetStream {
		flags = append(flags, "--jetstream")
	}
	return flags
}
