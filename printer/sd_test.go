package printer_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

// sdLongName is a slicer file put on the simulated card under its long
// name, so that M20 L lists an 8.3 alias and the long name.
const sdLongName = "prusaslicer-2.8.1_mk4s_mini-cube.gcode"

// sdConfig returns a fast virtual printer whose SD card is backed by a
// fresh directory holding one real slicer file.
func sdConfig(t *testing.T) (virtual.Config, string) {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "gcode", sdLongName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, sdLongName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	c := fastConfig()
	c.SDDir = dir
	return c, dir
}

// waitSDReady waits until the card is initialised and listed once.
func (r *rig) waitSDReady() {
	r.t.Helper()
	r.waitState("OPERATIONAL", 10*time.Second)
	waitFor(r.t, "SD card ready", 10*time.Second, func() bool { return r.p.Snapshot().Flags.SDReady })
	waitFor(r.t, "first SD listing", 10*time.Second, func() bool { return r.rec.count(bridge.EventUpdatedFiles) >= 1 })
}

func (r *rig) sdList() []printer.SDFile {
	r.t.Helper()
	type result struct {
		files []printer.SDFile
		err   error
	}
	ch := make(chan result, 1)
	if err := r.p.SDList(context.Background(), func(f []printer.SDFile, err error) { ch <- result{f, err} }); err != nil {
		r.t.Fatalf("SDList: %v", err)
	}
	select {
	case res := <-ch:
		if res.err != nil {
			r.t.Fatalf("SD list failed: %v", res.err)
		}
		return res.files
	case <-time.After(20 * time.Second):
		r.t.Fatal("SD list got no answer")
	}
	return nil
}

// await submits a request and returns the error its done reports.
func await(t *testing.T, what string, timeout time.Duration, submit func(printer.DoneFunc) error) error {
	t.Helper()
	ch := make(chan error, 1)
	if err := submit(func(_ []string, err error) { ch <- err }); err != nil {
		t.Fatalf("%s rejected: %v", what, err)
	}
	select {
	case err := <-ch:
		return err
	case <-time.After(timeout):
		t.Fatalf("%s did not finish within %s", what, timeout)
	}
	return nil
}

func TestSDListLongNames(t *testing.T) {
	vcfg, _ := sdConfig(t)
	r := startRig(t, vcfg, printer.Config{})
	r.waitSDReady()
	files := r.sdList()
	if len(files) != 1 {
		t.Fatalf("SD list = %+v, want one file", files)
	}
	f := files[0]
	if f.LongName != sdLongName {
		t.Errorf("long name = %q, want %q", f.LongName, sdLongName)
	}
	if f.Name != "PRUSAS~1.GCO" {
		t.Errorf("8.3 name = %q, want PRUSAS~1.GCO", f.Name)
	}
	st, err := os.Stat(filepath.Join("..", "testdata", "gcode", sdLongName))
	if err != nil {
		t.Fatal(err)
	}
	if f.Size != st.Size() {
		t.Errorf("size = %d, want %d", f.Size, st.Size())
	}
	if f.Timestamp == 0 {
		t.Error("EXTENDED_M20 listing has no timestamp")
	}
	ev, _ := r.rec.last(bridge.EventUpdatedFiles)
	if v, _ := ev.payload.Get("type"); v != "printables" {
		t.Errorf("UpdatedFiles type = %v, want printables", v)
	}
}

