package outbox

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer is a log sink safe for the outbox's goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func openTest(t testing.TB, dir string, opts Options) (*Outbox, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	o, err := Open(dir, opts, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = o.Close() })
	return o, logs
}

func meta(seq uint64, at time.Time) Meta {
	return Meta{Seq: seq, ID: fmt.Sprintf("id-%d", seq), Event: "ZChange", Time: at}
}

func envelope(seq uint64, size int) []byte {
	s := fmt.Sprintf(`{"seq":%d,"pad":"`, seq)
	pad := max(0, size-len(s)-2)
	return []byte(s + strings.Repeat("x", pad) + `"}`)
}

func appendRange(t testing.TB, o *Outbox, from, to uint64, size int, at time.Time) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		if err := o.Append(envelope(seq, size), meta(seq, at)); err != nil {
			t.Fatalf("Append seq %d: %v", seq, err)
		}
	}
}

func peekAll(t testing.TB, o *Outbox) []Record {
	t.Helper()
	recs, err := o.Peek(1 << 30)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	return recs
}

func checkSeqs(t testing.TB, recs []Record, from, to uint64) {
	t.Helper()
	if want := int(to - from + 1); len(recs) != want {
		t.Fatalf("got %d records, want %d (seq %d..%d)", len(recs), want, from, to)
	}
	for i, r := range recs {
		want := from + uint64(i)
		if r.Seq != want {
			t.Fatalf("record %d has seq %d, want %d", i, r.Seq, want)
		}
		if r.ID != fmt.Sprintf("id-%d", want) || r.Event != "ZChange" {
			t.Fatalf("record %d has id %q event %q", i, r.ID, r.Event)
		}
		if !bytes.Equal(r.Data, envelope(want, len(r.Data))) {
			t.Fatalf("record %d data = %q", i, r.Data)
		}
	}
}

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestOutboxAppendPeekAck(t *testing.T) {
	o, _ := openTest(t, t.TempDir(), Options{})
	now := time.Now()
	appendRange(t, o, 1, 5, 200, now)
	if got := o.Len(); got != 5 {
		t.Fatalf("Len = %d, want 5", got)
	}
	first, err := o.Peek(2)
	if err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, first, 1, 2)
	// Peek does not remove.
	checkSeqs(t, peekAll(t, o), 1, 5)

	if err := o.Ack(3); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, peekAll(t, o), 4, 5)
	if got := o.Len(); got != 2 {
		t.Errorf("Len after Ack(3) = %d, want 2", got)
	}
	// An older ack changes nothing.
	if err := o.Ack(1); err != nil {
		t.Fatal(err)
	}
	if got := o.Len(); got != 2 {
		t.Errorf("Len after Ack(1) = %d, want 2", got)
	}
	if err := o.Ack(5); err != nil {
		t.Fatal(err)
	}
	if got := o.Len(); got != 0 {
		t.Errorf("Len after Ack(5) = %d, want 0", got)
	}
	if recs := peekAll(t, o); len(recs) != 0 {
		t.Errorf("Peek on an empty outbox returned %d records", len(recs))
	}
	if got := o.OldestAge(); got != 0 {
		t.Errorf("OldestAge of an empty outbox = %s, want 0", got)
	}
}

func TestOutboxRejectsSeqNotAbove(t *testing.T) {
	o, _ := openTest(t, t.TempDir(), Options{})
	appendRange(t, o, 1, 3, 100, time.Now())
	for _, seq := range []uint64{3, 2} {
		if err := o.Append(envelope(seq, 100), meta(seq, time.Now())); err == nil {
			t.Errorf("Append seq %d after seq 3 succeeded, want an error", seq)
		}
	}
	if got := o.Len(); got != 3 {
		t.Errorf("Len = %d after rejected appends, want 3", got)
	}
}

func TestOutboxRestartReplaysUnacked(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4096, MaxBytes: 1 << 20}
	o, err := Open(dir, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, o, 1, 40, 300, time.Now())
	if err := o.Ack(17); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	o2, _ := openTest(t, dir, opts)
	checkSeqs(t, peekAll(t, o2), 18, 40)
	if got := o2.LastSeq(); got != 40 {
		t.Errorf("LastSeq after reopen = %d, want 40", got)
	}
	if got := o2.Len(); got != 23 {
		t.Errorf("Len after reopen = %d, want 23", got)
	}
	// New records go after the replayed ones.
	appendRange(t, o2, 41, 42, 300, time.Now())
	checkSeqs(t, peekAll(t, o2), 18, 42)
}

