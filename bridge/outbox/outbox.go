// Package outbox is a bounded, append-only on-disk log of event envelopes
// that have not yet been acknowledged by a broker. The edge appends every
// event, publishes from the oldest unacknowledged record, and acknowledges
// records once the broker has taken them, so events survive a broker
// outage and an edge restart and are delivered in order.
//
// The log is a series of segment files of about Options.SegmentBytes. Each
// record carries a length and a CRC-32C, so a record torn by a crash is
// detected and truncated on Open. The highest removed sequence number is
// kept in a small ack file. Whole segments are deleted once all their
// records are acknowledged or dropped.
//
// Limits: when an Append would take the outbox over Options.MaxBytes, the
// oldest segment is dropped, and records older than Options.MaxAge are
// dropped. Drops are counted, reported to Options.OnDrop and logged.
//
// Memory use is bounded by the number of segments (a few dozen bytes
// each), one read window of 16 KiB (or of the largest record read), the
// Meta of the records that the last Peek returned, and up to maxCursors
// read positions of PeekAfter. Records stay on disk until read.
//
// An Outbox is safe for concurrent use. It starts one goroutine, for
// batched fsync, which Close stops.
package outbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultMaxBytes      = 64 << 20
	DefaultMaxAge        = 7 * 24 * time.Hour
	DefaultSegmentBytes  = 4 << 20
	DefaultFsyncInterval = 100 * time.Millisecond

	// minMaxBytes keeps room for two segments of a useful size.
	minMaxBytes = 64 << 10
	// expireInterval throttles the MaxAge check that Append runs.
	expireInterval = time.Second
	// dropLogInterval is the shortest time between two drop log lines.
	// Drops in between are summed into the next line.
	dropLogInterval = time.Minute
	segmentSuffix   = ".seg"
	// readAhead is how many bytes readLocked fetches at once, so that
	// Peek reads a batch of records of a few hundred bytes each with a
	// few reads instead of one per record.
	readAhead = 16 << 10
)

// FsyncPolicy chooses when appended records are flushed to stable
// storage.
type FsyncPolicy int

const (
	// FsyncBatch fsyncs at most every Options.FsyncInterval, on a
	// goroutine of its own. A killed process loses nothing, because every
	// Append has written its record to the kernel before returning, but a
	// power loss or kernel crash can lose the records of the last
	// interval.
	FsyncBatch FsyncPolicy = iota
	// FsyncEvery fsyncs the segment inside every Append, so an Append that
	// returned nil survives a power loss on storage that honours fsync, at
	// the cost of one fsync per event.
	FsyncEvery
)

// ParseFsyncPolicy parses "batch" or "every".
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	switch s {
	case "batch", "":
		return FsyncBatch, nil
	case "every":
		return FsyncEvery, nil
	}
	return 0, fmt.Errorf("invalid outbox fsync policy %q: use batch or every", s)
}

func (p FsyncPolicy) String() string {
	if p == FsyncEvery {
		return "every"
	}
	return "batch"
}

// Drop reasons passed to Options.OnDrop.
const (
	DropMaxBytes = "max_bytes"
	DropMaxAge   = "max_age"
	DropCorrupt  = "corrupt"
)

// Options configure an Outbox. Zero values take the defaults above.
type Options struct {
	// MaxBytes bounds the size of all segment files together. At least
	// 64 KiB.
	MaxBytes int64
	// MaxAge drops records whose event time is older. Negative keeps
	// records of any age.
	MaxAge time.Duration
	// SegmentBytes is the size at which a new segment file is started;
	// at most MaxBytes/2.
	SegmentBytes int64
	Fsync        FsyncPolicy
	// FsyncInterval is the batch interval of FsyncBatch. The ack file is
	// fsynced at this interval under both policies.
	FsyncInterval time.Duration
	// OnDrop, if set, is called with the number of unacknowledged records
	// dropped and the reason. It runs with the outbox locked, so it must
	// not block or call the Outbox.
	OnDrop func(n int, reason string)
	// Now is the clock of MaxAge, time.Now when nil.
	Now func() time.Time
}