func TestSDUploadCopiesCommands(t *testing.T) {
	vcfg, _ := sdConfig(t)
	r := startRig(t, vcfg, printer.Config{})
	r.waitSDReady()
	err := await(t, "upload", 60*time.Second, func(done printer.DoneFunc) error {
		return r.p.SDUpload(context.Background(), testFile, "", done)
	})
	if err != nil {
		t.Fatalf("upload failed: %v", err)
	}
	want := fileCommands(t)
	var stored []byte
	for _, f := range r.vp.SDFiles() {
		if strings.EqualFold(f.DOSName, "BAMBUS~1.GCO") {
			stored = f.Data
		}
	}
	if stored == nil {
		t.Fatalf("no BAMBUS~1.GCO on the card; files: %v", sdNames(r.vp.SDFiles()))
	}
	got, err := virtual.CommandsOf(bytes.NewReader(stored))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		i := firstDiff(got, want)
		t.Fatalf("SD copy has %d commands, file has %d; first difference at %d: %q", len(got), len(want), i, got[i:min(len(got), i+3)])
	}

	started, _ := r.rec.last(bridge.EventTransferStarted)
	if v, _ := started.payload.Get("local"); v != testFile {
		t.Errorf("TransferStarted local = %v, want %s", v, testFile)
	}
	if v, _ := started.payload.Get("remote"); v != "bambus~1.gco" {
		t.Errorf("TransferStarted remote = %v, want bambus~1.gco", v)
	}
	done, ok := r.rec.last(bridge.EventTransferDone)
	if !ok {
		t.Fatal("no TransferDone")
	}
	if secs, _ := done.payload.Get("time"); secs == nil || secs.(float64) <= 0 {
		t.Errorf("TransferDone time = %v, want positive seconds", secs)
	}
	if r.rec.count(bridge.EventTransferFailed) != 0 {
		t.Error("TransferFailed fired for a good upload")
	}
	if r.rec.count(bridge.EventZChange) != 0 {
		t.Error("uploaded lines fired ZChange; they are stored, not executed")
	}
	waitFor(t, "listing after the upload", 10*time.Second, func() bool { return r.rec.count(bridge.EventUpdatedFiles) >= 2 })
	r.waitState("OPERATIONAL", 5*time.Second)
	states := stateIDs(r)
	if !slices.Contains(states, "TRANSFERING_FILE") {
		t.Errorf("states %v lack TRANSFERING_FILE", states)
	}
}

func sdNames(files []virtual.SDFile) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.DOSName)
	}
	return out
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func stateIDs(r *rig) []string {
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	var out []string
	for _, e := range r.rec.events {
		if e.name == bridge.EventPrinterStateChanged {
			id, _ := e.payload.Get("state_id")
			out = append(out, id.(string))
		}
	}
	return out
}

func TestSDUploadThenPrint(t *testing.T) {
	vcfg, _ := sdConfig(t)
	r := startRig(t, vcfg, printer.Config{})
	r.waitSDReady()
	err := await(t, "upload", 60*time.Second, func(done printer.DoneFunc) error {
		return r.p.SDUploadThen(context.Background(), printer.SDUploadRequest{Local: testFile, Remote: "ring.gco", Print: true}, done)
	})
	if err != nil {
		t.Fatalf("upload failed: %v", err)
	}
	waitFor(t, "PrintStarted of the uploaded file", 20*time.Second, func() bool { return r.rec.count(bridge.EventPrintStarted) == 1 })

	upload, ok := r.rec.last(bridge.EventUpload)
	if !ok {
		t.Fatalf("no Upload event; events %v", r.rec.names())
	}
	want := map[string]any{"name": "ring.gco", "path": "ring.gco", "target": "sdcard", "select": false, "print": true,
		"effective_select": true, "effective_print": true}
	for k, v := range want {
		if got, _ := upload.payload.Get(k); got != v {
			t.Errorf("Upload %s = %v, want %v", k, got, v)
		}
	}
	if err := bridge.ValidatePayload(bridge.EventUpload, upload.payload); err != nil {
		t.Errorf("Upload payload does not match the catalogue: %v", err)
	}
	names := r.rec.names()
	if i, j := slices.Index(names, bridge.EventTransferStarted), slices.Index(names, bridge.EventUpload); i < 0 || j < i {
		t.Errorf("Upload at %d, want it after TransferStarted at %d: %v", j, i, names)
	}
	if i, j := slices.Index(names, bridge.EventTransferDone), slices.Index(names, bridge.EventPrintStarted); j < i {
		t.Errorf("PrintStarted at %d, want it after TransferDone at %d: %v", j, i, names)
	}
	started, _ := r.rec.last(bridge.EventPrintStarted)
	if v, _ := started.payload.Get("origin"); v != "sdcard" {
		t.Errorf("PrintStarted origin = %v, want sdcard", v)
	}
	if v, _ := started.payload.Get("path"); !strings.EqualFold(fmt.Sprint(v), "ring.gco") {
		t.Errorf("PrintStarted path = %v, want ring.gco", v)
	}
}

