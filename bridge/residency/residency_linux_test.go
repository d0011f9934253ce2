package residency

import (
	"bufio"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// smapsSample is the shape of /proc/self/smaps on Linux 6.x, cut to the
// fields that matter here, for a static Go binary and one mapping that
// the dynamic loader relocated.
const smapsSample = `00400000-00c1b000 r-xp 00000000 fe:00 1234567                    /usr/local/bin/printbridge
Size:               8300 kB
Rss:                4096 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
00c1b000-0102c000 r--p 0081b000 fe:00 1234567                    /usr/local/bin/printbridge
Size:               4164 kB
Rss:                2048 kB
Anonymous:             0 kB
0102c000-0106f000 rw-p 00c2c000 fe:00 1234567                    /usr/local/bin/printbridge
Size:                268 kB
Rss:                 200 kB
Anonymous:           120 kB
7f0000000000-7f0000021000 r--p 00000000 103:02 42                 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                  64 kB
Anonymous:            12 kB
7ffd3c5a1000-7ffd3c5c2000 rw-p 00000000 00:00 0                          [stack]
Rss:                  16 kB
Anonymous:            16 kB
`

func TestParseSmaps(t *testing.T) {
	maps, err := parseSmaps([]byte(smapsSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 5 {
		t.Fatalf("parsed %d mappings, expected 5: %+v", len(maps), maps)
	}
	text := maps[0]
	if text.start != 0x400000 || text.end != 0xc1b000 {
		t.Errorf("text range %#x-%#x, expected 0x400000-0xc1b000", text.start, text.end)
	}
	if text.perms != "r-xp" {
		t.Errorf("text perms %q, expected r-xp", text.perms)
	}
	if text.major != 0xfe || text.minor != 0 || text.inode != 1234567 {
		t.Errorf("text file %x:%x inode %d, expected fe:0 inode 1234567", text.major, text.minor, text.inode)
	}
	if text.rss != 4096<<10 {
		t.Errorf("text rss %d, expected %d", text.rss, 4096<<10)
	}
	libc := maps[3]
	if libc.major != 0x103 || libc.minor != 2 {
		t.Errorf("libc device %x:%x, expected 103:2", libc.major, libc.minor)
	}
	if libc.anonymous != 12<<10 {
		t.Errorf("libc anonymous %d, expected %d", libc.anonymous, 12<<10)
	}
}

func TestParseSmapsRejectsMalformedHeader(t *testing.T) {
	for _, line := range []string{
		"00400000 r-xp 00000000 fe:00 1234567 /bin/x",
		"00400000-zz r-xp 00000000 fe:00 1234567 /bin/x",
		"00400000-00c1b000 r-xp 00000000 fe00 1234567 /bin/x",
		"00400000-00c1b000 r-xp 00000000 fe:00 inode /bin/x",
		"00400000-00c1b000 r-xp",
	} {
		_, err := parseSmaps([]byte(line + "\nRss: 4 kB\n"))
		if err == nil {
			t.Errorf("line %q parsed without an error", line)
			continue
		}
		if !strings.Contains(err.Error(), line) {
			t.Errorf("error %q does not name the line %q", err, line)
		}
	}
}

func TestDroppable(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    mapping
		want bool
	}{
		{"text", mapping{perms: "r-xp", rss: 4096}, true},
		{"rodata", mapping{perms: "r--p", rss: 4096}, true},
		{"data", mapping{perms: "rw-p", rss: 4096}, false},
		{"shared", mapping{perms: "r--s", rss: 4096}, false},
		{"relocated", mapping{perms: "r--p", rss: 8192, anonymous: 4096}, false},
		{"not resident", mapping{perms: "r-xp"}, false},
		{"short perms", mapping{perms: "r-x", rss: 4096}, false},
	} {
		if got := droppable(tc.m); got != tc.want {
			t.Errorf("%s: droppable(%+v) = %v, expected %v", tc.name, tc.m, got, tc.want)
		}
	}
}

// TestDropStartupPagesLowersRssFile drops the test binary's own pages and
// then runs code that they hold, so a mapping dropped by mistake would
// crash the test process.
func TestDropStartupPagesLowersRssFile(t *testing.T) {
	before := rssFile(t)
	d := DropStartupPages(slog.New(slog.NewTextHandler(io.Discard, nil)))
	after := rssFile(t)
	if d.Mappings == 0 {
		t.Fatal("dropped no mapping of the test binary")
	}
	if d.Bytes <= 0 {
		t.Errorf("dropped %d bytes, expected more than 0", d.Bytes)
	}
	if after >= before {
		t.Errorf("RssFile %d kB after the drop, expected less than the %d kB before", after, before)
	}

	out, err := json.Marshal(map[string]any{"name": "ZChange", "new": 0.4})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`"new":0\.4`).Match(out) {
		t.Errorf("json.Marshal after the drop returned %s", out)
	}
}

// rssFile reads the RssFile line of /proc/self/status, in kB.
func rssFile(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		value, ok := strings.CutPrefix(sc.Text(), "RssFile:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("RssFile line %q: %v", sc.Text(), err)
		}
		return kb
	}
	t.Fatal("/proc/self/status has no RssFile line")
	return 0
}

