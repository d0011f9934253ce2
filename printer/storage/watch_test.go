package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestOutsideCreateSettles(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	s := newTestStorage(t, dir, rec)

	writeFile(t, filepath.Join(dir, "fresh.gcode"), []byte("G1 X1\n"))
	scan(t, s)
	if evs := rec.take(); len(evs) != 0 {
		t.Fatalf("a file modified just now was reported on the first scan:\n%s", describe(evs))
	}
	scan(t, s)
	expectEvents(t, rec.take(), []event{fileEv(EventFileAdded, "fresh.gcode", "add"), updated()})

	// A file last modified long ago is complete: reported at once.
	old := filepath.Join(dir, "old.gcode")
	writeFile(t, old, []byte("G1 X2\n"))
	age(t, old)
	scan(t, s)
	expectEvents(t, rec.take(), []event{fileEv(EventFileAdded, "old.gcode", "add"), updated()})

	scan(t, s)
	if evs := rec.take(); len(evs) != 0 {
		t.Errorf("a scan without changes emitted:\n%s", describe(evs))
	}
}

func TestOutsideGrowingFileWaits(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	s := newTestStorage(t, dir, rec)
	p := filepath.Join(dir, "upload.gcode")
	writeFile(t, p, []byte("G1 X1\n"))
	scan(t, s)
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("G1 X2\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	scan(t, s)
	if evs := rec.take(); len(evs) != 0 {
		t.Fatalf("a file that grew between scans was reported:\n%s", describe(evs))
	}
	scan(t, s)
	expectEvents(t, rec.take(), []event{fileEv(EventFileAdded, "upload.gcode", "add"), updated()})
	if e, _ := s.Stat("upload.gcode"); e.Size != 12 {
		t.Errorf("size = %d, want the complete 12 bytes", e.Size)
	}
}

func TestOutsideDeleteFile(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.gcode"), []byte("G1 X1\n"))
	s := newTestStorage(t, dir, rec)
	if got := paths(s.List()); !slices.Equal(got, []string{"a.gcode"}) {
		t.Fatalf("List at start = %v", got)
	}
	if evs := rec.take(); len(evs) != 0 {
		t.Fatalf("New emitted events for existing files:\n%s", describe(evs))
	}
	if err := os.Remove(filepath.Join(dir, "a.gcode")); err != nil {
		t.Fatal(err)
	}
	scan(t, s)
	expectEvents(t, rec.take(), []event{fileEv(EventFileRemoved, "a.gcode", "remove"), updated()})
}

func TestOutsideRenameFile(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.gcode"), []byte("G1 X1\n"))
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := newTestStorage(t, dir, rec)
	if err := s.StatisticsAfterPrint("a.gcode", 42, true); err != nil {
		t.Fatal(err)
	}
	rec.take()

	if err := os.Rename(filepath.Join(dir, "a.gcode"), filepath.Join(dir, "sub", "b.gcode")); err != nil {
		t.Fatal(err)
	}
	scan(t, s)
	expectEvents(t, rec.take(), []event{
		fileEv(EventFileRemoved, "a.gcode", "move"),
		fileEv(EventFileAdded, "sub/b.gcode", "move"),
		ev(EventFileMoved, "storage", "local", "source_path", "a.gcode", "source_name", "a.gcode",
			"source_type", []any{"machinecode", "gcode"}, "destination_path", "sub/b.gcode",
			"destination_name", "b.gcode", "destination_type", []any{"machinecode", "gcode"}),
		updated(),
	})
	e, err := s.Stat("sub/b.gcode")
	if err != nil {
		t.Fatal(err)
	}
	if e.Statistics == nil || *e.Statistics.LastPrintTime != 42 {
		t.Errorf("statistics did not follow the rename: %+v", e.Statistics)
	}
}

func TestOutsideNestedFolders(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	s := newTestStorage(t, dir, rec)

	file := filepath.Join(dir, "a", "b", "c", "x.gcode")
	writeFile(t, file, []byte("G1 X1\n"))
	age(t, file)
	scan(t, s)
	expectEvents(t, rec.take(), []event{
		folderEv(EventFolderAdded, "a"),
		folderEv(EventFolderAdded, "a/b"),
		folderEv(EventFolderAdded, "a/b/c"),
		fileEv(EventFileAdded, "a/b/c/x.gcode", "add"),
		updated(),
	})

	if err := s.StatisticsAfterPrint("a/b/c/x.gcode", 7, true); err != nil {
		t.Fatal(err)
	}
	rec.take()
	if err := os.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "z")); err != nil {
		t.Fatal(err)
	}
	scan(t, s)
	expectEvents(t, rec.take(), []event{
		folderEv(EventFolderRemoved, "a"),
		folderEv(EventFolderAdded, "z"),
		ev(EventFolderMoved, "storage", "local", "source_path", "a", "source_name", "a", "destination_path", "z", "destination_name", "z"),
		updated(),
	})
	if got, want := paths(s.List()), []string{"z", "z/b", "z/b/c", "z/b/c/x.gcode"}; !slices.Equal(got, want) {
		t.Errorf("List after the folder rename = %v, want %v", got, want)
	}
	if e, _ := s.Stat("z/b/c/x.gcode"); e.Statistics == nil {
		t.Error("statistics did not follow the folder rename")
	}

	// A nested folder renamed inside a renamed parent.
	if err := os.Rename(filepath.Join(dir, "z", "b"), filepath.Join(dir, "z", "q")); err != nil {
		t.Fatal(err)
	}
	scan(t, s)
	expectEvents(t, rec.take(), []event{
		folderEv(EventFolderRemoved, "z/b"),
		folderEv(EventFolderAdded, "z/q"),
		ev(EventFolderMoved, "storage", "local", "source_path", "z/b", "source_name", "b", "destination_path", "z/q", "destination_name", "q"),
		updated(),
	})

	if err := os.RemoveAll(filepath.Join(dir, "z")); err != nil {
		t.Fatal(err)
	}
	scan(t, s)
	expectEvents(t, rec.take(), []event{
		fileEv(EventFileRemoved, "z/q/c/x.gcode", "remove"),
		folderEv(EventFolderRemoved, "z/q/c"),
		folderEv(EventFolderRemoved, "z/q"),
		folderEv(EventFolderRemoved, "z"),
		updated(),
	})
	if got := s.List(); len(got) != 0 {
		t.Errorf("List after removing everything = %v", paths(got))
	}
}

