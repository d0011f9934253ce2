// Package mqtt implements bridge.Bus on an MQTT 3.1.1 broker through
// paho.mqtt.golang, on the topic tree of bridge.Topics.
//
// Every message is sent and subscribed at QoS 1. Events, replies, hook
// results and commands are never retained. State, availability and the
// bridge info are retained, so a late subscriber gets the last value.
package mqtt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/printbridge/printbridge/bridge"
)

const (
	qos = 1

	defaultConnectTimeout = 10 * time.Second
	// maxReconnectInterval caps paho's reconnect backoff, which doubles
	// from one second and defaults to a ten-minute cap.
	maxReconnectInterval = 10 * time.Second
	keepAlive            = 30 * time.Second
	// subscribeTimeout bounds the SUBACK wait when subscriptions are
	// made again after a reconnect, where no caller ctx exists.
	subscribeTimeout = 30 * time.Second
	// closeTimeout bounds the offline marker and the DISCONNECT at Close.
	closeTimeout = time.Second

	availabilityOnline  = "online"
	availabilityOffline = "offline"
)

// ErrClosed is returned by the methods of a Bus after Close.
var ErrClosed = errors.New("MQTT bus is closed")

// Config configures one MQTT connection.
type Config struct {
	// URL is the broker, as tcp://host:port, mqtt://host:port or
	// ssl://host:port.
	URL string
	// ClientID is the MQTT client identifier. A random one is generated
	// when empty, which PersistentSession does not allow.
	ClientID string
	Username string
	Password string
	// TLS configures the connection of an ssl:// URL; see TLSOptions.
	TLS    TLSOptions
	Topics bridge.Topics
	// Printer, when set, makes the bus the availability owner of that
	// printer: the last will is "offline" (retained, QoS 1) on its
	// availability topic, "online" is published after every connect, and
	// Close publishes "offline" because a clean DISCONNECT does not fire
	// the will.
	Printer string
	// ConnectTimeout bounds each connection attempt, 10s when zero.
	ConnectTimeout time.Duration
	// OnConnect is called after every connect and reconnect, once the
	// subscriptions are made again, for example to publish the retained
	// state again. It runs on its own goroutine and may publish. The first
	// call, for the connection New makes, can come before New returns.
	OnConnect func()
	// OnConnectionLost is called when an established connection drops,
	// before paho reconnects. It runs on paho's goroutine and must not
	// block.
	OnConnectionLost func(error)
	// PersistentSession connects with CleanSession false, so the broker
	// keeps the subscriptions and queues QoS 1 messages while this client
	// is away. It needs a fixed ClientID that no other client uses.
	PersistentSession bool
	// ClientIDClashAdvice is what the error logged for a probable client
	// id clash tells the user to do, in the words of the program's flags.
	// When empty, the error advises a client id of its own.
	ClientIDClashAdvice string
	// DisableTCPQuickAck leaves TCP_QUICKACK unset on the connection
	// (see quickAckConn), so that package bench can measure the
	// difference it makes.
	DisableTCPQuickAck bool
}

var _ bridge.Bus = (*Bus)(nil)

// Bus is one MQTT connection, and a second one for the reply
// subscriptions once SubscribeReplies is called (see replyBus). It is safe
// for concurrent use.
type Bus struct {
	cfg    Config
	log    *slog.Logger
	client paho.Client
	store  *resumeStore
	// acks sends the PUBACKs of received messages in arrival order.
	acks      ackOrder
	dialer    *connDialer
	brokerURL string // without password, for logs
	clientID  string

	// closing is canceled when Close begins.
	closing       context.Context
	cancelClosing context.CancelFunc
	// done is closed by Close and stops the delivery goroutines and the
	// waits of the connect handler.
	done     chan struct{}
	wg       sync.WaitGroup
	attempts atomic.Int64 // reconnect attempts since the last connect

	// availability orders the online marker of a connect before the
	// offline marker of Close.
	availability sync.Mutex

	// firstConnect is closed by the handler of the first connect, after
	// which connection is 1.
	firstConnect chan struct{}

	mu     sync.Mutex
	closed bool
	// connectedAt is the time of the last connect, and shortConnections
	// counts the connections in a row that the broker closed soon after
	// it, the sign of another client with the same client id.
	connectedAt      time.Time
	shortConnections int
	// connection counts the connects. A subscription made directly on
	// connection n is not made again by the handler of connect n.
	connection int
	subs       map[string]*subscription // by paho route, the filter without $share/<group>/
	// pending holds messages of a persistent session that arrived before
	// the subscription they belong to was made in this process.
	pending []paho.Message

	// newLog is the logger given to New, for the reply connection.
	newLog *slog.Logger
	// replyMu guards replies, the connection of the reply subscriptions,
	// which the first SubscribeReplies makes (see replyBus).
	replyMu sync.Mutex
	replies *Bus
}

