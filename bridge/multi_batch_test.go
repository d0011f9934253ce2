package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// TestMultiBatchCountsSlowestBus publishes a batch through a fan-out to a
// live mosquitto and a closed NATS connection: the closed bus takes
// nothing, so the fan-out reports nothing taken, and the edge publishes
// the batch again later.
func TestMultiBatchCountsSlowestBus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	log := brokertest.Logger()
	mq, err := mqtt.New(ctx, mqtt.Config{URL: brokertest.StartMosquitto(t)}, log)
	if err != nil {
		t.Fatalf("mqtt.New: %v", err)
	}
	t.Cleanup(func() { _ = mq.Close() })
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{NoJetStream: true}, log)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	nb, err := natsbus.New(ctx, natsbus.Config{URL: srv.NATSURL()}, log)
	if err != nil {
		t.Fatalf("natsbus.New: %v", err)
	}

	var batch []bridge.OutgoingEvent
	for seq := uint64(1); seq <= 40; seq++ {
		env := &bridge.Envelope{Schema: bridge.SchemaVersion, ID: bridge.NewEventID(time.Now()), Seq: seq,
			Printer: "p1", Event: "ZChange", Time: time.Now().UTC()}
		data, err := json.Marshal(env)
		if err != nil {
			t.Fatalf("marshal envelope: %v", err)
		}
		batch = append(batch, bridge.OutgoingEvent{Env: env, Data: data})
	}
	both := bridge.NewMulti(mq, nb)
	taken, err := bridge.PublishEvents(ctx, both, batch)
	if err != nil || taken != len(batch) {
		t.Fatalf("PublishEvents with both buses up: taken %d, error %v; want %d and no error", taken, err, len(batch))
	}

	if err := nb.Close(); err != nil {
		t.Fatalf("close NATS bus: %v", err)
	}
	taken, err = bridge.PublishEvents(ctx, both, batch)
	if !errors.Is(err, natsbus.ErrClosed) {
		t.Errorf("PublishEvents with NATS closed: error %v, want ErrClosed", err)
	}
	if taken != 0 {
		t.Errorf("PublishEvents with NATS closed took %d events, want 0", taken)
	}
}