func TestOutboxRestartWithoutClose(t *testing.T) {
	// A process killed without Close has written every record to the
	// kernel, which is all a reopen sees too.
	dir := t.TempDir()
	o, err := Open(dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, o, 1, 10, 200, time.Now())
	if err := o.Ack(4); err != nil {
		t.Fatal(err)
	}
	o2, _ := openTest(t, dir, Options{})
	checkSeqs(t, peekAll(t, o2), 5, 10)
	_ = o.Close()
}

func TestOutboxTornTailTruncated(t *testing.T) {
	dir := t.TempDir()
	o, err := Open(dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, o, 1, 3, 200, time.Now())
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segmentFiles(t, dir)
	if len(segs) != 1 {
		t.Fatalf("segment files = %v, want one", segs)
	}
	// Half of a fourth record, as a crash in the middle of a write leaves it.
	torn := appendRecord(nil, envelope(4, 200), meta(4, time.Now()))
	f, err := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(torn[:len(torn)/2]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before, _ := os.Stat(segs[0])

	o2, logs := openTest(t, dir, Options{})
	checkSeqs(t, peekAll(t, o2), 1, 3)
	after, _ := os.Stat(segs[0])
	if want := before.Size() - int64(len(torn)/2); after.Size() != want {
		t.Errorf("segment size after Open = %d, want %d (torn bytes cut)", after.Size(), want)
	}
	if !strings.Contains(logs.String(), "torn record") {
		t.Errorf("Open logged no line about the torn record:\n%s", logs)
	}
	// The outbox keeps working after the cut.
	appendRange(t, o2, 4, 5, 200, time.Now())
	if err := o2.Close(); err != nil {
		t.Fatal(err)
	}
	o3, _ := openTest(t, dir, Options{})
	checkSeqs(t, peekAll(t, o3), 1, 5)
}

func TestOutboxCorruptTailCRC(t *testing.T) {
	dir := t.TempDir()
	o, err := Open(dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, o, 1, 3, 200, time.Now())
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	seg := segmentFiles(t, dir)[0]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// Flip one byte in the data of the last record.
	data[len(data)-5] ^= 0xff
	if err := os.WriteFile(seg, data, 0o640); err != nil {
		t.Fatal(err)
	}
	o2, _ := openTest(t, dir, Options{})
	checkSeqs(t, peekAll(t, o2), 1, 2)
	if got := o2.LastSeq(); got != 2 {
		t.Errorf("LastSeq = %d, want 2 after the corrupt record was cut", got)
	}
}

func TestOutboxRejectsForeignSegment(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000001.seg"), []byte("not an outbox"), 0o640); err != nil {
		t.Fatal(err)
	}
	if o, err := Open(dir, Options{}, nil); err == nil {
		o.Close()
		t.Fatal("Open accepted a segment file with a foreign header")
	}
}

func TestOutboxAckDeletesSegments(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4096, MaxBytes: 1 << 20}
	o, _ := openTest(t, dir, opts)
	appendRange(t, o, 1, 60, 300, time.Now())
	total := len(segmentFiles(t, dir))
	if total < 4 {
		t.Fatalf("60 records of 300 bytes made %d segments of 4 KiB, want at least 4", total)
	}
	if err := o.Ack(30); err != nil {
		t.Fatal(err)
	}
	mid := len(segmentFiles(t, dir))
	if mid >= total || mid < 2 {
		t.Errorf("after acking half: %d segment files of %d, want fewer but at least 2", mid, total)
	}
	if err := o.Ack(60); err != nil {
		t.Fatal(err)
	}
	if got := segmentFiles(t, dir); len(got) != 1 {
		t.Errorf("after acking all: segment files %v, want only the active one", got)
	}
	if got := o.Bytes(); got > opts.SegmentBytes {
		t.Errorf("Bytes after acking all = %d, want at most one segment", got)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	o2, _ := openTest(t, dir, opts)
	if got := o2.Len(); got != 0 {
		t.Errorf("Len after reopen = %d, want 0", got)
	}
	if got := o2.LastSeq(); got != 60 {
		t.Errorf("LastSeq after reopen = %d, want 60: seq must not go back", got)
	}
}