// New connects to the broker and returns once the first connection is up.
// It fails when the broker does not accept the connection within
// Config.ConnectTimeout or before ctx ends. After that, paho reconnects by
// itself whenever the connection is lost.
//
// New calls RouteLibraryLogs with log, so without an earlier call paho's
// package-wide loggers go to the logger of the first New.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = slog.Default()
	}
	broker, err := parseBrokerURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	// Credentials in the URL are moved to the options, because paho
	// prints the broker URL in its own log lines.
	if broker.User != nil {
		if cfg.Username == "" {
			cfg.Username = broker.User.Username()
		}
		if password, ok := broker.User.Password(); ok && cfg.Password == "" {
			cfg.Password = password
		}
		broker.User = nil
	}
	brokerURL := broker.String()
	tlsConfig, err := cfg.TLS.tlsConfig(broker, log)
	if err != nil {
		return nil, err
	}
	if cfg.Printer != "" {
		if err := bridge.ValidatePrinterID(cfg.Printer); err != nil {
			return nil, fmt.Errorf("MQTT config: %w", err)
		}
	}
	clientID := cfg.ClientID
	if clientID == "" {
		if cfg.PersistentSession {
			return nil, errors.New("MQTT config: a persistent session needs a fixed client id: set the client id")
		}
		clientID = randomClientID()
	}
	timeout := cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = defaultConnectTimeout
	}
	RouteLibraryLogs(log)

	closing, cancelClosing := context.WithCancel(context.Background())
	b := &Bus{
		closing:       closing,
		cancelClosing: cancelClosing,
		cfg:           cfg,
		log:           log.With("broker", brokerURL, "client_id", clientID),
		brokerURL:     brokerURL,
		clientID:      clientID,
		done:          make(chan struct{}),
		firstConnect:  make(chan struct{}),
		subs:          make(map[string]*subscription),
		store:         newResumeStore(log.With("broker", brokerURL, "client_id", clientID)),
		newLog:        log,
	}
	b.dialer = &connDialer{log: b.log, disableQuickAck: cfg.DisableTCPQuickAck}

	opts := paho.NewClientOptions().
		AddBroker(brokerURL).
		SetClientID(clientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(!cfg.PersistentSession).
		SetOrderMatters(true).
		// The bus acknowledges each message after its handler, so that an
		// event is acknowledged after its hooks ran (see SubscribeEvents).
		SetAutoAckDisabled(true).
		SetKeepAlive(keepAlive).
		SetConnectTimeout(timeout).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(maxReconnectInterval).
		SetOnConnectHandler(b.onConnect).
		SetConnectionLostHandler(b.onConnectionLost).
		SetReconnectingHandler(b.onReconnecting).
		SetConnectionAttemptHandler(b.onConnectionAttempt).
		SetStore(b.store).
		SetDefaultPublishHandler(b.onUnrouted).
		// The dialer sets TCP_QUICKACK on the connection (see
		// quickAckConn). paho does not hand it the TLS config that
		// onConnectionAttempt returns, so it takes the one of the
		// options, which onConnectionAttempt returns unchanged.
		SetCustomOpenConnectionFn(b.dialer.open)
	if tlsConfig != nil {
		opts.SetTLSConfig(tlsConfig)
	}
	if cfg.Printer != "" {
		opts.SetWill(cfg.Topics.MQTTAvailability(cfg.Printer), availabilityOffline, qos, true)
	}
	b.client = paho.NewClient(opts)

	b.log.Info("connecting to MQTT broker")
	tok := b.client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		b.abandon()
		// The attempt ends within ConnectTimeout. A connection it still
		// makes is closed again, so that nothing reconnects behind the caller.
		go func() {
			if tok.Wait() && tok.Error() == nil {
				b.client.Disconnect(0)
			}
		}()
		return nil, fmt.Errorf("connect to MQTT broker %s: %w", brokerURL, ctx.Err())
	}
	if err := tok.Error(); err != nil {
		b.abandon()
		return nil, fmt.Errorf("connect to MQTT broker %s failed: %w; check the URL, the credentials and that the broker is running", brokerURL, err)
	}
	// paho starts the connect handler on a goroutine of its own. Waiting
	// for it makes subscriptions after New count as made on connection 1.
	select {
	case <-b.firstConnect:
	case <-ctx.Done():
		b.stop()
		return nil, fmt.Errorf("connect to MQTT broker %s: %w", brokerURL, ctx.Err())
	}
	return b, nil
}

