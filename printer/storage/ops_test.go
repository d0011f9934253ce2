package storage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestAddEventsAndAnalysis(t *testing.T) {
	dir := t.TempDir()
	rec := newRecorder(t)
	s := newTestStorage(t, dir, rec)
	run(t, s)
	data := readReal(t)

	if err := s.Add("cube.gcode", bytes.NewReader(data)); err != nil {
		t.Fatalf("Add: %v", err)
	}
	evs := rec.waitFor(t, "MetadataAnalysisFinished", func(evs []event) bool {
		return count(evs, EventMetadataAnalysisFinished) == 1
	})
	expectEvents(t, evs, []event{
		fileEv(EventFileAdded, "cube.gcode", "add"),
		updated(),
		ev(EventMetadataAnalysisStarted, "name", "cube.gcode", "path", "cube.gcode", "origin", "local"),
		{EventMetadataAnalysisFinished, nil},
	})
	finished := evs[3].payload
	for i, key := range []string{"name", "path", "origin", "result"} {
		if finished[i].Key != key {
			t.Errorf("MetadataAnalysisFinished key %d = %q, want %q", i, finished[i].Key, key)
		}
	}

	onDisk, err := os.ReadFile(filepath.Join(dir, "cube.gcode"))
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Errorf("stored file differs from the added data (err %v)", err)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, stateDir, tempDir)); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	e, err := s.Stat("cube.gcode")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if e.Analysis == nil || e.Analysis.EstimatedPrintTime < 200 || e.Analysis.EstimatedPrintTime > 250 {
		t.Errorf("analysis = %+v, want an estimate near the slicer's 221 s", e.Analysis)
	}
	if e.Size != int64(len(data)) || e.Type != "machinecode" || !slices.Equal(e.TypePath, []string{"machinecode", "gcode"}) {
		t.Errorf("entry = %+v", e)
	}
}

func TestAddReplacesAndReanalyses(t *testing.T) {
	rec := newRecorder(t)
	s := newTestStorage(t, t.TempDir(), rec)
	run(t, s)
	if err := s.Add("a.gcode", strings.NewReader("G1 X10 E1\n")); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "first analysis", func(evs []event) bool { return count(evs, EventMetadataAnalysisFinished) == 1 })
	rec.take()
	if err := s.Add("a.gcode", strings.NewReader("M83\nG1 X10 E2\nG1 X20 E2\n")); err != nil {
		t.Fatal(err)
	}
	evs := rec.waitFor(t, "second analysis", func(evs []event) bool { return count(evs, EventMetadataAnalysisFinished) == 1 })
	expectEvents(t, evs, []event{fileEv(EventFileAdded, "a.gcode", "add"), updated(),
		ev(EventMetadataAnalysisStarted, "name", "a.gcode", "path", "a.gcode", "origin", "local"), {EventMetadataAnalysisFinished, nil}})
	e, _ := s.Stat("a.gcode")
	if got := e.Analysis.Filament["tool0"].Length; got != 4 {
		t.Errorf("filament after replace = %v, want 4 from the new content", got)
	}
}