func (o Options) withDefaults() (Options, error) {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxBytes < minMaxBytes {
		return o, fmt.Errorf("invalid outbox max bytes %d: use at least %d", o.MaxBytes, minMaxBytes)
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	o.SegmentBytes = min(o.SegmentBytes, o.MaxBytes/2)
	if o.FsyncInterval <= 0 {
		o.FsyncInterval = DefaultFsyncInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// ErrClosed is returned by the methods of an Outbox after Close.
var ErrClosed = errors.New("outbox is closed")

// segment is the in-memory index of one segment file.
type segment struct {
	num     uint64
	path    string
	size    int64 // valid bytes, magic included
	count   int   // records
	lastSeq uint64
}

// Outbox is an open on-disk outbox. See the package documentation.
type Outbox struct {
	dir  string
	opts Options
	log  *slog.Logger

	// mu guards every field below and the files.
	mu sync.Mutex
	// segs are the segment files, oldest first. The last one is the
	// active segment that Append writes to, and it is never deleted.
	segs   []*segment
	active *os.File
	// reader is a read handle on segment readerNum.
	reader    *os.File
	readerNum uint64
	// window holds the bytes of segment windowNum from windowOff on, as
	// readLocked last read them. A record's bytes never change once
	// appended, so they stay valid until the segment is deleted.
	window    []byte
	windowNum uint64
	windowOff int64
	ack       *ackFile
	// headOff and headIdx locate the oldest unremoved record in segs[0]:
	// its offset, and how many records of segs[0] come before it.
	headOff int64
	headIdx int
	// ahead[aheadNext:] caches the Meta and size of the records from the
	// head on, in log order and across segments, as Peek or
	// loadHeadLocked read them. So Ack and the age check remove the
	// records that Peek returned without reading them again. It is
	// emptied when records are dropped other than from the head.
	ahead     []recordInfo
	aheadNext int
	// cursors maps the seq of the last record that PeekAfter returned to
	// the position after it, so the next PeekAfter from that seq starts
	// there instead of reading every record from the head on.
	cursors map[uint64]cursor
	unacked int
	bytes   int64
	lastSeq uint64
	dirty   bool // appended since the last fsync
	closed  bool
	dropped uint64
	drops   dropLog
	// lastExpire is when Append last checked MaxAge.
	lastExpire time.Time
	wbuf       []byte

	stop chan struct{}
	wg   sync.WaitGroup
}

// Open opens the outbox in dir, creating dir when needed. It scans every
// segment, truncates a torn record at the end of a segment, and positions
// the outbox at the oldest unacknowledged record, which Peek returns
// first. log may be nil.
func Open(dir string, opts Options, log *slog.Logger) (*Outbox, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create outbox directory %s: %w", dir, err)
	}
	o := &Outbox{dir: dir, opts: opts, log: log.With("outbox", dir), stop: make(chan struct{})}
	o.ack, err = openAckFile(filepath.Join(dir, ackFileName))
	if err != nil {
		return nil, err
	}
	if err := o.load(); err != nil {
		o.closeFiles()
		return nil, err
	}
	o.wg.Add(1)
	go o.syncLoop()
	if o.unacked > 0 {
		o.log.Info("outbox opened with unacknowledged events", "count", o.unacked, "bytes", o.bytes,
			"first_seq", o.ack.seq+1, "last_seq", o.lastSeq)
	}
	return o, nil
}

// load scans the segment files and opens the active one.
func (o *Outbox) load() error {
	nums, err := listSegments(o.dir)
	if err != nil {
		return err
	}
	acked := o.ack.seq
	o.lastSeq = acked
	for i, num := range nums {
		seg := &segment{num: num, path: o.segmentPath(num)}
		consumed, consumedOff, err := o.scan(seg, acked, i == len(nums)-1)
		if err != nil {
			return err
		}
		if consumed < seg.count {
			// Only a prefix of the log can be acknowledged; headIdx
			// counts within the first segment only.
			acked = 0
		}
		if seg.count > 0 {
			o.lastSeq = max(o.lastSeq, seg.lastSeq)
		}
		if len(o.segs) == 0 {
			o.headOff, o.headIdx = consumedOff, consumed
		}
		o.segs = append(o.segs, seg)
		o.bytes += seg.size
		o.unacked += seg.count - consumed
		// A fully removed segment is deleted unless it is the last one.
		if len(o.segs) == 1 && consumed == seg.count && i < len(nums)-1 {
			if err := o.removeFirstLocked(); err != nil {
				return err
			}
		}
	}
	if len(o.segs) == 0 {
		return o.createSegmentLocked(1)
	}
	last := o.segs[len(o.segs)-1]
	f, err := os.OpenFile(last.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open outbox segment for appending: %w", err)
	}
	o.active = f
	return nil
}

func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list outbox directory %s: %w", dir, err)
	}
	var nums []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segmentSuffix) || !e.Type().IsRegular() {
			continue
		}
		num, err := strconv.ParseUint(strings.TrimSuffix(name, segmentSuffix), 10, 64)
		if err != nil {
			continue
		}
		nums = append(nums, num)
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	return nums, nil
}