// pages is 256 KiB of text that nothing but TestTouchAfterDropMapsReadPagesOnly
// reads. An embedded string lies in the executable's read-only data.
//
//go:embed testdata/pages.txt
var pages string

// sink keeps the compiler from leaving out a read.
var sink byte

// TestTouchAfterDropMapsReadPagesOnly reads one byte of pages after the drop,
// and then one two pages further. Before the eviction the kernel's
// fault-around mapped the whole 64 KiB window around the first from the
// page cache, where the freshly built test binary is. Without
// MADV_RANDOM the first read would bring its neighbours into the page
// cache (read-around), and the second fault would map them. Now the two
// pages read are mapped and no other.
func TestTouchAfterDropMapsReadPagesOnly(t *testing.T) {
	var fs unix.Statfs_t
	if err := unix.Statfs("/proc/self/exe", &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC {
		// There the page cache is the file's only copy, so FADV_DONTNEED
		// keeps every page and fault-around maps whole windows.
		t.Skip("the test binary is on tmpfs or ramfs, whose pages cannot be evicted; set GOTMPDIR to a folder on disk to run this test")
	}
	const window = 64 << 10
	if len(pages) < 4*window {
		t.Fatalf("testdata/pages.txt has %d bytes, expected at least %d", len(pages), 4*window)
	}
	DropStartupPages(slog.New(slog.NewTextHandler(io.Discard, nil)))

	pageSize := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.StringData(pages)))
	// The middle of a window that lies inside pages, away from its ends.
	touched := (start+window)&^(window-1) + window/2
	sink = pages[touched-start]
	sink = pages[touched-start+2*pageSize]

	first := touched - 8*pageSize
	present := mappedPages(t, first, 17)
	for _, read := range []int{8, 10} {
		if !present[read] {
			t.Errorf("page %d of the 17, at %#x, was read but is not mapped", read, first+uintptr(read)*pageSize)
		}
	}
	for i, mapped := range present {
		if i != 8 && i != 10 && mapped {
			t.Errorf("page %d of the 17 around the ones read, at %#x, is mapped too", i, first+uintptr(i)*pageSize)
		}
	}
}

// mappedPages reads from /proc/self/pagemap whether each of n pages from
// addr is present in the process's page tables (bit 63 of its entry).
func mappedPages(t *testing.T, addr uintptr, n int) []bool {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 8*n)
	if _, err := f.ReadAt(buf, int64(addr/uintptr(os.Getpagesize()))*8); err != nil {
		t.Fatalf("read /proc/self/pagemap: %v", err)
	}
	present := make([]bool, n)
	for i := range present {
		present[i] = binary.LittleEndian.Uint64(buf[8*i:])&(1<<63) != 0
	}
	return present
}
