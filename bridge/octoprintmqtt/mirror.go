// Package octoprintmqtt mirrors one printer's printbridge events and state
// to the topics and payloads of the OctoPrint-MQTT plugin, so that Home
// Assistant automations and Node-RED flows written for OctoPrint keep
// working unchanged.
//
// The mapping follows octoprint_mqtt/__init__.py of OctoPrint-MQTT 0.8.x
// with its default settings (base topic "octoPrint/"):
//
//   - <base>/event/<EventName>: the OctoPrint payload plus "_event" and an
//     integer "_timestamp" (Unix seconds of the event). Only ZChange and
//     FirmwareData are retained.
//   - <base>/progress/printing: {"location", "path", "progress", "_timestamp"}
//     with progress as an integer percent, on PrintStarted (0), PrintDone
//     (100), FileSelected (0), FileDeselected (empty path, 0), every change
//     of the integer percent while printing, and once after the first
//     connect (empty path, 0). Retained.
//   - <base>/temperature/<heater>: {"actual", "target", "_timestamp"} for
//     tool0, bed, chamber, ..., when the actual value moved by at least the
//     threshold (0.1) or the target changed. Retained.
//   - <base>/mqtt: "connected" after each connect (retained, QoS 0) and
//     "disconnected" as the last will and at a clean stop (retained, QoS 1).
//
// Messages other than the last will go out at QoS 0, as the plugin sends
// them. The plugin's PausedForUser event (from "echo:busy: paused for
// user") and its slicing progress have no printbridge source and are not
// mirrored.
package octoprintmqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/printbridge/printbridge/bridge"
)

// Plugin defaults copied from OctoPrint-MQTT.
const (
	DefaultBaseTopic            = "octoPrint"
	DefaultTemperatureThreshold = 0.1
	lwtConnected                = "connected"
	lwtDisconnected             = "disconnected"
)

const (
	queueSize            = 1024
	publishTimeout       = 10 * time.Second
	defaultConnect       = 10 * time.Second
	defaultShutdownWait  = 2 * time.Second
	maxReconnectInterval = 10 * time.Second
	dropLogInterval      = time.Minute
)

// Config sets up a mirror.
type Config struct {
	// URL is the broker, as tcp://host:port, mqtt://host:port or
	// ssl://host:port. Credentials in the URL are used and left out of logs.
	URL      string
	ClientID string
	Username string
	Password string
	// PrinterID is the printer whose printbridge topics are mirrored.
	PrinterID string
	// Topics is the printbridge topic tree the edge publishes on.
	Topics bridge.Topics
	// BaseTopic is the plugin's base topic without the trailing slash;
	// DefaultBaseTopic when empty.
	BaseTopic string
	// TemperatureThreshold is the smallest change of an actual temperature
	// that is published; DefaultTemperatureThreshold when zero.
	TemperatureThreshold float64
	// ConnectTimeout bounds the first connection; 10s when zero.
	ConnectTimeout time.Duration
	// ShutdownWait bounds how long Run waits, once its ctx ends, for the
	// edge's Shutdown event to arrive and be mirrored; 2s when zero.
	ShutdownWait time.Duration
}

// Mirror is one MQTT connection that republishes a printer's events and
// state in OctoPrint-MQTT's format.
type Mirror struct {
	cfg       Config
	log       *slog.Logger
	client    paho.Client
	brokerURL string

	queue chan paho.Message
	done  chan struct{}
	wg    sync.WaitGroup

	connects     atomic.Int64
	sawShutdown  chan struct{}
	shutdownOnce sync.Once
	dropped      atomic.Int64
	lastDropLog  atomic.Int64

	// Owned by the worker goroutine.
	temps        map[string]tempState
	lastProgress progressState
}

type tempState struct {
	actual float64
	target float64
}

type progressState struct {
	path     string
	progress int
	valid    bool
}

// New connects to the broker with the plugin's last will and returns once
// the first connection is up.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Mirror, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := bridge.ValidatePrinterID(cfg.PrinterID); err != nil {
		return nil, fmt.Errorf("OctoPrint-MQTT mirror: %w", err)
	}
	cfg.BaseTopic = strings.TrimSuffix(cfg.BaseTopic, "/")
	if cfg.BaseTopic == "" {
		cfg.BaseTopic = DefaultBaseTopic
	}
	if strings.ContainsAny(cfg.BaseTopic, "+#") {
		return nil, fmt.Errorf("invalid OctoPrint-MQTT base topic %q: use a topic without wildcards, such as %q", cfg.BaseTopic, DefaultBaseTopic)
	}
	if cfg.TemperatureThreshold <= 0 {
		cfg.TemperatureThreshold = DefaultTemperatureThreshold
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = defaultConnect
	}
	if cfg.ShutdownWait <= 0 {
		cfg.ShutdownWait = defaultShutdownWait
	}
	broker, err := url.Parse(cfg.URL)
	if err != nil || broker.Scheme == "" || broker.Host == "" {
		return nil, errors.New("invalid MQTT broker URL for the OctoPrint-MQTT mirror: use tcp://host:1883, mqtt://host:1883 or ssl://host:8883")
	}
	if broker.User != nil {
		if cfg.Username == "" {
			cfg.Username = broker.User.Username()
		}
		if password, ok := broker.User.Password(); ok && cfg.Password == "" {
			cfg.Password = password
		}
		broker.User = nil
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "printbridge-octoprint-" + cfg.PrinterID
	}
	m := &Mirror{
		cfg:         cfg,
		brokerURL:   broker.String(),
		queue:       make(chan paho.Message, queueSize),
		done:        make(chan struct{}),
		sawShutdown: make(chan struct{}),
		temps:       map[string]tempState{},
	}
	m.log = log.With("printer", cfg.PrinterID, "integration", "octoprint_mqtt", "broker", m.brokerURL)

	opts := paho.NewClientOptions().
		AddBroker(m.brokerURL).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(true).
		SetOrderMatters(true).
		SetKeepAlive(30*time.Second).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(maxReconnectInterval).
		SetWill(m.topic("mqtt"), lwtDisconnected, 1, true).
		SetOnConnectHandler(m.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			m.log.Warn("OctoPrint-MQTT mirror lost its broker connection; reconnecting", "error", err)
		})
	m.client = paho.NewClient(opts)
	m.wg.Add(1)
	go m.work()

	tok := m.client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		m.stop()
		return nil, fmt.Errorf("OctoPrint-MQTT mirror: connect to %s: %w", m.brokerURL, ctx.Err())
	}
	if err := tok.Error(); err != nil {
		m.stop()
		return nil, fmt.Errorf("OctoPrint-MQTT mirror: connect to %s failed: %w; check the URL, the credentials and that the broker is running", m.brokerURL, err)
	}
	return m, nil
}

