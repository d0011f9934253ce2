package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// TestPrinterInfoOfEveryEdge starts two edges of a farm on one broker.
// The shared bridge info topic keeps only the last one, so each edge
// describes itself on its printer's info topic too. A client that
// connects later finds both there, retained on MQTT and in the JetStream
// state bucket on NATS.
func TestPrinterInfoOfEveryEdge(t *testing.T) {
	printers := []string{"farm-a", "farm-b"}
	t.Run("mqtt", func(t *testing.T) {
		dir := t.TempDir()
		broker := startFaultMosquitto(t, dir)
		for _, id := range printers {
			startInProcessEdge(t, t.TempDir(), id, edgeBusOptions(broker), 25)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		seen := newBusRecord()
		recordMQTT(t, ctx, broker.url(), "info-watcher", seen)
		topics := bridge.Topics{}
		for _, id := range printers {
			waitFor(t, "retained info of "+id, time.Minute, func() bool { return len(seen.messages(topics.MQTTInfo(id))) > 0 })
			checkPrinterInfo(t, id, []byte(seen.messages(topics.MQTTInfo(id))[0]))
		}
	})
	t.Run("nats jetstream", func(t *testing.T) {
		dir := t.TempDir()
		broker := startFaultNATS(t, dir)
		for _, id := range printers {
			startInProcessEdge(t, t.TempDir(), id, edgeBusOptions(broker), 25)
		}
		js := brokertest.JetStreamClient(t, broker.url())
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, id := range printers {
			var entry jetstream.KeyValueEntry
			waitFor(t, "stored info of "+id, time.Minute, func() bool {
				kv, err := js.KeyValue(ctx, natsbus.StateBucket)
				if err != nil {
					return false
				}
				entry, err = kv.Get(ctx, id+".info")
				return err == nil
			})
			checkPrinterInfo(t, id, entry.Value())
		}
	})
}

// checkPrinterInfo checks that data describes the edge of printer.
func checkPrinterInfo(t *testing.T, printer string, data []byte) {
	t.Helper()
	var info struct {
		Version  string
		Schema   int
		Printers []string
	}
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatalf("info of %s = %s: %v", printer, data, err)
	}
	if len(info.Printers) != 1 || info.Printers[0] != printer {
		t.Errorf("info of %s lists printers %q, want only %s", printer, info.Printers, printer)
	}
	if info.Version == "" || info.Schema != bridge.SchemaVersion {
		t.Errorf("info of %s = %s, want the version and schema %d", printer, data, bridge.SchemaVersion)
	}
}
