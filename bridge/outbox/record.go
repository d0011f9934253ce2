package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// On-disk record layout, all integers little-endian:
//
//	[4] body length
//	[4] CRC-32C of the length bytes and the body
//	body:
//	  [8] seq
//	  [8] time, Unix nanoseconds
//	  uvarint length + event id
//	  uvarint length + event name
//	  the envelope bytes (the rest of the body)
//
// The CRC covers the length too, so a torn or overwritten length is
// caught as well as a torn body.
const (
	recordHeaderSize = 8
	// MaxRecordBytes bounds one record's body. A length above it is
	// treated as corruption when reading.
	MaxRecordBytes = 1 << 20
	// segmentMagic starts every segment file, so a stray file in the
	// outbox directory is not read as events.
	segmentMagic = "PBOXSEG1"
)

// crcTable returns the CRC-32C table of the records and the ack file.
// It is a function, not a package variable, so that commands that open no
// outbox run no code of this package at start: package initialisers
// make the executable's pages resident even in commands that never call
// the package (docs/benchmarks.md). crc32.MakeTable builds the Castagnoli
// table once and returns the same one on every call.
func crcTable() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }

// errCorrupt marks a record whose length or CRC is wrong, or a record cut
// short by the end of its file.
var errCorrupt = errors.New("corrupt outbox record")

// Meta identifies one event in the outbox.
type Meta struct {
	// Seq is the event's sequence number. Each Append needs a larger Seq
	// than the one before.
	Seq   uint64
	ID    string
	Event string
	// Time is when the event fired; MaxAge counts from it.
	Time time.Time
}

// Record is one unacknowledged event read back from the outbox.
type Record struct {
	Meta
	// Data is the encoded envelope, a copy owned by the caller.
	Data []byte
}

// encodedSize returns the on-disk size of a record.
func encodedSize(data []byte, m Meta) int {
	return recordHeaderSize + bodySize(data, m)
}

func bodySize(data []byte, m Meta) int {
	return 16 + uvarintLen(len(m.ID)) + len(m.ID) + uvarintLen(len(m.Event)) + len(m.Event) + len(data)
}

func uvarintLen(n int) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], uint64(n))
}

// appendRecord appends the encoded record to dst and returns it.
func appendRecord(dst, data []byte, m Meta) []byte {
	start := len(dst)
	body := bodySize(data, m)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(body))
	dst = append(dst, 0, 0, 0, 0) // CRC, filled in below
	dst = binary.LittleEndian.AppendUint64(dst, m.Seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.Time.UnixNano()))
	dst = binary.AppendUvarint(dst, uint64(len(m.ID)))
	dst = append(dst, m.ID...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Event)))
	dst = append(dst, m.Event...)
	dst = append(dst, data...)
	crc := crc32.Update(0, crcTable(), dst[start:start+4])
	crc = crc32.Update(crc, crcTable(), dst[start+recordHeaderSize:])
	binary.LittleEndian.PutUint32(dst[start+4:], crc)
	return dst
}

// parseHeader returns the body length from a record header after checking
// it against limit, the bytes left in the file after the header.
func parseHeader(hdr []byte, limit int64) (int, error) {
	n := binary.LittleEndian.Uint32(hdr[0:4])
	if n < 16 || n > MaxRecordBytes {
		return 0, fmt.Errorf("%w: body length %d is outside 16..%d", errCorrupt, n, MaxRecordBytes)
	}
	if int64(n) > limit {
		return 0, fmt.Errorf("%w: body length %d runs past the end of the file (%d bytes left)", errCorrupt, n, limit)
	}
	return int(n), nil
}

// decodeBody checks the CRC of a record and decodes it. With copyData
// false, Data aliases body.
func decodeBody(hdr, body []byte, copyData bool) (Record, error) {
	crc := crc32.Update(0, crcTable(), hdr[0:4])
	crc = crc32.Update(crc, crcTable(), body)
	if crc != binary.LittleEndian.Uint32(hdr[4:8]) {
		return Record{}, fmt.Errorf("%w: CRC mismatch", errCorrupt)
	}
	var r Record
	r.Seq = binary.LittleEndian.Uint64(body[0:8])
	r.Time = time.Unix(0, int64(binary.LittleEndian.Uint64(body[8:16])))
	rest := body[16:]
	id, rest, err := readString(rest)
	if err != nil {
		return Record{}, err
	}
	event, rest, err := readString(rest)
	if err != nil {
		return Record{}, err
	}
	r.ID, r.Event = id, event
	if copyData {
		r.Data = append([]byte(nil), rest...)
	} else {
		r.Data = rest
	}
	return r, nil
}

func readString(b []byte) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, fmt.Errorf("%w: bad string length", errCorrupt)
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}