func (o *Outbox) segmentPath(num uint64) string {
	return filepath.Join(o.dir, fmt.Sprintf("%020d%s", num, segmentSuffix))
}

// scan reads every record of seg, fills in its index and returns how many
// leading records have seq <= acked and the offset after them. A record
// that is torn or corrupt ends the segment: the file is truncated there.
func (o *Outbox) scan(seg *segment, acked uint64, last bool) (consumed int, consumedOff int64, err error) {
	f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("open outbox segment: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("stat outbox segment: %w", err)
	}
	fileSize := info.Size()
	var magic [len(segmentMagic)]byte
	n, _ := io.ReadFull(f, magic[:])
	if string(magic[:n]) != segmentMagic[:n] {
		return 0, 0, fmt.Errorf("%s is not an outbox segment (wrong header): move it out of %s", seg.path, o.dir)
	}
	if n < len(segmentMagic) {
		// Torn while being created: start it again.
		if err := writeMagic(f); err != nil {
			return 0, 0, err
		}
		seg.size = int64(len(segmentMagic))
		return 0, seg.size, nil
	}

	off := int64(len(segmentMagic))
	consumedOff = off
	r := newRecordReader(f, off)
	var prev uint64
	var scanErr error
	for off < fileSize {
		rec, size, err := r.next(fileSize - off)
		if err == nil && rec.Seq <= prev {
			err = fmt.Errorf("%w: seq %d after %d", errCorrupt, rec.Seq, prev)
		}
		if err != nil {
			scanErr = err
			break
		}
		prev = rec.Seq
		off += size
		seg.count++
		seg.lastSeq = rec.Seq
		if rec.Seq <= acked && consumed == seg.count-1 {
			consumed++
			consumedOff = off
		}
	}
	seg.size = off
	if scanErr != nil {
		if !errors.Is(scanErr, errCorrupt) && !errors.Is(scanErr, io.ErrUnexpectedEOF) && !errors.Is(scanErr, io.EOF) {
			return 0, 0, fmt.Errorf("read outbox segment %s: %w", seg.path, scanErr)
		}
		lost := fileSize - off
		if last {
			o.log.Warn("outbox: truncating a torn record at the end of the last segment", "segment", seg.path,
				"offset", off, "bytes", lost, "error", scanErr)
		} else {
			o.log.Error("outbox: corrupt record inside a segment; the rest of the segment is lost", "segment", seg.path,
				"offset", off, "bytes", lost, "error", scanErr)
		}
		if err := f.Truncate(off); err != nil {
			return 0, 0, fmt.Errorf("truncate outbox segment %s at %d: %w", seg.path, off, err)
		}
		if err := f.Sync(); err != nil {
			return 0, 0, fmt.Errorf("fsync outbox segment %s: %w", seg.path, err)
		}
	}
	return consumed, consumedOff, nil
}

func writeMagic(f *os.File) error {
	if _, err := f.WriteAt([]byte(segmentMagic), 0); err != nil {
		return fmt.Errorf("write outbox segment header: %w", err)
	}
	if err := f.Truncate(int64(len(segmentMagic))); err != nil {
		return fmt.Errorf("truncate outbox segment: %w", err)
	}
	return nil
}

