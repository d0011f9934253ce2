package hooks

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
// SIGKILL before that write sees the event as new when it is delivered
// again. One killed after it drops the redelivery. Only a power loss can
// lose the last lines (no fsync per event). Lines "-<id>", written by
// earlier versions, remove an id.
//
// The file also holds a JSON line for each system hook command before
// its process may run (see gateScript), and one when the hook ended. A
// redelivery after a restart starts none of the hooks recorded there.
type seenLog struct {
	mu   sync.Mutex // guards f, lines, pending and pendingOrder
	path string
	f    *os.File
	lock *os.File
	// ownsLock is false when the lock came from LockSeenFile, whose
	// caller releases it.
	ownsLock bool
	lines    int
	// pending are the hook start records of events not yet recorded as
	// handled, by event id, and pendingOrder their ids, oldest first.
	// Both are bounded by the idSet's size.
	pending      map[string][]hookStart
	pendingOrder []string
}

// seenRecord is a JSON line of the seen-events file: a hook start record
// of an event, or an event recorded as handled whose id a plain line
// cannot hold.
type seenRecord struct {
	EventID string     `json:"event_id"`
	Start   *hookStart `json:"hook_start,omitempty"`
	// Forget removes the start record of the hook at this position: its
	// gate was closed before its first command ran.
	Forget *int `json:"forget_hook,omitempty"`
	Done   bool `json:"done,omitempty"`
}

// WithSeenFile keeps the recent event ids in path, so a redelivery after a
// restart of the worker (a lost JetStream ack, an MQTT session replay)
// does not run hooks again.
func WithSeenFile(path string) Option {
	return func(w *Worker) { w.seenPath = path }
}

// SeenFileLock is the exclusive lock of a seen-events file.
type SeenFileLock struct {
	path string
	f    *os.File
	once sync.Once
}

// LockSeenFile takes the lock of the seen-events file at path, so that a
// second worker on the host with the same file fails before it does any
// network work. Hand the lock to the worker with WithSeenFileLock, and
// Close it after Run has returned.
func LockSeenFile(path string) (*SeenFileLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create the folder of the seen-events file: %w", err)
	}
	f, err := lockSeenFile(path)
	if err != nil {
		return nil, err
	}
	return &SeenFileLock{path: path, f: f}, nil
}

// Close releases the lock. Calls after the first do nothing.
func (l *SeenFileLock) Close() {
	l.once.Do(func() { _ = l.f.Close() })
}

// WithSeenFileLock is WithSeenFile for a file whose lock the caller took
// with LockSeenFile.
func WithSeenFileLock(lock *SeenFileLock) Option {
	return func(w *Worker) { w.seenPath, w.seenLock = lock.path, lock }
}

// openSeenLog loads the ids and hook start records of path into set and
// the log, and opens it for appending. It takes the file's lock unless
// held is that lock already.
func openSeenLog(path string, set *idSet, held *SeenFileLock) (*seenLog, error) {
	l := &seenLog{path: path, pending: map[string][]hookStart{}}
	if held != nil {
		l.lock = held.f
	} else {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("create the folder of the seen-events file: %w", err)
		}
		lock, err := lockSeenFile(path)
		if err != nil {
			return nil, err
		}
		l.lock, l.ownsLock = lock, true
	}
	if err := l.loadFile(set); err != nil {
		l.releaseLock()
		return nil, fmt.Errorf("read seen-events file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		l.releaseLock()
		return nil, fmt.Errorf("open seen-events file: %w", err)
	}
	l.f = f
	return l, nil
}

// loadFile applies the lines of the file at l.path, if there is one. It
// reads line by line. Reading the whole file and splitting it held the
// file and a string header per line at once (0.8 MB at 14,000 lines)
// while the worker started. Every id kept as a string also pinned the
// whole file.
func (l *seenLog) loadFile(set *idSet) error {
	f, err := os.Open(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(f)
	// Any line of the file fits, as when the file was read whole. The
	// buffer grows past its first 16 KiB only for a line that long.
	sc.Buffer(make([]byte, 0, 16<<10), max(int(info.Size())+1, 16<<10))
	sc.Split(splitLF)
	for sc.Scan() {
		l.load(sc.Text(), set)
	}
	return sc.Err()
}

// splitLF is a bufio.SplitFunc that ends lines at '\n' only. Unlike
// bufio.ScanLines it keeps a '\r' before the '\n', so an id is loaded as
// it was written.
func splitLF(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// load applies one line of the file.
func (l *seenLog) load(line string, set *idSet) {
	if line == "" {
		return
	}
	l.lines++
	if strings.HasPrefix(line, "{") {
		var rec seenRecord
		// A line that is not such a record is an id that starts with
		// '{', written by an earlier version.
		if err := json.Unmarshal([]byte(line), &rec); err == nil && rec.EventID != "" {
			switch {
			case rec.Start != nil:
				l.addPendingLocked(rec.EventID, *rec.Start, set.max)
			case rec.Forget != nil:
				if recs, ok := l.pending[rec.EventID]; ok {
					l.pending[rec.EventID] = removeStart(recs, *rec.Forget)
				}
			case rec.Done:
				set.add(rec.EventID)
				delete(l.pending, rec.EventID)
			}
			return
		}
	}
	if strings.HasPrefix(line, "-") {
		set.remove(line[1:])
		return
	}
	set.add(line)
	delete(l.pending, line)
}

// doneLine is the line that records id as handled: the id itself, or a
// JSON record when the id would read as another kind of line.
func doneLine(id string) (string, error) {
	if !strings.HasPrefix(id, "{") && !strings.HasPrefix(id, "-") && !strings.ContainsAny(id, "\r\n") {
		return id, nil
	}
	data, err := json.Marshal(seenRecord{EventID: id, Done: true})
	if err != nil {
		return "", fmt.Errorf("encode seen-events record: %w", err)
	}
	return string(data), nil
}

// addPendingLocked adds or replaces the record of rec.Hook for id. The
// oldest event's records go when more than limit events have some.
func (l *seenLog) addPendingLocked(id string, rec hookStart, limit int) {
	recs, ok := l.pending[id]
	if !ok {
		l.pendingOrder = append(l.pendingOrder, id)
	}
	l.pending[id] = upsertStart(recs, rec)
	for len(l.pending) > limit && len(l.pendingOrder) > 0 {
		delete(l.pending, l.pendingOrder[0])
		l.pendingOrder = l.pendingOrder[1:]
	}
	// pendingOrder also keeps ids whose records are gone; trim them once
	// they make up half of it.
	if len(l.pendingOrder) > 2*len(l.pending)+16 {
		kept := l.pendingOrder[:0]
		for _, pid := range l.pendingOrder {
			if _, ok := l.pending[pid]; ok {
				kept = append(kept, pid)
			}
		}
		l.pendingOrder = kept
	}
}

// starts returns a copy of the hook start records of id.
func (l *seenLog) starts(id string) []hookStart {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]hookStart(nil), l.pending[id]...)
}

