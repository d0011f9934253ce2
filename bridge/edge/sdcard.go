package edge

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
)

// sdEntry is one file of the printer's SD card in the done reply of a
// command/file list with origin sdcard. The keys follow OctoPrint's file
// API for SD files (name, path, display, size, date, origin).
type sdEntry struct {
	Name    string `json:"name"`
	Path    string `json:"path"`
	Display string `json:"display"`
	Size    *int64 `json:"size"`
	// Date is the file's FAT timestamp (date<<16 | time) from an
	// EXTENDED_M20 listing, null when the firmware sent none.
	Date   *int64 `json:"date"`
	Origin string `json:"origin"`
}

// handleSDFile runs a command/file message with origin sdcard. The
// printer replies later, so the result goes out through done.
func (c *commandRunner) handleSDFile(ctx context.Context, cmd *bridge.Command, done printer.DoneFunc) error {
	p := c.e.printer
	switch cmd.Action {
	case bridge.FileList:
		return p.SDList(ctx, func(files []printer.SDFile, err error) {
			if err != nil {
				done(nil, err)
				return
			}
			lines := make([]string, 0, len(files))
			for _, f := range files {
				e := sdEntry{Name: f.Name, Path: f.Name, Display: f.Name, Origin: bridge.OriginSDCard}
				if f.LongName != "" {
					e.Display = f.LongName
				}
				if f.Size >= 0 {
					size := f.Size
					e.Size = &size
				}
				if f.Timestamp != 0 {
					ts := f.Timestamp
					e.Date = &ts
				}
				data, _ := json.Marshal(e)
				lines = append(lines, string(data))
			}
			done(lines, nil)
		})
	case bridge.FileUpload:
		return p.SDUploadThen(ctx, printer.SDUploadRequest{Local: cmd.Path, Remote: cmd.Destination, Select: cmd.Select, Print: cmd.Print}, done)
	case bridge.FileRemove:
		return p.SDRemove(ctx, cmd.Path, done)
	}
	return fmt.Errorf("file action %q is not available on the SD card", cmd.Action)
}