func TestMoveFileEventOrder(t *testing.T) {
	rec := newRecorder(t)
	s := newTestStorage(t, t.TempDir(), rec)
	run(t, s)
	if err := s.Add("a.gcode", bytes.NewReader(readReal(t))); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "analysis", func(evs []event) bool { return count(evs, EventMetadataAnalysisFinished) == 1 })
	before, _ := s.Stat("a.gcode")
	if err := s.Mkdir("sub"); err != nil {
		t.Fatal(err)
	}
	rec.take()

	if err := s.Move("a.gcode", "sub/b.gcode"); err != nil {
		t.Fatalf("Move: %v", err)
	}
	expectEvents(t, rec.take(), []event{
		fileEv(EventFileRemoved, "a.gcode", "move"),
		fileEv(EventFileAdded, "sub/b.gcode", "move"),
		ev(EventFileMoved, "storage", "local", "source_path", "a.gcode", "source_name", "a.gcode",
			"source_type", []any{"machinecode", "gcode"}, "destination_path", "sub/b.gcode",
			"destination_name", "b.gcode", "destination_type", []any{"machinecode", "gcode"}),
		updated(),
	})
	after, err := s.Stat("sub/b.gcode")
	if err != nil {
		t.Fatalf("Stat after move: %v", err)
	}
	if after.Analysis == nil || after.Analysis.EstimatedPrintTime != before.Analysis.EstimatedPrintTime {
		t.Errorf("analysis did not move with the file: %+v", after.Analysis)
	}
	if _, err := s.Stat("a.gcode"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat of the old path = %v, want ErrNotFound", err)
	}

	// Into an existing folder, under the file's own name.
	if err := s.Mkdir("other"); err != nil {
		t.Fatal(err)
	}
	rec.take()
	if err := s.Move("sub/b.gcode", "other"); err != nil {
		t.Fatalf("Move into folder: %v", err)
	}
	evs := rec.take()
	if len(evs) != 4 || evs[1].name != EventFileAdded {
		t.Fatalf("events of the move into a folder:\n%s", describe(evs))
	}
	if p, _ := evs[1].payload.Get("path"); p != "other/b.gcode" {
		t.Errorf("moved into folder at %v, want other/b.gcode", p)
	}
}

func TestCopyFileKeepsAnalysis(t *testing.T) {
	rec := newRecorder(t)
	s := newTestStorage(t, t.TempDir(), rec)
	run(t, s)
	if err := s.Add("a.gcode", bytes.NewReader(readReal(t))); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "analysis", func(evs []event) bool { return count(evs, EventMetadataAnalysisFinished) == 1 })
	rec.take()

	if err := s.Copy("a.gcode", "b.gcode"); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	expectEvents(t, rec.take(), []event{fileEv(EventFileAdded, "b.gcode", "copy"), updated()})
	e, err := s.Stat("b.gcode")
	if err != nil || e.Analysis == nil {
		t.Fatalf("copy has no analysis: %+v, %v", e, err)
	}
	if _, err := s.Stat("a.gcode"); err != nil {
		t.Errorf("source gone after copy: %v", err)
	}
}

