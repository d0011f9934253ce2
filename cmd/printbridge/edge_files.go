package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/edge"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/storage"
)

// newFileStorage watches the edge's files directory. Its events go
// through the edge with the printer's context; edgeOf and printerOf are
// read when an event fires, after the edge and the printer exist.
func newFileStorage(o edgeOptions, log *slog.Logger, edgeOf func() *edge.Edge, printerOf func() *printer.Printer) (*storage.Storage, error) {
	var st *storage.Storage
	emit := func(name string, payload bridge.Payload) {
		e, p := edgeOf(), printerOf()
		if e == nil || p == nil {
			return
		}
		e.Emit(name, payload, p.Context())
		if name == bridge.EventFileRemovedName {
			// A removed file can no longer be printed, so it is
			// deselected, as OctoPrint does.
			if path, ok := payload.Get("path"); ok {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					if err := p.Deselect(ctx, path.(string)); err != nil {
						log.Warn("removed file stays selected", "path", path, "error", err)
					}
				}()
			}
		}
	}
	st, err := storage.New(storage.Config{
		Dir: o.filesDir, PollInterval: o.watchInterval, Emit: emit, Logger: log.With("subsystem", "storage"),
		Busy: func(path string) bool {
			p := printerOf()
			if p == nil {
				return false
			}
			s := p.Snapshot()
			return s.Job != nil && s.Job.Origin == "local" && s.Job.Path == path && (s.Flags.Printing || s.Flags.Paused || s.Flags.Cancelling)
		},
	})
	return st, err
}

// printStatistics wraps the printer's event function so that every
// finished print records its real print time in the file's metadata
// (MetadataStatisticsUpdated).
func printStatistics(emit printer.EventFunc, st *storage.Storage, log *slog.Logger) printer.EventFunc {
	return func(name string, payload bridge.Payload, ctx bridge.Context) {
		emit(name, payload, ctx)
		if name != bridge.EventPrintDone && name != bridge.EventPrintFailed {
			return
		}
		if origin, _ := payload.Get("origin"); origin != "local" {
			// SD card files have no metadata in the files directory.
			return
		}
		path, _ := payload.Get("path")
		t, _ := payload.Get("time")
		p, ok1 := path.(string)
		secs, ok2 := t.(float64)
		if !ok1 || !ok2 {
			return
		}
		done := name == bridge.EventPrintDone
		// The printer's owner goroutine must not wait for the metadata
		// file's fsync.
		go func() {
			if err := st.StatisticsAfterPrint(p, secs, done); err != nil {
				log.Warn("recording print statistics failed", "path", p, "error", err)
			}
		}()
	}
}
