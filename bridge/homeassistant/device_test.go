package homeassistant

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

type watcher struct {
	mu   sync.Mutex
	msgs []mqtt.RawMessage
}

func (w *watcher) add(m mqtt.RawMessage) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, m)
}

func (w *watcher) all() []mqtt.RawMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]mqtt.RawMessage(nil), w.msgs...)
}

func newBus(tb testing.TB, url, id string) *mqtt.Bus {
	tb.Helper()
	b, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: id}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runDevice(tb testing.TB, url string, cfg Config) *Device {
	tb.Helper()
	d, err := New(cfg, newBus(tb, url, "device"), brokertest.Logger())
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("device stopped with error: %v", err)
		}
	})
	return d
}

func TestDeviceKeepsHeatersWhilePrinterOff(t *testing.T) {
	url := brokertest.StartMosquitto(t)
	ctx := context.Background()
	pre := newBus(t, url, "earlier-run")
	old := `{"device": {"identifiers": ["printbridge_p1"]}, "origin": {"name": "printbridge"}, "components": {
		"tool0_temperature": {"p": "sensor", "unique_id": "printbridge_p1_tool0_temperature"},
		"bed_temperature": {"p": "sensor", "unique_id": "printbridge_p1_bed_temperature"}}}`
	topic := DefaultPrefix + "/device/printbridge_p1/config"
	if err := pre.PublishRaw(ctx, topic, true, []byte(old)); err != nil {
		t.Fatal(err)
	}
	// The edge is up but the printer is off: no heaters in the state.
	off := `{"state_id": "CLOSED", "flags": {"operational": false}, "temperatures": null}`
	if err := pre.PublishState(ctx, "p1", []byte(off)); err != nil {
		t.Fatal(err)
	}
	w := &watcher{}
	if err := newBus(t, url, "watcher").SubscribeRaw(ctx, topic, w.add); err != nil {
		t.Fatal(err)
	}

	runDevice(t, url, Config{PrinterID: "p1", Version: "test-version"})
	var announcements []map[string]map[string]any
	waitUntil(t, "discovery from the device", func() bool {
		announcements = nil
		for _, m := range w.all() {
			var cfg struct {
				Origin     map[string]any            `json:"origin"`
				Components map[string]map[string]any `json:"components"`
			}
			if json.Unmarshal(m.Payload, &cfg) == nil && cfg.Origin["sw_version"] == "test-version" {
				announcements = append(announcements, cfg.Components)
			}
		}
		return len(announcements) > 0
	})
	// Every announcement counts, the first included, because one without the
	// heaters would make Home Assistant drop their entities for a moment.
	for i, comps := range announcements {
		for _, id := range []string{"tool0_temperature", "tool0_target", "bed_temperature", "bed_target"} {
			if c, ok := comps[id]; !ok || len(c) < 2 {
				t.Errorf("announcement %d: component %s = %v, want a full sensor kept from the earlier run", i+1, id, c)
			}
		}
	}
}

func TestPayloadRemovalEntries(t *testing.T) {
	d, err := New(Config{PrinterID: "p1"}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	info := deviceInfo{heaters: []string{"tool0"}}
	data, err := d.payload(info, d.components(info), map[string]string{"tool1_temperature": platformSensor})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Components map[string]map[string]any `json:"components"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Components["tool1_temperature"]; len(got) != 1 || got["p"] != platformSensor {
		t.Errorf("removal entry = %v, want only the platform", got)
	}
	announced, err := announcedComponents(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := announced["tool1_temperature"]; ok {
		t.Error("a removal entry was read back as an announced component")
	}
	if announced["tool0_temperature"] != platformSensor || announced["pause"] != platformButton {
		t.Errorf("announced components = %v, want tool0_temperature and pause", announced)
	}
}

func TestNodeIDPerBaseTopic(t *testing.T) {
	if got := NodeID(bridge.Topics{}, "mk3s"); got != "printbridge_mk3s" {
		t.Errorf("NodeID on the default base = %q", got)
	}
	if got := NodeID(bridge.Topics{Base: "farm/Hall-2"}, "mk3s"); got != "farm_hall_2_mk3s" {
		t.Errorf("NodeID on farm/Hall-2 = %q, want farm_hall_2_mk3s", got)
	}
	if got := ButtonTopic(bridge.Topics{Base: "farm"}, "mk3s"); got != "farm/mk3s/homeassistant/button" {
		t.Errorf("ButtonTopic = %q", got)
	}
}

func TestNewRejectsWildcardPrefix(t *testing.T) {
	if _, err := New(Config{PrinterID: "p1", Prefix: "ha/#"}, nil, nil); err == nil {
		t.Error("New accepted the discovery prefix ha/#")
	}
	if _, err := New(Config{PrinterID: "bad/id"}, nil, nil); err == nil {
		t.Error("New accepted the printer id bad/id")
	}
}
