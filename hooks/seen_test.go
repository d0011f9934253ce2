package hooks

import (
	"path/filepath"
	"testing"
)

func TestSeenFileSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "seen-events")
	set := newIDSet(3)
	l, err := openSeenLog(path, set)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		set.add(id)
		if err := l.write(id, set); err != nil {
			t.Fatal(err)
		}
	}
	set.remove("d")
	if err := l.write("-d", set); err != nil {
		t.Fatal(err)
	}
	// More writes than twice the capacity compact the file.
	for _, id := range []string{"e", "f", "g"} {
		set.add(id)
		if err := l.write(id, set); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.close(); err != nil {
		t.Fatal(err)
	}

	again := newIDSet(3)
	l2, err := openSeenLog(path, again)
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