// Name returns "mqtt".
func (b *Bus) Name() string { return "mqtt" }

// Connected reports whether the connection to the broker is up.
func (b *Bus) Connected() bool { return b.client.IsConnectionOpen() }

// Close publishes the offline marker when Config.Printer is set,
// disconnects, and waits until the delivery goroutines have handled what
// they had queued.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()

	b.cancelClosing()

	var err error
	if b.cfg.Printer != "" && b.client.IsConnectionOpen() {
		err = b.publishOffline()
	}
	b.stop()
	b.log.Info("disconnected from MQTT broker")
	b.replyMu.Lock()
	replies := b.replies
	b.replyMu.Unlock()
	if replies != nil {
		err = errors.Join(err, replies.Close())
	}
	return err
}

// stop disconnects and waits for the goroutines of the bus.
func (b *Bus) stop() {
	// Without a connection there is no DISCONNECT to send, and paho would
	// wait the whole quiesce time for the connection attempt in progress.
	quiesce := uint(closeTimeout / time.Millisecond)
	if !b.client.IsConnectionOpen() {
		quiesce = 0
	}
	b.client.Disconnect(quiesce)
	b.abandon()
}

// abandon marks the bus closed and waits for its goroutines.
func (b *Bus) abandon() {
	b.cancelClosing()
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	close(b.done)
	b.wg.Wait()
}

// goTracked runs f under the WaitGroup unless the bus is closed. paho calls
// its handlers on goroutines of its own, so they register here to be waited
// for by Close.
func (b *Bus) goTracked(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
}

// onConnect runs on a paho goroutine after every successful connect.
func (b *Bus) onConnect(paho.Client) {
	b.log.Info("connected to MQTT broker", "attempts", b.attempts.Swap(0),
		"tcp_quickack", b.dialer.lastDialed().quickAck != nil)
	b.mu.Lock()
	b.connection++
	connection := b.connection
	b.connectedAt = time.Now()
	b.mu.Unlock()
	if connection == 1 {
		close(b.firstConnect)
	}
	b.goTracked(func() { b.afterConnect(connection) })
}

func (b *Bus) afterConnect(connection int) {
	b.resubscribe(connection)
	if b.cfg.Printer != "" {
		b.publishOnline()
	}
	if b.cfg.OnConnect != nil && !b.isClosed() {
		b.cfg.OnConnect()
	}
}

// publishOnline publishes the online marker unless Close has begun. paho
// sends in the order of Publish calls, so holding b.availability puts it
// before the offline marker of Close even when Close stops the wait.
func (b *Bus) publishOnline() {
	b.availability.Lock()
	defer b.availability.Unlock()
	if b.isClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(b.closing, subscribeTimeout)
	defer cancel()
	err := b.publish(ctx, b.cfg.Topics.MQTTAvailability(b.cfg.Printer), true, []byte(availabilityOnline))
	if err != nil && !b.isClosed() {
		b.log.Warn("publishing the online marker failed", "printer", b.cfg.Printer, "error", err)
	}
}

