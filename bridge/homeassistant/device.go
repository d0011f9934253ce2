// Package homeassistant announces one printbridge printer to Home
// Assistant through MQTT device discovery, and turns Home Assistant button
// presses into printbridge commands.
//
// The device discovery payload (one retained message on
// <prefix>/device/<node>/config with a components mapping, as Home
// Assistant's MQTT integration documents device-based discovery) sets up
// sensors, binary sensors, buttons and event entities.
// They all read the topics the edge already publishes: the retained state
// snapshot, the availability marker and the event topics. Buttons publish
// to printbridge/<printer>/homeassistant/button, which this package
// subscribes to: a button's payload is fixed, but every printbridge command
// needs a fresh id, so each press becomes a new command here.
package homeassistant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// DefaultPrefix is Home Assistant's default discovery prefix.
const DefaultPrefix = "homeassistant"

// maxPendingPresses bounds the button presses waiting for the run loop.
const maxPendingPresses = 64

// Client is the MQTT connection the device uses; *mqtt.Bus implements it.
type Client interface {
	PublishRaw(ctx context.Context, topic string, retained bool, data []byte) error
	SubscribeRaw(ctx context.Context, filter string, h func(mqtt.RawMessage)) error
	PublishCommand(ctx context.Context, printer, kind string, data []byte) error
}

// Config sets up the Home Assistant device of one printer.
type Config struct {
	PrinterID string
	// Topics is the printbridge topic tree the edge publishes on.
	Topics bridge.Topics
	// Prefix is Home Assistant's discovery prefix; DefaultPrefix when
	// empty.
	Prefix string
	// StatusTopic carries Home Assistant's birth message; <Prefix>/status
	// when empty.
	StatusTopic string
	// DeviceName is the device name shown in Home Assistant; the printer
	// id when empty.
	DeviceName string
	// Version and SupportURL describe printbridge in the discovery
	// payload's origin.
	Version    string
	SupportURL string
	// Republish, if set, is called after discovery is published in response
	// to Home Assistant's birth message, so that the retained state is
	// published again too. The edge passes its RepublishRetained.
	Republish func(ctx context.Context)
	// PublishTimeout bounds each publish; 10s when zero.
	PublishTimeout time.Duration
	// RetainedWait is how long the first announcement waits for the
	// broker's retained discovery payload of an earlier run; 2s when zero.
	// MQTT has no marker for "no retained message", so without a wait the
	// first payload would leave out the heaters of a printer that is off.
	RetainedWait time.Duration
	// OnIgnoredButton, if set, counts n button messages that did not
	// become a command, by outcome: ButtonRejected (an unknown payload),
	// ButtonRetained or ButtonDropped (too many presses waiting).
	OnIgnoredButton func(outcome string, n int)
}

// Outcomes of OnIgnoredButton.
const (
	ButtonRejected = "rejected"
	ButtonRetained = "retained"
	ButtonDropped  = "dropped"
)

// Device announces one printer and executes its button presses.
type Device struct {
	cfg    Config
	client Client
	log    *slog.Logger
	topics topics
	// node is the discovery node id and the prefix of every unique_id.
	node           string
	discoveryTopic string

	wake chan struct{}
	mu   sync.Mutex
	in   inbox

	// Owned by Run.
	heaters       []string
	authoritative bool // heaters came from a connected printer
	firmware      string
	announced     map[string]string
	onBroker      map[string]string
	// ready is set once the retained discovery payload arrived or
	// RetainedWait passed; announcements wait for it.
	ready         bool
	deferAnnounce bool
}

// inbox holds what the subscription handlers hand to the run loop; only
// the latest state and discovery payload matter.
type inbox struct {
	state          []byte
	brokerConfig   []byte
	hasBrokerConf  bool
	announce       bool
	birth          bool
	presses        []string
	droppedPresses int
}

