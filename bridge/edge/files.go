package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer/storage"
)

// handleFile runs a command/file message against the files directory.
// Storage fires the file events itself; an add also fires Upload, as
// OctoPrint's upload API does.
func (c *commandRunner) handleFile(ctx context.Context, cmd *bridge.Command) ([]string, error) {
	st := c.e.cfg.Files
	if st == nil {
		return nil, errors.New("file commands are off on this edge: it has no files directory")
	}
	switch cmd.Action {
	case bridge.FileAdd:
		if cmd.Parts > 0 {
			return c.addPart(ctx, cmd)
		}
		var err error
		if cmd.Data != nil {
			err = st.Add(cmd.Path, strings.NewReader(*cmd.Data))
		} else {
			var from string
			from, err = c.importPath(cmd.From)
			if err == nil {
				err = st.AddFrom(cmd.Path, from)
			}
		}
		if err != nil {
			return nil, err
		}
		return nil, c.afterUpload(ctx, cmd)
	case bridge.FileMove:
		return nil, st.Move(cmd.Path, cmd.Destination)
	case bridge.FileCopy:
		return nil, st.Copy(cmd.Path, cmd.Destination)
	case bridge.FileRemove:
		if cmd.UploadID != "" {
			return c.dropUpload(cmd)
		}
		return nil, st.Remove(cmd.Path)
	case bridge.FileMkdir:
		return nil, st.Mkdir(cmd.Path)
	case bridge.FileList:
		var lines []string
		found := cmd.Path == ""
		for _, e := range st.List() {
			if cmd.Path != "" && !strings.HasPrefix(e.Path, strings.TrimSuffix(cmd.Path, "/")+"/") && e.Path != strings.TrimSuffix(cmd.Path, "/") {
				continue
			}
			found = true
			data, _ := json.Marshal(e)
			lines = append(lines, string(data))
		}
		if !found {
			return nil, fmt.Errorf("%q: no such file or folder in the files folder; list without a path to see them all", cmd.Path)
		}
		return lines, nil
	}
	return nil, fmt.Errorf("unknown file action %q", cmd.Action)
}

// importPath resolves a "from" path, which must lie inside ImportDir: a
// command must not be able to copy any file of the edge's host.
func (c *commandRunner) importPath(from string) (string, error) {
	dir := c.e.cfg.ImportDir
	if dir == "" {
		return "", errors.New(`adding a file "from" a path is off; start the edge with --import-dir DIR, or send the G-code in "data"`)
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("import folder %s: %w", dir, err)
	}
	full := from
	if !filepath.IsAbs(full) {
		full = filepath.Join(root, from)
	}
	real, err := filepath.EvalSymlinks(full)
	if err != nil {
		return "", fmt.Errorf("file %q not found in the import folder %s", from, dir)
	}
	rel, err := filepath.Rel(root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("file %q is outside the import folder %s", from, dir)
	}
	return real, nil
}

// afterUpload fires Upload and, on request, selects or starts the file.
func (c *commandRunner) afterUpload(ctx context.Context, cmd *bridge.Command) error {
	var selectErr error
	effectiveSelect, effectivePrint := false, false
	switch {
	case cmd.Print:
		selectErr = c.e.printer.Job(ctx, bridge.ActionStart, cmd.Path, nil)
		effectivePrint = selectErr == nil
		effectiveSelect = effectivePrint
	case cmd.Select:
		selectErr = c.e.printer.Job(ctx, bridge.ActionSelect, cmd.Path, nil)
		effectiveSelect = selectErr == nil
	}
	name := filepath.Base(cmd.Path)
	c.e.Emit(bridge.EventUpload, bridge.Payload{
		{Key: "name", Value: name}, {Key: "path", Value: strings.TrimPrefix(filepath.ToSlash(filepath.Clean("/"+cmd.Path)), "/")},
		{Key: "target", Value: storage.Origin}, {Key: "select", Value: cmd.Select}, {Key: "print", Value: cmd.Print},
		{Key: "effective_select", Value: effectiveSelect}, {Key: "effective_print", Value: effectivePrint},
	}, c.e.printer.Context())
	if selectErr != nil {
		return &fileAddedError{err: selectErr}
	}
	return nil
}

