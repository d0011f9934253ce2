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

// seqBlock is how many sequence numbers are reserved per disk write. A
// restart skips the unused rest of a block, which consumers see as a gap;
// seq never goes back.
const seqBlock = 1000

// seqStore hands out strictly increasing sequence numbers that survive a
// restart, by persisting the upper end of the reserved block.
type seqStore struct {
	// mu guards next, reserved and the file.
	mu       sync.Mutex
	path     string
	next     uint64
	reserved uint64
}

func openSeqStore(dataDir, printerID string) (*seqStore, error) {
	s := &seqStore{next: 1}
	if dataDir == "" {
		s.reserved = ^uint64(0)
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
			return nil, fmt.Errorf("sequence file %s is corrupt (%q): fix or delete it; deleting restarts seq at 1", s.path, strings.TrimSpace(string(data)))
		}
		s.next = v + 1
	}
	s.reserved = s.next - 1
	return s, nil
}

// Next returns the next sequence number. On a write error it still
// returns a number (in-memory) together with the error.
func (s *seqStore) Next() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.next
	s.next++
	if n <= s.reserved {
		return n, nil
	}
	s.reserved = n + seqBlock - 1
	return n, s.writeLocked(s.reserved)
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

// Close persists the exact last number used, so a clean restart leaves
// no gap.
func (s *seqStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeLocked(s.next - 1)
}