// recordStart appends the hook start record rec of the event id. The
// write reaches the kernel before it returns, so it survives a SIGKILL
// of the worker.
func (l *seenLog) recordStart(id string, rec hookStart, set *idSet) error {
	data, err := json.Marshal(seenRecord{EventID: id, Start: &rec})
	if err != nil {
		return fmt.Errorf("encode hook start record: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addPendingLocked(id, rec, set.max)
	return l.appendLocked(string(data), set)
}

// forgetStart removes the start record of hook of the event id, whose
// gate was closed before its first command ran, so a redelivery after a
// restart runs it.
func (l *seenLog) forgetStart(id string, hook int, set *idSet) error {
	data, err := json.Marshal(seenRecord{EventID: id, Forget: &hook})
	if err != nil {
		return fmt.Errorf("encode hook start record: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if recs, ok := l.pending[id]; ok {
		l.pending[id] = removeStart(recs, hook)
	}
	return l.appendLocked(string(data), set)
}

// endStart appends the start record of hook of the event id again, marked
// ended. It does nothing when there is no such record.
func (l *seenLog) endStart(id string, hook int, set *idSet) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	recs := l.pending[id]
	i := slices.IndexFunc(recs, func(r hookStart) bool { return r.Hook == hook })
	if i < 0 || recs[i].Ended {
		return nil
	}
	recs[i].Ended = true
	data, err := json.Marshal(seenRecord{EventID: id, Start: &recs[i]})
	if err != nil {
		return fmt.Errorf("encode hook start record: %w", err)
	}
	return l.appendLocked(string(data), set)
}

// writeDone records id as handled and forgets its hook start records.
func (l *seenLog) writeDone(id string, set *idSet) error {
	line, err := doneLine(id)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.pending, id)
	return l.appendLocked(line, set)
}

func (l *seenLog) appendLocked(line string, set *idSet) error {
	if _, err := l.f.WriteString(line + "\n"); err != nil {
		return fmt.Errorf("write seen-events file %s: %w", l.path, err)
	}
	l.lines++
	// Rewrite the file with the ids and records still remembered once it
	// holds twice as many lines, so it stays bounded.
	if l.lines > 2*(set.max+len(l.pending)) {
		return l.compactLocked(set)
	}
	return nil
}

// compactLocked rewrites the file with the ids of set and the pending
// hook start records. It streams the lines to a temporary file and
// renames that over the file. Building the file in memory first
// allocated 3.5 MB per compaction of 10,000 ids, against 0.2 MB now
// (measured with runtime.MemStats), and a worker at 5,000 events per
// second compacts every few seconds.
func (l *seenLog) compactLocked(set *idSet) error {
	tmp := l.path + ".tmp"
	lines, err := l.writeCompacted(tmp, set)
	if err != nil {
		_ = os.Remove(tmp)
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
	l.lines = lines
	return nil
}

// writeCompacted writes the lines of the compacted file to path and
// returns their number.
func (l *seenLog) writeCompacted(path string, set *idSet) (int, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return 0, err
	}
	lines, err := l.writeCompactedTo(bufio.NewWriterSize(f, 16<<10), set)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	return lines, err
}

func (l *seenLog) writeCompactedTo(b *bufio.Writer, set *idSet) (int, error) {
	slots, others := set.snapshot()
	var uuid [36]byte
	for i, e := range slots {
		if e.other {
			line, err := doneLine(others[i])
			if err != nil {
				return 0, err
			}
			_, _ = b.WriteString(line)
		} else {
			// A UUID is always its own done line (see doneLine).
			encodeUUID(&uuid, e.uuid)
			_, _ = b.Write(uuid[:])
		}
		_ = b.WriteByte('\n')
	}
	lines := len(slots)
	for _, id := range l.pendingOrder {
		for _, rec := range l.pending[id] {
			data, err := json.Marshal(seenRecord{EventID: id, Start: &rec})
			if err != nil {
				return 0, err
			}
			_, _ = b.Write(data)
			_ = b.WriteByte('\n')
			lines++
		}
	}
	// bufio.Writer keeps the first write error and returns it here.
	return lines, b.Flush()
}

func (l *seenLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.f.Close()
	l.releaseLock()
	return err
}

func (l *seenLog) releaseLock() {
	if l.ownsLock {
		_ = l.lock.Close()
	}
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
