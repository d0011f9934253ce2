package virtual

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Marlin's SD card strings (Marlin/src/core/language.h and cardreader.cpp
// of the 2.1 series).
const (
	msgSDOK          = "echo:SD card ok"
	msgSDInitFail    = "echo:SD init fail"
	msgSDReleased    = "echo:SD card released"
	msgNoMedia       = "echo:No media"
	msgBeginList     = "Begin file list"
	msgEndList       = "End file list"
	msgFileOpened    = "File opened: "
	msgFileSelected  = "File selected"
	msgOpenFailed    = "open failed, File: "
	msgWritingFile   = "Writing to file: "
	msgFileSaved     = "Done saving file."
	msgWriteError    = "Error:error writing to file"
	msgPrintingByte  = "SD printing byte "
	msgNotSDPrinting = "Not SD printing"
	msgDonePrinting  = "Done printing file"
	msgFileDeleted   = "File deleted:"
	msgDeleteFailed  = "Deletion failed, File: "
)

// sdFile is one file on the simulated card.
type sdFile struct {
	// dos is the 8.3 name that M20 lists and M23 opens.
	dos string
	// long is the long file name (M20 L); it names the file in SDDir.
	long string
	data []byte
	// modified is the file's time, listed as a FAT timestamp by M20 T.
	modified time.Time
}

// sdCard is the simulated SD card with its CardReader state. It outlives
// sessions, as a card stays in the printer over a reset; a reset only
// closes the open file. The firmware goroutine and the report goroutine
// (M27 auto-report) share it through mu.
type sdCard struct {
	mu sync.Mutex
	// dir backs the card when set: files are read from it at start and
	// written to it on M29 and M30.
	dir     string
	files   []*sdFile
	mounted bool
	// open is the file selected by M23, pos its read position and
	// printing whether M24 runs it.
	open     *sdFile
	pos      int
	printing bool
	// doneQueued is set once the end of the open file has been queued, so
	// Done printing file comes once.
	doneQueued bool
	// saving is the file an M28 writes to, with the lines written so far
	// and whether a write failed.
	saving      *sdFile
	savedLines  int
	writeFailed bool
	failAfter   int
	lowerNames  bool
}

// newSDCard builds the card of cfg: empty, loaded from SDDir, or absent.
func newSDCard(cfg Config) (*sdCard, error) {
	c := &sdCard{dir: cfg.SDDir, mounted: !cfg.NoSDCard, failAfter: cfg.SDWriteFailAfter, lowerNames: cfg.prusa()}
	if cfg.prusa() {
		c.files = append(c.files, &sdFile{dos: prusaSDFile, long: "mini-cube.gcode", data: prusaSDData(), modified: time.Date(2023, 7, 14, 12, 0, 0, 0, time.UTC)})
	}
	if c.dir == "" {
		return c, nil
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("SD card directory: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(c.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("SD card directory: %w", err)
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("SD card directory: %w", err)
		}
		c.files = append(c.files, &sdFile{dos: c.dosName(e.Name()), long: e.Name(), data: data, modified: info.ModTime()})
	}
	return c, nil
}

// prusaSDData is the content of the Prusa card's one file: a short print
// padded with comments to the size its listing shows.
func prusaSDData() []byte {
	data := []byte("G28\nG1 Z5 F3000\nG1 X10 Y10 F6000\nM400\n")
	pad := "; padding\n"
	for len(data)+len(pad) <= prusaSDFileSize {
		data = append(data, pad...)
	}
	for len(data) < prusaSDFileSize {
		data = append(data, '\n')
	}
	return data
}

// dosName returns the 8.3 name Marlin's FAT library gives long: the name
// as it is when it fits 8.3, else the first six valid characters, ~ and
// the lowest free number, and up to three characters of the extension.
// Names are upper-case, or lower-case as Prusa-Firmware prints them.
func (c *sdCard) dosName(long string) string {
	base, ext, _ := cutLast(long, ".")
	if !strings.Contains(long, ".") {
		base, ext = long, ""
	}
	clean := func(s string) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(s) {
			switch {
			case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("_-$~!#%&'()@^`{}", r):
				b.WriteRune(r)
			case r == ' ' || r == '.':
			default:
				b.WriteRune('_')
			}
		}
		return b.String()
	}
	cb, ce := clean(base), clean(ext)
	if len(ce) > 3 {
		ce = ce[:3]
	}
	name := cb
	if len(cb) > 8 || len(cb) == 0 || cb != strings.ToUpper(base) || clean(ext) != strings.ToUpper(ext) {
		short := cb
		if len(short) > 6 {
			short = short[:6]
		}
		for n := 1; ; n++ {
			name = short + "~" + strconv.Itoa(n)
			if c.find(c.case83(join83(name, ce))) == nil {
				break
			}
		}
	}
	return c.case83(join83(name, ce))
}