// fileAddedError is a select or print that failed after the file was
// added, so the command took effect in part: the reply is accepted and
// then failed, not rejected.
type fileAddedError struct{ err error }

func (e *fileAddedError) Error() string { return "file added, but " + e.err.Error() }

func (e *fileAddedError) Unwrap() error { return e.err }

// Limits of file adds in parts (bridge.Command.Part). An upload that a
// client abandoned holds a temporary file until uploadIdle has passed
// without a part, so maxUploads and maxUploadBytes bound what abandoned
// uploads hold on the edge's disk.
const (
	uploadIdle     = 10 * time.Minute
	maxUploads     = 4
	maxUploadBytes = 1 << 30
)

// upload is a file add in parts whose last part has not come yet.
type upload struct {
	// id is the upload_id of its parts.
	id   string
	file *os.File
	// next is the part expected next, parts the number of parts.
	next, parts int
	bytes       int64
	updated     time.Time
}

// discard closes and removes the upload's temporary file.
func (u *upload) discard() {
	name := u.file.Name()
	_ = u.file.Close()
	_ = os.Remove(name)
}

// addPart stores one part of a file add in parts. Part 1 starts the
// upload of cmd.Path, again if one was open, and each further part must
// be the next one. The last part adds the file as a file add in one
// message does, with Select and Print.
func (c *commandRunner) addPart(ctx context.Context, cmd *bridge.Command) ([]string, error) {
	now := time.Now()
	c.dropIdleUploads(now)
	clean, err := storage.ValidateFilePath(cmd.Path)
	if err != nil {
		return nil, err
	}
	up := c.uploads[clean]
	switch {
	case cmd.Part == 1 && up != nil && up.id != cmd.UploadID:
		// The open upload's id stays out of the message: with it, the
		// other client could drop that upload.
		return nil, fmt.Errorf("an upload of %q with another upload_id is open (part %d of %d came %s ago), so another client is sending this path; wait until it ends or is dropped after %s without a part, or choose another path",
			clean, up.next-1, up.parts, now.Sub(up.updated).Round(time.Second), uploadIdle)
	case cmd.Part == 1:
		if up != nil {
			c.e.log.Info("upload in parts started again with part 1", "path", clean, "upload_id", up.id, "parts_stored", up.next-1)
			up.discard()
			delete(c.uploads, clean)
		}
		// What would fail the add of the last part fails the first.
		if err := c.e.cfg.Files.CheckAdd(clean); err != nil {
			return nil, err
		}
		if len(c.uploads) >= maxUploads {
			return nil, fmt.Errorf("%d uploads in parts are open (%s); finish one, or wait until one has had no part for %s and is dropped",
				len(c.uploads), strings.Join(c.uploadPaths(), ", "), uploadIdle)
		}
		f, err := os.CreateTemp(c.uploadDir(), uploadPattern(c.e.cfg.PrinterID))
		if err != nil {
			return nil, fmt.Errorf("start upload of %q: %w", clean, err)
		}
		up = &upload{id: cmd.UploadID, file: f, next: 1, parts: cmd.Parts}
		c.uploads[clean] = up
		c.e.log.Info("upload in parts started", "path", clean, "upload_id", up.id, "parts", cmd.Parts)
	case up == nil:
		return nil, fmt.Errorf("part %d of %q: no upload of this path is open; send part 1 first (an upload is dropped after %s without a part, and when the edge restarts)",
			cmd.Part, clean, uploadIdle)
	case up.id != cmd.UploadID:
		return nil, fmt.Errorf("part %d of %q belongs to upload %s, but the open upload of this path has another upload_id; send part 1 of %s again once that one has ended",
			cmd.Part, clean, cmd.UploadID, cmd.UploadID)
	case cmd.Parts != up.parts:
		return nil, fmt.Errorf(`part %d of %q has "parts" %d, but part 1 had %d; send part 1 again to start over`, cmd.Part, clean, cmd.Parts, up.parts)
	case cmd.Part != up.next:
		return nil, fmt.Errorf("part %d of %q is out of order: part %d comes next; send it, or part 1 to start over", cmd.Part, clean, up.next)
	}

	data := *cmd.Data
	if up.bytes+int64(len(data)) > maxUploadBytes {
		up.discard()
		delete(c.uploads, clean)
		return nil, fmt.Errorf("upload of %q is over the maximum of %d bytes with part %d, so it was dropped", clean, maxUploadBytes, cmd.Part)
	}
	if _, err := up.file.WriteString(data); err != nil {
		up.discard()
		delete(c.uploads, clean)
		return nil, fmt.Errorf("store part %d of %q: %w; the upload was dropped, send part 1 again", cmd.Part, clean, err)
	}
	up.bytes += int64(len(data))
	up.next++
	up.updated = now
	if cmd.Part < cmd.Parts {
		c.e.log.Debug("upload part stored", "path", clean, "part", cmd.Part, "parts", cmd.Parts, "bytes", up.bytes)
		return []string{fmt.Sprintf("part %d of %d of %s stored, %d bytes so far", cmd.Part, cmd.Parts, clean, up.bytes)}, nil
	}

	delete(c.uploads, clean)
	defer up.discard()
	if err := up.file.Sync(); err != nil {
		return nil, fmt.Errorf("store %q: %w", clean, err)
	}
	if err := c.e.cfg.Files.AddFrom(clean, up.file.Name()); err != nil {
		return nil, err
	}
	c.e.log.Info("upload in parts added", "path", clean, "parts", cmd.Parts, "bytes", up.bytes)
	unit := "parts"
	if cmd.Parts == 1 {
		unit = "part"
	}
	lines := []string{fmt.Sprintf("%s added from %d %s, %d bytes", clean, cmd.Parts, unit, up.bytes)}
	return lines, c.afterUpload(ctx, cmd)
}

