package mqtt

import "net"

// DialedConnection returns the connection that b handed to paho at its
// last dial, and the TCP connection under it when that sets TCP_QUICKACK
// (nil otherwise).
func DialedConnection(b *Bus) (conn, quickAck net.Conn) {
	last := b.dialer.lastDialed()
	if last.quickAck == nil {
		return last.conn, nil
	}
	return last.conn, last.quickAck
}

// QuickAckCount returns how often TCP_QUICKACK was set on conn, a
// connection that DialedConnection returned, and whether setting it
// failed.
func QuickAckCount(conn net.Conn) (rearms uint64, failed bool) {
	q := conn.(*quickAckConn)
	return q.rearms.Load(), q.failed.Load()
}
