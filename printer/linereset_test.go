package printer_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

// assertEachLineOnce checks the virtual printer's line counts since the
// job's M110: no line arrived again after it was accepted, and each was
// accepted once.
func assertEachLineOnce(t *testing.T, st virtual.LineStats) {
	t.Helper()
	if st.Repeated != 0 {
		t.Errorf("%d lines reached the firmware again after it had accepted them", st.Repeated)
	}
	for n, c := range st.Accepted {
		if c != 1 {
			t.Errorf("line %d accepted %d times, want once", n, c)
		}
	}
	if len(st.Accepted) == 0 {
		t.Error("no numbered line accepted since the job's M110")
	}
}

func TestRepetierM110RejectedAtJobStart(t *testing.T) {
	vcfg := fastConfig()
	vcfg.Dialect = virtual.DialectRepetier
	vcfg.RejectM110 = 1
	r := startRig(t, vcfg, printer.Config{})
	executed := printFile(t, r, testFile)

	var rejected int
	for _, f := range r.vp.Faults() {
		if f.Kind == virtual.FaultM110Rejected {
			rejected++
		}
	}
	if rejected != 1 {
		t.Fatalf("virtual printer rejected %d M110 lines, want the job's first one", rejected)
	}
	assertRecordEqualsFile(t, executed)
	assertNoErrorEvents(t, r)
	if n := r.rec.count(bridge.EventDisconnected); n != 0 {
		t.Errorf("Disconnected fired %d times", n)
	}
	assertEachLineOnce(t, r.vp.LineStats())
}

// repetierRejectsM110Firmware replies as the Repetier firmware of the transcript
// below: `ok <n>` acks, a temperature report and `wait` lines after
// M105, and a checksum error with an empty line and `Resend:11`, but no
// ok, for the M110 that follows line 10.
//
//	> N9 M105*cs
//	< ok 9
//	< T:22.36 /0 B:24.58 /0 B@:0 @:0
//	< wait
//	< wait
//	> N10 M117 ETA: -*cs
//	< ok 10
//	> N0 M110 N0*125
//	< Error:Wrong checksum
//	<
//	< Resend:11
func repetierRejectsM110Firmware(t *testing.T) (*scriptedFirmware, *int) {
	var mu sync.Mutex
	rejected := 0
	fw := newScriptedFirmware(t, []string{"start", "Info:External Reset", "SD card ok"}, scriptFuncs{
		reject: func(fw *scriptedFirmware, n int, cmd string) []string {
			mu.Lock()
			defer mu.Unlock()
			if strings.HasPrefix(cmd, "M110") && fw.last == 10 && rejected == 0 {
				rejected++
				return []string{"Error:Wrong checksum", "", "Resend:11"}
			}
			return nil
		},
		respond: func(fw *scriptedFirmware, n int, cmd string) []string {
			ok := fmt.Sprintf("ok %d", max(n, 0))
			switch {
			case strings.HasPrefix(cmd, "M115"):
				return []string{ok, "FIRMWARE_NAME:Repetier_0.91 FIRMWARE_URL:https://github.com/repetier/Repetier-Firmware/ PROTOCOL_VERSION:1.0 MACHINE_TYPE:Mendel EXTRUDER_COUNT:1 REPETIER_PROTOCOL:2"}
			case strings.HasPrefix(cmd, "M105"):
				return []string{ok, "T:22.36 /0 B:24.58 /0 B@:0 @:0", "wait", "wait"}
			}
			return []string{ok}
		},
	})
	return fw, &rejected
}

func TestReplayRejectedM110(t *testing.T) {
	fw, rejected := repetierRejectsM110Firmware(t)
	files := t.TempDir()
	job := []string{"G90", "G1 X10 Y10 F3000", "G1 X20 Y10", "G1 X20 Y20", "G1 X10 Y20"}
	if err := os.WriteFile(filepath.Join(files, "job.gcode"), []byte(strings.Join(job, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, rec := startScripted(t, fw, printer.Config{FilesDir: files})
	// The capabilities apply a second after the M115 reply, since this
	// firmware sends no Cap lines, and start with one M105 poll. Waiting
	// for it keeps it out of the transcript's lines.
	waitFor(t, "the first M105 poll", 10*time.Second, func() bool { return slices.Contains(fw.commands(), "M105") })

	// Bring the firmware's count to 8, so the transcript's lines get
	// its numbers whatever the handshake sent.
	for {
		fw.mu.Lock()
		last := fw.last
		fw.mu.Unlock()
		if last >= 8 {
			if last != 8 {
				t.Fatalf("firmware count is %d after the handshake, more than the transcript's 8", last)
			}
			break
		}
		if err := sendAll(t, p, []string{"G90"}, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := sendAll(t, p, []string{"M105"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := sendAll(t, p, []string{"M117 ETA: -"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Job(ctx, bridge.ActionStart, "job.gcode", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "PrintDone", 15*time.Second, func() bool { return rec.count(bridge.EventPrintDone) == 1 })

	if *rejected != 1 {
		t.Fatalf("the M110 after line 10 was rejected %d times, want once", *rejected)
	}
	cmds := fw.commands()
	i := slices.Index(cmds, "M117 ETA: -")
	if i < 0 {
		t.Fatalf("M117 never accepted: %q", cmds)
	}
	want := append(append([]string{"M117 ETA: -", "M110 N0"}, job...), "M400")
	if got := cmds[i:]; !slices.Equal(got, want) {
		t.Errorf("firmware accepted %q after the M117, want %q", got, want)
	}
	for _, name := range []string{bridge.EventError, bridge.EventDisconnected, bridge.EventPrintFailed} {
		if n := rec.count(name); n != 0 {
			t.Errorf("%s fired %d times", name, n)
		}
	}
}