func TestSDUploadThenSelect(t *testing.T) {
	vcfg, _ := sdConfig(t)
	r := startRig(t, vcfg, printer.Config{})
	r.waitSDReady()
	err := await(t, "upload", 60*time.Second, func(done printer.DoneFunc) error {
		return r.p.SDUploadThen(context.Background(), printer.SDUploadRequest{Local: testFile, Select: true}, done)
	})
	if err != nil {
		t.Fatalf("upload failed: %v", err)
	}
	waitFor(t, "FileSelected of the uploaded file", 20*time.Second, func() bool { return r.rec.count(bridge.EventFileSelected) == 1 })
	selected, _ := r.rec.last(bridge.EventFileSelected)
	if v, _ := selected.payload.Get("origin"); v != "sdcard" {
		t.Errorf("FileSelected origin = %v, want sdcard", v)
	}
	if v, _ := selected.payload.Get("path"); !strings.EqualFold(fmt.Sprint(v), "bambus~1.gco") {
		t.Errorf("FileSelected path = %v, want bambus~1.gco", v)
	}
	upload, _ := r.rec.last(bridge.EventUpload)
	for k, v := range map[string]any{"select": true, "print": false, "effective_select": true, "effective_print": false} {
		if got, _ := upload.payload.Get(k); got != v {
			t.Errorf("Upload %s = %v, want %v", k, got, v)
		}
	}
	// A print would have started in the same step as the FileSelected.
	if n := r.rec.count(bridge.EventPrintStarted); n != 0 {
		t.Errorf("PrintStarted fired %d times after an upload with select only", n)
	}
}

