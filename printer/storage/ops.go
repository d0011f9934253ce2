package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Add stores data as the G-code file at path, replacing a file already
// there, and emits FileAdded (operation add) and UpdatedFiles. The
// analysis follows in the background. The content goes to a temporary
// file first and is renamed into place, so no reader of the folder gets
// half a file. Missing folders of path are created first, each with
// FolderAdded, as OctoPrint's LocalFileStorage.add_file creates them
// with os.makedirs. Upload is the caller's event and is not emitted here.
func (s *Storage) Add(path string, data io.Reader) error {
	clean, err := ValidateFilePath(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	err = s.checkAddLocked(clean)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	tmp, err := s.writeTemp(data)
	if err != nil {
		return fmt.Errorf("add %q: %w", clean, err)
	}
	defer os.Remove(tmp)

	s.mu.Lock()
	if err := s.checkAddLocked(clean); err != nil {
		s.mu.Unlock()
		return err
	}
	evs, err := s.createParentsLocked(clean)
	if err != nil {
		// The folders made before the failure stay, so they get their
		// events.
		s.unlockAndEmit(withUpdatedFiles(evs))
		return err
	}
	if err := os.Rename(tmp, s.full(clean)); err != nil {
		s.unlockAndEmit(withUpdatedFiles(evs))
		return fmt.Errorf("add %q: %w", clean, err)
	}
	n, err := s.statNode(clean)
	if err != nil {
		s.unlockAndEmit(withUpdatedFiles(evs))
		return fmt.Errorf("add %q: %w", clean, err)
	}
	s.gen++
	s.tree[clean] = n
	delete(s.pending, clean)
	s.forgetFileLocked(clean)
	s.enqueueLocked(clean)
	s.unlockAndEmit(append(evs, fileEvent(EventFileAdded, clean, opAdd), updatedFilesEvent()))
	return nil
}

// withUpdatedFiles appends UpdatedFiles to evs, unless evs is empty.
func withUpdatedFiles(evs []event) []event {
	if len(evs) == 0 {
		return nil
	}
	return append(evs, updatedFilesEvent())
}

// checkParentsLocked rejects a file path with a file among its folders.
// Missing folders are fine, because Add creates them.
func (s *Storage) checkParentsLocked(clean string) error {
	for p := parentOf(clean); p != ""; p = parentOf(p) {
		if n, ok := s.tree[p]; ok && !n.folder {
			return fmt.Errorf("add %q: %q is a file, not a folder; choose another path", clean, p)
		}
	}
	return nil
}

// createParentsLocked creates the missing folders of the file path
// clean, outermost first, and returns their FolderAdded events.
func (s *Storage) createParentsLocked(clean string) ([]event, error) {
	var missing []string
	for p := parentOf(clean); p != ""; p = parentOf(p) {
		if _, ok := s.tree[p]; ok {
			break
		}
		missing = append(missing, p)
	}
	var evs []event
	for i := len(missing) - 1; i >= 0; i-- {
		p := missing[i]
		if err := os.Mkdir(s.full(p), 0o755); err != nil {
			// Something on disk that the storage does not list (such as
			// a link it does not follow) is not used as the folder.
			if errors.Is(err, fs.ErrExist) {
				return evs, fmt.Errorf("add %q: create folder %q: %w on disk but is not listed yet; retry after the next scan of the files folder", clean, p, ErrExists)
			}
			return evs, fmt.Errorf("add %q: create folder %q: %w", clean, p, err)
		}
		n, err := s.statNode(p)
		if err != nil {
			return evs, fmt.Errorf("add %q: create folder %q: %w", clean, p, err)
		}
		s.gen++
		s.tree[p] = n
		evs = append(evs, folderEvent(EventFolderAdded, p))
	}
	return evs, nil
}

// AddFrom stores a copy of the local file srcPath (a path on disk,
// outside the storage, such as an upload's temporary file) as path,
// like Add.
func (s *Storage) AddFrom(path, srcPath string) error {
	f, err := os.Open(srcPath)
	if err != nil {
		return fmt.Errorf("add %q from %s: %w", path, srcPath, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("add %q from %s: %w", path, srcPath, err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("add %q from %s: not a regular file", path, srcPath)
	}
	return s.Add(path, f)
}

// CheckAdd returns the error that Add of path would fail with now, for
// an upload in parts that should fail at its first part rather than its
// last.
func (s *Storage) CheckAdd(path string) error {
	clean, err := ValidateFilePath(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkAddLocked(clean)
}

func (s *Storage) checkAddLocked(clean string) error {
	if err := s.checkParentsLocked(clean); err != nil {
		return err
	}
	if n, ok := s.tree[clean]; ok {
		if n.folder {
			return fmt.Errorf("add %q: a folder of that name %w", clean, ErrExists)
		}
		if s.busyLocked(clean) {
			return busyError("replace", clean, false)
		}
	}
	return nil
}

// forgetFileLocked drops the metadata and any pending analysis of the
// old content at p.
func (s *Storage) forgetFileLocked(p string) {
	if s.meta.files[p] != nil {
		s.meta.remove(p)
		s.saveMetadataLocked()
	}
	s.dequeueLocked(p)
}

// Mkdir creates the folder at path and emits FolderAdded and
// UpdatedFiles. Its parent must exist.
func (s *Storage) Mkdir(path string) error {
	clean, err := ValidatePath(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if _, ok := s.tree[clean]; ok {
		s.mu.Unlock()
		return fmt.Errorf("create folder %q: %w", clean, ErrExists)
	}
	if err := s.requireFolderLocked(parentOf(clean), clean); err != nil {
		s.mu.Unlock()
		return err
	}
	if err := os.Mkdir(s.full(clean), 0o755); err != nil {
		s.mu.Unlock()
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create folder %q: %w on disk", clean, ErrExists)
		}
		return fmt.Errorf("create folder %q: %w", clean, err)
	}
	n, err := s.statNode(clean)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("create folder %q: %w", clean, err)
	}
	s.gen++
	s.tree[clean] = n
	s.unlockAndEmit([]event{folderEvent(EventFolderAdded, clean), updatedFilesEvent()})
	return nil
}

// Remove deletes the file or folder (with its content) at path and emits
// FileRemoved (operation remove) or FolderRemoved, then UpdatedFiles.
// As in OctoPrint, a folder's content gets no events of its own.
func (s *Storage) Remove(path string) error {
	clean, err := ValidatePath(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	n, ok := s.tree[clean]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("remove %q: %w in the files folder", clean, ErrNotFound)
	}
	if s.busyLocked(clean) {
		s.mu.Unlock()
		return busyError("remove", clean, n.folder)
	}

	if n.folder {
		err = os.RemoveAll(s.full(clean))
	} else {
		err = os.Remove(s.full(clean))
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.mu.Unlock()
		return fmt.Errorf("remove %q: %w", clean, err)
	}

	s.gen++
	s.dropLocked(clean)
	ev := fileEvent(EventFileRemoved, clean, opRemove)
	if n.folder {
		ev = folderEvent(EventFolderRemoved, clean)
	}
	s.unlockAndEmit([]event{ev, updatedFilesEvent()})
	return nil
}

// dropLocked removes p and everything in it from the tree, the pending
// files, the analysis queue and the metadata.
func (s *Storage) dropLocked(p string) {
	for k := range s.tree {
		if within(k, p) {
			delete(s.tree, k)
		}
	}
	for k := range s.pending {
		if within(k, p) {
			delete(s.pending, k)
		}
	}
	s.dequeueLocked(p)
	for k := range s.meta.files {
		if within(k, p) {
			s.meta.remove(p)
			s.saveMetadataLocked()
			break
		}
	}
}

// Move renames the file or folder src to dst and emits OctoPrint's
// sequence: FileRemoved (operation move), FileAdded (operation move),
// FileMoved, UpdatedFiles for a file, and FolderRemoved, FolderAdded,
// FolderMoved, UpdatedFiles for a folder. When dst is an existing folder,
// src moves into it under its own name. Metadata and statistics move
// along.
func (s *Storage) Move(src, dst string) error {
	srcClean, dstClean, n, err := s.resolveTransfer("move", src, dst)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if err := s.checkTransferLocked("move", srcClean, dstClean, n); err != nil {
		s.mu.Unlock()
		return err
	}
	if s.busyLocked(srcClean) {
		s.mu.Unlock()
		return busyError("move", srcClean, n.folder)
	}

	if err := os.Rename(s.full(srcClean), s.full(dstClean)); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("move %q to %q: %w", srcClean, dstClean, err)
	}

	s.gen++
	moved := map[string]node{}
	for k, v := range s.tree {
		if within(k, srcClean) {
			moved[dstClean+k[len(srcClean):]] = v
			delete(s.tree, k)
		}
	}
	for k, v := range moved {
		s.tree[k] = v
	}
	if top, err := s.statNode(dstClean); err == nil {
		s.tree[dstClean] = top
	}
	s.meta.move(srcClean, dstClean)
	s.renameQueuedLocked(srcClean, dstClean)
	s.saveMetadataLocked()

	evs := fileMoveEvents(srcClean, dstClean)
	if n.folder {
		evs = folderMoveEvents(srcClean, dstClean)
	}
	s.unlockAndEmit(append(evs, updatedFilesEvent()))
	return nil
}

// Copy copies the file or folder src to dst and emits FileAdded
// (operation copy) or FolderAdded, then UpdatedFiles. When dst is an
// existing folder, the copy goes into it under src's name. The copy is
// assembled in a temporary place and renamed into position, and cached
// analyses are copied with it; statistics are not.
func (s *Storage) Copy(src, dst string) error {
	srcClean, dstClean, n, err := s.resolveTransfer("copy", src, dst)
	if err != nil {
		return err
	}
	s.mu.Lock()
	err = s.checkTransferLocked("copy", srcClean, dstClean, n)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	tmp, err := s.copyToTemp(s.full(srcClean), n.folder)
	if err != nil {
		return fmt.Errorf("copy %q to %q: %w", srcClean, dstClean, err)
	}
	defer os.RemoveAll(tmp)

	s.mu.Lock()
	if err := s.checkTransferLocked("copy", srcClean, dstClean, n); err != nil {
		s.mu.Unlock()
		return err
	}
	if err := os.Rename(tmp, s.full(dstClean)); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("copy %q to %q: %w", srcClean, dstClean, err)
	}
	s.gen++
	s.addCopiedLocked(srcClean, dstClean)
	ev := fileEvent(EventFileAdded, dstClean, opCopy)
	if n.folder {
		ev = folderEvent(EventFolderAdded, dstClean)
	}
	s.unlockAndEmit([]event{ev, updatedFilesEvent()})
	return nil
}

// resolveTransfer validates the paths of a move or copy and resolves a
// destination folder to the path inside it.
func (s *Storage) resolveTransfer(op, src, dst string) (string, string, node, error) {
	srcClean, err := ValidatePath(src)
	if err != nil {
		return "", "", node{}, err
	}
	dstClean, err := ValidatePath(dst)
	if err != nil {
		return "", "", node{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.tree[srcClean]
	if !ok {
		return "", "", node{}, fmt.Errorf("%s %q: %w in the files folder", op, srcClean, ErrNotFound)
	}
	if d, ok := s.tree[dstClean]; ok && d.folder && dstClean != srcClean {
		dstClean = dstClean + "/" + nameOf(srcClean)
	}
	if !n.folder {
		if _, err := ValidateFilePath(dstClean); err != nil {
			return "", "", node{}, err
		}
	}
	return srcClean, dstClean, n, nil
}

// checkTransferLocked checks that src is still what it was and that dst
// is free and in an existing folder.
func (s *Storage) checkTransferLocked(op, src, dst string, n node) error {
	cur, ok := s.tree[src]
	if !ok || cur.folder != n.folder {
		return fmt.Errorf("%s %q: %w in the files folder", op, src, ErrNotFound)
	}
	if src == dst {
		return fmt.Errorf("%s %q: the destination is the source itself", op, src)
	}
	if n.folder && within(dst, src) {
		return fmt.Errorf("%s folder %q into itself (%q) is not possible", op, src, dst)
	}
	if _, ok := s.tree[dst]; ok {
		return fmt.Errorf("%s %q to %q: the destination %w", op, src, dst, ErrExists)
	}
	if _, err := os.Lstat(s.full(dst)); err == nil {
		return fmt.Errorf("%s %q to %q: the destination %w on disk", op, src, dst, ErrExists)
	}
	return s.requireFolderLocked(parentOf(dst), dst)
}

// requireFolderLocked checks that the folder parent (of target) exists.
func (s *Storage) requireFolderLocked(parent, target string) error {
	if parent == "" {
		return nil
	}
	if n, ok := s.tree[parent]; !ok || !n.folder {
		return fmt.Errorf("%q: the folder %q %w; create it with the mkdir action first", target, parent, ErrNotFound)
	}
	return nil
}

func busyError(op, p string, folder bool) error {
	if folder {
		return fmt.Errorf("%s %q: a file in the folder is %w; wait until the print has ended", op, p, ErrBusy)
	}
	return fmt.Errorf("%s %q: the file is %w; wait until the print has ended", op, p, ErrBusy)
}

// busyLocked reports whether p, or a file inside the folder p, is busy.
func (s *Storage) busyLocked(p string) bool {
	if s.cfg.Busy == nil {
		return false
	}
	if n, ok := s.tree[p]; ok && !n.folder {
		return s.cfg.Busy(p)
	}
	for k, n := range s.tree {
		if !n.folder && within(k, p) && s.cfg.Busy(k) {
			return true
		}
	}
	return false
}

// addCopiedLocked records the copied tree at dst and carries the cached
// analyses of src over to the copies.
func (s *Storage) addCopiedLocked(src, dst string) {
	_ = filepath.WalkDir(s.full(dst), func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, rerr := filepath.Rel(s.dir, full)
		if rerr != nil {
			return nil
		}
		rel = filepath.ToSlash(rel)
		n, ok := s.statEntry(full, d)
		if !ok {
			return nil
		}
		s.tree[rel] = n
		if n.folder {
			return nil
		}
		from := src + rel[len(dst):]
		if old, ok := s.tree[from]; ok {
			if fm := s.meta.valid(from, old); fm != nil && fm.Analysis != nil {
				s.meta.entry(rel, n).Analysis = fm.Analysis
				return nil
			}
		}
		s.enqueueLocked(rel)
		return nil
	})
	s.saveMetadataLocked()
}

// writeTemp writes data to a new file in the storage's temporary folder
// and returns its path.
func (s *Storage) writeTemp(data io.Reader) (string, error) {
	f, err := os.CreateTemp(filepath.Join(s.stateDir, tempDir), "add-*.gcode")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// copyToTemp copies a file or folder tree into the temporary folder and
// returns the copy's path.
func (s *Storage) copyToTemp(src string, folder bool) (string, error) {
	if !folder {
		// A copy must not follow a link out of the files folder, or it
		// would pull any file the edge can read into the storage.
		if info, err := os.Lstat(src); err == nil && info.Mode()&fs.ModeSymlink != 0 {
			return "", fmt.Errorf("%s is a symbolic link; copy the file it points to instead", filepath.Base(src))
		}
		f, err := os.Open(src)
		if err != nil {
			return "", err
		}
		defer f.Close()
		return s.writeTemp(f)
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.stateDir, tempDir), "copy-*")
	if err != nil {
		return "", err
	}
	err = filepath.WalkDir(src, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, full)
		if err != nil || rel == "." {
			return err
		}
		if d.Name()[0] == '.' {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		target := filepath.Join(tmp, rel)
		if d.IsDir() {
			return os.Mkdir(target, 0o755)
		}
		if !IsGcodeFile(d.Name()) {
			return nil
		}
		return copyFile(full, target)
	})
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
