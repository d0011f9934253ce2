package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer/gcode"
)

// DefaultPollInterval is the scan period of the watcher.
const DefaultPollInterval = 2 * time.Second

// EventFunc receives the storage's events. Calls come one at a time and
// in the order of the changes, from the goroutine that made the change:
// an operation's caller, the watcher or the analysis worker. It must not
// call the Storage's operations (they wait for the call to return), and
// it should not block for long.
type EventFunc func(name string, payload bridge.Payload)

// Config sets up a Storage.
type Config struct {
	// Dir is the files folder. It is created when missing.
	Dir string
	// PollInterval is the period of the scan for changes made from
	// outside; DefaultPollInterval when zero, no watching when negative
	// (Scan still works).
	PollInterval time.Duration
	// Emit receives the events; nil drops them.
	Emit EventFunc
	// Logger receives the storage's logs; nothing is logged when nil.
	Logger *slog.Logger
	// Analysis are the options of the G-code analysis of added files.
	Analysis gcode.Options
	// Busy, when set, reports a file (by path) that must not be removed,
	// moved or overwritten, such as the file being printed.
	Busy func(path string) bool
}

// node is the storage's record of one file or folder.
type node struct {
	folder  bool
	size    int64
	modTime int64 // Unix nanoseconds
	// dev and ino identify the file on disk (zero where unknown), so that
	// a rename from outside is recognised as one.
	dev, ino uint64
}

// Entry is one file or folder of the storage.
type Entry struct {
	// Path is relative to the files folder, with / as separator.
	Path string `json:"path"`
	Name string `json:"name"`
	// Type is "folder" or "machinecode"; TypePath is OctoPrint's type
	// list, ["machinecode", "gcode"] for G-code files and nil for folders.
	Type     string    `json:"type"`
	TypePath []string  `json:"typePath,omitempty"`
	Size     int64     `json:"size,omitempty"`
	Modified time.Time `json:"date"`
	// Analysis is the G-code analysis, nil until it has finished.
	Analysis *gcode.Result `json:"analysis,omitempty"`
	// Statistics and History record finished prints of the file.
	Statistics *Statistics   `json:"statistics,omitempty"`
	History    []PrintRecord `json:"history,omitempty"`
}

// Storage is the local files folder of the edge ("local" in OctoPrint's
// events). Its operations are safe for concurrent use. Run watches the
// folder for changes made from outside and analyses added files.
type Storage struct {
	cfg      Config
	dir      string
	stateDir string
	log      *slog.Logger

	// mu guards tree, pending, gen, meta, the analysis queue and the
	// running analysis.
	mu sync.Mutex
	// tree is the known content: every settled file and every folder,
	// by path.
	tree map[string]node
	// pending holds files seen by the scanner that are new or changed
	// but not yet settled (still being written, perhaps).
	pending map[string]node
	// gen counts the operations; a scan that overlaps one is dropped,
	// because it may have seen the folder half-way through the change.
	gen  uint64
	meta *metadataStore
	// queue lists files waiting for analysis, queued marks them.
	queue  []string
	queued map[string]bool
	// running is the file under analysis and cancelRunning stops it.
	running       string
	cancelRunning context.CancelFunc

	// scanMu lets one Scan run at a time.
	scanMu sync.Mutex
	// emitMu orders event batches: a change takes it before releasing
	// mu, so batches leave in the order of their changes.
	emitMu sync.Mutex

	// wake signals the analysis worker that the queue has work.
	wake    chan struct{}
	runOnce sync.Once
}

// New opens the files folder: it loads the metadata cache and records
// the current content, without events. Files without a valid cached
// analysis are queued, so Run analyses them.
func New(cfg Config) (*Storage, error) {
	if cfg.Dir == "" {
		return nil, errors.New("storage folder is empty; give the files folder")
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create the files folder %s: %w", cfg.Dir, err)
	}
	// The walk does not follow a symbolic link at its root.
	dir, err := filepath.EvalSymlinks(cfg.Dir)
	if err == nil {
		dir, err = filepath.Abs(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("files folder %s: %w", cfg.Dir, err)
	}

	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Storage{
		cfg:      cfg,
		dir:      dir,
		stateDir: filepath.Join(dir, stateDir),
		log:      log,
		pending:  map[string]node{},
		queued:   map[string]bool{},
		wake:     make(chan struct{}, 1),
	}

	if err := os.MkdirAll(filepath.Join(s.stateDir, tempDir), 0o750); err != nil {
		return nil, fmt.Errorf("create the storage's state folder in %s: %w", dir, err)
	}
	s.cleanTemp()
	s.meta, err = loadMetadata(filepath.Join(s.stateDir, metadataFile))
	if err != nil {
		if s.meta == nil {
			return nil, err
		}
		s.log.Warn("metadata cache discarded", "error", err)
	}

	tree, err := s.walk()
	if err != nil {
		return nil, err
	}
	s.tree = tree
	s.pruneMetadata()
	return s, nil
}

// cleanTemp removes temporary files that a crash left behind.
func (s *Storage) cleanTemp() {
	tmp := filepath.Join(s.stateDir, tempDir)
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			s.log.Warn("cannot remove a leftover temporary file", "path", e.Name(), "error", err)
		}
	}
}

