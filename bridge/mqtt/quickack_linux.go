//go:build linux

package mqtt

import "syscall"

const quickAckSupported = true

func setQuickAck(fd uintptr) error {
	return syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
}
