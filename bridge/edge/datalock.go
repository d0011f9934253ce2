package edge

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// DataDirLock is the exclusive lock of one printer's outbox, seq file and
// job record in a data folder.
type DataDirLock struct {
	file *os.File
	once sync.Once
}

// LockPath returns the lock file of printerID's state in dataDir. It sits
// beside the outbox, seq and job files of the printer, so edges of other
// printers can share the folder.
func LockPath(dataDir, printerID string) string {
	return filepath.Join(dataDir, printerID+".lock")
}

// LockDataDir takes the lock of printerID's state in dataDir and creates
// the folder if needed. Take it before New, because a second edge with the
// same state truncates a record the first one is still writing, as if it
// were torn, and publishes seq numbers the first one also publishes. Close it
// after Run has returned. The kernel releases it when the process ends,
// SIGKILL included.
func LockDataDir(dataDir, printerID string) (*DataDirLock, error) {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data folder %s: %w", dataDir, err)
	}
	path := LockPath(dataDir, printerID)
	file, err := lockFile(path, printerID)
	if err != nil {
		return nil, err
	}
	return &DataDirLock{file: file}, nil
}

// Close releases the lock. Calls after the first do nothing.
func (l *DataDirLock) Close() {
	l.once.Do(func() {
		if l.file != nil {
			_ = l.file.Close()
		}
	})
}