func TestSDPrintEventsAndPayloads(t *testing.T) {
	vcfg, _ := sdConfig(t)
	vcfg.Speed = 20
	r := startRig(t, vcfg, printer.Config{})
	r.waitSDReady()
	err := await(t, "SD start", 20*time.Second, func(done printer.DoneFunc) error {
		return r.p.SDJob(context.Background(), bridge.ActionStart, sdLongName, done)
	})
	if err != nil {
		t.Fatalf("SD start failed: %v", err)
	}
	waitFor(t, "progress from M27", 60*time.Second, func() bool {
		j := r.p.Snapshot().Job
		return j != nil && j.FilePosition > 0 && j.Progress > 0
	})
	waitFor(t, "PrintDone", 300*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })
	r.waitState("OPERATIONAL", 10*time.Second)

	started, _ := r.rec.last(bridge.EventPrintStarted)
	want := map[string]any{"name": "PRUSAS~1.GCO", "path": "PRUSAS~1.GCO", "origin": "sdcard"}
	for k, v := range want {
		if got, _ := started.payload.Get(k); got != v {
			t.Errorf("PrintStarted %s = %v, want %v", k, got, v)
		}
	}
	st, _ := os.Stat(filepath.Join("..", "testdata", "gcode", sdLongName))
	if got, _ := started.payload.Get("size"); got != st.Size() {
		t.Errorf("PrintStarted size = %v, want %d", got, st.Size())
	}
	done, _ := r.rec.last(bridge.EventPrintDone)
	for _, k := range []string{"name", "path", "origin", "size", "time"} {
		if _, ok := done.payload.Get(k); !ok {
			t.Errorf("PrintDone lacks %q: %v", k, done.payload)
		}
	}
	if v, _ := done.payload.Get("origin"); v != "sdcard" {
		t.Errorf("PrintDone origin = %v, want sdcard", v)
	}
	if done.ctx.File == nil || done.ctx.File.Origin != "sdcard" {
		t.Errorf("PrintDone context file = %+v, want origin sdcard", done.ctx.File)
	}
	time.Sleep(2 * time.Second)
	if n := r.rec.count(bridge.EventPrintDone); n != 1 {
		t.Errorf("PrintDone fired %d times, want once", n)
	}
	// The SD status auto-report runs during the print only.
	all := r.vp.Executed()
	reportOn, printStart, reportOff := slices.Index(all, "M27 S1"), slices.Index(all, "M24"), slices.Index(all, "M27 S0")
	if reportOn < 0 || reportOn > printStart {
		t.Errorf("M27 S1 at command %d, want it before the M24 at %d", reportOn, printStart)
	}
	if reportOff < printStart {
		t.Errorf("M27 S0 at command %d, want it after the M24 at %d and the print", reportOff, printStart)
	}
	if slices.Contains(all, "M27") {
		t.Error("the edge polled M27 although the firmware auto-reports the SD status")
	}
	if n := r.rec.count(bridge.EventPrintFailed); n != 0 {
		t.Errorf("PrintFailed fired %d times for a good print", n)
	}
	// The firmware ran the file itself: its commands were executed.
	f, err := os.Open(filepath.Join("..", "testdata", "gcode", sdLongName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmds, err := virtual.CommandsOf(f)
	if err != nil {
		t.Fatal(err)
	}
	executed := r.vp.Executed()
	i := slices.Index(executed, cmds[0])
	if i < 0 || len(executed[i:]) < len(cmds) || !slices.Equal(executed[i:i+len(cmds)], cmds) {
		t.Errorf("the executed commands do not contain the SD file's %d commands in order", len(cmds))
	}
	states := stateIDs(r)
	if !slices.Contains(states, "PRINTING") || !slices.Contains(states, "FINISHING") {
		t.Errorf("states %v lack PRINTING or FINISHING", states)
	}
}

func TestSDPrintPollsWithoutAutoReport(t *testing.T) {
	vcfg, _ := sdConfig(t)
	vcfg.Speed = 20
	vcfg.NoSDAutoReport = true
	r := startRig(t, vcfg, printer.Config{})
	r.waitSDReady()
	if err := await(t, "SD start", 20*time.Second, func(done printer.DoneFunc) error {
		return r.p.SDJob(context.Background(), bridge.ActionStart, sdLongName, done)
	}); err != nil {
		t.Fatalf("SD start failed: %v", err)
	}
	waitFor(t, "progress from polled M27", 60*time.Second, func() bool {
		j := r.p.Snapshot().Job
		return j != nil && j.FilePosition > 0 && j.Progress > 0
	})
	waitFor(t, "PrintDone", 300*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })
	r.waitState("OPERATIONAL", 10*time.Second)

	all := r.vp.Executed()
	if !slices.Contains(all, "M27") {
		t.Error("the edge never polled M27 on a firmware without AUTOREPORT_SD_STATUS")
	}
	for _, cmd := range []string{"M27 S1", "M27 S0"} {
		if slices.Contains(all, cmd) {
			t.Errorf("the edge sent %s to a firmware without AUTOREPORT_SD_STATUS", cmd)
		}
	}
	if n := r.rec.count(bridge.EventPrintFailed); n != 0 {
		t.Errorf("PrintFailed fired %d times for a good print", n)
	}
}