func (b *Bus) publishOffline() error {
	b.availability.Lock()
	defer b.availability.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := b.send(ctx, b.cfg.Topics.MQTTAvailability(b.cfg.Printer), true, []byte(availabilityOffline)); err != nil {
		return fmt.Errorf("publish offline marker before disconnecting: %w", err)
	}
	return nil
}

// shortConnection is the age under which a lost connection counts towards
// takeoverConnections.
const shortConnection = 10 * time.Second

// takeoverConnections is the number of connections in a row, each lost
// within shortConnection, that makes the bus report a probable client id
// clash. An MQTT 3.1.1 broker closes the older connection of a client id
// without a reason, so two clients with one id take turns without end.
// NOTE: broker restarts in quick succession look the same and are
// reported too.
const takeoverConnections = 3

func (b *Bus) onConnectionLost(_ paho.Client, err error) {
	b.log.Warn("lost connection to MQTT broker; reconnecting", "error", err)
	b.mu.Lock()
	if time.Since(b.connectedAt) < shortConnection {
		b.shortConnections++
	} else {
		b.shortConnections = 1
	}
	short := b.shortConnections
	b.mu.Unlock()
	if short%takeoverConnections == 0 && b.store.maxResumed() > 1 {
		// The same unacknowledged message went out again before each
		// loss, so the message, not a second client, is the likely cause.
		b.log.Error("the MQTT broker keeps closing this connection while the same unacknowledged message is sent again after each reconnect; check the broker's log for why it rejects it. The message is dropped after a few reconnects",
			"connections_lost", short, "resends", b.store.maxResumed())
	} else if short%takeoverConnections == 0 {
		advice := b.cfg.ClientIDClashAdvice
		if advice == "" {
			advice = "give each client its own client id"
		}
		b.log.Error("the MQTT broker keeps closing this connection soon after it is made; another client probably uses the same client id, "+advice,
			"connections_lost", short, "within", shortConnection)
	}
	if b.cfg.OnConnectionLost != nil {
		b.cfg.OnConnectionLost(err)
	}
}

// onConnectionAttempt runs on paho's connect goroutine before each dial.
func (b *Bus) onConnectionAttempt(_ *url.URL, tlsConfig *tls.Config) *tls.Config {
	b.store.connecting()
	b.acks.newConnection()
	return tlsConfig
}

func (b *Bus) onReconnecting(paho.Client, *paho.ClientOptions) {
	b.log.Info("reconnecting to MQTT broker", "attempt", b.attempts.Add(1))
}

// onUnrouted runs on paho's router goroutine for messages that match no
// route. With a persistent session the broker sends the messages it queued
// right after CONNACK, before this process has subscribed, so they are
// kept in pending until a matching subscription is made.
func (b *Bus) onUnrouted(_ paho.Client, received paho.Message) {
	msg := b.acks.take(received)
	b.mu.Lock()
	// The subscription may be recorded but its paho route not added yet.
	for _, sub := range b.subs {
		if topicMatches(sub.route, msg.Topic()) {
			b.mu.Unlock()
			b.enqueue(sub, msg)
			return
		}
	}
	keep := b.cfg.PersistentSession && len(b.pending) < queueSize
	if keep {
		b.pending = append(b.pending, msg)
	}
	b.mu.Unlock()
	if !keep {
		msg.Ack()
		b.log.Warn("dropped MQTT message that matches no subscription", "topic", msg.Topic())
	}
}

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// wait waits for a paho token, ctx or Close, whichever comes first.
func (b *Bus) wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-b.done:
		return ErrClosed
	}
}

// parseBrokerURL checks the broker URL. Its errors leave out the URL,
// which may contain a password.
func parseBrokerURL(raw string) (*url.URL, error) {
	const want = "use tcp://host:1883, mqtt://host:1883 or ssl://host:8883"
	if raw == "" {
		return nil, errors.New("missing MQTT broker URL: " + want)
	}
	u, err := url.Parse(raw)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return nil, fmt.Errorf("invalid MQTT broker URL: %w; %s", err, want)
	}
	if u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("invalid MQTT broker URL %q: %s", u.Redacted(), want)
	}
	return u, nil
}

func randomClientID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return "printbridge-" + hex.EncodeToString(b[:])
}
