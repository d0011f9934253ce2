//go:build !linux

package mqtt

import "errors"

// quickAckSupported is false because TCP_QUICKACK is a Linux option. On
// other systems a broker with Nagle's algorithm on needs its own setting,
// set_tcp_nodelay true for mosquitto, to avoid the delayed-ACK waits.
const quickAckSupported = false

func setQuickAck(uintptr) error {
	return errors.New("TCP_QUICKACK is available on Linux only")
}
