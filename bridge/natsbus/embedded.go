//go:build !noembeddedbroker

package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

const (
	defaultHost       = "127.0.0.1"
	defaultServerName = "printbridge-embedded"
	startTimeout      = 10 * time.Second
)

// Embedded is a running in-process nats-server.
type Embedded struct {
	srv      *server.Server
	natsURL  string
	mqttURL  string
	tempDir  string
	shutdown sync.Once
}

// StartEmbedded starts a nats-server in this process and returns once it
// accepts connections. Its log goes to log: notices, debug and trace lines
// at debug level, warnings at warn, errors and fatal errors at error.
//
// nats-server's MQTT listener maps the MQTT topic a/b to the NATS subject
// a.b, so printbridge's MQTT topics and NATS subjects meet there. It speaks
// MQTT 3.1.1 without shared subscriptions, and delivers messages published
// on the NATS side to MQTT subscribers at QoS 0.
func StartEmbedded(opts EmbeddedOptions, log *slog.Logger) (*Embedded, error) {
	if log == nil {
		log = slog.Default()
	}
	if opts.MQTT && opts.NoJetStream {
		return nil, errors.New("embedded NATS server: the MQTT listener needs JetStream: do not set NoJetStream with MQTT")
	}
	host := opts.Host
	if host == "" {
		host = defaultHost
	}
	name := opts.ServerName
	if name == "" {
		name = defaultServerName
	}
	e := &Embedded{}

	sopts := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       portOrRandom(opts.Port),
		NoSigs:     true,
		JetStream:  !opts.NoJetStream,
	}
	if sopts.JetStream {
		dir := opts.StoreDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "printbridge-nats-")
			if err != nil {
				return nil, fmt.Errorf("embedded NATS server: create JetStream directory: %w", err)
			}
			dir, e.tempDir = tmp, tmp
		}
		sopts.StoreDir = dir
	}
	if opts.MQTT {
		sopts.MQTT.Host = host
		sopts.MQTT.Port = portOrRandom(opts.MQTTPort)
	}

	srv, err := server.NewServer(sopts)
	if err != nil {
		e.removeTemp()
		return nil, fmt.Errorf("embedded NATS server: invalid options: %w", err)
	}
	srv.SetLoggerV2(serverLogger{log}, log.Enabled(context.Background(), slog.LevelDebug), false, false)
	srv.Start()
	if !srv.ReadyForConnections(startTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		e.removeTemp()
		return nil, fmt.Errorf("embedded NATS server on %s did not accept connections within %s; check its log for the cause, such as a port in use",
			host, startTimeout)
	}
	e.srv = srv
	e.natsURL = srv.ClientURL()
	if opts.MQTT {
		// The server writes the port it bound back into sopts, under the
		// lock that ReadyForConnections takes to check the listener.
		e.mqttURL = "tcp://" + net.JoinHostPort(host, strconv.Itoa(sopts.MQTT.Port))
	}
	log.Info("embedded NATS server started", "nats_url", e.natsURL, "mqtt_url", e.mqttURL, "jetstream", sopts.JetStream, "store_dir", sopts.StoreDir)
	return e, nil
}

// NATSURL returns the client URL, nats://host:port.
func (e *Embedded) NATSURL() string { return e.natsURL }

// MQTTURL returns tcp://host:port of the MQTT listener, or "" when it is
// off.
func (e *Embedded) MQTTURL() string { return e.mqttURL }

// Server returns the nats-server, for tests that inspect it.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server, waits until it has stopped, and removes the
// temporary JetStream directory if StartEmbedded made one. Calls after
// the first return at once.
func (e *Embedded) Shutdown() {
	e.shutdown.Do(func() {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.removeTemp()
	})
}

func (e *Embedded) removeTemp() {
	if e.tempDir != "" {
		_ = os.RemoveAll(e.tempDir)
	}
}

func portOrRandom(port int) int {
	if port == 0 {
		return server.RANDOM_PORT
	}
	return port
}

// serverLogger routes nats-server's log to slog.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) write(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, fmt.Sprintf(format, v...), "library", "nats-server")
}

func (l serverLogger) Noticef(format string, v ...any) { l.write(slog.LevelDebug, format, v) }
func (l serverLogger) Warnf(format string, v ...any)   { l.write(slog.LevelWarn, format, v) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.write(slog.LevelError, format, v) }
func (l serverLogger) Errorf(format string, v ...any)  { l.write(slog.LevelError, format, v) }
func (l serverLogger) Debugf(format string, v ...any)  { l.write(slog.LevelDebug, format, v) }
func (l serverLogger) Tracef(format string, v ...any)  { l.write(slog.LevelDebug, format, v) }
