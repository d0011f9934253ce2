package storage

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// walk reads the folder's content from disk: every folder and every
// G-code file, following symbolic links to files but not to folders,
// and skipping hidden entries and names the path rules reject.
func (s *Storage) walk() (map[string]node, error) {
	out := map[string]node{}
	err := filepath.WalkDir(s.dir, func(full string, d fs.DirEntry, err error) error {
		if full == s.dir {
			return err
		}
		if err != nil {
			// An entry that vanished or cannot be read during the walk.
			// The next scan finds its final state.
			s.log.Debug("entry skipped during the scan", "path", full, "error", err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		rel := filepath.ToSlash(full[len(s.dir)+1:])
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if _, err := ValidatePath(rel); err != nil {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		n, ok := s.statEntry(full, d)
		if ok {
			out[rel] = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan the files folder %s: %w", s.dir, err)
	}
	return out, nil
}

// statEntry returns the node of a walked entry and whether it belongs in
// the storage.
func (s *Storage) statEntry(full string, d fs.DirEntry) (node, bool) {
	if d.IsDir() {
		info, err := d.Info()
		if err != nil {
			return node{}, false
		}
		dev, ino := fileID(info)
		return node{folder: true, modTime: info.ModTime().UnixNano(), dev: dev, ino: ino}, true
	}
	if !IsGcodeFile(d.Name()) {
		return node{}, false
	}
	info, err := os.Stat(full)
	if err != nil || !info.Mode().IsRegular() {
		return node{}, false
	}
	dev, ino := fileID(info)
	return node{size: info.Size(), modTime: info.ModTime().UnixNano(), dev: dev, ino: ino}, true
}

// statNode reads the node of one storage path from disk.
func (s *Storage) statNode(p string) (node, error) {
	info, err := os.Stat(s.full(p))
	if err != nil {
		return node{}, err
	}
	dev, ino := fileID(info)
	if info.IsDir() {
		return node{folder: true, modTime: info.ModTime().UnixNano(), dev: dev, ino: ino}, nil
	}
	return node{size: info.Size(), modTime: info.ModTime().UnixNano(), dev: dev, ino: ino}, nil
}

// Scan compares the folder with the storage's record of it and emits the
// events of the changes made from outside, followed by one UpdatedFiles.
// The watcher calls it every PollInterval, and a caller may call it to
// pick up a change at once.
//
// A new or changed file is reported once two scans in a row see the same
// size and modification time, or at once when it was last modified at
// least one poll interval ago. So a file still being copied in is not
// announced (and analysed) half-written. An empty file always waits for
// the poll interval to pass. A rename is recognised by the
// file's inode and reported as a move (FileRemoved, FileAdded, FileMoved
// or the folder events); without an inode it is a removal and an
// addition.
func (s *Storage) Scan() error {
	s.scanMu.Lock()
	defer s.scanMu.Unlock()
	s.mu.Lock()
	gen := s.gen
	s.mu.Unlock()

	seen, err := s.walk()
	if err != nil {
		return err
	}

	s.mu.Lock()
	if s.gen != gen {
		// An operation changed the folder during the walk, so the walk may
		// be inconsistent. The next scan compares again.
		s.mu.Unlock()
		return nil
	}
	d := diff{s: s, seen: seen, now: time.Now()}
	evs := d.apply()
	if len(evs) > 0 {
		evs = append(evs, updatedFilesEvent())
	}
	if d.metaChanged {
		s.saveMetadataLocked()
	}
	s.unlockAndEmit(evs)
	return nil
}

// diff turns the difference between the tree and a walk into events and
// applies it to the tree, with s.mu held.
type diff struct {
	s    *Storage
	seen map[string]node
	now  time.Time
	// removed and added are the paths that vanished and appeared; moves
	// take pairs out of them.
	removed, added map[string]bool
	metaChanged    bool
	evs            []event
}

func (d *diff) apply() []event {
	s := d.s
	d.removed, d.added = map[string]bool{}, map[string]bool{}
	var changed []string
	for p, old := range s.tree {
		n, ok := d.seen[p]
		switch {
		case !ok || n.folder != old.folder:
			d.removed[p] = true
		case !old.folder && (n.size != old.size || n.modTime != old.modTime):
			changed = append(changed, p)
		}
	}
	for p, n := range d.seen {
		if old, ok := s.tree[p]; !ok || old.folder != n.folder {
			d.added[p] = true
		}
	}
	for p := range s.pending {
		if _, ok := d.seen[p]; !ok {
			delete(s.pending, p)
		}
	}

	d.folderMoves()
	d.fileMoves()
	d.removals()
	d.folderAdditions()
	d.fileAdditions(changed)
	return d.evs
}

type fileKey struct{ dev, ino uint64 }

// byID indexes the added entries of one kind by inode.
func (d *diff) byID(folder bool) map[fileKey]string {
	ids := map[fileKey]string{}
	for p := range d.added {
		if n := d.seen[p]; n.folder == folder && n.ino != 0 {
			ids[fileKey{n.dev, n.ino}] = p
		}
	}
	return ids
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// folderMoves finds removed folders whose inode reappears elsewhere, and
// moves their content along where it arrived unchanged.
func (d *diff) folderMoves() {
	s := d.s
	ids := d.byID(true)
	for _, src := range sortedKeys(d.removed) {
		old := s.tree[src]
		if !d.removed[src] || !old.folder || old.ino == 0 {
			continue
		}
		dst, ok := ids[fileKey{old.dev, old.ino}]
		if !ok || !d.added[dst] {
			continue
		}
		delete(d.removed, src)
		delete(d.added, dst)
		delete(s.tree, src)
		s.tree[dst] = d.seen[dst]
		for _, child := range sortedKeys(d.removed) {
			if !within(child, src) {
				continue
			}
			target := dst + child[len(src):]
			was, now := s.tree[child], d.seen[target]
			if !d.added[target] || was.folder != now.folder || (!was.folder && (was.size != now.size || was.modTime != now.modTime)) {
				continue
			}
			delete(d.removed, child)
			delete(d.added, target)
			delete(s.tree, child)
			s.tree[target] = now
			if !was.folder {
				s.meta.move(child, target)
				s.renameQueuedLocked(child, target)
				d.metaChanged = true
			}
		}
		d.evs = append(d.evs, folderMoveEvents(src, dst)...)
	}
}

// fileMoves finds removed files whose inode reappears elsewhere with the
// same size and modification time.
func (d *diff) fileMoves() {
	s := d.s
	ids := d.byID(false)
	for _, src := range sortedKeys(d.removed) {
		old := s.tree[src]
		if old.folder || old.ino == 0 {
			continue
		}
		dst, ok := ids[fileKey{old.dev, old.ino}]
		if !ok || !d.added[dst] {
			continue
		}
		n := d.seen[dst]
		if n.size != old.size || n.modTime != old.modTime {
			continue
		}
		delete(d.removed, src)
		delete(d.added, dst)
		delete(s.tree, src)
		delete(s.pending, dst)
		s.tree[dst] = n
		s.meta.move(src, dst)
		s.renameQueuedLocked(src, dst)
		d.metaChanged = true
		d.evs = append(d.evs, fileMoveEvents(src, dst)...)
	}
}

// removals reports what vanished, the content of a folder before the
// folder itself.
func (d *diff) removals() {
	s := d.s
	paths := sortedKeys(d.removed)
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for _, p := range paths {
		old := s.tree[p]
		delete(s.tree, p)
		if old.folder {
			d.evs = append(d.evs, folderEvent(EventFolderRemoved, p))
			continue
		}
		if s.meta.files[p] != nil {
			s.meta.remove(p)
			d.metaChanged = true
		}
		s.dequeueLocked(p)
		d.evs = append(d.evs, fileEvent(EventFileRemoved, p, opRemove))
	}
}

// folderAdditions reports new folders, each before its content.
func (d *diff) folderAdditions() {
	s := d.s
	for _, p := range sortedKeys(d.added) {
		n := d.seen[p]
		if !n.folder {
			continue
		}
		delete(d.added, p)
		s.tree[p] = n
		d.evs = append(d.evs, folderEvent(EventFolderAdded, p))
	}
}

// fileAdditions reports new and changed files once they have settled.
func (d *diff) fileAdditions(changed []string) {
	s := d.s
	paths := append(sortedKeys(d.added), changed...)
	sort.Strings(paths)
	settleAge := s.cfg.PollInterval
	if settleAge <= 0 {
		settleAge = DefaultPollInterval
	}
	for _, p := range paths {
		n := d.seen[p]
		prev, seenBefore := s.pending[p]
		old := d.now.Sub(time.Unix(0, n.modTime)) >= settleAge
		// An empty file is nearly always one just created and not yet
		// written, so it waits for its modification time to age.
		unchanged := seenBefore && prev.size == n.size && prev.modTime == n.modTime && n.size > 0
		settled := unchanged || old
		if !settled {
			s.pending[p] = n
			continue
		}
		delete(s.pending, p)
		s.tree[p] = n
		if s.meta.files[p] != nil {
			s.meta.remove(p)
			d.metaChanged = true
		}
		s.dequeueLocked(p)
		s.enqueueLocked(p)
		d.evs = append(d.evs, fileEvent(EventFileAdded, p, opAdd))
	}
}
