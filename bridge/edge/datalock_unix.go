//go:build unix

package edge

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockFile opens path and takes an exclusive, non-blocking flock on it.
// One lock file guards the printer's whole state, which is the outbox
// folder, the seq file and the job record.
func lockFile(path, printerID string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock file of printer %s: %w", printerID, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("printer %s state in %s is in use by another edge on this host (%s is locked); stop the other edge first, or, for another printer, give this edge its own --printer id, because two edges with one id also share its broker client id and topics", printerID, filepath.Dir(path), path)
		}
		return nil, fmt.Errorf("lock %s of printer %s: %w", path, printerID, err)
	}
	return f, nil
}