func TestSDPauseResumeCancel(t *testing.T) {
	vcfg, _ := sdConfig(t)
	// The pause lands in the file's start G-code, so the resumed print
	// first waits in M109 for the hotend to reach 170 °C: 30 s in real
	// time, longer than the wait below. Ten times faster it takes 3 s,
	// and the print still runs long enough to be cancelled.
	vcfg.Speed = 10
	r := startRig(t, vcfg, printer.Config{})
	r.waitSDReady()
	if err := await(t, "SD start", 20*time.Second, func(done printer.DoneFunc) error {
		return r.p.SDJob(context.Background(), bridge.ActionStart, "prusas~1.gco", done)
	}); err != nil {
		t.Fatalf("SD start failed: %v", err)
	}
	r.waitState("PRINTING", 10*time.Second)
	r.job(bridge.ActionPause, "")
	r.waitState("PAUSED", 60*time.Second)
	paused, _ := r.rec.last(bridge.EventPrintPaused)
	if v, _ := paused.payload.Get("origin"); v != "sdcard" {
		t.Errorf("PrintPaused origin = %v, want sdcard", v)
	}
	if _, ok := paused.payload.Get("fileposition"); !ok {
		t.Error("PrintPaused lacks fileposition")
	}
	executedAtPause := len(r.vp.Executed())
	time.Sleep(1500 * time.Millisecond)
	if n := len(r.vp.Executed()) - executedAtPause; n > 2 {
		t.Errorf("%d commands ran while paused (M25 must stop the SD print)", n)
	}
	r.job(bridge.ActionResume, "")
	r.waitState("PRINTING", 10*time.Second)
	resumedAt := len(r.vp.Executed())
	waitFor(t, "SD print running again", 20*time.Second, func() bool { return len(r.vp.Executed()) > resumedAt+3 })
	r.job(bridge.ActionCancel, "")
	r.waitState("OPERATIONAL", 60*time.Second)
	time.Sleep(2 * time.Second)

	for name, want := range map[string]int{bridge.EventPrintPaused: 1, bridge.EventPrintResumed: 1, bridge.EventPrintCancelling: 1,
		bridge.EventPrintCancelled: 1, bridge.EventPrintFailed: 1, bridge.EventPrintDone: 0} {
		if got := r.rec.count(name); got != want {
			t.Errorf("%s fired %d times, want %d", name, got, want)
		}
	}
	failed, _ := r.rec.last(bridge.EventPrintFailed)
	if v, _ := failed.payload.Get("reason"); v != "cancelled" {
		t.Errorf("PrintFailed reason = %v, want cancelled", v)
	}
	if v, _ := failed.payload.Get("origin"); v != "sdcard" {
		t.Errorf("PrintFailed origin = %v, want sdcard", v)
	}
	executed := r.vp.Executed()
	tail := strings.Join(executed[max(0, len(executed)-40):], " | ")
	for _, cmd := range []string{"M25", "M26 S0"} {
		if !slices.Contains(executed, cmd) {
			t.Errorf("cancel did not send %s; last commands: %s", cmd, tail)
		}
	}
	// The firmware stopped: nothing more runs from the card.
	after := len(r.vp.Executed())
	time.Sleep(1500 * time.Millisecond)
	if n := len(r.vp.Executed()) - after; n > 0 {
		t.Errorf("%d commands ran after the cancel: %v", n, r.vp.Executed()[after:])
	}
}

