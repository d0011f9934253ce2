package edge

import (
	"bytes"
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// TestCommandLogAfterRestart writes the commands of one run and reads
// them as the next run does. A finished command keeps its reply. One that
// was running, or had no reply yet, is reported failed, so that a repeat
// does not run it again. A broken line is skipped.
func TestCommandLogAfterRestart(t *testing.T) {
	dir := t.TempDir()
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	l, entries := openCommandLog(dir, "p1", log)
	if len(entries) != 0 {
		t.Fatalf("a new log has %d entries", len(entries))
	}
	done := &seenEntry{id: "done-1", digest: sha256.Sum256([]byte("a")), reply: replyAddr{bus: "mqtt", to: "x/reply"},
		last: bridge.Reply{ID: "done-1", Kind: "gcode", Status: bridge.ReplyDone, Lines: []string{"ok"}, Time: time.Now().UTC()}}
	running := &seenEntry{id: "running-1", digest: sha256.Sum256([]byte("b")),
		last: bridge.Reply{ID: "running-1", Kind: "gcode", Status: bridge.ReplyAccepted}}
	fresh := &seenEntry{id: "fresh-1", digest: sha256.Sum256([]byte("c"))}
	all := func() []*seenEntry { return []*seenEntry{done, running, fresh} }
	for _, e := range all() {
		l.append(e, all)
	}
	if err := l.close(noEntries); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "p1.commands"), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("{not json\n"); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	l, entries = openCommandLog(dir, "p1", log)
	defer l.close(noEntries)
	if len(entries) != 3 {
		t.Fatalf("read %d entries, want 3", len(entries))
	}
	byID := map[string]*seenEntry{}
	for _, e := range entries {
		byID[e.id] = e
	}
	if got := byID["done-1"]; got.last.Status != bridge.ReplyDone || got.digest != done.digest || got.reply != done.reply || len(got.last.Lines) != 1 {
		t.Errorf("done command read back as %+v, want its reply, digest and reply address", got)
	}
	for _, id := range []string{"running-1", "fresh-1"} {
		got := byID[id].last
		if got.Status != bridge.ReplyFailed || got.Reason != reasonRestarted || got.ID != id {
			t.Errorf("%s read back with reply %+v, want failed with the restart reason", id, got)
		}
	}
	if !strings.Contains(logs.String(), "skipped unreadable lines") {
		t.Errorf("the broken line was not logged:\n%s", logs.String())
	}
}

// TestCommandLogCompacts appends more lines than four times the
// remembered ids: the file is rewritten with the remembered commands.
func TestCommandLogCompacts(t *testing.T) {
	dir := t.TempDir()
	l, _ := openCommandLog(dir, "p1", slog.New(slog.DiscardHandler))
	defer l.close(noEntries)
	stored := []*seenEntry{{id: "stored", digest: sha256.Sum256([]byte("k")), last: bridge.Reply{ID: "stored", Status: bridge.ReplyDone}}}
	entry := &seenEntry{id: "busy", digest: sha256.Sum256([]byte("b"))}
	for range 4*recentCommandIDs + 1 {
		l.append(entry, func() []*seenEntry { return stored })
	}
	data, err := os.ReadFile(filepath.Join(dir, "p1.commands"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(data), "\n"); lines != 1 {
		t.Errorf("log has %d lines after the compaction, want 1", lines)
	}
}

// TestCommandLogSkipsHugeLine reads a log with a line of 64 MiB before a
// good one: the huge line is skipped, and the good entry is stored.
func TestCommandLogSkipsHugeLine(t *testing.T) {
	dir := t.TempDir()
	l, _ := openCommandLog(dir, "p1", slog.New(slog.DiscardHandler))
	good := &seenEntry{id: "good-1", digest: sha256.Sum256([]byte("g")), last: bridge.Reply{ID: "good-1", Status: bridge.ReplyDone}}
	l.append(good, func() []*seenEntry { return []*seenEntry{good} })
	if err := l.close(noEntries); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "p1.commands")
	stored, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	huge := append(bytes.Repeat([]byte("a"), 64<<20), '\n')
	if err := os.WriteFile(path, append(huge, stored...), 0o600); err != nil {
		t.Fatal(err)
	}

	logs := &bytes.Buffer{}
	l, entries := openCommandLog(dir, "p1", slog.New(slog.NewTextHandler(logs, nil)))
	defer l.close(noEntries)
	if len(entries) != 1 || entries[0].id != "good-1" || entries[0].last.Status != bridge.ReplyDone {
		t.Errorf("read %d entries (%v), want good-1 done", len(entries), entries)
	}
	if !strings.Contains(logs.String(), "skipped unreadable lines") {
		t.Errorf("the huge line was not logged as skipped:\n%s", logs.String())
	}
}

// TestCommandLogRemovedWhileRunning removes the log while the edge runs:
// the next append writes it again with every remembered command.
func TestCommandLogRemovedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	logs := &bytes.Buffer{}
	l, _ := openCommandLog(dir, "p1", slog.New(slog.NewTextHandler(logs, nil)))
	defer l.close(noEntries)
	first := &seenEntry{id: "first", digest: sha256.Sum256([]byte("1")), last: bridge.Reply{ID: "first", Status: bridge.ReplyDone}}
	second := &seenEntry{id: "second", digest: sha256.Sum256([]byte("2"))}
	remembered := []*seenEntry{first}
	all := func() []*seenEntry { return remembered }
	l.append(first, all)
	path := filepath.Join(dir, "p1.commands")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	remembered = append(remembered, second)
	l.append(second, all)

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the log was not written again: %v", err)
	}
	for _, id := range []string{`"id":"first"`, `"id":"second"`} {
		if !strings.Contains(string(data), id) {
			t.Errorf("the log written again lacks %s:\n%s", id, data)
		}
	}
	if !strings.Contains(logs.String(), "writing it again") {
		t.Errorf("the removal was not logged:\n%s", logs.String())
	}
}