func join83(base, ext string) string {
	if ext == "" {
		return base
	}
	return base + "." + ext
}

func (c *sdCard) case83(name string) string {
	if c.lowerNames {
		return strings.ToLower(name)
	}
	return name
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// find returns the file named name, matched without case against its 8.3
// and long name, as Marlin's LFN lookup does. A leading / is the root.
func (c *sdCard) find(name string) *sdFile {
	name = strings.TrimPrefix(strings.TrimSpace(name), "/")
	for _, f := range c.files {
		if strings.EqualFold(f.dos, name) || strings.EqualFold(f.long, name) {
			return f
		}
	}
	return nil
}

// release closes the open file and ends printing and saving, as a reset
// or M22 does.
func (c *sdCard) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open, c.pos, c.printing, c.doneQueued = nil, 0, false, false
	c.saving, c.savedLines, c.writeFailed = nil, 0, false
}

// statusLine returns the M27 reply: the byte position while printing,
// else Not SD printing (Marlin 2.1 reports a paused print that way).
func (c *sdCard) statusLine() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open == nil || !c.printing {
		return msgNotSDPrinting
	}
	return msgPrintingByte + strconv.Itoa(c.pos) + "/" + strconv.Itoa(len(c.open.data))
}

// sdAvailable reports whether an SD command can run, and prints Marlin's
// No media otherwise.
func (s *session) sdAvailable() bool {
	s.p.sd.mu.Lock()
	mounted := s.p.sd.mounted
	s.p.sd.mu.Unlock()
	if !mounted {
		s.send(msgNoMedia)
	}
	return mounted
}

// initCard executes M21.
func (s *session) initCard(g *gcode) bool {
	c := s.p.sd
	c.mu.Lock()
	ok := !s.cfg.NoSDCard
	c.mounted = ok
	c.mu.Unlock()
	if ok {
		s.send(msgSDOK)
	} else {
		s.send(msgSDInitFail)
	}
	return true
}

// releaseCard executes M22.
func (s *session) releaseCard(g *gcode) bool {
	s.p.sd.release()
	s.p.sd.mu.Lock()
	s.p.sd.mounted = false
	s.p.sd.mu.Unlock()
	s.send(msgSDReleased)
	return true
}

// listFiles executes M20 [L] [T]: one line per file with its 8.3 name and
// size, then the FAT timestamp (T) and the long name (L), as Marlin's
// CardReader::printListing prints them.
func (s *session) listFiles(g *gcode) bool {
	if !s.sdAvailable() {
		return true
	}
	c := s.p.sd
	c.mu.Lock()
	files := slices.Clone(c.files)
	c.mu.Unlock()
	long, stamps := g.has('L'), g.has('T')
	s.send(msgBeginList)
	for _, f := range files {
		line := f.dos + " " + strconv.Itoa(len(f.data))
		if stamps {
			line += " 0x" + strconv.FormatUint(uint64(fatTimestamp(f.modified)), 16)
		}
		if long {
			line += " " + f.long
		}
		s.send(line)
	}
	s.send(msgEndList)
	return true
}

// fatTimestamp is FAT's date<<16 | time of t, in 2-second steps.
func fatTimestamp(t time.Time) uint32 {
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	date := uint32(t.Year()-1980)<<9 | uint32(t.Month())<<5 | uint32(t.Day())
	clock := uint32(t.Hour())<<11 | uint32(t.Minute())<<5 | uint32(t.Second()/2)
	return date<<16 | clock
}

