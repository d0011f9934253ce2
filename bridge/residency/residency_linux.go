package residency

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// mapping is one entry of /proc/self/smaps.
type mapping struct {
	start, end uintptr
	perms      string
	// major, minor and inode name the mapped file.
	major, minor uint32
	inode        uint64
	rss          int64
	// anonymous is the size of the mapping's pages that no longer come
	// from the file, such as a RELRO segment that the dynamic loader
	// relocated. Dropping those would lose the relocation.
	anonymous int64
}

func dropStartupPages() (Dropped, error) {
	var d Dropped
	var exe unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &exe); err != nil {
		return d, fmt.Errorf("stat /proc/self/exe: %w", err)
	}
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return d, err
	}
	maps, err := parseSmaps(data)
	if err != nil {
		return d, err
	}
	for _, m := range maps {
		if m.inode != exe.Ino || m.major != unix.Major(exe.Dev) || m.minor != unix.Minor(exe.Dev) || !droppable(m) {
			continue
		}
		// MADV_DONTNEED on a private file mapping whose pages were never
		// written drops them, and the next access maps the same bytes
		// from the file again.
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED)
		if errno != 0 {
			return d, fmt.Errorf("madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		d.Mappings++
		d.Bytes += m.rss
		// MADV_RANDOM turns read-around off for the mapping, so a page
		// that is not in the page cache is read from the file alone.
		_, _, errno = unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_RANDOM)
		if errno != 0 {
			return d, fmt.Errorf("madvise %#x-%#x random: %w", m.start, m.end, errno)
		}
	}
	if d.Mappings == 0 {
		return d, nil
	}
	return d, evictExecutable()
}

// evictExecutable drops the executable's pages that no process maps from
// the page cache. The kernel's fault-around maps only pages that are in
// the page cache, so after this a page fault maps the faulting page and
// the cached pages around it, not the whole window of fault_around_bytes
// (64 KiB by default). Pages that other
// processes of the binary map stay cached.
func evictExecutable() error {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer f.Close()
	// FADV_DONTNEED leaves dirty pages in the cache, and a binary that was
	// just built stays dirty until the kernel writes it back, within 30 s
	// by default (vm.dirty_expire_centisecs). For an installed binary the
	// sync has nothing to write.
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("fdatasync %s: %w", f.Name(), err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise %s DONTNEED: %w", f.Name(), err)
	}
	return nil
}

// droppable reports whether a mapping holds only read-only file pages.
func droppable(m mapping) bool {
	return len(m.perms) == 4 && m.perms[1] == '-' && m.perms[3] == 'p' && m.anonymous == 0 && m.rss > 0
}

// parseSmaps reads the header line of each mapping and its Rss and
// Anonymous fields.
func parseSmaps(data []byte) ([]mapping, error) {
	var maps []mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Bytes()
		fields := bytes.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if key, ok := bytes.CutSuffix(fields[0], []byte(":")); ok {
			if len(maps) == 0 || len(fields) < 2 {
				continue
			}
			m := &maps[len(maps)-1]
			switch string(key) {
			case "Rss", "Anonymous":
				kb, err := strconv.ParseInt(string(fields[1]), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("smaps line %q: %w", line, err)
				}
				if string(key) == "Rss" {
					m.rss = kb << 10
				} else {
					m.anonymous = kb << 10
				}
			}
			continue
		}
		m, err := parseHeader(fields)
		if err != nil {
			return nil, fmt.Errorf("smaps line %q: %w", line, err)
		}
		maps = append(maps, m)
	}
	return maps, sc.Err()
}

// parseHeader reads "start-end perms offset dev inode [path]".
func parseHeader(fields [][]byte) (mapping, error) {
	var m mapping
	if len(fields) < 5 {
		return m, fmt.Errorf("%d fields, expected at least 5", len(fields))
	}
	start, end, err := parseHexPair(fields[0], "-", 64)
	if err != nil {
		return m, fmt.Errorf("address range: %w", err)
	}
	major, minor, err := parseHexPair(fields[3], ":", 32)
	if err != nil {
		return m, fmt.Errorf("device: %w", err)
	}
	inode, err := strconv.ParseUint(string(fields[4]), 10, 64)
	if err != nil {
		return m, err
	}

	m.start, m.end, m.perms = uintptr(start), uintptr(end), string(fields[1])
	m.major, m.minor, m.inode = uint32(major), uint32(minor), inode
	return m, nil
}

// parseHexPair reads two hexadecimal numbers of at most bits bits
// separated by sep, such as "00400000-00c1b000" or "fe:00".
func parseHexPair(field []byte, sep string, bits int) (uint64, uint64, error) {
	first, second, ok := bytes.Cut(field, []byte(sep))
	if !ok {
		return 0, 0, fmt.Errorf("%q has no %q", field, sep)
	}
	a, err := strconv.ParseUint(string(first), 16, bits)
	if err != nil {
		return 0, 0, err
	}
	b, err := strconv.ParseUint(string(second), 16, bits)
	if err != nil {
		return 0, 0, err
	}
	return a, b, nil
}
