package hooks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// DefaultSeenEvents is how many recent event ids the worker remembers to
// drop redelivered events.
const DefaultSeenEvents = 10000

// seenLog makes an idSet survive a restart of the worker: the id of every
// handled event is appended to a file after its last hook ended and
// before the event is acknowledged to the bus. A worker killed with
// SIGKILL before that write runs the hooks again when the event is
// delivered again. One killed after it drops the redelivery. Only a power
// loss can lose the last ids (no fsync per event). Lines "-<id>", written
// by earlier versions, remove an id.
type seenLog struct {
	mu    sync.Mutex // guards f and lines
	path  string
	f     *os.File
	lock  *os.File
	lines int
}

// WithSeenFile keeps the recent event ids in path, so a redelivery after a
// restart of the worker (a lost JetStream ack, an MQTT session replay)
// does not run hooks again.
func WithSeenFile(path string) Option {
	return func(w *Worker) { w.seenPath = path }
}

// openSeenLog loads the ids of path into set and opens it for appending.
func openSeenLog(path string, set *idSet) (*seenLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create the folder of the seen-events file: %w", err)
	}
	lock, err := lockSeenFile(path)
	if err != nil {
		return nil, err
	}
	l := &seenLog{path: path, lock: lock}
	if data, err := os.ReadFile(path); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			switch {
			case line == "":
			case strings.HasPrefix(line, "-"):
				set.remove(line[1:])
			default:
				set.add(line)
			}
			l.lines++
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, fmt.Errorf("read seen-events file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open seen-events file: %w", err)
	}
	l.f = f
	return l, nil
}

func (l *seenLog) write(line string, set *idSet) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.WriteString(line + "\n"); err != nil {
		return fmt.Errorf("write seen-events file %s: %w", l.path, err)
	}
	l.lines++
	// Rewrite the file with the ids still remembered once it holds twice
	// as many lines, so it stays bounded.
	if l.lines > 2*set.max {
		return l.compactLocked(set)
	}
	return nil
}

func (l *seenLog) compactLocked(set *idSet) error {
	ids := set.list()
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(ids, "\n")+"\n"), 0o640); err != nil {
		return fmt.Errorf("compact seen-events file: %w", err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return fmt.Errorf("compact seen-events file: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("reopen seen-events file: %w", err)
	}
	_ = l.f.Close()
	l.f = f
	l.lines = len(ids)
	return nil
}

func (l *seenLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.f.Close()
	l.lock.Close()
	return err
}

// lockSeenFile takes an exclusive flock on path.lock for the worker's
// lifetime. Two workers appending to one file would each load and
// compact the other's ids without knowing it, so the second one stops.
// The lock is on a file of its own because compaction replaces path.
func lockSeenFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open seen-events lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("seen-events file %s is in use by another worker on this host; give each worker its own --data-dir", path)
		}
		return nil, fmt.Errorf("lock seen-events file %s: %w", path, err)
	}
	return f, nil
}