// selectFile executes M23 <name>: open the file for printing at byte 0.
func (s *session) selectFile(g *gcode) bool {
	if !s.sdAvailable() {
		return true
	}
	c := s.p.sd
	c.mu.Lock()
	f := c.find(g.args)
	if f != nil {
		c.open, c.pos, c.printing, c.doneQueued = f, 0, false, false
	}
	c.mu.Unlock()
	if f == nil {
		s.send(msgOpenFailed + strings.TrimSpace(g.args) + ".")
		return true
	}
	s.send(msgFileOpened + f.dos + " Size: " + strconv.Itoa(len(f.data)))
	s.send(msgFileSelected)
	return true
}

// startPrint executes M24: start or resume the open file.
func (s *session) startPrint(g *gcode) bool {
	c := s.p.sd
	c.mu.Lock()
	if c.open != nil {
		c.printing = true
	}
	c.mu.Unlock()
	return true
}

// pausePrint executes M25. Commands already read from the file still run.
func (s *session) pausePrint(g *gcode) bool {
	c := s.p.sd
	c.mu.Lock()
	c.printing = false
	c.mu.Unlock()
	return true
}

// setSDPosition executes M26 S<byte>.
func (s *session) setSDPosition(g *gcode) bool {
	pos, ok := g.int('S')
	c := s.p.sd
	c.mu.Lock()
	if ok && c.open != nil && pos >= 0 && pos <= len(c.open.data) {
		c.pos = pos
		c.doneQueued = false
	}
	c.mu.Unlock()
	return true
}

// reportSDStatus executes M27 [S<seconds>] [C]: S sets the auto-report
// interval (AUTOREPORT_SD_STATUS, 0 stops it), C prints the open file's
// name, and a bare M27 prints the status.
func (s *session) reportSDStatus(g *gcode) bool {
	if sec, ok := g.int('S'); ok && !s.cfg.NoSDAutoReport {
		sec = min(max(sec, 0), 60)
		s.sdInterval.Store(int64(time.Duration(sec) * time.Second))
		return true
	}
	if g.has('C') {
		c := s.p.sd
		c.mu.Lock()
		open := c.open
		c.mu.Unlock()
		if open == nil {
			s.send("Current file: (no file)")
		} else {
			s.send("Current file: " + open.dos + " " + open.long)
		}
		return true
	}
	s.send(s.p.sd.statusLine())
	return true
}

// abortPrint executes M524: stop the SD print and close its file.
func (s *session) abortPrint(g *gcode) bool {
	c := s.p.sd
	c.mu.Lock()
	c.open, c.pos, c.printing, c.doneQueued = nil, 0, false, false
	c.mu.Unlock()
	return true
}

// beginWrite executes M28 <name>: the following lines go into the file
// until M29. Marlin opens the file under the name given; a name that is
// not 8.3 gets its 8.3 alias, with the name kept as the long name.
func (s *session) beginWrite(g *gcode) bool {
	if !s.sdAvailable() {
		return true
	}
	name := strings.TrimPrefix(strings.TrimSpace(g.args), "/")
	if name == "" || strings.ContainsAny(name, "/\\") {
		s.send(msgOpenFailed + name + ".")
		return true
	}
	c := s.p.sd
	c.mu.Lock()
	f := c.find(name)
	if f == nil {
		f = &sdFile{dos: c.dosName(name), long: name}
	}
	f.data = nil
	f.modified = time.Now()
	c.saving, c.savedLines, c.writeFailed = f, 0, false
	c.mu.Unlock()
	s.send(msgWritingFile + f.dos)
	return true
}

// writing reports whether an M28 file is open, so that the command goes
// into it instead of being executed.
func (s *session) writing(g *gcode) bool {
	c := s.p.sd
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saving != nil && g.name() != "M29"
}

// writeCommand appends one received command to the M28 file and
// acknowledges it. After Config.SDWriteFailAfter lines every further line
// fails with Marlin's write error, which comes with an ok as in Marlin.
func (s *session) writeCommand(g *gcode) {
	c := s.p.sd
	c.mu.Lock()
	failed := c.failAfter > 0 && c.savedLines >= c.failAfter
	if failed {
		c.writeFailed = true
	} else {
		c.saving.data = append(c.saving.data, g.text...)
		c.saving.data = append(c.saving.data, '\n')
		c.savedLines++
	}
	c.mu.Unlock()
	if failed {
		s.send(msgWriteError)
	}
	if !s.okSent {
		s.ok(g)
	}
}