// noEntries stands for an edge that remembers no command.
func noEntries() []*seenEntry { return nil }

// TestCommandLogLostBeforeStop removes the log, and in a second run
// empties it in place, with no command after it. The stop writes the
// remembered commands again, so the next start still reads them.
func TestCommandLogLostBeforeStop(t *testing.T) {
	for _, c := range []struct {
		name string
		lose func(path string) error
	}{
		{"removed", os.Remove},
		{"emptied", func(path string) error { return os.Truncate(path, 0) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			logs := &bytes.Buffer{}
			l, _ := openCommandLog(dir, "p1", slog.New(slog.NewTextHandler(logs, nil)))
			stored := &seenEntry{id: "stored", digest: sha256.Sum256([]byte("k")), last: bridge.Reply{ID: "stored", Status: bridge.ReplyDone}}
			all := func() []*seenEntry { return []*seenEntry{stored} }
			l.append(stored, all)
			if err := c.lose(filepath.Join(dir, "p1.commands")); err != nil {
				t.Fatal(err)
			}
			if err := l.close(all); err != nil {
				t.Fatal(err)
			}
			l, entries := openCommandLog(dir, "p1", slog.New(slog.DiscardHandler))
			defer l.close(noEntries)
			if len(entries) != 1 || entries[0].id != "stored" {
				t.Errorf("next start read %v, want the command stored", entries)
			}
			if !strings.Contains(logs.String(), "writing it again") {
				t.Errorf("the loss was not logged:\n%s", logs.String())
			}
		})
	}
}

// TestCommandLogOrderOfRemember writes the lines that the edge writes
// for a reused rejected id, for a long command whose final reply comes
// after many newer commands, and for 1023 short commands. Read back, the
// reused id is the newest and the long command the oldest, as in the
// edge's memory, so the long command is the one dropped.
func TestCommandLogOrderOfRemember(t *testing.T) {
	dir := t.TempDir()
	l, _ := openCommandLog(dir, "p1", slog.New(slog.DiscardHandler))
	// write appends the line of id with status, "" for the line that
	// the edge writes when it remembers the id.
	write := func(id, status string) {
		l.append(&seenEntry{id: id, digest: sha256.Sum256([]byte(id)), last: bridge.Reply{ID: id, Status: status}}, noEntries)
	}
	write("reused", "")
	write("reused", bridge.ReplyRejected)
	write("long", "")
	write("long", bridge.ReplyAccepted)
	for i := range recentCommandIDs - 1 {
		write(strconv.Itoa(i), "")
		write(strconv.Itoa(i), bridge.ReplyDone)
	}
	write("long", bridge.ReplyDone)
	write("reused", "")
	write("reused", bridge.ReplyDone)
	if err := l.close(noEntries); err != nil {
		t.Fatal(err)
	}

	l, entries := openCommandLog(dir, "p1", slog.New(slog.DiscardHandler))
	defer l.close(noEntries)
	if len(entries) != recentCommandIDs {
		t.Fatalf("read %d entries, want %d", len(entries), recentCommandIDs)
	}
	if last := entries[len(entries)-1].id; last != "reused" {
		t.Errorf("newest entry is %q, want the reused id", last)
	}
	for _, e := range entries {
		if e.id == "long" {
			t.Errorf("the long command is stored, want it dropped as the oldest remembered")
		}
	}
	if first := entries[0].id; first != "0" {
		t.Errorf("oldest entry is %q, want 0", first)
	}
}

// TestCommandLogNamedPipe finds a named pipe in place of the log, which
// would block a read: the edge remembers the ids in memory only.
func TestCommandLogNamedPipe(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "p1.commands"), 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	logs := &bytes.Buffer{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		l, entries := openCommandLog(dir, "p1", slog.New(slog.NewTextHandler(logs, nil)))
		if len(entries) != 0 {
			t.Errorf("read %d entries from a named pipe", len(entries))
		}
		l.append(&seenEntry{id: "x"}, noEntries)
		_ = l.close(noEntries)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("opening the log blocked on the named pipe")
	}
	if !strings.Contains(logs.String(), "not a regular file") {
		t.Errorf("the named pipe was not logged:\n%s", logs.String())
	}
}

// TestCommandLogTempPathTaken puts a named pipe, and then a symlink to
// another file, at the temporary path of the rewrite. Neither blocks the
// start or is written through: the file is written anew.
func TestCommandLogTempPathTaken(t *testing.T) {
	for _, c := range []struct {
		name string
		take func(tmp, victim string) error
	}{
		{"named pipe", func(tmp, _ string) error { return syscall.Mkfifo(tmp, 0o600) }},
		{"symlink", func(tmp, victim string) error { return os.Symlink(victim, tmp) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(dir, "victim.txt")
			if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := c.take(filepath.Join(dir, "p1.commands.tmp"), victim); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				l, _ := openCommandLog(dir, "p1", slog.New(slog.DiscardHandler))
				e := &seenEntry{id: "x", digest: sha256.Sum256([]byte("x"))}
				l.append(e, func() []*seenEntry { return []*seenEntry{e} })
				_ = l.close(noEntries)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the rewrite blocked on the temporary path")
			}
			if data, _ := os.ReadFile(victim); string(data) != "precious" {
				t.Errorf("the file behind the symlink was overwritten: %q", data)
			}
			info, err := os.Lstat(filepath.Join(dir, "p1.commands"))
			if err != nil || !info.Mode().IsRegular() {
				t.Errorf("the log is not a regular file after the rewrite: %v %v", info, err)
			}
		})
	}
}
