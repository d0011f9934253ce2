package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/printbridge/printbridge/printer/gcode"
)

// The storage's own folder inside the files folder. Its name starts
// with a dot, so the scanner and every path check leave it alone.
const (
	stateDir       = ".printbridge"
	metadataFile   = "metadata.json"
	tempDir        = "tmp"
	metadataFormat = 1
	// maxHistory bounds the print records kept per file.
	maxHistory = 100
)

// PrintRecord is one finished print of a file.
type PrintRecord struct {
	Timestamp time.Time `json:"timestamp"`
	Success   bool      `json:"success"`
	// PrintTime is the print's duration in seconds, paused time excluded.
	PrintTime float64 `json:"printTime"`
}

// Statistics sums up a file's print history as OctoPrint does: the
// average and the last print time of successful prints.
type Statistics struct {
	// AveragePrintTime is the mean over the successful prints in the kept
	// history (the last 100 prints), in seconds; nil before the first.
	AveragePrintTime *float64 `json:"averagePrintTime"`
	// LastPrintTime is the time of the latest successful print.
	LastPrintTime *float64 `json:"lastPrintTime"`
	Successes     int      `json:"successes"`
	Failures      int      `json:"failures"`
}

// fileMeta is the cached knowledge about one file, valid while the file
// keeps the size and modification time it had when it was stored.
type fileMeta struct {
	Size int64 `json:"size"`
	// ModTime is the modification time in Unix nanoseconds.
	ModTime    int64         `json:"mtime"`
	Analysis   *gcode.Result `json:"analysis,omitempty"`
	History    []PrintRecord `json:"history,omitempty"`
	Statistics *Statistics   `json:"statistics,omitempty"`
}

func (m *fileMeta) matches(n node) bool {
	return m.Size == n.size && m.ModTime == n.modTime
}

type metadataDocument struct {
	Version int                  `json:"version"`
	Files   map[string]*fileMeta `json:"files"`
}

// metadataStore is the sidecar file .printbridge/metadata.json. Its
// methods expect the Storage's mutex held.
type metadataStore struct {
	path  string
	files map[string]*fileMeta
}

// loadMetadata reads the sidecar file. A missing file is an empty store.
// A damaged one is renamed to metadata.json.damaged, so that the next
// save keeps it for inspection.
func loadMetadata(path string) (*metadataStore, error) {
	m := &metadataStore{path: path, files: map[string]*fileMeta{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read metadata %s: %w", path, err)
	}
	var doc metadataDocument
	if err := json.Unmarshal(data, &doc); err != nil || doc.Version != metadataFormat {
		if err == nil {
			err = fmt.Errorf("format version %d, want %d", doc.Version, metadataFormat)
		}
		if rerr := os.Rename(path, path+".damaged"); rerr != nil {
			return nil, fmt.Errorf("metadata %s is damaged (%v) and cannot be set aside: %w", path, err, rerr)
		}
		return m, fmt.Errorf("metadata %s is damaged and was renamed to metadata.json.damaged; files will be analysed again: %w", path, err)
	}
	for p, fm := range doc.Files {
		if fm != nil {
			m.files[p] = fm
		}
	}
	return m, nil
}

// save writes the store atomically: a temporary file, fsync, rename.
func (m *metadataStore) save() error {
	data, err := json.Marshal(metadataDocument{Version: metadataFormat, Files: m.files})
	if err != nil {
		return fmt.Errorf("encode metadata: %w", err)
	}
	dir := filepath.Dir(m.path)
	f, err := os.CreateTemp(dir, metadataFile+".*.tmp")
	if err != nil {
		return fmt.Errorf("write metadata in %s: %w", dir, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, m.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write metadata %s: %w", m.path, err)
	}
	return nil
}

// valid returns the entry of p when it still describes the file n.
func (m *metadataStore) valid(p string, n node) *fileMeta {
	if fm := m.files[p]; fm != nil && fm.matches(n) {
		return fm
	}
	return nil
}

// entry returns the entry of p for the file n, replacing a stale one.
func (m *metadataStore) entry(p string, n node) *fileMeta {
	if fm := m.valid(p, n); fm != nil {
		return fm
	}
	fm := &fileMeta{Size: n.size, ModTime: n.modTime}
	m.files[p] = fm
	return fm
}

// remove drops p and, for a folder, everything in it.
func (m *metadataStore) remove(p string) {
	for k := range m.files {
		if within(k, p) {
			delete(m.files, k)
		}
	}
}

// move renames the entries of src (a file, or a folder and its content)
// to dst.
func (m *metadataStore) move(src, dst string) {
	moved := map[string]*fileMeta{}
	for k, fm := range m.files {
		if within(k, src) {
			moved[dst+k[len(src):]] = fm
			delete(m.files, k)
		}
	}
	for k, fm := range moved {
		m.files[k] = fm
	}
}

// record adds a finished print to fm's history and statistics.
func (fm *fileMeta) record(rec PrintRecord) {
	fm.History = append(fm.History, rec)
	if len(fm.History) > maxHistory {
		fm.History = append([]PrintRecord(nil), fm.History[len(fm.History)-maxHistory:]...)
	}
	if fm.Statistics == nil {
		fm.Statistics = &Statistics{}
	}
	st := fm.Statistics
	if !rec.Success {
		st.Failures++
		return
	}
	st.Successes++
	last := rec.PrintTime
	st.LastPrintTime = &last
	total, n := 0.0, 0
	for _, h := range fm.History {
		if h.Success {
			total += h.PrintTime
			n++
		}
	}
	avg := total / float64(n)
	st.AveragePrintTime = &avg
}
