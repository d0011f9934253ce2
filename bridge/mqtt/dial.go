package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	"golang.org/x/net/proxy"
)

// defaultWebsocketTimeout is paho 1.5.1's handshake timeout of a
// websocket connection when ConnectTimeout is zero.
const defaultWebsocketTimeout = 10 * time.Second

// connDialer opens the network connections of one Bus, in place of
// paho's built-in dialer (netconn.go in paho 1.5.1), whose behaviour it
// keeps: the same URL schemes, the proxy from the environment, and TLS
// and websockets over the TCP connection. It differs in one point: every
// TCP connection to the broker or a proxy is a quickAckConn, so that a
// broker with Nagle's algorithm on does not hold its PUBACKs and
// PUBLISHes for this side's delayed ACK.
type connDialer struct {
	log             *slog.Logger
	disableQuickAck bool

	mu   sync.Mutex
	last dialedConn
}

// dialedConn is the connection handed to paho and the TCP connection
// under it, when that is a quickAckConn.
type dialedConn struct {
	conn     net.Conn
	quickAck *quickAckConn
}

// open is a paho.OpenConnectionFunc.
func (d *connDialer) open(uri *url.URL, options paho.ClientOptions) (net.Conn, error) {
	dialer := options.Dialer
	if dialer == nil {
		dialer = &net.Dialer{Timeout: 30 * time.Second}
	}
	tcp := &quickAckDialer{dialer: dialer, log: d.log, disabled: d.disableQuickAck}
	conn, err := d.openScheme(uri, options, tcp)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.last = dialedConn{conn: conn, quickAck: tcp.dialed}
	d.mu.Unlock()
	return conn, nil
}

func (d *connDialer) openScheme(uri *url.URL, options paho.ClientOptions, tcp *quickAckDialer) (net.Conn, error) {
	switch uri.Scheme {
	case "ws", "wss":
		return dialWebsocket(uri, options, tcp)
	case "mqtt", "tcp":
		return proxy.FromEnvironmentUsing(tcp).Dial("tcp", uri.Host)
	case "unix":
		// paho 1.5.1 takes the socket path from the host for URLs such as
		// unix://mosquitto.sock, and from the path otherwise.
		path := uri.Path
		if uri.Host != "" {
			path = uri.Host
		}
		return tcp.dialer.Dial("unix", path)
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		return dialTLS(uri, options, tcp)
	}
	return nil, fmt.Errorf("unsupported MQTT broker URL scheme %q: use tcp, mqtt, ssl, tls, mqtts, ws, wss or unix", uri.Scheme)
}

// lastDialed returns the connection of the last successful dial.
func (d *connDialer) lastDialed() dialedConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// dialTLS dials TCP, through the proxy of all_proxy when that is set, and
// runs the TLS handshake within the connect timeout. As in
// tls.DialWithDialer, the server name defaults to the URL's host.
func dialTLS(uri *url.URL, options paho.ClientOptions, tcp *quickAckDialer) (net.Conn, error) {
	conn, err := proxy.FromEnvironmentUsing(tcp).Dial("tcp", uri.Host)
	if err != nil {
		return nil, err
	}
	config := options.TLSConfig
	if config == nil {
		config = &tls.Config{}
	}
	if config.ServerName == "" {
		config = config.Clone()
		config.ServerName = uri.Hostname()
	}
	ctx := context.Background()
	if timeout := options.ConnectTimeout; timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tlsConn := tls.Client(conn, config)
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return tlsConn, nil
}

// dialWebsocket opens MQTT over a websocket as paho 1.5.1's NewWebsocket
// does, with the "mqtt" subprotocol and the proxy of WebsocketOptions or
// the environment, but with a quickAckConn under it.
func dialWebsocket(uri *url.URL, options paho.ClientOptions, tcp *quickAckDialer) (net.Conn, error) {
	timeout := options.ConnectTimeout
	if timeout == 0 {
		timeout = defaultWebsocketTimeout
	}
	dialer := &websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: timeout,
		TLSClientConfig:  options.TLSConfig,
		Subprotocols:     []string{"mqtt"},
		NetDialContext:   tcp.DialContext,
	}
	if ws := options.WebsocketOptions; ws != nil {
		dialer.ReadBufferSize, dialer.WriteBufferSize = ws.ReadBufferSize, ws.WriteBufferSize
		if ws.Proxy != nil {
			dialer.Proxy = ws.Proxy
		}
	}
	// gorilla/websocket rejects URLs with user info.
	dialURI := *uri
	dialURI.User = nil
	conn, resp, err := dialer.Dial(dialURI.String(), options.HTTPHeaders)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("websocket handshake with %s failed with HTTP status %d: %w", dialURI.Redacted(), resp.StatusCode, err)
		}
		return nil, err
	}
	return &websocketConn{Conn: conn}, nil
}

// quickAckDialer dials TCP connections as quickAckConns. It is the
// forward dialer of the proxy package, so the connection to a SOCKS5
// proxy gets TCP_QUICKACK too.
type quickAckDialer struct {
	dialer *net.Dialer
	log    *slog.Logger
	// disabled makes the dialer return plain TCP connections.
	disabled bool
	// dialed is the last connection dialed, when it is a quickAckConn.
	dialed *quickAckConn
}

func (d *quickAckDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *quickAckDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	conn, err := d.dialer.DialContext(ctx, network, address)
	if err != nil || d.disabled {
		return conn, err
	}
	conn = wrapQuickAck(conn, d.log)
	if q, ok := conn.(*quickAckConn); ok {
		d.dialed = q
	}
	return conn, nil
}

// websocketConn is a websocket connection as a net.Conn that carries the
// MQTT stream in binary messages, like paho 1.5.1's websocketConnector.
type websocketConn struct {
	*websocket.Conn
	readMu  sync.Mutex
	reader  io.Reader // the message being read, nil between messages
	writeMu sync.Mutex
}

// Read reads the current message and goes on with the next one at its
// end, so MQTT packets may span message boundaries.
func (c *websocketConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if c.reader == nil {
			var err error
			if _, c.reader, err = c.NextReader(); err != nil {
				return 0, err
			}
		}
		n, err := c.reader.Read(p)
		if err == io.EOF {
			c.reader = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// Write sends p as one binary message.
func (c *websocketConn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// SetDeadline sets the read and the write deadline.
func (c *websocketConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
