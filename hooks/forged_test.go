package hooks

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// forgedBase is a custom base of two levels, so the topic check has to
// strip the configured base and not the default one.
var forgedBase = bridge.Topics{Base: "farm/hall-2"}

const forgedConfig = `events:
  subscriptions:
  - name: done
    event: PrintDone
    type: system
    shell: false
    command: "true"
`

// TestWorkerRejectsForgedPrinter publishes on printer mk3s's event topics,
// the only ones its edge's ACL allows, envelopes that name another
// printer or event, and then a real event. Only the real event may run
// its hook.
func TestWorkerRejectsForgedPrinter(t *testing.T) {
	for _, kind := range []string{"mqtt", "nats", "jetstream"} {
		t.Run(kind, func(t *testing.T) {
			bus, publish := forgedBus(t, kind)
			cfg, problems := parseTestConfig(t, forgedConfig)
			if HasErrors(problems) {
				t.Fatalf("config has errors: %v", problems)
			}
			results := make(chan Result, 10)
			sub := &subscribedBus{Bus: bus, subscribed: make(chan struct{}, 1)}
			w := NewWorker(cfg, sub, brokertest.Logger(), OnResult(func(r Result) { results <- r }))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			t.Cleanup(func() {
				cancel()
				<-done
			})
			select {
			case <-sub.subscribed:
			case <-time.After(waitTimeout):
				t.Fatal("the worker did not subscribe to events")
			}

			// The edge of mk3s may publish below its own printer only.
			publish(forgedBase.MQTTEvent("mk3s", "PrintDone"), envelopeJSON(t, "forged-printer", "victim", "PrintDone"))
			publish(forgedBase.MQTTEvent("mk3s", "Home"), envelopeJSON(t, "forged-event", "mk3s", "PrintDone"))
			publish(forgedBase.MQTTEvent("mk3s", "PrintDone"), envelopeJSON(t, "real", "mk3s", "PrintDone"))

			select {
			case r := <-results:
				if r.EventID != "real" {
					t.Errorf("hook ran for event %q, want only event \"real\"", r.EventID)
				}
				if r.Printer != "mk3s" {
					t.Errorf("hook ran with printer %q, want mk3s", r.Printer)
				}
			case <-time.After(waitTimeout):
				t.Fatal("the real event did not run its hook")
			}
			// The bus delivers the events of one subscription in order,
			// so the forged ones were handled before the real one.
			if got := w.malformed.Load(); got != 2 {
				t.Errorf("invalid events counted = %d, want 2 (forged printer, forged event)", got)
			}
			select {
			case r := <-results:
				t.Errorf("unexpected hook result for event %q printer %q", r.EventID, r.Printer)
			default:
			}
		})
	}
}

func envelopeJSON(t *testing.T, id, printer, event string) []byte {
	t.Helper()
	data, err := json.Marshal(&bridge.Envelope{Schema: bridge.SchemaVersion, ID: id, Printer: printer, Event: event, Seq: 1, Time: time.Now().UTC()})
	if err != nil {
		t.Fatalf("encode envelope: %v", err)
	}
	return data
}

// forgedBus starts a broker of kind and returns the worker's bus on it and
// a function that publishes raw bytes to an MQTT-style topic, as an edge
// with stolen credentials could.
func forgedBus(t *testing.T, kind string) (bridge.Bus, func(topic string, data []byte)) {
	t.Helper()
	ctx := context.Background()
	log := brokertest.Logger()
	if kind == "mqtt" {
		url := brokertest.StartMosquitto(t)
		bus, err := mqtt.New(ctx, mqtt.Config{URL: url, ClientID: "forged-worker", Topics: forgedBase}, log)
		if err != nil {
			t.Fatalf("connect worker to Mosquitto: %v", err)
		}
		t.Cleanup(func() { _ = bus.Close() })
		opts := paho.NewClientOptions().AddBroker(url).SetClientID("forged-edge")
		client := paho.NewClient(opts)
		if tok := client.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatalf("connect forging client: %v", tok.Error())
		}
		t.Cleanup(func() { client.Disconnect(100) })
		return bus, func(topic string, data []byte) {
			if tok := client.Publish(topic, 1, false, data); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
				t.Fatalf("publish to %s: %v", topic, tok.Error())
			}
		}
	}
	js := kind == "jetstream"
	srv := brokertest.StartNATS(t, js, false)
	bus, err := natsbus.New(ctx, natsbus.Config{URL: srv.NATSURL(), Name: "forged-worker", Topics: forgedBase, JetStream: js}, log)
	if err != nil {
		t.Fatalf("connect worker to NATS: %v", err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	nc, err := nats.Connect(srv.NATSURL())
	if err != nil {
		t.Fatalf("connect forging client: %v", err)
	}
	t.Cleanup(nc.Close)
	return bus, func(topic string, data []byte) {
		subject := strings.ReplaceAll(topic, "/", ".")
		if js {
			// A JetStream publish returns once the stream stored it.
			if _, err := nc.Request(subject, data, waitTimeout); err != nil {
				t.Fatalf("publish to %s: %v", subject, err)
			}
			return
		}
		if err := nc.Publish(subject, data); err != nil {
			t.Fatalf("publish to %s: %v", subject, err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatalf("flush %s: %v", subject, err)
		}
	}
}