// Topic returns the mirror topic of a plugin sub-topic, such as
// "event/PrintDone".
func (m *Mirror) Topic(sub string) string { return m.topic(sub) }

func (m *Mirror) topic(sub string) string { return m.cfg.BaseTopic + "/" + sub }

// Run mirrors until ctx ends. Then it waits up to Config.ShutdownWait for
// the edge's Shutdown event, publishes "disconnected" and disconnects.
func (m *Mirror) Run(ctx context.Context) error {
	<-ctx.Done()
	select {
	case <-m.sawShutdown:
	case <-time.After(m.cfg.ShutdownWait):
		m.log.Debug("no Shutdown event from the edge before stopping the mirror")
	}
	if m.client.IsConnectionOpen() {
		tok := m.client.Publish(m.topic("mqtt"), 1, true, lwtDisconnected)
		if !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
			m.log.Warn("publishing the OctoPrint-MQTT disconnected marker failed; the broker sends the last will instead", "error", tok.Error())
		}
	}
	m.stop()
	m.log.Info("OctoPrint-MQTT mirror stopped")
	return nil
}

func (m *Mirror) stop() {
	m.client.Disconnect(500)
	select {
	case <-m.done:
	default:
		close(m.done)
	}
	m.wg.Wait()
}

// onConnect runs on a goroutine of paho's after every connect: the
// subscriptions of a clean session are made again, and the marker and,
// after the first connect, the progress reset follow, as in the plugin.
func (m *Mirror) onConnect(c paho.Client) {
	n := m.connects.Add(1)
	m.log.Info("OctoPrint-MQTT mirror connected", "base_topic", m.cfg.BaseTopic, "connects", n)
	// QoS 0: paho 1.5.1 races when a QoS 1 message is published while
	// its reconnect resends the stored ones (paho issue 703), and this
	// callback runs right then. Retained, the marker still reaches every
	// later subscriber.
	m.publish(m.topic("mqtt"), 0, true, []byte(lwtConnected))
	filters := map[string]byte{
		m.cfg.Topics.MQTTAllEvents(m.cfg.PrinterID): 1,
		m.cfg.Topics.MQTTState(m.cfg.PrinterID):     1,
	}
	tok := c.SubscribeMultiple(filters, m.enqueue)
	if !tok.WaitTimeout(publishTimeout) || tok.Error() != nil {
		m.log.Error("OctoPrint-MQTT mirror could not subscribe to the printer's topics; nothing is mirrored until the next reconnect",
			"error", tok.Error())
		return
	}
	if n == 1 {
		m.enqueue(nil, resetMessage{})
	}
}

// resetMessage makes the worker publish the plugin's progress reset.
type resetMessage struct{ paho.Message }

// enqueue runs on paho's router goroutine. A full queue holds the router
// back until the worker catches up, so no message is lost.
func (m *Mirror) enqueue(_ paho.Client, msg paho.Message) {
	select {
	case m.queue <- msg:
	case <-m.done:
	}
}

func (m *Mirror) work() {
	defer m.wg.Done()
	for {
		select {
		case msg := <-m.queue:
			m.handle(msg)
		case <-m.done:
			return
		}
	}
}

func (m *Mirror) handle(msg paho.Message) {
	if _, ok := msg.(resetMessage); ok {
		m.publishProgress("", "", 0, time.Now())
		return
	}
	_, section, _, ok := m.cfg.Topics.ParseMQTT(msg.Topic())
	if !ok {
		return
	}
	switch section {
	case "event":
		m.mirrorEvent(msg.Payload())
	case "state":
		m.mirrorState(msg.Payload())
	}
}

// publish sends one message and logs failures, rate-limited, because a
// mirror message lost while the broker is away is not sent again, as in
// the plugin.
func (m *Mirror) publish(topic string, qos byte, retained bool, data []byte) {
	tok := m.client.Publish(topic, qos, retained, data)
	var err error
	if !tok.WaitTimeout(publishTimeout) {
		err = errors.New("timed out")
	} else {
		err = tok.Error()
	}
	if err == nil {
		return
	}
	n := m.dropped.Add(1)
	now := time.Now().UnixNano()
	if last := m.lastDropLog.Load(); now-last >= int64(dropLogInterval) && m.lastDropLog.CompareAndSwap(last, now) {
		m.log.Warn("OctoPrint-MQTT mirror message not published", "topic", topic, "dropped_total", n, "error", err)
	}
}