// dropUpload drops the open upload of cmd.Path whose id is cmd.UploadID,
// for a client that gives it up.
func (c *commandRunner) dropUpload(cmd *bridge.Command) ([]string, error) {
	clean, err := storage.ValidateFilePath(cmd.Path)
	if err != nil {
		return nil, err
	}
	up := c.uploads[clean]
	if up == nil || up.id != cmd.UploadID {
		return nil, fmt.Errorf("no upload %s of %q is open", cmd.UploadID, clean)
	}
	c.e.log.Info("upload in parts dropped on request", "path", clean, "upload_id", up.id, "parts_stored", up.next-1, "parts", up.parts)
	up.discard()
	delete(c.uploads, clean)
	return []string{fmt.Sprintf("upload %s of %s dropped after %d of %d parts", up.id, clean, up.next-1, up.parts)}, nil
}

// uploadDir is the folder of the uploads' temporary files: the data
// folder, whose disk the edge writes to anyway, or the system's.
func (c *commandRunner) uploadDir() string {
	if c.e.cfg.DataDir != "" {
		return c.e.cfg.DataDir
	}
	return os.TempDir()
}

func (c *commandRunner) uploadPaths() []string {
	paths := make([]string, 0, len(c.uploads))
	for p := range c.uploads {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// dropIdleUploads drops the uploads that had no part for uploadIdle.
func (c *commandRunner) dropIdleUploads(now time.Time) {
	for path, up := range c.uploads {
		if now.Sub(up.updated) >= uploadIdle {
			c.e.log.Warn("upload in parts dropped: no part came for a while", "path", path, "parts_stored", up.next-1,
				"parts", up.parts, "idle", uploadIdle)
			up.discard()
			delete(c.uploads, path)
		}
	}
}

// uploadPattern is the os.CreateTemp pattern of the temporary files of
// printer's uploads. A printer id has no '.', so the pattern of one
// printer matches no file of another printer sharing the data folder.
func uploadPattern(printer string) string {
	return printer + ".upload-*.gcode"
}

// removeStaleUploads removes the temporary files of uploads in parts
// that a killed edge of printer left in dir.
func removeStaleUploads(dir, printer string, log interface{ Info(string, ...any) }) {
	stale, _ := filepath.Glob(filepath.Join(dir, uploadPattern(printer)))
	for _, name := range stale {
		if err := os.Remove(name); err == nil {
			log.Info("removed the temporary file of an upload in parts from an earlier run", "file", name)
		}
	}
}

// dropUploads drops every open upload, at the edge's stop.
func (c *commandRunner) dropUploads() {
	for path, up := range c.uploads {
		c.e.log.Info("upload in parts dropped at stop", "path", path, "parts_stored", up.next-1, "parts", up.parts)
		up.discard()
		delete(c.uploads, path)
	}
}
