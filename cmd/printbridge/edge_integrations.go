package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/edge"
	"github.com/printbridge/printbridge/bridge/homeassistant"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/octoprintmqtt"
)

// integrationOptions switch on the edge's Home Assistant discovery and
// OctoPrint-MQTT mirror. Both need --mqtt and use MQTT connections of
// their own.
type integrationOptions struct {
	homeAssistant      bool
	haPrefix           string
	haStatusTopic      string
	haDeviceName       string
	octoprintMQTT      bool
	octoprintBaseTopic string
}

// protectedTopics returns the MQTT prefixes that Home Assistant and
// OctoPrint-MQTT users trust, whether or not this edge publishes there:
// another edge of the same broker may, so no reply may land in them.
func (o *integrationOptions) protectedTopics() []string {
	topics := []string{o.haPrefix, o.octoprintBaseTopic}
	if o.haStatusTopic != "" {
		topics = append(topics, o.haStatusTopic)
	}
	return topics
}

func (o *integrationOptions) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.homeAssistant, "homeassistant", false, "announce the printer to Home Assistant with MQTT device discovery (needs --mqtt)")
	fs.StringVar(&o.haPrefix, "homeassistant-prefix", homeassistant.DefaultPrefix, "Home Assistant's MQTT discovery prefix")
	fs.StringVar(&o.haStatusTopic, "homeassistant-status-topic", "", "topic of Home Assistant's birth message (default PREFIX/status)")
	fs.StringVar(&o.haDeviceName, "homeassistant-name", "", "device name shown in Home Assistant (default: the printer id)")
	fs.BoolVar(&o.octoprintMQTT, "octoprint-mqtt", false, "mirror events, progress and temperatures to the OctoPrint-MQTT plugin's topics (needs --mqtt)")
	fs.StringVar(&o.octoprintBaseTopic, "octoprint-mqtt-base-topic", octoprintmqtt.DefaultBaseTopic, "base topic of the OctoPrint-MQTT mirror; give each printer its own when several share a broker")
}

// haButtonKind is the kind label of printbridge_commands_total for Home
// Assistant button messages that did not become a command.
const haButtonKind = "homeassistant_button"

// integrationRetryMax caps the wait between connection attempts of an
// integration whose broker is unreachable.
const integrationRetryMax = 30 * time.Second

// startIntegrations starts the enabled integrations of an edge on their
// own goroutines. They connect in the background, retrying until they
// succeed, so a broker that is briefly away does not stop the edge. The
// returned func stops them and waits; call it after the edge has stopped,
// so the mirror can still pass on the edge's Shutdown event.
func startIntegrations(o edgeOptions, e *edge.Edge, metrics *edge.Metrics, log *slog.Logger) (stop func(), err error) {
	in := o.integrations
	if !in.homeAssistant && !in.octoprintMQTT {
		return func() {}, nil
	}
	if err := checkIntegrations(o, log); err != nil {
		return nil, err
	}
	topics := bridge.Topics{Base: o.bus.baseTopic}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(name string, f func(ctx context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			retryUntilDone(ctx, log.With("integration", name), f)
		}()
	}

	if in.homeAssistant {
		ha := homeassistant.Config{
			PrinterID: o.printerID, Topics: topics, Prefix: in.haPrefix, StatusTopic: in.haStatusTopic,
			DeviceName: in.haDeviceName, Version: edge.Version, Republish: e.RepublishRetained,
			OnIgnoredButton: func(outcome string, n int) {
				metrics.Commands.WithLabelValues(haButtonKind, outcome).Add(float64(n))
			},
		}
		for _, outcome := range []string{homeassistant.ButtonRejected, homeassistant.ButtonRetained, homeassistant.ButtonDropped} {
			metrics.Commands.WithLabelValues(haButtonKind, outcome)
		}
		run("homeassistant", func(ctx context.Context) error { return runHomeAssistant(ctx, o, ha, log) })
	}
	if in.octoprintMQTT {
		mc := octoprintmqtt.Config{
			URL: o.bus.mqttURL, Username: o.bus.mqttUser, Password: o.bus.mqttPassword,
			PrinterID: o.printerID, Topics: topics, BaseTopic: in.octoprintBaseTopic,
		}
		run("octoprint_mqtt", func(ctx context.Context) error {
			m, err := octoprintmqtt.New(ctx, mc, log)
			if err != nil {
				return err
			}
			return m.Run(ctx)
		})
	}
	return func() {
		cancel()
		wg.Wait()
	}, nil
}

// checkIntegrations checks the settings of the enabled integrations that
// need no broker to check, so that the edge can reject them before it
// opens its outbox.
func checkIntegrations(o edgeOptions, log *slog.Logger) error {
	in := o.integrations
	if !in.homeAssistant && !in.octoprintMQTT {
		return nil
	}
	if o.bus.mqttURL == "" {
		return errors.New("--homeassistant and --octoprint-mqtt publish on MQTT: give --mqtt URL as well")
	}
	if in.homeAssistant {
		ha := homeassistant.Config{
			PrinterID: o.printerID, Topics: bridge.Topics{Base: o.bus.baseTopic}, Prefix: in.haPrefix,
			StatusTopic: in.haStatusTopic, DeviceName: in.haDeviceName, Version: edge.Version,
		}
		// New checks the settings without a connection.
		if _, err := homeassistant.New(ha, nil, log); err != nil {
			return err
		}
	}
	return nil
}

// runHomeAssistant runs the Home Assistant device on an MQTT connection of
// its own, announcing again after every reconnect.
func runHomeAssistant(ctx context.Context, o edgeOptions, cfg homeassistant.Config, log *slog.Logger) error {
	var device atomic.Pointer[homeassistant.Device]
	bus, err := mqtt.New(ctx, mqtt.Config{
		URL: o.bus.mqttURL, ClientID: "printbridge-ha-" + o.printerID, Username: o.bus.mqttUser, Password: o.bus.mqttPassword,
		Topics: cfg.Topics,
		OnConnect: func() {
			if d := device.Load(); d != nil {
				d.Reannounce()
			}
		},
	}, log.With("bus", "mqtt", "integration", "homeassistant"))
	if err != nil {
		return err
	}
	defer bus.Close()
	d, err := homeassistant.New(cfg, bus, log)
	if err != nil {
		return err
	}
	device.Store(d)
	return d.Run(ctx)
}

// retryUntilDone runs f until it returns nil or ctx ends, waiting longer
// after each failure.
func retryUntilDone(ctx context.Context, log *slog.Logger, f func(ctx context.Context) error) {
	for attempt := 0; ; attempt++ {
		err := f(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		wait := min(time.Duration(1<<min(attempt, 5))*time.Second, integrationRetryMax)
		log.Warn("integration failed, retrying", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