// Append writes one record after the newest. It does not wait for a
// broker, only for the disk: one write, plus one fsync under FsyncEvery,
// plus the fsyncs of a new segment once per SegmentBytes. When the record
// does not fit into MaxBytes, the oldest segment is dropped first. On
// error the record was not appended.
func (o *Outbox) Append(data []byte, m Meta) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	if m.Seq <= o.lastSeq {
		return fmt.Errorf("append event %s to outbox: seq %d is not above the last seq %d", m.ID, m.Seq, o.lastSeq)
	}
	size := int64(encodedSize(data, m))
	if size-recordHeaderSize > MaxRecordBytes || size > o.opts.MaxBytes/2 {
		return fmt.Errorf("append event %s to outbox: record of %d bytes exceeds the limit of %d bytes",
			m.ID, size, min(MaxRecordBytes, o.opts.MaxBytes/2))
	}
	if now := o.opts.Now(); now.Sub(o.lastExpire) >= expireInterval {
		o.lastExpire = now
		o.expireLocked(now)
	}
	if seg := o.segs[len(o.segs)-1]; seg.count > 0 && seg.size+size > o.opts.SegmentBytes {
		if err := o.rotateLocked(); err != nil {
			return err
		}
	}
	if err := o.makeRoomLocked(size); err != nil {
		return err
	}
	seg := o.segs[len(o.segs)-1]

	o.wbuf = appendRecord(o.wbuf[:0], data, m)
	if _, err := o.active.WriteAt(o.wbuf, seg.size); err != nil {
		_ = o.active.Truncate(seg.size)
		return fmt.Errorf("append event %s to outbox segment %s: %w", m.ID, seg.path, err)
	}
	if o.opts.Fsync == FsyncEvery {
		if err := o.active.Sync(); err != nil {
			_ = o.active.Truncate(seg.size)
			return fmt.Errorf("fsync outbox segment %s after event %s: %w", seg.path, m.ID, err)
		}
	} else {
		o.dirty = true
	}
	seg.size += size
	seg.count++
	seg.lastSeq = m.Seq
	o.bytes += size
	o.unacked++
	o.lastSeq = m.Seq
	return nil
}

// makeRoomLocked drops the oldest segments until size more bytes fit.
func (o *Outbox) makeRoomLocked(size int64) error {
	for o.bytes+size > o.opts.MaxBytes {
		if len(o.segs) == 1 {
			if o.segs[0].count == 0 {
				return nil
			}
			if err := o.rotateLocked(); err != nil {
				return err
			}
			if len(o.segs) == 1 {
				// rotateLocked deleted the old segment, which was
				// fully acknowledged.
				continue
			}
		}
		if err := o.dropFirstLocked(DropMaxBytes); err != nil {
			return err
		}
	}
	return nil
}

// rotateLocked starts a new active segment.
func (o *Outbox) rotateLocked() error {
	last := o.segs[len(o.segs)-1]
	if err := o.active.Sync(); err != nil {
		return fmt.Errorf("fsync outbox segment %s before rotating: %w", last.path, err)
	}
	if err := o.active.Close(); err != nil {
		return fmt.Errorf("close outbox segment %s: %w", last.path, err)
	}
	o.active = nil
	o.dirty = false
	if err := o.createSegmentLocked(last.num + 1); err != nil {
		return err
	}
	// The old active segment may have been fully acknowledged already.
	for len(o.segs) > 1 && o.headIdx == o.segs[0].count {
		if err := o.removeFirstLocked(); err != nil {
			return err
		}
	}
	return nil
}

func (o *Outbox) createSegmentLocked(num uint64) error {
	path := o.segmentPath(num)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("create outbox segment: %w", err)
	}
	if err := writeMagic(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync new outbox segment %s: %w", path, err)
	}
	// The directory entry must survive a power loss too.
	if err := syncDir(o.dir); err != nil {
		f.Close()
		return err
	}
	seg := &segment{num: num, path: path, size: int64(len(segmentMagic))}
	if len(o.segs) == 0 {
		o.headOff, o.headIdx = seg.size, 0
	}
	o.segs = append(o.segs, seg)
	o.bytes += seg.size
	o.active = f
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open outbox directory for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync outbox directory %s: %w", dir, err)
	}
	return nil
}

