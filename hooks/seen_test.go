package hooks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSeenFileSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "seen-events")
	set := newIDSet(3)
	l, err := openSeenLog(path, set, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		set.add(id)
		if err := l.writeDone(id, set); err != nil {
			t.Fatal(err)
		}
	}
	// A removal line, as earlier versions wrote them.
	set.remove("d")
	l.mu.Lock()
	err = l.appendLocked("-d", set)
	l.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	// More writes than twice the capacity compact the file.
	for _, id := range []string{"e", "f", "g"} {
		set.add(id)
		if err := l.writeDone(id, set); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.close(); err != nil {
		t.Fatal(err)
	}

	again := newIDSet(3)
	l2, err := openSeenLog(path, again, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.close()
	for _, id := range []string{"e", "f", "g"} {
		if again.add(id) {
			t.Errorf("id %s forgotten after a restart", id)
		}
	}
	if !again.add("d") {
		t.Error("removed id d still remembered")
	}
	if l2.lines > 2*again.max+1 {
		t.Errorf("file holds %d lines, want it compacted", l2.lines)
	}
}

// TestSeenFileLoadsEveryLine checks the line splitting of the load: a
// '\r' stays part of its line, a line longer than the read buffer loads,
// and a last line without '\n' counts.
func TestSeenFileLoadsEveryLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seen-events")
	long := strings.Repeat("x", 100<<10)
	data := "0190f3c2-7b1e-7c3a-9d4e-1234567890ab\nwith-cr\r\n\n" + long + "\nlast"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	set := newIDSet(10)
	l, err := openSeenLog(path, set, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	want := []string{"0190f3c2-7b1e-7c3a-9d4e-1234567890ab", "with-cr\r", long, "last"}
	got := set.list()
	if len(got) != len(want) {
		t.Fatalf("loaded %d ids, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("id %d = %.40q, want %.40q", i, got[i], want[i])
		}
	}
	if l.lines != 4 {
		t.Errorf("counted %d lines, want 4", l.lines)
	}
}

func TestSeenFileLockedByOneWorker(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seen-events")
	first, err := openSeenLog(path, newIDSet(3), nil)
	if err != nil {
		t.Fatal(err)
	}
	if second, err := openSeenLog(path, newIDSet(3), nil); err == nil {
		second.close()
		t.Fatal("a second worker opened a seen-events file in use")
	} else if !strings.Contains(err.Error(), "in use by another worker") {
		t.Errorf("second open error = %q, want it to say the file is in use", err)
	}
	if err := first.close(); err != nil {
		t.Fatal(err)
	}
	again, err := openSeenLog(path, newIDSet(3), nil)
	if err != nil {
		t.Fatalf("open after the first worker stopped: %v", err)
	}
	again.close()
}
