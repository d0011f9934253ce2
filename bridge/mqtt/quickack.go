package mqtt

import (
	"bufio"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
)

// quickAckReadBuffer is the read buffer of a quickAckConn. paho reads
// each packet in three reads (the first byte, the length, the rest), so
// the buffer also saves two read and two setsockopt calls per packet.
const quickAckReadBuffer = 16 << 10

// quickAckConn is a TCP connection to the broker that sets TCP_QUICKACK
// again after every read from the socket, on Linux.
//
// A broker that leaves Nagle's algorithm on, such as mosquitto without
// set_tcp_nodelay true (its default), holds a small packet (a PUBACK, or
// a PUBLISH to a subscriber) until the client has acknowledged the
// previous segment. A client that has nothing to send back delays that
// ACK, by up to 40 ms on Linux, so every such packet waited that long.
// With TCP_QUICKACK set, the kernel sends the ACK at once, including one
// that was already delayed when the option is set. Linux clears quick-ack
// mode again by itself (tcp(7): "This flag is not permanent"), which is
// why every read sets it anew.
type quickAckConn struct {
	net.Conn // the *net.TCPConn
	raw      syscall.RawConn
	reader   *bufio.Reader
	log      *slog.Logger

	// rearms counts the reads after which TCP_QUICKACK was set, for
	// tests. failed stops the re-arming after the first error.
	rearms atomic.Uint64
	failed atomic.Bool
}

// wrapQuickAck returns conn wrapped in a quickAckConn when conn is TCP
// and the platform has TCP_QUICKACK, and conn unchanged otherwise.
func wrapQuickAck(conn net.Conn, log *slog.Logger) net.Conn {
	tcp, ok := conn.(*net.TCPConn)
	if !ok || !quickAckSupported {
		return conn
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		log.Warn("TCP_QUICKACK is not set on the MQTT connection, so against a broker with Nagle's algorithm on, small packets can wait up to 40 ms; set set_tcp_nodelay true in mosquitto.conf",
			"remote", conn.RemoteAddr(), "error", err)
		return conn
	}
	c := &quickAckConn{Conn: conn, raw: raw, log: log}
	c.reader = bufio.NewReaderSize(socketReader{c}, quickAckReadBuffer)
	return c
}

// Read reads from the buffer, which refills from the socket.
func (c *quickAckConn) Read(p []byte) (int, error) {
	return c.reader.Read(p)
}

// rearm sets TCP_QUICKACK on the socket. After the first failure it logs
// once and does nothing more on this connection.
func (c *quickAckConn) rearm() {
	if c.failed.Load() {
		return
	}
	var sockErr error
	err := c.raw.Control(func(fd uintptr) { sockErr = setQuickAck(fd) })
	if err == nil {
		err = sockErr
	}
	if err != nil {
		if c.failed.CompareAndSwap(false, true) {
			c.log.Warn("setting TCP_QUICKACK on the MQTT connection failed, so against a broker with Nagle's algorithm on, small packets can wait up to 40 ms; set set_tcp_nodelay true in mosquitto.conf",
				"remote", c.RemoteAddr(), "error", err)
		}
		return
	}
	c.rearms.Add(1)
}

// socketReader is the source of quickAckConn's buffer: one read from the
// socket, then TCP_QUICKACK for the data it returned.
type socketReader struct{ c *quickAckConn }

func (r socketReader) Read(p []byte) (int, error) {
	n, err := r.c.Conn.Read(p)
	if n > 0 {
		r.c.rearm()
	}
	return n, err
}