// dropFirstLocked removes the oldest segment with its unacknowledged
// records, counting them as dropped.
func (o *Outbox) dropFirstLocked(reason string) error {
	seg := o.segs[0]
	n := seg.count - o.headIdx
	o.clearAheadLocked()
	if err := o.removeFirstLocked(); err != nil {
		return err
	}
	o.unacked -= n
	o.noteDropLocked(n, reason, seg.lastSeq)
	return nil
}

// removeFirstLocked persists the removal of every record of segs[0] and
// deletes its file. It does not change unacked.
func (o *Outbox) removeFirstLocked() error {
	seg := o.segs[0]
	if seg.count > 0 && seg.lastSeq > o.ack.seq {
		if err := o.ack.store(seg.lastSeq); err != nil {
			return err
		}
	}
	// The ack position must be durable before the records disappear, or a
	// power loss could leave no record of the highest seq used.
	if err := o.ack.sync(); err != nil {
		return err
	}
	if o.reader != nil && o.readerNum == seg.num {
		o.reader.Close()
		o.reader = nil
	}
	if o.windowNum == seg.num {
		o.window = o.window[:0]
	}
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete outbox segment %s: %w", seg.path, err)
	}
	o.bytes -= seg.size
	// The head cache stays valid: callers other than dropFirstLocked
	// remove only a segment whose records are all removed already.
	o.segs = o.segs[1:]
	o.headOff, o.headIdx = int64(len(segmentMagic)), 0
	return nil
}

// Peek returns up to n records from the oldest unacknowledged one, in
// order, without removing them. It first drops records older than MaxAge.
func (o *Outbox) Peek(n int) ([]Record, error) {
	return o.PeekAfter(0, n)
}

// maxCursors bounds the positions that PeekAfter remembers. One reader
// uses one at a time, and the edge runs one reader per bus.
const maxCursors = 8

// cursor is a position in the log: record idx of segment num, at offset
// off.
type cursor struct {
	num uint64
	off int64
	idx int
}

// PeekAfter returns up to n records with a seq above after, in order,
// without removing them. A reader that keeps its own position, such as
// the delivery loop of one bus, passes the seq of the last record it
// took, so several readers advance independently while Ack removes what
// all of them took. It first drops records older than MaxAge.
func (o *Outbox) PeekAfter(after uint64, n int) ([]Record, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, ErrClosed
	}
	o.expireLocked(o.opts.Now())
	if o.unacked == 0 || n <= 0 {
		return nil, nil
	}

	si, off, idx := o.startAfterLocked(after)
	out := make([]Record, 0, min(n, o.unacked))
	// Records read from the head on fill the head cache as in Peek, so
	// that Ack does not read them again.
	caching := si == 0 && idx == o.headIdx
	for len(out) < n && si < len(o.segs) {
		seg := o.segs[si]
		if idx >= seg.count {
			if si == len(o.segs)-1 {
				break
			}
			si, off, idx = si+1, int64(len(segmentMagic)), 0
			continue
		}
		rec, size, err := o.readLocked(seg, off, true)
		if err != nil {
			if len(out) > 0 {
				break
			}
			if errors.Is(err, errCorrupt) && si == 0 {
				o.dropCorruptHeadLocked(err)
				si, off, idx = 0, o.headOff, o.headIdx
				caching = false
				continue
			}
			return nil, err
		}
		off += size
		idx++
		if rec.Seq <= after {
			caching = false
			continue
		}
		if caching {
			if len(out) == 0 {
				o.clearAheadLocked()
			}
			o.ahead = append(o.ahead, recordInfo{Meta: rec.Meta, size: size})
		}
		out = append(out, rec)
	}

	if len(out) > 0 {
		if o.cursors == nil || len(o.cursors) >= maxCursors {
			o.cursors = map[uint64]cursor{}
		}
		o.cursors[out[len(out)-1].Seq] = cursor{num: o.segs[si].num, off: off, idx: idx}
	}
	return out, nil
}

