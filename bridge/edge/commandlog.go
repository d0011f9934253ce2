package edge

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/printbridge/printbridge/bridge"
)

// commandLog keeps the command ids that the edge remembers in
// DataDir/<printer>.commands, one JSON line per change, so that a command
// sent again after the edge restarted gets its last reply instead of
// running a second time. A worker sends a G-code hook's command again
// while its final reply is overdue, and a broker redelivers commands.
type commandLog struct {
	path string
	log  *slog.Logger
	// mu guards f, lines and failed: run writes, and close comes from
	// the edge's stop.
	mu sync.Mutex
	f  *os.File
	// lines is how many lines f has, for compaction, and size how many
	// bytes this edge wrote to it, to notice a file emptied in place.
	lines int
	size  int64
	// failed is set after a write failed, which is logged once.
	failed bool
}

// commandLogLine is one line of the log: a command and its last reply.
type commandLogLine struct {
	ID     string       `json:"id"`
	Digest string       `json:"digest"`
	Bus    string       `json:"bus,omitempty"`
	To     string       `json:"to,omitempty"`
	Reply  bridge.Reply `json:"reply"`
}

// reasonRestarted is the reply to a command that was running when the
// edge stopped: whether the firmware took its lines is unknown, and
// running them again could repeat a move or a heater change.
const reasonRestarted = "the edge restarted while this command ran, so its outcome is unknown; it is not run again: check the printer, and send it under a new id to run it"

// openCommandLog reads the log a previous run left and opens it for
// appending. It returns the remembered commands, oldest first, at most
// recentCommandIDs of them. Lines that cannot be read are skipped with a
// warning. A log that cannot be opened leaves the edge remembering
// commands in memory only, which it logs.
func openCommandLog(dataDir, printerID string, log *slog.Logger) (*commandLog, []*seenEntry) {
	l := &commandLog{path: filepath.Join(dataDir, printerID+".commands"), log: log}
	if info, err := os.Lstat(l.path); err == nil && !info.Mode().IsRegular() {
		// Reading a named pipe would block the start for good.
		log.Warn("the file of the remembered command ids is not a regular file; remembering them in memory only, so commands sent again after a restart may run twice: remove it",
			"file", l.path, "mode", info.Mode().String())
		l.failed = true
		return l, nil
	}
	entries, err := l.read()
	if err != nil {
		log.Warn("reading the remembered command ids failed; commands sent again after this restart may run twice", "file", l.path, "error", err)
	}
	if err := l.rewrite(entries); err != nil {
		// A folder without write permission keeps the file appendable.
		f, openErr := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o600)
		if openErr == nil {
			log.Warn("compacting the remembered command ids failed; appending to the file as it is", "file", l.path, "error", err)
			info, _ := f.Stat()
			l.f = f
			if info != nil {
				l.size = info.Size()
			}
			return l, entries
		}
		log.Warn("writing the remembered command ids failed; they are kept in memory only, so commands sent again after a restart may run twice",
			"file", l.path, "error", err)
		l.failed = true
	}
	return l, entries
}

// maxCommandLogLine is the longest line that read takes; a longer one,
// which the edge never writes, is skipped as unreadable.
const maxCommandLogLine = 4 << 20

// readLogLine returns the next line of r without its line feed, or
// tooLong for a line over maxCommandLogLine, and io.EOF at the end.
func readLogLine(r *bufio.Reader) (line []byte, tooLong bool, err error) {
	read := false
	for {
		part, isPrefix, err := r.ReadLine()
		if err != nil {
			if read {
				break
			}
			return nil, false, err
		}
		read = true
		if !tooLong {
			line = append(line, part...)
			if len(line) > maxCommandLogLine {
				tooLong, line = true, nil
			}
		}
		if !isPrefix {
			break
		}
	}
	return line, tooLong, nil
}

