// Package residency drops the pages of the executable that start-up
// touched from a long-running process's resident set.
//
// The kernel maps a cached executable in windows of up to 64 KiB around
// each page that a process touches (fault_around_bytes). So the package
// initialisers of every linked package, the flag parsing and the config
// loading leave code and read-only data resident that the process never
// runs again. On Linux, DropStartupPages unmaps the executable's read-only
// mappings once the process is up. The kernel maps a page again from the
// page cache on the next access, so only what the running process uses
// comes back. The pages stay in the page cache, shared with the other
// processes of the binary.
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
// read-only mappings and logs what it dropped. It is a no-op on systems
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