func TestOutboxLastSeqAfterRotation(t *testing.T) {
	// Every record acked and the active segment rotated away: only the ack
	// file remembers the last seq.
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4096, MaxBytes: 1 << 20}
	o, err := Open(dir, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, o, 1, 13, 300, time.Now())
	if err := o.Ack(13); err != nil {
		t.Fatal(err)
	}
	appendRange(t, o, 14, 14, 300, time.Now())
	if err := o.Ack(14); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o2, _ := openTest(t, dir, opts)
	if got := o2.LastSeq(); got != 14 {
		t.Errorf("LastSeq = %d, want 14", got)
	}
}

func TestOutboxMaxBytesDropsOldest(t *testing.T) {
	dir := t.TempDir()
	var dropMu sync.Mutex
	drops := map[string]int{}
	opts := Options{MaxBytes: 64 << 10, SegmentBytes: 16 << 10, OnDrop: func(n int, reason string) {
		dropMu.Lock()
		defer dropMu.Unlock()
		drops[reason] += n
	}}
	o, logs := openTest(t, dir, opts)
	const n = 300
	appendRange(t, o, 1, n, 1000, time.Now())

	if got := o.Bytes(); got > opts.MaxBytes {
		t.Errorf("Bytes = %d, above MaxBytes %d", got, opts.MaxBytes)
	}
	dropped := o.Dropped()
	if dropped == 0 {
		t.Fatal("no records dropped after writing 300 KB into a 64 KiB outbox")
	}
	dropMu.Lock()
	reported := drops[DropMaxBytes]
	dropMu.Unlock()
	if uint64(reported) != dropped {
		t.Errorf("OnDrop reported %d max_bytes drops, Dropped = %d", reported, dropped)
	}
	if got := uint64(o.Len()) + dropped; got != n {
		t.Errorf("Len + Dropped = %d, want %d: records lost without being counted", got, n)
	}
	// What is left is the newest records, in order, without holes.
	checkSeqs(t, peekAll(t, o), dropped+1, n)
	if !strings.Contains(logs.String(), "oldest undelivered events dropped") {
		t.Errorf("no log line for the drops:\n%s", logs)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	// Drops burst over several segments; Close logs the ones not yet
	// logged.
	if got := strings.Count(logs.String(), "oldest undelivered events dropped"); got < 1 || got > 2 {
		t.Errorf("drop log lines = %d, want 1 or 2 for one burst", got)
	}
}

// Ack after Peek takes each record's seq and size from what Peek read.
// That must stay right when Ack crosses segment boundaries, and when
// Append drops the segments that Peek read from.
func TestOutboxAckAfterPeekAndDrop(t *testing.T) {
	opts := Options{MaxBytes: 64 << 10, SegmentBytes: 16 << 10}
	o, _ := openTest(t, t.TempDir(), opts)
	appendRange(t, o, 1, 40, 1000, time.Now())
	checkSeqs(t, peekAll(t, o), 1, 40)
	// Seq 20 lies in the second segment.
	if err := o.Ack(20); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, peekAll(t, o), 21, 40)

	appendRange(t, o, 41, 120, 1000, time.Now())
	dropped := o.Dropped()
	if dropped == 0 {
		t.Fatal("no records dropped after writing 100 KB more into a 64 KiB outbox")
	}
	first := 20 + dropped + 1
	if err := o.Ack(first); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, peekAll(t, o), first+1, 120)
	if got := uint64(o.Len()); got != 120-first {
		t.Errorf("Len = %d, want %d", got, 120-first)
	}
	if err := o.Ack(120); err != nil {
		t.Fatal(err)
	}
	if got := o.Len(); got != 0 {
		t.Errorf("Len after acking all = %d, want 0", got)
	}
}

func TestOutboxMaxAgeDrops(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	advance := func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(d)
	}
	dropped := 0
	o, _ := openTest(t, dir, Options{MaxAge: time.Hour, Now: clock, OnDrop: func(n int, reason string) {
		if reason == DropMaxAge {
			dropped += n
		}
	}})
	appendRange(t, o, 1, 5, 100, clock())
	advance(30 * time.Minute)
	appendRange(t, o, 6, 8, 100, clock())
	if got := o.OldestAge(); got != 30*time.Minute {
		t.Errorf("OldestAge = %s, want 30m", got)
	}
	advance(45 * time.Minute)

	checkSeqs(t, peekAll(t, o), 6, 8)
	if dropped != 5 {
		t.Errorf("OnDrop reported %d max_age drops, want 5", dropped)
	}
	if got := o.OldestAge(); got != 45*time.Minute {
		t.Errorf("OldestAge after expiry = %s, want 45m", got)
	}
}