// endWrite executes M29: close the M28 file, store it on the card (and in
// SDDir) and print Done saving file.
func (s *session) endWrite(g *gcode) bool {
	c := s.p.sd
	c.mu.Lock()
	f := c.saving
	c.saving = nil
	var err error
	if f != nil {
		if c.find(f.long) == nil {
			c.files = append(c.files, f)
		}
		err = c.store(f)
	}
	c.mu.Unlock()
	if err != nil {
		s.p.log.Error("writing SD card directory failed", "file", f.long, "error", err)
		s.send(msgWriteError)
	}
	if f != nil {
		s.send(msgFileSaved)
	}
	return true
}

// store writes f into the backing directory, if there is one.
func (c *sdCard) store(f *sdFile) error {
	if c.dir == "" {
		return nil
	}
	return os.WriteFile(filepath.Join(c.dir, f.long), f.data, 0o644)
}

// deleteFile executes M30 <name>. The file being printed is not deleted.
func (s *session) deleteFile(g *gcode) bool {
	if !s.sdAvailable() {
		return true
	}
	name := strings.TrimSpace(g.args)
	c := s.p.sd
	c.mu.Lock()
	f := c.find(name)
	var err error
	if f != nil && (c.open != f || !c.printing) {
		if c.open == f {
			c.open, c.pos, c.doneQueued = nil, 0, false
		}
		c.files = slices.DeleteFunc(c.files, func(x *sdFile) bool { return x == f })
		if c.dir != "" {
			if rmErr := os.Remove(filepath.Join(c.dir, f.long)); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
				err = rmErr
			}
		}
	} else {
		f = nil
	}
	c.mu.Unlock()
	if err != nil {
		s.p.log.Error("deleting from SD card directory failed", "file", name, "error", err)
	}
	if f == nil {
		s.send(msgDeleteFailed + name + ".")
		return true
	}
	s.send(msgFileDeleted + f.dos)
	return true
}

// fillFromSD reads commands of the printing file into free queue slots,
// after the serial lines, as Marlin's get_available_commands does. At the
// end of the file it queues the end-of-print step (Marlin's M1001).
func (s *session) fillFromSD() {
	c := s.p.sd
	for len(s.queue) < s.cfg.BufSize && !s.killed {
		c.mu.Lock()
		if c.open == nil || !c.printing || c.doneQueued {
			c.mu.Unlock()
			return
		}
		if c.pos >= len(c.open.data) {
			c.doneQueued = true
			c.mu.Unlock()
			s.queue = append(s.queue, queuedCommand{gcode: &gcode{}, sd: sdEnd})
			return
		}
		rest := c.open.data[c.pos:]
		end := bytes.IndexAny(rest, "\r\n")
		if end < 0 {
			end = len(rest)
		} else {
			end++
		}
		c.pos += end
		line := rest[:end]
		c.mu.Unlock()
		if cmd := normalize(cString(stripComment(bytes.TrimRight(line, "\r\n")))); cmd != "" {
			s.queue = append(s.queue, queuedCommand{gcode: parseGcode(cmd), sd: sdLine})
		}
	}
}

// finishSDPrint runs at the end of the file: once the moves are done,
// close the file and print Done printing file.
func (s *session) finishSDPrint() {
	if !s.syncPlanner() {
		return
	}
	c := s.p.sd
	c.mu.Lock()
	c.open, c.pos, c.printing, c.doneQueued = nil, 0, false, false
	c.mu.Unlock()
	s.send(msgDonePrinting)
}

// SDFile is a file on the simulated card, as SDFiles returns it.
type SDFile struct {
	// DOSName is the 8.3 name of M20 and M23; LongName the long name.
	DOSName, LongName string
	Data              []byte
}

// SDFiles returns a copy of the files on the simulated card, in listing
// order.
func (p *Printer) SDFiles() []SDFile {
	p.sd.mu.Lock()
	defer p.sd.mu.Unlock()
	out := make([]SDFile, 0, len(p.sd.files))
	for _, f := range p.sd.files {
		out = append(out, SDFile{DOSName: f.dos, LongName: f.long, Data: slices.Clone(f.data)})
	}
	return out
}
