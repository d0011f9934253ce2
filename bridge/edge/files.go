package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

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