// New checks cfg and builds the device. Run publishes and subscribes.
func New(cfg Config, client Client, log *slog.Logger) (*Device, error) {
	if err := bridge.ValidatePrinterID(cfg.PrinterID); err != nil {
		return nil, fmt.Errorf("Home Assistant discovery: %w", err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	cfg.Prefix = strings.TrimSuffix(cfg.Prefix, "/")
	if cfg.Prefix == "" || strings.ContainsAny(cfg.Prefix, "+#") {
		return nil, fmt.Errorf("invalid Home Assistant discovery prefix %q: use a topic without wildcards, such as %q", cfg.Prefix, DefaultPrefix)
	}
	if cfg.StatusTopic == "" {
		cfg.StatusTopic = cfg.Prefix + "/status"
	}
	if cfg.DeviceName == "" {
		cfg.DeviceName = cfg.PrinterID
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	if cfg.RetainedWait <= 0 {
		cfg.RetainedWait = 2 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	node := NodeID(cfg.Topics, cfg.PrinterID)
	d := &Device{
		cfg:    cfg,
		client: client,
		log:    log.With("printer", cfg.PrinterID, "integration", "homeassistant"),
		topics: topics{
			state:        cfg.Topics.MQTTState(cfg.PrinterID),
			availability: cfg.Topics.MQTTAvailability(cfg.PrinterID),
			button:       ButtonTopic(cfg.Topics, cfg.PrinterID),
			events:       cfg.Topics,
			printer:      cfg.PrinterID,
		},
		node:           node,
		discoveryTopic: cfg.Prefix + "/device/" + node + "/config",
		wake:           make(chan struct{}, 1),
		announced:      map[string]string{},
		onBroker:       map[string]string{},
	}
	return d, nil
}

// NodeID is the discovery node id of a printer: printbridge_<printer> on
// the default base topic, and the base topic's letters and digits plus the
// printer id on another base, so that printers of two bases never collide.
func NodeID(t bridge.Topics, printer string) string {
	base := t.Base
	if base == "" || base == bridge.DefaultBase {
		return "printbridge_" + printer
	}
	return strings.Trim(invalidIDChars().ReplaceAllString(strings.ToLower(base), "_"), "_") + "_" + printer
}

// ButtonTopic is the topic Home Assistant's buttons publish to.
func ButtonTopic(t bridge.Topics, printer string) string {
	base := t.Base
	if base == "" {
		base = bridge.DefaultBase
	}
	return base + "/" + printer + "/homeassistant/button"
}

// DiscoveryTopic returns the topic of the device discovery payload.
func (d *Device) DiscoveryTopic() string { return d.discoveryTopic }

// Reannounce makes Run publish the discovery payload again, for example
// after a broker reconnect. It never blocks.
func (d *Device) Reannounce() {
	d.mu.Lock()
	d.in.announce = true
	d.mu.Unlock()
	d.signal()
}

func (d *Device) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run subscribes, publishes the discovery payload, and keeps it current
// until ctx ends: again after Home Assistant's birth message, when the
// heaters or the firmware change, and with removals when components
// disappear. The retained config stays on the broker after Run returns.
func (d *Device) Run(ctx context.Context) error {
	subs := []struct {
		filter string
		h      func(mqtt.RawMessage)
	}{
		// Reading the retained config back shows which components an
		// earlier run announced, so the ones gone since can be removed.
		{d.discoveryTopic, d.onDiscovery},
		{d.topics.state, d.onState},
		{d.cfg.StatusTopic, d.onStatus},
		{d.topics.button, d.onButton},
	}
	for _, s := range subs {
		if err := d.client.SubscribeRaw(ctx, s.filter, s.h); err != nil {
			return fmt.Errorf("Home Assistant discovery: subscribe to %s: %w", s.filter, err)
		}
	}
	d.log.Info("Home Assistant discovery started", "discovery_topic", d.discoveryTopic, "button_topic", d.topics.button)
	d.Reannounce()
	grace := time.NewTimer(d.cfg.RetainedWait)
	defer grace.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		case <-grace.C:
			if !d.ready {
				d.log.Debug("no retained Home Assistant discovery payload arrived; announcing without one", "topic", d.discoveryTopic)
				d.ready = true
			}
		}
		d.process(ctx)
	}
}

func (d *Device) onDiscovery(m mqtt.RawMessage) {
	d.mu.Lock()
	d.in.brokerConfig = m.Payload
	d.in.hasBrokerConf = true
	d.mu.Unlock()
	d.signal()
}

func (d *Device) onState(m mqtt.RawMessage) {
	d.mu.Lock()
	d.in.state = m.Payload
	d.mu.Unlock()
	d.signal()
}

func (d *Device) onStatus(m mqtt.RawMessage) {
	if strings.TrimSpace(string(m.Payload)) != "online" {
		return
	}
	d.mu.Lock()
	d.in.birth = true
	d.mu.Unlock()
	d.signal()
}

// onButton queues a press. Retained presses are ignored, because they
// would be executed again on every subscribe.
func (d *Device) onButton(m mqtt.RawMessage) {
	if m.Retained {
		d.log.Warn("ignored a retained Home Assistant button message; clear it with an empty retained publish",
			"topic", m.Topic, "payload", truncate(string(m.Payload), 40))
		d.countIgnored(ButtonRetained, 1)
		return
	}
	d.mu.Lock()
	if len(d.in.presses) >= maxPendingPresses {
		d.in.droppedPresses++
	} else {
		d.in.presses = append(d.in.presses, strings.TrimSpace(string(m.Payload)))
	}
	d.mu.Unlock()
	d.signal()
}

func (d *Device) take() inbox {
	d.mu.Lock()
	defer d.mu.Unlock()
	in := d.in
	d.in = inbox{}
	return in
}

func (d *Device) process(ctx context.Context) {
	in := d.take()
	announce := in.announce || in.birth
	if in.hasBrokerConf && d.learnBrokerConfig(in.brokerConfig) {
		announce = true
	}
	if in.state != nil && d.learnState(in.state) {
		announce = true
	}
	if in.hasBrokerConf {
		d.ready = true
	}
	if announce && !d.ready {
		d.deferAnnounce = true
		announce = false
	} else if d.ready && d.deferAnnounce {
		d.deferAnnounce = false
		announce = true
	}
	if announce {
		d.announce(ctx)
	}
	if in.birth && d.cfg.Republish != nil {
		d.cfg.Republish(ctx)
	}
	if in.droppedPresses > 0 {
		d.log.Warn("Home Assistant button presses dropped: too many waiting", "count", in.droppedPresses)
		d.countIgnored(ButtonDropped, in.droppedPresses)
	}
	for _, press := range in.presses {
		d.press(ctx, press)
	}
}

// learnBrokerConfig records the components of the retained discovery
// payload and reports whether a new announcement is needed.
func (d *Device) learnBrokerConfig(data []byte) bool {
	if len(data) == 0 {
		// Deleting the device in Home Assistant clears the retained
		// config; announcing again at once would bring it straight back.
		d.onBroker = map[string]string{}
		return false
	}
	comps, err := announcedComponents(data)
	if err != nil {
		d.log.Warn("retained Home Assistant discovery payload is invalid; it is replaced at the next announcement",
			"topic", d.discoveryTopic, "error", err)
		return true
	}
	d.onBroker = comps
	changed := false
	if !d.authoritative {
		// Until a connected printer reports its heaters, keep the ones an
		// earlier run announced, so a printer that is off at start does
		// not lose its temperature entities.
		for _, h := range heatersOf(comps) {
			if !slices.Contains(d.heaters, h) {
				d.heaters = append(d.heaters, h)
				changed = true
			}
		}
		slices.Sort(d.heaters)
	}
	for id := range comps {
		if _, ok := d.announced[id]; !ok {
			changed = true
		}
	}
	return changed
}

// snapshotFields are the parts of the state snapshot discovery depends on.
type snapshotFields struct {
	Flags struct {
		Operational bool `json:"operational"`
	} `json:"flags"`
	Temperatures map[string]json.RawMessage `json:"temperatures"`
	Firmware     string                     `json:"firmware"`
}

// learnState takes the heaters and firmware from a state snapshot and
// reports whether the discovery payload changes.
func (d *Device) learnState(data []byte) bool {
	var snap snapshotFields
	if err := json.Unmarshal(data, &snap); err != nil {
		d.log.Warn("invalid state snapshot ignored", "topic", d.topics.state, "error", err)
		return false
	}
	changed := false
	if snap.Firmware != "" && snap.Firmware != d.firmware {
		d.firmware = snap.Firmware
		changed = true
	}
	if snap.Flags.Operational && len(snap.Temperatures) > 0 {
		heaters := slices.Sorted(maps.Keys(snap.Temperatures))
		d.authoritative = true
		if !slices.Equal(heaters, d.heaters) {
			d.heaters = heaters
			changed = true
		}
	}
	return changed
}

// announce publishes the discovery payload. Components announced before
// but gone now are first sent as removals, then left out, in the two steps
// Home Assistant documents.
func (d *Device) announce(ctx context.Context) {
	info := deviceInfo{heaters: d.heaters, firmware: d.firmware}
	comps := d.components(info)
	stale := map[string]string{}
	for _, known := range []map[string]string{d.onBroker, d.announced} {
		for id, platform := range known {
			if _, ok := comps[id]; !ok {
				stale[id] = platform
			}
		}
	}
	if len(stale) > 0 {
		ids := slices.Sorted(maps.Keys(stale))
		d.log.Info("removing Home Assistant components that no longer exist", "components", strings.Join(ids, ","))
		if err := d.publishConfig(ctx, info, comps, stale); err != nil {
			d.log.Warn("publishing Home Assistant component removals failed; retried at the next announcement", "error", err)
			return
		}
	}
	if err := d.publishConfig(ctx, info, comps, nil); err != nil {
		d.log.Warn("publishing Home Assistant discovery failed; retried after the next reconnect or birth message", "error", err)
		return
	}
	d.announced = make(map[string]string, len(comps))
	for id, c := range comps {
		d.announced[id] = c["p"].(string)
	}
	d.log.Info("Home Assistant discovery published", "components", len(comps), "heaters", strings.Join(d.heaters, ","))
}

func (d *Device) publishConfig(ctx context.Context, info deviceInfo, comps map[string]component, stale map[string]string) error {
	data, err := d.payload(info, comps, stale)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, d.cfg.PublishTimeout)
	defer cancel()
	return d.client.PublishRaw(pctx, d.discoveryTopic, true, data)
}

// press turns one button press into a printbridge command with a fresh id.
func (d *Device) press(ctx context.Context, payload string) {
	now := time.Now()
	cmd := bridge.Command{ID: "ha-" + bridge.NewEventID(now), Source: "homeassistant"}
	var kind string
	switch payload {
	case PressPause:
		kind, cmd.Action = bridge.CommandJob, bridge.ActionPause
	case PressResume:
		kind, cmd.Action = bridge.CommandJob, bridge.ActionResume
	case PressCancel:
		kind, cmd.Action = bridge.CommandJob, bridge.ActionCancel
	case PressEmergencyStop:
		kind, cmd.Commands = bridge.CommandGcode, []string{"M112"}
	case PressConnect:
		kind, cmd.Action = bridge.CommandConnection, bridge.ActionConnect
	default:
		d.log.Warn("unknown Home Assistant button payload ignored",
			"topic", d.topics.button, "payload", truncate(payload, 40),
			"expected", strings.Join([]string{PressPause, PressResume, PressCancel, PressEmergencyStop, PressConnect}, ","))
		d.countIgnored(ButtonRejected, 1)
		return
	}
	data, err := json.Marshal(cmd)
	if err != nil {
		d.log.Error("encoding command failed", "error", err)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, d.cfg.PublishTimeout)
	defer cancel()
	if err := d.client.PublishCommand(pctx, d.cfg.PrinterID, kind, data); err != nil {
		if !errors.Is(err, context.Canceled) {
			d.log.Warn("sending Home Assistant button command failed; press the button again", "button", payload,
				"command_id", cmd.ID, "error", err)
		}
		return
	}
	d.log.Info("Home Assistant button pressed", "button", payload, "kind", kind, "command_id", cmd.ID)
}

func (d *Device) countIgnored(outcome string, n int) {
	if d.cfg.OnIgnoredButton != nil {
		d.cfg.OnIgnoredButton(outcome, n)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