func TestSDNoCard(t *testing.T) {
	vcfg := fastConfig()
	vcfg.NoSDCard = true
	r := startRig(t, vcfg, printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	waitFor(t, "M21 answered", 10*time.Second, func() bool { return slices.Contains(r.vp.Executed(), "M21") })
	time.Sleep(300 * time.Millisecond)
	if r.p.Snapshot().Flags.SDReady {
		t.Fatal("SDReady set without a card")
	}
	err := r.p.SDList(context.Background(), func([]printer.SDFile, error) {})
	if err == nil || !strings.Contains(err.Error(), "no usable SD card") {
		t.Errorf("list without card error = %v, want one saying there is no usable card", err)
	}
	err = r.p.SDJob(context.Background(), bridge.ActionStart, "CUBE.GCO", nil)
	if err == nil {
		t.Error("SD start without a card was accepted")
	}
	err = r.p.SDUpload(context.Background(), testFile, "", nil)
	if err == nil {
		t.Error("SD upload without a card was accepted")
	}
}

func TestSDNoSupportSkipsCard(t *testing.T) {
	vcfg := fastConfig()
	vcfg.NoSDSupport = true
	r := startRig(t, vcfg, printer.Config{})
	r.waitState("OPERATIONAL", 10*time.Second)
	waitFor(t, "capabilities", 10*time.Second, func() bool { return len(r.p.Snapshot().Capabilities) > 0 })
	time.Sleep(500 * time.Millisecond)
	for _, cmd := range r.vp.Executed() {
		if cmd == "M21" || strings.HasPrefix(cmd, "M20") {
			t.Errorf("edge sent %s to a firmware without SD support", cmd)
		}
	}
}

func TestSDUploadWriteFailure(t *testing.T) {
	vcfg, _ := sdConfig(t)
	vcfg.SDWriteFailAfter = 50
	r := startRig(t, vcfg, printer.Config{})
	r.waitSDReady()
	err := await(t, "upload", 60*time.Second, func(done printer.DoneFunc) error {
		return r.p.SDUpload(context.Background(), testFile, "ring.gco", done)
	})
	if err == nil || !strings.Contains(err.Error(), "could not write") {
		t.Fatalf("upload error = %v, want the write failure", err)
	}
	r.waitState("OPERATIONAL", 10*time.Second)
	if n := r.rec.count(bridge.EventTransferFailed); n != 1 {
		t.Fatalf("TransferFailed fired %d times, want once", n)
	}
	if n := r.rec.count(bridge.EventTransferDone); n != 0 {
		t.Errorf("TransferDone fired %d times for a failed upload", n)
	}
	failed, _ := r.rec.last(bridge.EventTransferFailed)
	for k, v := range map[string]any{"local": testFile, "remote": "ring.gco"} {
		if got, _ := failed.payload.Get(k); got != v {
			t.Errorf("TransferFailed %s = %v, want %v", k, got, v)
		}
	}
	if _, ok := failed.payload.Get("time"); !ok {
		t.Error("TransferFailed lacks time")
	}
	waitFor(t, "partial file deleted", 10*time.Second, func() bool {
		for _, f := range r.vp.SDFiles() {
			if strings.EqualFold(f.LongName, "ring.gco") {
				return false
			}
		}
		return true
	})
	// The connection stays usable.
	if err := await(t, "M105 after the failure", 10*time.Second, func(done printer.DoneFunc) error {
		return r.p.SendGcode(context.Background(), []string{"M105"}, "test", done)
	}); err != nil {
		t.Errorf("M105 after the failed upload: %v", err)
	}
}

func TestSDRemove(t *testing.T) {
	vcfg, dir := sdConfig(t)
	r := startRig(t, vcfg, printer.Config{})
	r.waitSDReady()
	if err := await(t, "select", 10*time.Second, func(done printer.DoneFunc) error {
		return r.p.SDJob(context.Background(), bridge.ActionSelect, sdLongName, done)
	}); err != nil {
		t.Fatalf("select failed: %v", err)
	}
	sel, _ := r.rec.last(bridge.EventFileSelected)
	if v, _ := sel.payload.Get("origin"); v != "sdcard" {
		t.Errorf("FileSelected origin = %v, want sdcard", v)
	}
	lists := r.rec.count(bridge.EventUpdatedFiles)
	if err := await(t, "remove", 10*time.Second, func(done printer.DoneFunc) error {
		return r.p.SDRemove(context.Background(), "PRUSAS~1.GCO", done)
	}); err != nil {
		t.Fatalf("remove failed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, sdLongName)); !os.IsNotExist(err) {
		t.Errorf("file still in the card directory: %v", err)
	}
	waitFor(t, "listing after remove", 10*time.Second, func() bool { return r.rec.count(bridge.EventUpdatedFiles) > lists })
	if r.rec.count(bridge.EventFileDeselected) != 1 {
		t.Error("removing the selected SD file did not deselect it")
	}
	if files := r.sdList(); len(files) != 0 {
		t.Errorf("card still lists %+v", files)
	}
	err := await(t, "remove missing", 10*time.Second, func(done printer.DoneFunc) error {
		return r.p.SDRemove(context.Background(), "NOPE.GCO", done)
	})
	if err == nil || !strings.Contains(err.Error(), "could not delete") {
		t.Errorf("removing a missing file: %v, want a deletion failure", err)
	}
}
