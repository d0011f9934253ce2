// Package residency drops the pages of the executable that start-up
// touched from a long-running process's resident set.
//
// The kernel maps a cached executable in windows of up to 64 KiB around
// each page that a process touches (fault_around_bytes). So the package
// initialisers of every linked package, the flag parsing and the config
// loading leave code and read-only data resident that the process never
// runs again. On Linux, DropStartupPages unmaps the executable's read-only
// mappings once the process is up, turns read-around off for them
// (MADV_RANDOM) and drops the executable's pages that no process maps
// from the page cache. Fault-around maps only cached pages, so the next
// access to a page reads that page from the file and maps it with the
// cached pages around it, and only what the running process uses comes
// back. Pages that other processes of the binary map stay cached and
// shared. A page that the process touches for the first time afterwards
// costs a read from the disk (a major fault) instead of a minor fault.
package residency

import "log/slog"

// Dropped is the count and size of the mappings that one
// DropStartupPages call unmapped.
type Dropped struct {
	// Mappings is the number of read-only mappings of the executable
	// that were unmapped, Bytes their resident size before.
	Mappings int
	Bytes    int64
}

// DropStartupPages unmaps the resident pages of the executable's
// read-only mappings, evicts the executable's unmapped pages from the
// page cache and logs what it dropped. It is a no-op on systems
// other than Linux. The pages are only memory, never state, so an error
// leaves the process as it was and is logged at info level.
func DropStartupPages(log *slog.Logger) Dropped {
	d, err := dropStartupPages()
	if err != nil {
		log.Info("dropping the executable's start-up pages failed; they stay resident", "error", err)
		return d
	}
	if d.Mappings > 0 {
		log.Debug("dropped the executable's start-up pages", "mappings", d.Mappings, "bytes", d.Bytes)
	}
	return d
}