func TestRemoveFile(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	s := newTestStorage(t, dir, rec)
	if err := s.Add("a.gcode", strings.NewReader("G1 X1\n")); err != nil {
		t.Fatal(err)
	}
	rec.take()
	if err := s.Remove("a.gcode"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	expectEvents(t, rec.take(), []event{fileEv(EventFileRemoved, "a.gcode", "remove"), updated()})
	if _, err := os.Stat(filepath.Join(dir, "a.gcode")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file still on disk: %v", err)
	}
	if got := s.List(); len(got) != 0 {
		t.Errorf("List = %v, want empty", paths(got))
	}
}

func TestFolderOperations(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	s := newTestStorage(t, dir, rec)

	if err := s.Mkdir("a"); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	expectEvents(t, rec.take(), []event{folderEv(EventFolderAdded, "a"), updated()})
	if err := s.Mkdir("a/b"); err != nil {
		t.Fatalf("Mkdir nested: %v", err)
	}
	if err := s.Add("a/b/x.gcode", strings.NewReader("G1 X1\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.StatisticsAfterPrint("a/b/x.gcode", 12, true); err != nil {
		t.Fatal(err)
	}
	rec.take()

	if err := s.Move("a", "z"); err != nil {
		t.Fatalf("Move folder: %v", err)
	}
	expectEvents(t, rec.take(), []event{
		folderEv(EventFolderRemoved, "a"),
		folderEv(EventFolderAdded, "z"),
		ev(EventFolderMoved, "storage", "local", "source_path", "a", "source_name", "a", "destination_path", "z", "destination_name", "z"),
		updated(),
	})
	if got, want := paths(s.List()), []string{"z", "z/b", "z/b/x.gcode"}; !slices.Equal(got, want) {
		t.Errorf("List after folder move = %v, want %v", got, want)
	}
	if e, _ := s.Stat("z/b/x.gcode"); e.Statistics == nil || e.Statistics.Successes != 1 {
		t.Errorf("statistics did not move with the folder: %+v", e.Statistics)
	}

	if err := s.Copy("z", "y"); err != nil {
		t.Fatalf("Copy folder: %v", err)
	}
	expectEvents(t, rec.take(), []event{folderEv(EventFolderAdded, "y"), updated()})
	if got, want := paths(s.List()), []string{"y", "y/b", "y/b/x.gcode", "z", "z/b", "z/b/x.gcode"}; !slices.Equal(got, want) {
		t.Errorf("List after folder copy = %v, want %v", got, want)
	}

	if err := s.Remove("z"); err != nil {
		t.Fatalf("Remove folder: %v", err)
	}
	expectEvents(t, rec.take(), []event{folderEv(EventFolderRemoved, "z"), updated()})
	if _, err := os.Stat(filepath.Join(dir, "z")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("folder still on disk: %v", err)
	}
	if got, want := paths(s.List()), []string{"y", "y/b", "y/b/x.gcode"}; !slices.Equal(got, want) {
		t.Errorf("List after folder removal = %v, want %v", got, want)
	}
}

func TestInvalidPathsRejected(t *testing.T) {
	cases := []struct {
		path string
		rule string
	}{
		{"", "empty"},
		{"/etc/passwd.gcode", "absolute"},
		{"../x.gcode", `".."`},
		{"a/../../x.gcode", `".."`},
		{`a\b.gcode`, "backslash"},
		{"x\x00.gcode", "NUL"},
		{"line\nbreak.gcode", "control character"},
		{".hidden.gcode", "starts with a dot"},
		{".printbridge/metadata.json", "starts with a dot"},
		{"a//b.gcode", "empty element"},
		{"./a.gcode", `"."`},
		{"C:/x.gcode", "drive"},
		{strings.Repeat("n", 300) + ".gcode", "longer than 255"},
	}
	rec := newRecorder(t)
	dir := t.TempDir()
	s := newTestStorage(t, dir, rec)
	if err := s.Add("ok.gcode", strings.NewReader("G1 X1\n")); err != nil {
		t.Fatal(err)
	}
	rec.take()
	for _, tc := range cases {
		ops := map[string]error{
			"Add":    s.Add(tc.path, strings.NewReader("G1 X1\n")),
			"Remove": s.Remove(tc.path),
			"Mkdir":  s.Mkdir(tc.path),
			"MoveTo": s.Move("ok.gcode", tc.path),
			"CopyTo": s.Copy("ok.gcode", tc.path),
			"Stat":   func() error { _, err := s.Stat(tc.path); return err }(),
		}
		for op, err := range ops {
			if !errors.Is(err, ErrInvalidPath) {
				t.Errorf("%s(%q) = %v, want ErrInvalidPath", op, tc.path, err)
				continue
			}
			var pe *PathError
			if !errors.As(err, &pe) || pe.Path != tc.path {
				t.Errorf("%s(%q) error %v does not name the path", op, tc.path, err)
			}
			if !strings.Contains(err.Error(), tc.rule) {
				t.Errorf("%s(%q) error %q does not state the rule %q", op, tc.path, err, tc.rule)
			}
		}
	}
	if evs := rec.take(); len(evs) != 0 {
		t.Errorf("rejected operations emitted events:\n%s", describe(evs))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("files folder holds %d entries, want ok.gcode and .printbridge", len(entries))
	}
}

func TestNonGcodeFileRejected(t *testing.T) {
	s := newTestStorage(t, t.TempDir(), newRecorder(t))
	for _, p := range []string{"notes.txt", "model.stl", "a.gcode/", "gcode"} {
		err := s.Add(p, strings.NewReader("x"))
		if !errors.Is(err, ErrInvalidPath) {
			t.Errorf("Add(%q) = %v, want ErrInvalidPath", p, err)
		}
	}
	for _, p := range []string{"A.GCODE", "b.gco", "c.g", "sub dir/ü.gcode"} {
		if !IsGcodeFile(p) {
			t.Errorf("IsGcodeFile(%q) = false", p)
		}
	}
}

func TestOperationErrors(t *testing.T) {
	rec := newRecorder(t)
	busy := "busy.gcode"
	s := newTestStorage(t, t.TempDir(), rec, func(c *Config) {
		c.Busy = func(p string) bool { return p == busy }
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Add("a.gcode", strings.NewReader("G1 X1\n")))
	must(s.Add("b.gcode", strings.NewReader("G1 X1\n")))
	must(s.Mkdir("f"))
	must(s.Mkdir("f/g"))
	must(s.Add("f/busy.gcode", strings.NewReader("G1 X1\n")))
	must(s.Add(busy, strings.NewReader("G1 X1\n")))
	busy = "f/busy.gcode"
	rec.take()

	cases := []struct {
		name string
		err  error
		want error
		text string
	}{
		{"add below a file", s.Add("a.gcode/x.gcode", strings.NewReader("")), nil, `"a.gcode" is a file, not a folder; choose another path`},
		{"add over a folder", s.Add("f", strings.NewReader("")), ErrInvalidPath, "G-code"},
		{"move missing", s.Move("nope.gcode", "x.gcode"), ErrNotFound, `"nope.gcode"`},
		{"move onto existing", s.Move("a.gcode", "b.gcode"), ErrExists, `"b.gcode"`},
		{"move file to non-G-code name", s.Move("a.gcode", "a.txt"), ErrInvalidPath, "G-code"},
		{"move folder into itself", s.Move("f", "f/g/h"), nil, "into itself"},
		{"move folder holding a busy file", s.Move("f", "h"), ErrBusy, `move "f": a file in the folder is in use by the printer`},
		{"remove folder holding a busy file", s.Remove("f"), ErrBusy, `remove "f": a file in the folder is in use by the printer`},
		{"remove missing", s.Remove("nope.gcode"), ErrNotFound, `"nope.gcode"`},
		{"mkdir existing", s.Mkdir("f"), ErrExists, `"f"`},
		{"mkdir in missing folder", s.Mkdir("x/y"), ErrNotFound, `"x"`},
		{"copy missing", s.Copy("nope.gcode", "x.gcode"), ErrNotFound, `"nope.gcode"`},
		{"copy onto existing", s.Copy("a.gcode", "b.gcode"), ErrExists, `"b.gcode"`},
		{"copy onto itself", s.Copy("a.gcode", "a.gcode"), nil, "source itself"},
		{"statistics of missing", s.StatisticsAfterPrint("nope.gcode", 1, true), ErrNotFound, `"nope.gcode"`},
		{"statistics with negative time", s.StatisticsAfterPrint("a.gcode", -1, true), nil, "not a duration"},
		{"add from missing source", s.AddFrom("c.gcode", "/nonexistent/c.gcode"), os.ErrNotExist, "/nonexistent/c.gcode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil {
				t.Fatal("operation succeeded, want an error")
			}
			if tc.want != nil && !errors.Is(tc.err, tc.want) {
				t.Errorf("error %v, want %v", tc.err, tc.want)
			}
			if !strings.Contains(tc.err.Error(), tc.text) {
				t.Errorf("error %q does not contain %q", tc.err, tc.text)
			}
		})
	}

	busy = "a.gcode"
	if err := s.Remove("a.gcode"); !errors.Is(err, ErrBusy) {
		t.Errorf("Remove of the busy file = %v, want ErrBusy", err)
	}
	if err := s.Move("a.gcode", "c.gcode"); !errors.Is(err, ErrBusy) {
		t.Errorf("Move of the busy file = %v, want ErrBusy", err)
	}
	if err := s.Add("a.gcode", strings.NewReader("G1 X2\n")); !errors.Is(err, ErrBusy) {
		t.Errorf("Add over the busy file = %v, want ErrBusy", err)
	}
	if err := s.Copy("a.gcode", "c.gcode"); err != nil {
		t.Errorf("Copy of the busy file = %v, want success: copying does not change it", err)
	}
	rec.take()
	if err := s.Mkdir("f"); err == nil {
		t.Fatal("Mkdir of an existing folder succeeded")
	}
	if evs := rec.take(); len(evs) != 0 {
		t.Errorf("failed operation emitted events:\n%s", describe(evs))
	}
}

func TestAddFromLocalFile(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	s := newTestStorage(t, dir, rec)
	src := filepath.Join(t.TempDir(), "upload.tmp")
	writeFile(t, src, readReal(t))
	if err := s.AddFrom("cube.gcode", src); err != nil {
		t.Fatalf("AddFrom: %v", err)
	}
	expectEvents(t, rec.take(), []event{fileEv(EventFileAdded, "cube.gcode", "add"), updated()})
	if _, err := os.Stat(src); err != nil {
		t.Errorf("source removed by AddFrom: %v", err)
	}
	if err := s.AddFrom("x.gcode", t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("AddFrom of a folder = %v, want a not a regular file error", err)
	}
}

func TestRunTwiceFails(t *testing.T) {
	s := newTestStorage(t, t.TempDir(), newRecorder(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatalf("first Run = %v, want nil after its context ends", err)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run returned nil, want an error")
	}
}

func TestValidPathsAccepted(t *testing.T) {
	cases := map[string]string{
		"a.gcode":              "a.gcode",
		"sub dir/ü – b.GCODE":  "sub dir/ü – b.GCODE",
		"folder/":              "folder",
		"a/b/c/part (2).gco":   "a/b/c/part (2).gco",
		"name.with.dots.gcode": "name.with.dots.gcode",
	}
	for in, want := range cases {
		got, err := ValidatePath(in)
		if err != nil || got != want {
			t.Errorf("ValidatePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ValidateFilePath("folder/"); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("ValidateFilePath(folder/) = %v, want ErrInvalidPath", err)
	}
}

func TestCopyRefusesLinkOutOfFolder(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret.gcode")
	if err := os.WriteFile(outside, []byte("G28\n; secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link.gcode")); err != nil {
		t.Fatal(err)
	}
	s := newTestStorage(t, dir, newRecorder(t))
	if err := s.Scan(); err != nil {
		t.Fatal(err)
	}
	if err := s.Copy("link.gcode", "copied.gcode"); err == nil {
		t.Fatal("copy through a link out of the folder succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "copied.gcode")); !os.IsNotExist(err) {
		t.Errorf("copied.gcode exists after a refused copy: %v", err)
	}
}

func TestAddCreatesMissingFolders(t *testing.T) {
	dir := t.TempDir()
	rec := newRecorder(t)
	s := newTestStorage(t, dir, rec)
	if err := s.Mkdir("a"); err != nil {
		t.Fatal(err)
	}
	rec.take()

	if err := s.Add("a/b/c/cube.gcode", strings.NewReader("G1 X1\n")); err != nil {
		t.Fatalf("Add into missing folders: %v", err)
	}
	expectEvents(t, rec.take(), []event{
		folderEv(EventFolderAdded, "a/b"),
		folderEv(EventFolderAdded, "a/b/c"),
		fileEv(EventFileAdded, "a/b/c/cube.gcode", "add"),
		updated(),
	})
	for _, folder := range []string{"a/b", "a/b/c"} {
		info, err := os.Stat(filepath.Join(dir, filepath.FromSlash(folder)))
		if err != nil || !info.IsDir() {
			t.Errorf("folder %s on disk: %v", folder, err)
		}
		e, err := s.Stat(folder)
		if err != nil {
			t.Errorf("Stat(%q): %v", folder, err)
		} else if e.Type != "folder" {
			t.Errorf("Stat(%q).Type = %q, want folder", folder, e.Type)
		}
	}
	if _, err := s.Stat("a/b/c/cube.gcode"); err != nil {
		t.Errorf("Stat of the added file: %v", err)
	}

	// A folder that exists on disk but not in the listing is not used.
	if err := os.Mkdir(filepath.Join(dir, "hidden-from-listing"), 0o750); err != nil {
		t.Fatal(err)
	}
	err := s.Add("hidden-from-listing/x.gcode", strings.NewReader("G1 X1\n"))
	if !errors.Is(err, ErrExists) {
		t.Errorf("Add into a folder missing from the listing = %v, want ErrExists", err)
	}
}