// read loads the entries of the log, the last line of each id winning.
func (l *commandLog) read() ([]*seenEntry, error) {
	data, err := os.ReadFile(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}

	// The edge drops the ids it remembered first, and remembers an id
	// again when a rejected command's id is reused. So each id's place is
	// where it was last remembered.
	byID := map[string]*seenEntry{}
	position := map[string]int{}
	bad := 0
	n := 0
	r := bufio.NewReader(bytes.NewReader(data))
	for {
		raw, tooLong, err := readLogLine(r)
		if err != nil {
			break
		}
		if tooLong {
			bad++
			continue
		}
		var line commandLogLine
		var digest []byte
		if err := json.Unmarshal(raw, &line); err == nil {
			digest, err = hex.DecodeString(line.Digest)
		}
		if err != nil || line.ID == "" || len(digest) != len(seenEntry{}.digest) {
			bad++
			continue
		}
		e, ok := byID[line.ID]
		if !ok {
			e = &seenEntry{id: line.ID}
			byID[line.ID] = e
		}
		// A line without a reply status is written when the edge
		// remembers the id, so the last such line gives its place in the
		// edge's memory. A compacted file has one line per id, in that
		// order.
		n++
		if _, ok := position[line.ID]; !ok || line.Reply.Status == "" {
			position[line.ID] = n
		}
		copy(e.digest[:], digest)
		e.reply = replyAddr{bus: line.Bus, to: line.To}
		e.last = line.Reply
	}

	order := make([]string, 0, len(byID))
	for id := range byID {
		order = append(order, id)
	}
	slices.SortFunc(order, func(a, b string) int { return position[a] - position[b] })
	if bad > 0 {
		l.log.Warn("skipped unreadable lines of the remembered command ids", "file", l.path, "lines", bad)
	}
	if len(order) > recentCommandIDs {
		order = order[len(order)-recentCommandIDs:]
	}

	entries := make([]*seenEntry, 0, len(order))
	for _, id := range order {
		e := byID[id]
		if !e.last.Final() || e.last.Status == "" {
			e.last = bridge.Reply{ID: e.id, Printer: e.last.Printer, Kind: e.last.Kind, Status: bridge.ReplyFailed,
				Reason: reasonRestarted, Time: e.last.Time}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// rewrite replaces the log with entries, through a temporary file, and
// keeps it open for appending.
func (l *commandLog) rewrite(entries []*seenEntry) error {
	var buf bytes.Buffer
	for _, e := range entries {
		data, err := json.Marshal(lineOf(e))
		if err != nil {
			return err
		}
		buf.Write(data)
		buf.WriteByte('\n')
	}

	// A leftover named pipe or symlink at the temporary path would block
	// the write or send it elsewhere, so the path is removed and created
	// anew, never followed.
	tmp := l.path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	t, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = t.Write(buf.Bytes())
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, l.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}

	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = l.f.Close()
	}
	l.f, l.lines, l.size = f, len(entries), int64(buf.Len())
	l.failed = false
	return nil
}

// replaced reports whether the path no longer names the open file, or
// the file has lost lines that this edge wrote (emptied in place). The
// caller holds mu.
func (l *commandLog) replaced() bool {
	open, err := l.f.Stat()
	if err != nil {
		return false
	}
	now, err := os.Lstat(l.path)
	return err != nil || !os.SameFile(open, now) || open.Size() < l.size
}

func lineOf(e *seenEntry) commandLogLine {
	return commandLogLine{ID: e.id, Digest: hex.EncodeToString(e.digest[:]), Bus: e.reply.bus, To: e.reply.to, Reply: e.last}
}

// append records e's current reply. When the log has grown to four times
// the remembered ids, it is rewritten with entries, the ones remembered
// now.
func (l *commandLog) append(e *seenEntry, entries func() []*seenEntry) {
	if l == nil {
		return
	}
	data, err := json.Marshal(lineOf(e))
	if err == nil {
		data = append(data, '\n')
		l.mu.Lock()
		if l.f == nil {
			l.mu.Unlock()
			return
		}
		replaced := l.replaced()
		if !replaced {
			var n int
			n, err = l.f.Write(data)
			l.lines++
			l.size += int64(n)
		}
		grown := l.lines > 4*recentCommandIDs
		l.mu.Unlock()
		switch {
		case replaced:
			// Lines appended to a removed file are lost at the next start,
			// and with them the ids of commands that must not run twice.
			l.mu.Lock()
			warn := !l.failed
			l.mu.Unlock()
			if warn {
				l.log.Warn("the file of the remembered command ids was removed, replaced or emptied while the edge ran; writing it again",
					"file", l.path)
			}
			err = l.rewrite(entries())
		case err == nil && grown:
			err = l.rewrite(entries())
		}
	}
	if err != nil {
		l.mu.Lock()
		first := !l.failed
		l.failed = true
		l.mu.Unlock()
		if first {
			l.log.Warn("writing the remembered command ids failed; commands sent again after a restart may run twice",
				"file", l.path, "command_id", logText(e.id), "error", err)
		}
	}
}

// close closes the file; appends after it do nothing. A file removed,
// replaced or emptied since the last append is written again with
// entries first, so the next start finds the ids.
func (l *commandLog) close(entries func() []*seenEntry) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	replaced := l.f != nil && l.replaced()
	l.mu.Unlock()
	if replaced {
		l.log.Warn("the file of the remembered command ids was removed, replaced or emptied while the edge ran; writing it again",
			"file", l.path)
		if err := l.rewrite(entries()); err != nil {
			l.log.Warn("writing the remembered command ids failed; commands sent again after the restart may run twice",
				"file", l.path, "error", err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
