//go:build unix

package printer

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockPort takes an exclusive flock on the serial device, so that a second
// edge (or any other host that flocks, such as pyserial with
// exclusive=True) cannot open the same printer and mix its line numbers
// into the first one's. go.bug.st/serial sets TIOCEXCL too, but the kernel
// lets root through that. The lock is on the device's inode, so a symlink
// such as a udev name or a virtual printer's link locks the same device.
func lockPort(port string) (release func(), err error) {
	f, err := os.OpenFile(port, os.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("serial port %s not found: check --port and that the printer is plugged in and powered (ls /dev/serial/by-id/ lists the connected ones)", port)
		}
		return nil, fmt.Errorf("open serial port %s for locking: %w", port, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("serial port %s is in use by another process (another printbridge edge?); stop it or choose another --port", port)
		}
		return nil, fmt.Errorf("lock serial port %s: %w", port, err)
	}
	return func() { f.Close() }, nil
}