func TestOutsideModifiedFileReanalysed(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "a.gcode")
	writeFile(t, p, []byte("M83\nG1 X1 E1\n"))
	age(t, p)
	s := newTestStorage(t, dir, rec)
	run(t, s)
	rec.waitFor(t, "analysis at start", func(evs []event) bool { return count(evs, EventMetadataAnalysisFinished) == 1 })
	rec.take()

	writeFile(t, p, []byte("M83\nG1 X1 E3\n"))
	age(t, p)
	scan(t, s)
	evs := rec.waitFor(t, "analysis of the new content", func(evs []event) bool { return count(evs, EventMetadataAnalysisFinished) == 1 })
	expectEvents(t, evs, []event{fileEv(EventFileAdded, "a.gcode", "add"), updated(),
		ev(EventMetadataAnalysisStarted, "name", "a.gcode", "path", "a.gcode", "origin", "local"), {EventMetadataAnalysisFinished, nil}})
	if e, _ := s.Stat("a.gcode"); e.Analysis == nil || e.Analysis.Filament["tool0"].Length != 3 {
		t.Errorf("analysis = %+v, want 3 mm of filament from the new content", e.Analysis)
	}
}

func TestOutsideIgnoredEntries(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	s := newTestStorage(t, dir, rec)
	for _, name := range []string{"notes.txt", ".hidden.gcode", ".git/x.gcode", "model.stl", `back\slash.gcode`} {
		p := filepath.Join(dir, name)
		writeFile(t, p, []byte("G1 X1\n"))
		age(t, p)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "loop")); err != nil {
		t.Fatal(err)
	}
	scan(t, s)
	if evs := rec.take(); len(evs) != 0 {
		t.Errorf("ignored entries produced events:\n%s", describe(evs))
	}
}

func TestWatcherPolls(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	s := newTestStorage(t, dir, rec, func(c *Config) { c.PollInterval = 20 * time.Millisecond })
	run(t, s)
	writeFile(t, filepath.Join(dir, "cube.gcode"), readReal(t))
	evs := rec.waitFor(t, "the watcher to report and analyse cube.gcode", func(evs []event) bool {
		return count(evs, EventMetadataAnalysisFinished) == 1
	})
	expectEvents(t, evs, []event{fileEv(EventFileAdded, "cube.gcode", "add"), updated(),
		ev(EventMetadataAnalysisStarted, "name", "cube.gcode", "path", "cube.gcode", "origin", "local"), {EventMetadataAnalysisFinished, nil}})

	if err := os.Remove(filepath.Join(dir, "cube.gcode")); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the watcher to report the removal", func(evs []event) bool { return count(evs, EventFileRemoved) == 1 })
}