// startAfterLocked returns the position from which PeekAfter(after)
// reads: the cursor that a previous PeekAfter left at after, while its
// segment exists and its record has not been removed, or else the head,
// moved past the segments whose records all have a seq of at most after.
func (o *Outbox) startAfterLocked(after uint64) (si int, off int64, idx int) {
	if c, ok := o.cursors[after]; ok {
		for i, seg := range o.segs {
			if seg.num != c.num {
				continue
			}
			if i > 0 || c.idx >= o.headIdx {
				return i, c.off, c.idx
			}
			break
		}
		delete(o.cursors, after)
	}
	si, off, idx = 0, o.headOff, o.headIdx
	for si < len(o.segs)-1 && o.segs[si].lastSeq <= after {
		si, off, idx = si+1, int64(len(segmentMagic)), 0
	}
	return si, off, idx
}

// dropCorruptHeadLocked drops the rest of segs[0] after a read found a
// corrupt record at or after the head, which Open had checked: the disk
// changed under the outbox.
func (o *Outbox) dropCorruptHeadLocked(cause error) {
	seg := o.segs[0]
	o.log.Error("outbox: corrupt record found while reading; the rest of the segment is dropped",
		"segment", seg.path, "offset", o.headOff, "error", cause)
	n := seg.count - o.headIdx
	if len(o.segs) == 1 {
		// The active segment stays, emptied of the bad records.
		o.headIdx = seg.count
		o.headOff = seg.size
		o.clearAheadLocked()
		o.unacked -= n
		o.noteDropLocked(n, DropCorrupt, seg.lastSeq)
		if err := o.ack.store(seg.lastSeq); err != nil {
			o.log.Error("outbox: storing the ack position failed", "error", err)
		}
		return
	}
	if err := o.dropFirstLocked(DropCorrupt); err != nil {
		o.log.Error("outbox: deleting a corrupt segment failed", "segment", seg.path, "error", err)
	}
}

// readLocked reads the record at off in seg and returns it with its size.
func (o *Outbox) readLocked(seg *segment, off int64, copyData bool) (Record, int64, error) {
	avail := seg.size - off
	if avail < recordHeaderSize {
		return Record{}, 0, fmt.Errorf("%w: %d bytes at offset %d are too short for a header", errCorrupt, avail, off)
	}
	buf, err := o.readWindowLocked(seg, off, recordHeaderSize)
	if err != nil {
		return Record{}, 0, err
	}
	n, err := parseHeader(buf[:recordHeaderSize], avail-recordHeaderSize)
	if err != nil {
		return Record{}, 0, err
	}
	if total := recordHeaderSize + n; total > len(buf) {
		if buf, err = o.readWindowLocked(seg, off, total); err != nil {
			return Record{}, 0, err
		}
	}
	rec, err := decodeBody(buf[:recordHeaderSize], buf[recordHeaderSize:recordHeaderSize+n], copyData)
	if err != nil {
		return Record{}, 0, err
	}
	return rec, int64(recordHeaderSize + n), nil
}

// readWindowLocked returns the bytes of seg from off on, at least need of
// them, which must not run past seg.size. It reads from the file only
// when the window does not hold them, and then fetches readAhead bytes or
// more, up to seg.size.
func (o *Outbox) readWindowLocked(seg *segment, off int64, need int) ([]byte, error) {
	if o.windowNum == seg.num && off >= o.windowOff && off+int64(need) <= o.windowOff+int64(len(o.window)) {
		return o.window[off-o.windowOff:], nil
	}
	if o.reader == nil || o.readerNum != seg.num {
		if o.reader != nil {
			o.reader.Close()
			o.reader = nil
		}
		f, err := os.Open(seg.path)
		if err != nil {
			return nil, fmt.Errorf("open outbox segment for reading: %w", err)
		}
		o.reader, o.readerNum = f, seg.num
	}
	size := int(min(seg.size-off, int64(max(readAhead, need))))
	if cap(o.window) < size {
		o.window = make([]byte, size)
	}
	o.window = o.window[:size]
	if _, err := o.reader.ReadAt(o.window, off); err != nil {
		o.window = o.window[:0]
		return nil, fmt.Errorf("read outbox segment %s at %d: %w", seg.path, off, err)
	}
	o.windowNum, o.windowOff = seg.num, off
	return o.window, nil
}

// recordInfo is the Meta and on-disk size of a record, without its
// envelope.
type recordInfo struct {
	Meta
	size int64
}

