package virtual

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSDListLongNamesAndTimestamps(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Calibration Cube.gcode"), []byte("G28\nG1 Z1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "CUBE.GCO"), []byte("G28\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig()
	cfg.SDDir = dir
	h := connect(t, startPrinter(t, cfg))
	got := h.command("M20 L")
	// The directory is read in name order, so CUBE.GCO comes first.
	want := []string{"Begin file list", "CUBE.GCO 4 CUBE.GCO", "CALIBR~1.GCO 10 Calibration Cube.gcode", "End file list", "ok"}
	if !slices.Equal(got, want) {
		t.Errorf("M20 L = %q, want %q", got, want)
	}
	got = h.command("M20 T")
	if len(got) != 5 || !strings.HasPrefix(got[2], "CALIBR~1.GCO 10 0x") {
		t.Errorf("M20 T = %q, want sizes followed by 0x timestamps", got)
	}
}

func TestSDPrintRunsFileWithoutOKs(t *testing.T) {
	p := startPrinter(t, fastConfig())
	h := connect(t, p)
	if got := h.command("M28 job.gco"); !slices.Equal(got, []string{"Writing to file: JOB.GCO", "ok"}) {
		t.Fatalf("M28 = %q", got)
	}
	file := []string{"G28", "G1 X10 Y10 F3000", "G1 Z0.3", "M400"}
	for i, cmd := range file {
		h.sendNumbered(i+1, cmd)
		h.until("ok of "+cmd, isOK)
	}
	h.send("M29")
	h.untilLine("Done saving file.")
	h.until("ok of M29", isOK)
	stored := p.SDFiles()
	if len(stored) != 1 || string(stored[0].Data) != strings.Join(file, "\n")+"\n" {
		t.Fatalf("card holds %+v, want the four commands", stored)
	}
	if slices.Contains(p.Executed(), "G1 X10 Y10 F3000") {
		t.Fatal("a line written to the card was executed")
	}

	size := strconv.Itoa(len(stored[0].Data))
	if got := h.command("M23 job.gco"); !slices.Equal(got, []string{"File opened: JOB.GCO Size: " + size, "File selected", "ok"}) {
		t.Fatalf("M23 = %q", got)
	}
	if got := h.command("M27"); !slices.Equal(got, []string{"Not SD printing", "ok"}) {
		t.Errorf("M27 before M24 = %q", got)
	}
	h.command("M24")
	lines := h.untilLine("Done printing file")
	for _, l := range lines {
		if isOK(l) {
			t.Errorf("SD line got an ok: %q", lines)
		}
	}
	executed := p.Executed()
	i := slices.Index(executed, "M24")
	if i < 0 || !slices.Equal(executed[i+1:i+1+len(file)], file) {
		t.Errorf("executed after M24 = %q, want the file's commands", executed[i+1:])
	}
	if got := h.command("M27"); !slices.Equal(got, []string{"Not SD printing", "ok"}) {
		t.Errorf("M27 after the print = %q", got)
	}
}

func TestSDPauseResumeAndStatus(t *testing.T) {
	cfg := fastConfig()
	cfg.Speed = 1
	p := startPrinter(t, cfg)
	h := connect(t, p)
	var data strings.Builder
	for i := range 200 {
		data.WriteString("G1 X" + strconv.Itoa(i%50) + " F600\n")
	}
	p.sd.mu.Lock()
	p.sd.files = append(p.sd.files, &sdFile{dos: "LONG.GCO", long: "long.gcode", data: []byte(data.String()), modified: time.Now()})
	p.sd.mu.Unlock()
	h.command("M23 long.gcode")
	h.command("M24")
	h.command("M27 S1")
	report := h.until("SD auto-report", func(l string) bool { return strings.HasPrefix(l, "SD printing byte ") })
	last := report[len(report)-1]
	if !strings.HasSuffix(last, "/"+strconv.Itoa(data.Len())) {
		t.Errorf("auto-report %q does not end in the file size %d", last, data.Len())
	}
	h.command("M25")
	h.command("M27 S0")
	time.Sleep(300 * time.Millisecond)
	if got := h.command("M27"); !slices.Equal(got[len(got)-2:], []string{"Not SD printing", "ok"}) {
		t.Errorf("M27 while paused = %q", got)
	}
	n := len(p.Executed())
	time.Sleep(2 * time.Second)
	// A few moves read before M25 may still finish.
	if ran := len(p.Executed()) - n; ran > cfg.BufSize {
		t.Errorf("%d commands ran while paused", ran)
	}
	h.command("M26 S0")
	h.command("M24")
	deadline := time.Now().Add(10 * time.Second)
	for len(p.Executed()) <= n+cfg.BufSize+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(p.Executed()) <= n+cfg.BufSize+2 {
		t.Error("M24 did not resume the print")
	}
	h.command("M524")
	if got := h.command("M27"); !slices.Equal(got[len(got)-2:], []string{"Not SD printing", "ok"}) {
		t.Errorf("M27 after M524 = %q", got)
	}
}

func TestSDDeleteAndMissingFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.gcode"), []byte("G28\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig()
	cfg.SDDir = dir
	h := connect(t, startPrinter(t, cfg))
	if got := h.command("M23 nope.gco"); !slices.Equal(got, []string{"open failed, File: nope.gco.", "ok"}) {
		t.Errorf("M23 of a missing file = %q", got)
	}
	if got := h.command("M30 A.GCO"); !slices.Equal(got, []string{"File deleted:A.GCO", "ok"}) {
		t.Errorf("M30 = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.gcode")); !os.IsNotExist(err) {
		t.Errorf("deleted file still in the directory: %v", err)
	}
	if got := h.command("M30 A.GCO"); !slices.Equal(got, []string{"Deletion failed, File: A.GCO.", "ok"}) {
		t.Errorf("second M30 = %q", got)
	}
}

func TestSDNoCardAndNoSupport(t *testing.T) {
	cfg := fastConfig()
	cfg.NoSDCard = true
	p := startPrinter(t, cfg)
	h := openHost(t, p.Path())
	h.untilLine("echo:SD init fail")
	if got := h.command("M21"); !slices.Equal(got, []string{"echo:SD init fail", "ok"}) {
		t.Errorf("M21 without card = %q", got)
	}
	if got := h.command("M20"); !slices.Equal(got, []string{"echo:No media", "ok"}) {
		t.Errorf("M20 without card = %q", got)
	}
	h.close()

	cfg = fastConfig()
	cfg.NoSDSupport = true
	h = openHost(t, startPrinter(t, cfg).Path())
	// Without SDSUPPORT the banner ends before any SD line.
	h.until("end of banner", func(l string) bool { return strings.HasPrefix(l, "echo: Free Memory") })
	if got := h.command("M20"); !slices.Equal(got, []string{`echo:Unknown command: "M20"`, "ok"}) {
		t.Errorf("M20 without SD support = %q", got)
	}
	if got := h.command("M115"); !slices.Contains(got, "Cap:SDCARD:0") || !slices.Contains(got, "Cap:AUTOREPORT_SD_STATUS:0") {
		t.Errorf("M115 without SD support = %q", got)
	}
}

func TestSDWriteFailsAfterKnob(t *testing.T) {
	cfg := fastConfig()
	cfg.SDWriteFailAfter = 2
	p := startPrinter(t, cfg)
	h := connect(t, p)
	h.command("M28 x.gco")
	h.sendNumbered(1, "G28")
	h.until("ok 1", isOK)
	h.sendNumbered(2, "G1 X1")
	h.until("ok 2", isOK)
	h.sendNumbered(3, "G1 X2")
	got := h.until("ok 3", isOK)
	if !slices.Contains(got, "Error:error writing to file") {
		t.Errorf("third line = %q, want the write error", got)
	}
	h.send("M29")
	h.untilLine("Done saving file.")
	if files := p.SDFiles(); len(files) != 1 || string(files[0].Data) != "G28\nG1 X1\n" {
		t.Errorf("card holds %+v, want the two lines written before the failure", files)
	}
}

func TestSDConfigRejectsNegativeWriteFail(t *testing.T) {
	cfg := fastConfig()
	cfg.SDWriteFailAfter = -1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "SD write-fail") {
		t.Errorf("Validate = %v, want the SD write-fail error", err)
	}
}