func TestOutboxNoAgeLimit(t *testing.T) {
	o, _ := openTest(t, t.TempDir(), Options{MaxAge: -1})
	appendRange(t, o, 1, 3, 100, time.Now().Add(-365*24*time.Hour))
	checkSeqs(t, peekAll(t, o), 1, 3)
}

func TestOutboxFsyncEveryRoundTrip(t *testing.T) {
	dir := t.TempDir()
	o, err := Open(dir, Options{Fsync: FsyncEvery}, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, o, 1, 20, 500, time.Now())
	if err := o.Ack(10); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o2, _ := openTest(t, dir, Options{Fsync: FsyncEvery})
	checkSeqs(t, peekAll(t, o2), 11, 20)
}

func TestOutboxClosedErrors(t *testing.T) {
	o, err := Open(t.TempDir(), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Append([]byte("{}"), meta(1, time.Now())); err != ErrClosed {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if _, err := o.Peek(1); err != ErrClosed {
		t.Errorf("Peek after Close = %v, want ErrClosed", err)
	}
	if err := o.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestOutboxRejectsInvalidOptions(t *testing.T) {
	if o, err := Open(t.TempDir(), Options{MaxBytes: 1000}, nil); err == nil {
		o.Close()
		t.Error("Open accepted MaxBytes of 1000")
	}
	if _, err := ParseFsyncPolicy("sometimes"); err == nil {
		t.Error(`ParseFsyncPolicy("sometimes") succeeded`)
	}
	for _, s := range []string{"batch", "every"} {
		p, err := ParseFsyncPolicy(s)
		if err != nil || p.String() != s {
			t.Errorf("ParseFsyncPolicy(%q) = %v, %v", s, p, err)
		}
	}
}

func TestOutboxConcurrentAppendAck(t *testing.T) {
	// The edge appends on the printer goroutine while the publisher peeks
	// and acks; run both under -race.
	o, _ := openTest(t, t.TempDir(), Options{SegmentBytes: 8192, MaxBytes: 1 << 20})
	const n = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seq := uint64(1); seq <= n; seq++ {
			if err := o.Append(envelope(seq, 200), meta(seq, time.Now())); err != nil {
				t.Errorf("Append %d: %v", seq, err)
				return
			}
		}
	}()
	var next uint64 = 1
	deadline := time.Now().Add(30 * time.Second)
	for next <= n && time.Now().Before(deadline) {
		recs, err := o.Peek(16)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Seq != next {
				t.Fatalf("publisher got seq %d, want %d", r.Seq, next)
			}
			next++
		}
		if len(recs) > 0 {
			if err := o.Ack(recs[len(recs)-1].Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	<-done
	if next != n+1 {
		t.Fatalf("publisher reached seq %d of %d", next-1, n)
	}
	if got := o.Len(); got != 0 {
		t.Errorf("Len after acking everything = %d", got)
	}
}

// FuzzOutboxOpen appends arbitrary bytes to a valid segment: Open must
// keep the valid records and never fail or panic on a damaged tail.
func FuzzOutboxOpen(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0})
	f.Add(appendRecord(nil, []byte("{}"), meta(9, time.Unix(0, 0))))
	f.Add(bytes.Repeat([]byte{0xff}, 40))
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		o, err := Open(dir, Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		appendRange(t, o, 1, 3, 64, time.Unix(1000, 0))
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		seg := segmentFiles(t, dir)[0]
		fh, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.Write(tail); err != nil {
			t.Fatal(err)
		}
		fh.Close()

		o2, err := Open(dir, Options{MaxAge: -1}, nil)
		if err != nil {
			t.Fatalf("Open after appending %d bytes: %v", len(tail), err)
		}
		defer o2.Close()
		recs := peekAll(t, o2)
		if len(recs) < 3 {
			t.Fatalf("only %d of the 3 valid records survived", len(recs))
		}
		checkSeqs(t, recs[:3], 1, 3)
		for i := 1; i < len(recs); i++ {
			if recs[i].Seq <= recs[i-1].Seq {
				t.Fatalf("seq %d after %d", recs[i].Seq, recs[i-1].Seq)
			}
		}
	})
}

// BenchmarkOutboxAppendAck measures the cost of one event through the
// outbox: Append on the printer side, then Peek and Ack on the publisher
// side, for both fsync policies.
func BenchmarkOutboxAppendAck(b *testing.B) {
	data := envelope(0, 600) // about the size of a ZChange envelope
	for _, policy := range []FsyncPolicy{FsyncBatch, FsyncEvery} {
		b.Run(policy.String(), func(b *testing.B) {
			o, _ := openTest(b, b.TempDir(), Options{Fsync: policy})
			now := time.Now()
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				seq := uint64(i + 1)
				if err := o.Append(data, Meta{Seq: seq, ID: "0193a6f0-0000-7000-8000-000000000000", Event: "ZChange", Time: now}); err != nil {
					b.Fatal(err)
				}
				recs, err := o.Peek(1)
				if err != nil || len(recs) != 1 {
					b.Fatalf("Peek: %v, %d records", err, len(recs))
				}
				if err := o.Ack(recs[0].Seq); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func peekAfter(t testing.TB, o *Outbox, after uint64, n int) []Record {
	t.Helper()
	recs, err := o.PeekAfter(after, n)
	if err != nil {
		t.Fatalf("PeekAfter(%d, %d): %v", after, n, err)
	}
	return recs
}

// Two readers of PeekAfter, one far ahead of the other, across segment
// boundaries, with Ack removing what both took and Append dropping the
// oldest segments under MaxBytes.
func TestOutboxPeekAfterTwoReaders(t *testing.T) {
	dir := t.TempDir()
	o, _ := openTest(t, dir, Options{SegmentBytes: 4096, MaxBytes: 64 << 10})
	appendRange(t, o, 1, 60, 300, time.Now())

	checkSeqs(t, peekAfter(t, o, 0, 10), 1, 10)
	// The leading reader walks to the end in batches, from its cursor.
	var lead uint64
	for {
		recs := peekAfter(t, o, lead, 7)
		if len(recs) == 0 {
			break
		}
		checkSeqs(t, recs, lead+1, min(lead+7, 60))
		lead = recs[len(recs)-1].Seq
	}
	if lead != 60 {
		t.Fatalf("leading reader stopped at seq %d, want 60", lead)
	}
	// Without a cursor for seq 33, the read starts from the head and
	// skips the older segments.
	checkSeqs(t, peekAfter(t, o, 33, 5), 34, 38)

	// The lagging reader took 1..10. Ack of what both took removes it.
	if err := o.Ack(10); err != nil {
		t.Fatal(err)
	}
	if got := o.Len(); got != 50 {
		t.Errorf("Len after Ack(10) = %d, want 50", got)
	}
	checkSeqs(t, peekAfter(t, o, 10, 100), 11, 60)
	if recs := peekAfter(t, o, 60, 10); len(recs) != 0 {
		t.Errorf("PeekAfter(60) returned %d records, want none before the next Append", len(recs))
	}
	appendRange(t, o, 61, 62, 300, time.Now())
	checkSeqs(t, peekAfter(t, o, 60, 10), 61, 62)
	// Peek still returns from the head, and Ack after it works.
	checkSeqs(t, peekAll(t, o), 11, 62)
	if err := o.Ack(62); err != nil {
		t.Fatal(err)
	}
	if got := o.Len(); got != 0 {
		t.Errorf("Len after Ack(62) = %d, want 0", got)
	}

	// A cursor into a segment that MaxBytes dropped is not used: the read
	// starts from the new head, after the drop.
	appendRange(t, o, 63, 70, 300, time.Now())
	checkSeqs(t, peekAfter(t, o, 65, 2), 66, 67)
	appendRange(t, o, 71, 400, 300, time.Now())
	if o.Dropped() == 0 {
		t.Fatal("no records dropped after writing 100 KB into a 64 KiB outbox")
	}
	recs := peekAfter(t, o, 67, 1000)
	if len(recs) == 0 {
		t.Fatal("PeekAfter(67) after the drop returned nothing")
	}
	checkSeqs(t, recs, recs[0].Seq, 400)
	if first := peekAll(t, o)[0].Seq; recs[0].Seq != first {
		t.Errorf("PeekAfter(67) after the drop starts at seq %d, want the head %d", recs[0].Seq, first)
	}
}