// loadHeadLocked fills the head cache, so that headLocked returns the
// oldest unremoved record. The outbox must not be empty.
func (o *Outbox) loadHeadLocked() error {
	if o.aheadNext < len(o.ahead) {
		return nil
	}
	rec, size, err := o.readLocked(o.segs[0], o.headOff, false)
	if err != nil {
		return err
	}
	o.clearAheadLocked()
	o.ahead = append(o.ahead, recordInfo{Meta: rec.Meta, size: size})
	return nil
}

// headLocked returns the oldest unremoved record, which loadHeadLocked
// has read.
func (o *Outbox) headLocked() *recordInfo { return &o.ahead[o.aheadNext] }

func (o *Outbox) clearAheadLocked() {
	clear(o.ahead) // drops the strings of the records
	o.ahead, o.aheadNext = o.ahead[:0], 0
}

// advanceLocked removes the head record, which loadHeadLocked has read.
func (o *Outbox) advanceLocked() error {
	o.headOff += o.headLocked().size
	o.headIdx++
	o.unacked--
	o.aheadNext++
	for len(o.segs) > 1 && o.headIdx == o.segs[0].count {
		if err := o.removeFirstLocked(); err != nil {
			return err
		}
	}
	return nil
}

// Ack removes every record with seq <= upTo. The position is written to
// the ack file at once and fsynced with the next batch, so a crash can
// bring back recently acknowledged records (delivered twice, never lost).
func (o *Outbox) Ack(upTo uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	var removed uint64
	for o.unacked > 0 {
		if err := o.loadHeadLocked(); err != nil {
			return fmt.Errorf("ack outbox records up to seq %d: %w", upTo, err)
		}
		if o.headLocked().Seq > upTo {
			break
		}
		removed = o.headLocked().Seq
		if err := o.advanceLocked(); err != nil {
			return fmt.Errorf("ack outbox records up to seq %d: %w", upTo, err)
		}
	}
	if removed > o.ack.seq {
		if err := o.ack.store(removed); err != nil {
			return err
		}
	}
	return nil
}

// expireLocked drops head records older than MaxAge.
func (o *Outbox) expireLocked(now time.Time) {
	if o.opts.MaxAge < 0 {
		return
	}
	cutoff := now.Add(-o.opts.MaxAge)
	n := 0
	var last uint64
	for o.unacked > 0 {
		if err := o.loadHeadLocked(); err != nil {
			o.log.Warn("outbox: reading the oldest record for the age check failed", "error", err)
			break
		}
		if !o.headLocked().Time.Before(cutoff) {
			break
		}
		last = o.headLocked().Seq
		if err := o.advanceLocked(); err != nil {
			o.log.Error("outbox: removing an expired record failed", "error", err)
			break
		}
		n++
	}
	if n == 0 {
		return
	}
	if last > o.ack.seq {
		if err := o.ack.store(last); err != nil {
			o.log.Error("outbox: storing the ack position failed", "error", err)
		}
	}
	o.noteDropLocked(n, DropMaxAge, last)
}

// dropLog sums drops between two log lines.
type dropLog struct {
	pending map[string]int
	lastSeq uint64
	lastLog time.Time
}

func (o *Outbox) noteDropLocked(n int, reason string, lastSeq uint64) {
	if n <= 0 {
		return
	}
	o.dropped += uint64(n)
	if o.opts.OnDrop != nil {
		o.opts.OnDrop(n, reason)
	}
	if o.drops.pending == nil {
		o.drops.pending = map[string]int{}
	}
	o.drops.pending[reason] += n
	o.drops.lastSeq = lastSeq
	if now := time.Now(); now.Sub(o.drops.lastLog) >= dropLogInterval {
		o.drops.lastLog = now
		o.flushDropLogLocked()
	}
}

func (o *Outbox) flushDropLogLocked() {
	for reason, n := range o.drops.pending {
		o.log.Warn("outbox: oldest undelivered events dropped", "reason", reason, "count", n,
			"up_to_seq", o.drops.lastSeq, "dropped_total", o.dropped, "max_bytes", o.opts.MaxBytes, "max_age", o.opts.MaxAge)
	}
	clear(o.drops.pending)
}

// Len returns the number of unacknowledged records.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.unacked
}

// Bytes returns the size of the segment files.
func (o *Outbox) Bytes() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bytes
}