// pruneMetadata drops cache entries of files that are gone or changed
// and queues every file without a valid analysis.
func (s *Storage) pruneMetadata() {
	changed := false
	for p := range s.meta.files {
		n, ok := s.tree[p]
		if !ok || n.folder || s.meta.valid(p, n) == nil {
			delete(s.meta.files, p)
			changed = true
		}
	}
	for _, p := range s.sortedPaths() {
		n := s.tree[p]
		if n.folder {
			continue
		}
		if fm := s.meta.valid(p, n); fm == nil || fm.Analysis == nil {
			s.enqueueLocked(p)
		}
	}
	if changed {
		s.saveMetadataLocked()
	}
}

// Dir returns the absolute path of the files folder.
func (s *Storage) Dir() string { return s.dir }

// Run watches the folder (every PollInterval) and analyses added files,
// one at a time, until ctx ends. It waits for both loops before it
// returns, and may be called once.
func (s *Storage) Run(ctx context.Context) error {
	started := false
	s.runOnce.Do(func() { started = true })
	if !started {
		return errors.New("storage Run called twice")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.analysisLoop(ctx)
	}()
	if s.cfg.PollInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.watchLoop(ctx)
		}()
	}
	s.log.Info("storage started", "dir", s.dir, "poll_interval", s.cfg.PollInterval.String())
	<-ctx.Done()
	s.mu.Lock()
	if s.cancelRunning != nil {
		s.cancelRunning()
	}
	s.mu.Unlock()
	wg.Wait()
	s.log.Info("storage stopped", "dir", s.dir)
	return nil
}

// watchLoop scans every PollInterval. A failing scan is logged once
// when it starts failing and once when it works again, with the count.
func (s *Storage) watchLoop(ctx context.Context) {
	ticker := time.NewTicker(s.cfg.PollInterval)
	defer ticker.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		err := s.Scan()
		switch {
		case err != nil && failures == 0:
			s.log.Warn("scan of the files folder failed; retrying every poll interval", "dir", s.dir, "error", err)
			failures++
		case err != nil:
			failures++
		case failures > 0:
			s.log.Info("scan of the files folder works again", "dir", s.dir, "failed_scans", failures)
			failures = 0
		}
	}
}

// List returns every file and folder, sorted by path.
func (s *Storage) List() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	paths := s.sortedPaths()
	out := make([]Entry, 0, len(paths))
	for _, p := range paths {
		out = append(out, s.entryLocked(p, s.tree[p]))
	}
	return out
}

// Stat returns the entry of one file or folder.
func (s *Storage) Stat(p string) (Entry, error) {
	clean, err := ValidatePath(p)
	if err != nil {
		return Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.tree[clean]
	if !ok {
		return Entry{}, fmt.Errorf("%q: %w in the files folder", clean, ErrNotFound)
	}
	return s.entryLocked(clean, n), nil
}

func (s *Storage) entryLocked(p string, n node) Entry {
	e := Entry{Path: p, Name: nameOf(p), Modified: time.Unix(0, n.modTime)}
	if n.folder {
		e.Type = "folder"
		return e
	}
	e.Type, e.TypePath, e.Size = "machinecode", []string{"machinecode", "gcode"}, n.size
	if fm := s.meta.valid(p, n); fm != nil {
		e.Analysis = fm.Analysis
		e.Statistics = fm.Statistics
		e.History = append([]PrintRecord(nil), fm.History...)
	}
	return e
}

func (s *Storage) sortedPaths() []string {
	paths := make([]string, 0, len(s.tree))
	for p := range s.tree {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// unlockAndEmit releases mu and sends evs in order. Taking emitMu before
// mu is released keeps batches in the order of their changes, and the
// callback runs without mu held.
func (s *Storage) unlockAndEmit(evs []event) {
	if len(evs) == 0 {
		s.mu.Unlock()
		return
	}
	s.emitMu.Lock()
	s.mu.Unlock()
	defer s.emitMu.Unlock()
	if s.cfg.Emit == nil {
		return
	}
	for _, e := range evs {
		s.cfg.Emit(e.name, e.payload)
	}
}

func (s *Storage) saveMetadataLocked() {
	if err := s.meta.save(); err != nil {
		s.log.Error("saving the metadata cache failed", "error", err)
	}
}

// full returns the path on disk of a storage path.
func (s *Storage) full(p string) string {
	return filepath.Join(s.dir, filepath.FromSlash(p))
}
