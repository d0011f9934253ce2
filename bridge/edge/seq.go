package edge

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// seqStore hands out strictly increasing sequence numbers that survive a
// restart. The outbox stores the seq of every event it takes, so the seq
// file only needs to be exact when an event bypasses the outbox (a disk
// error) and at a clean stop. On open, numbering continues after the
// larger of the file's value and the outbox's last seq, so a killed edge
// neither reuses a seq nor leaves a gap. A power loss can still take
// back the records of the last fsync interval, and with them their seqs.
type seqStore struct {
	// mu guards next and the file.
	mu   sync.Mutex
	path string
	next uint64
}

// openSeqStore opens the seq file of printerID in dataDir; floor is the
// highest seq known elsewhere (the outbox). Without dataDir, numbers live
// in memory only.
func openSeqStore(dataDir, printerID string, floor uint64) (*seqStore, error) {
	s := &seqStore{next: floor + 1}
	if dataDir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dataDir, err)
	}
	s.path = filepath.Join(dataDir, printerID+".seq")
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read sequence file: %w", err)
	default:
		v, perr := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		if perr != nil {
			return nil, fmt.Errorf("sequence file %s is corrupt (%q): fix or delete it; deleting restarts seq after the outbox's last event", s.path, strings.TrimSpace(string(data)))
		}
		s.next = max(s.next, v+1)
	}
	return s, nil
}

// Next returns the next sequence number. It does no I/O.
func (s *seqStore) Next() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.next
	s.next++
	return n
}

// Last returns the last sequence number handed out, 0 before the first.
func (s *seqStore) Last() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next - 1
}

// Persist writes n to the seq file, for an event the outbox did not
// store.
func (s *seqStore) Persist(n uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeLocked(n)
}

func (s *seqStore) writeLocked(v uint64) error {
	if s.path == "" {
		return nil
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(v, 10)+"\n"), 0o640); err != nil {
		return fmt.Errorf("write sequence file: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("replace sequence file: %w", err)
	}
	return nil
}

// Close persists the last number used.
func (s *seqStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeLocked(s.next - 1)
}