// OldestAge returns how long ago the oldest unacknowledged event fired, or
// 0 when the outbox is empty.
func (o *Outbox) OldestAge() time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || o.unacked == 0 || o.loadHeadLocked() != nil {
		return 0
	}
	return max(0, o.opts.Now().Sub(o.headLocked().Time))
}

// LastSeq returns the highest seq ever appended, as far as the outbox
// remembers: the newest record's, or the ack position when every record
// is removed. It is 0 for a new outbox.
func (o *Outbox) LastSeq() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastSeq
}

// Dropped returns how many unacknowledged records were dropped since Open.
func (o *Outbox) Dropped() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}

// Sync fsyncs the active segment and the ack file now.
func (o *Outbox) Sync() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	return o.syncLocked()
}

func (o *Outbox) syncLocked() error {
	if o.dirty {
		if err := o.active.Sync(); err != nil {
			return fmt.Errorf("fsync outbox segment: %w", err)
		}
		o.dirty = false
	}
	return o.ack.sync()
}

// syncLoop runs the batched fsync until Close. The fsync runs without
// the lock, so Append is not held up by it; os.File makes a Sync that
// races with the Close of a rotation safe, and rotation has fsynced the
// file already.
func (o *Outbox) syncLoop() {
	defer o.wg.Done()
	ticker := time.NewTicker(o.opts.FsyncInterval)
	defer ticker.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-ticker.C:
		}
		o.mu.Lock()
		if len(o.drops.pending) > 0 && time.Since(o.drops.lastLog) >= dropLogInterval {
			o.drops.lastLog = time.Now()
			o.flushDropLogLocked()
		}
		var seg, ack *os.File
		if o.dirty {
			seg, o.dirty = o.active, false
		}
		if o.ack.dirty {
			ack, o.ack.dirty = o.ack.f, false
		}
		o.mu.Unlock()
		o.syncFile(seg, true)
		o.syncFile(ack, false)
	}
}

func (o *Outbox) syncFile(f *os.File, segment bool) {
	if f == nil {
		return
	}
	err := f.Sync()
	if err == nil || errors.Is(err, os.ErrClosed) {
		return
	}
	o.log.Error("outbox: fsync failed; retrying at the next interval", "file", f.Name(), "error", err)
	o.mu.Lock()
	defer o.mu.Unlock()
	if segment && f == o.active {
		o.dirty = true
	} else if !segment {
		o.ack.dirty = true
	}
}

// Close fsyncs and closes the outbox. Unacknowledged records stay on disk
// for the next Open.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	o.mu.Unlock()
	close(o.stop)
	o.wg.Wait()

	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushDropLogLocked()
	err := o.syncLocked()
	return errors.Join(err, o.closeFiles())
}

func (o *Outbox) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{o.active, o.reader, o.ack.f} {
		if f != nil {
			if err := f.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	o.active, o.reader = nil, nil
	return errors.Join(errs...)
}

// recordReader reads records sequentially for the scan at Open.
type recordReader struct {
	r   io.Reader
	hdr [recordHeaderSize]byte
	buf []byte
}

func newRecordReader(f *os.File, off int64) *recordReader {
	return &recordReader{r: bufio.NewReaderSize(io.NewSectionReader(f, off, math.MaxInt64-off), 64<<10)}
}

// next reads one record; limit is the number of bytes left in the file.
func (rr *recordReader) next(limit int64) (Record, int64, error) {
	if limit < recordHeaderSize {
		return Record{}, 0, fmt.Errorf("%w: %d bytes at the end are too short for a header", errCorrupt, limit)
	}
	if _, err := io.ReadFull(rr.r, rr.hdr[:]); err != nil {
		return Record{}, 0, err
	}
	n, err := parseHeader(rr.hdr[:], limit-recordHeaderSize)
	if err != nil {
		return Record{}, 0, err
	}
	if cap(rr.buf) < n {
		rr.buf = make([]byte, n)
	}
	body := rr.buf[:n]
	if _, err := io.ReadFull(rr.r, body); err != nil {
		return Record{}, 0, err
	}
	rec, err := decodeBody(rr.hdr[:], body, false)
	if err != nil {
		return Record{}, 0, err
	}
	return rec, int64(recordHeaderSize + n), nil
}
