package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/printbridge/printbridge/bridge/residency"
)

// gcPercentDefault is the GOGC of the edge and the worker when the
// environment sets none. Their live heap is one or two MB, and Go's
// minimum heap goal is 4 MB times GOGC/100, so with Go's default of 100
// most of their heap is garbage waiting for the next collection. At 50
// the edge's peak RSS while printing a 54 MB file fell by about 2 MiB in
// package bench's run (docs/benchmarks.md), for about twice as many
// collections of a heap that small.
const gcPercentDefault = 50

// applyMemoryDefaults sets the GC target of a long-running command,
// unless the environment sets GOGC. GOMEMLIMIT, when set, still applies as the
// Go runtime reads it. No GOMEMLIMIT is set by default, because limits
// of 8 to 12 MiB raised the worker's measured peak, paced or in a burst.
// Near the limit the GC takes up to half the CPU, so the worker falls
// behind and more events wait in memory (docs/benchmarks.md).
func applyMemoryDefaults() {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(gcPercentDefault)
}

// keepStartupPagesEnv, set to true (1, t, true, as strconv.ParseBool
// reads it), keeps the executable's pages that start-up touched mapped,
// so the peak RSS can be compared with and without dropStartupPages.
const keepStartupPagesEnv = "PRINTBRIDGE_KEEP_STARTUP_PAGES"

// dropStartupPages unmaps the executable's pages that the package
// initialisers, flag parsing and config loading touched. They are about
// a third of the worker's resident set, and the ones that the command
// uses again come back from the file on their next access, without the
// 64 KiB windows of cached pages that the kernel maps around a fault
// (package residency). The edge and the worker call it twice: when the command
// starts, so that their setup peaks from a lower base, and once the
// setup is done.
func dropStartupPages(log *slog.Logger) {
	keep, err := keepStartupPages()
	if err != nil {
		log.Warn("invalid "+keepStartupPagesEnv+"; set it to 1 or true to keep the start-up pages, or to 0 or false to drop them; dropping them",
			"error", err)
	}
	if keep {
		return
	}
	residency.DropStartupPages(log)
}

// keepStartupPages reads keepStartupPagesEnv: false when it is unset or
// invalid.
func keepStartupPages() (bool, error) {
	value, set := os.LookupEnv(keepStartupPagesEnv)
	if !set {
		return false, nil
	}
	keep, err := strconv.ParseBool(value)
	if err != nil {
		return false, fmt.Errorf("%s=%q is not a boolean", keepStartupPagesEnv, value)
	}
	return keep, nil
}
