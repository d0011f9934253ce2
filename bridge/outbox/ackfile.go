package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// The ack file stores the highest removed sequence number (acknowledged or
// dropped) in two 32-byte slots written alternately in place, each
// [8 generation][8 seq][4 CRC-32C of the 16 bytes before it]. A torn write
// can only spoil the slot being written, and Open takes the valid slot with
// the higher generation.
const (
	ackSlotSize = 32
	ackFileName = "ack"
)

type ackFile struct {
	f     *os.File
	gen   uint64
	seq   uint64
	dirty bool // written since the last fsync
}

func openAckFile(path string) (*ackFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open outbox ack file: %w", err)
	}
	a := &ackFile{f: f}
	var buf [2 * ackSlotSize]byte
	n, err := f.ReadAt(buf[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, fmt.Errorf("read outbox ack file %s: %w", path, err)
	}
	for slot := 0; slot < 2; slot++ {
		b := buf[slot*ackSlotSize : (slot+1)*ackSlotSize]
		if n < (slot+1)*ackSlotSize {
			break
		}
		if crc32.Checksum(b[:16], crcTable()) != binary.LittleEndian.Uint32(b[16:20]) {
			continue
		}
		if gen := binary.LittleEndian.Uint64(b[0:8]); gen > a.gen {
			a.gen = gen
			a.seq = binary.LittleEndian.Uint64(b[8:16])
		}
	}
	return a, nil
}

// store writes seq to the slot after the current one. It does not fsync.
func (a *ackFile) store(seq uint64) error {
	var b [ackSlotSize]byte
	gen := a.gen + 1
	binary.LittleEndian.PutUint64(b[0:8], gen)
	binary.LittleEndian.PutUint64(b[8:16], seq)
	binary.LittleEndian.PutUint32(b[16:20], crc32.Checksum(b[:16], crcTable()))
	if _, err := a.f.WriteAt(b[:], int64(gen%2)*ackSlotSize); err != nil {
		return fmt.Errorf("write outbox ack file: %w", err)
	}
	a.gen, a.seq, a.dirty = gen, seq, true
	return nil
}

func (a *ackFile) sync() error {
	if !a.dirty {
		return nil
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("fsync outbox ack file: %w", err)
	}
	a.dirty = false
	return nil
}