// writeTree creates folders × perFolder small G-code files in dir, each
// written elsewhere first and renamed in, as careful uploaders do.
func writeTree(t testing.TB, dir string, folders, perFolder int) {
	t.Helper()
	staging := t.TempDir()
	for f := range folders {
		sub := filepath.Join(dir, fmt.Sprintf("batch%02d", f))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range perFolder {
			tmp := filepath.Join(staging, fmt.Sprintf("%d-%d", f, i))
			writeFile(t, tmp, fmt.Appendf(nil, "M83\nG1 X%d E1\n", i+1))
			if err := os.Rename(tmp, filepath.Join(sub, fmt.Sprintf("part%02d.gcode", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestLargeFolderOneBatch(t *testing.T) {
	const folders, perFolder = 10, 20
	const files = folders * perFolder
	rec := newRecorder(t)
	dir := t.TempDir()
	s := newTestStorage(t, dir, rec)
	writeTree(t, dir, folders, perFolder)

	// The first scan finds the folders at once and the fresh files
	// pending; the second announces the files.
	scan(t, s)
	first := rec.take()
	if n := count(first, EventFolderAdded); n != folders || len(first) != folders+1 || first[len(first)-1].name != EventUpdatedFiles {
		t.Fatalf("first scan: %d FolderAdded in %d events, want %d and one UpdatedFiles:\n%s", n, len(first), folders, describe(first))
	}
	scan(t, s)
	second := rec.take()
	if n := count(second, EventFileAdded); n != files || len(second) != files+1 || second[len(second)-1].name != EventUpdatedFiles {
		t.Fatalf("second scan: %d FileAdded in %d events, want %d and one UpdatedFiles", n, len(second), files)
	}

	run(t, s)
	rec.waitFor(t, "all files analysed", func(evs []event) bool {
		return count(evs, EventMetadataAnalysisFinished) == files
	})
	scan(t, s)
	scan(t, s)
	evs := rec.take()
	if len(evs) != 2*files {
		t.Errorf("%d events after the files were announced, want %d (one Started and one Finished each)", len(evs), 2*files)
	}
	checkOneAtATime(t, evs)
	if got := len(s.List()); got != files+folders {
		t.Errorf("List has %d entries, want %d", got, files+folders)
	}
}

func TestLargeFolderNoEventStorm(t *testing.T) {
	const folders, perFolder = 10, 20
	const files = folders * perFolder
	rec := newRecorder(t)
	dir := t.TempDir()
	s := newTestStorage(t, dir, rec, func(c *Config) { c.PollInterval = 20 * time.Millisecond })
	run(t, s)
	writeTree(t, dir, folders, perFolder)
	rec.waitFor(t, "all files analysed", func(evs []event) bool {
		return count(evs, EventMetadataAnalysisFinished) == files
	})
	// Two more scans without changes must add nothing.
	scan(t, s)
	scan(t, s)
	evs := rec.snapshot()

	added := map[string]int{}
	for _, e := range evs {
		if e.name == EventFileAdded {
			p, _ := e.payload.Get("path")
			added[p.(string)]++
		}
	}
	if len(added) != files {
		t.Errorf("FileAdded for %d distinct files, want %d", len(added), files)
	}
	for p, n := range added {
		if n != 1 {
			t.Errorf("FileAdded %d times for %s", n, p)
		}
	}
	if n := count(evs, EventFolderAdded); n != folders {
		t.Errorf("FolderAdded %d times, want %d", n, folders)
	}
	if n := count(evs, EventMetadataAnalysisStarted); n != files {
		t.Errorf("MetadataAnalysisStarted %d times, want %d", n, files)
	}
	if want := files + folders + count(evs, EventUpdatedFiles) + 2*files; len(evs) != want {
		t.Errorf("%d events, want %d", len(evs), want)
	}
	// Every UpdatedFiles closes a scan that found changes: it follows a
	// file or folder event, never another UpdatedFiles.
	changed := false
	for i, e := range evs {
		switch e.name {
		case EventFileAdded, EventFolderAdded:
			changed = true
		case EventUpdatedFiles:
			if !changed {
				t.Errorf("event %d: UpdatedFiles without a change before it", i)
			}
			changed = false
		}
	}
	checkOneAtATime(t, evs)
}

// checkOneAtATime checks that every MetadataAnalysisStarted is followed
// by its Finished before the next one starts.
func checkOneAtATime(t *testing.T, evs []event) {
	t.Helper()
	var running string
	for _, e := range evs {
		p, _ := e.payload.Get("path")
		switch e.name {
		case EventMetadataAnalysisStarted:
			if running != "" {
				t.Fatalf("analysis of %v started while %s was running", p, running)
			}
			running = p.(string)
		case EventMetadataAnalysisFinished:
			if p != running {
				t.Fatalf("analysis of %v finished while %s was running", p, running)
			}
			running = ""
		}
	}
}

func TestOutsideEmptyFileWaits(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	s := newTestStorage(t, dir, rec)
	p := filepath.Join(dir, "new.gcode")
	writeFile(t, p, nil)
	scan(t, s)
	scan(t, s)
	if evs := rec.take(); len(evs) != 0 {
		t.Fatalf("a fresh empty file was reported:\n%s", describe(evs))
	}
	age(t, p)
	scan(t, s)
	expectEvents(t, rec.take(), []event{fileEv(EventFileAdded, "new.gcode", "add"), updated()})
}
