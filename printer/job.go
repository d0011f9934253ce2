package printer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// selectedFile is the file chosen for printing.
type selectedFile struct {
	name string
	path string
	full string
	size int64
	// pos is the byte offset read so far by the running job.
	pos int64
	// done marks a finished print, whose progress stays at 100.
	done bool
	// origin is OriginSDCard for a file on the printer's SD card, whose
	// full is empty; "" is a local file.
	origin string
}

// originName returns OctoPrint's origin of the file: local or sdcard.
func (f *selectedFile) originName() string {
	if f.origin == "" {
		return "local"
	}
	return f.origin
}

func (f *selectedFile) progress() float64 {
	if f.done {
		return 100
	}
	if f.size <= 0 {
		return 0
	}
	return float64(f.pos) / float64(f.size) * 100
}

// job is a print streaming from a local file.
type job struct {
	file        *os.File
	r           *bufio.Reader
	started     time.Time
	pausedAt    time.Time
	pausedTotal time.Duration
	lines       int
	onStarted   DoneFunc
	// pending is a command read from the file that did not fit the window
	// yet.
	pending string
	// sd marks a print that the firmware runs from its SD card; file and
	// r are nil then.
	sd bool
	// requests are the pauses and resumes whose markers have not run yet.
	// A cancel or the end of the job drops those markers, so it fails the
	// requests instead, and every accepted request gets its final reply.
	requests []*jobRequest
}

// jobRequest is a pause or resume of a job waiting for its last marker.
type jobRequest struct {
	action string
	done   DoneFunc
}

// trackJobRequest registers a pause or resume until finishJobRequest or
// failJobRequests ends it.
func (s *session) trackJobRequest(action string, done DoneFunc) *jobRequest {
	r := &jobRequest{action: action, done: done}
	s.job.requests = append(s.job.requests, r)
	return r
}

// finishJobRequest reports a request done, unless it was failed already.
func (s *session) finishJobRequest(r *jobRequest) {
	if s.job == nil {
		return
	}
	i := slices.Index(s.job.requests, r)
	if i < 0 {
		return
	}
	s.job.requests = slices.Delete(s.job.requests, i, i+1)
	if r.done != nil {
		r.done(nil, nil)
	}
}

// failJobRequests fails every pending pause and resume of the job, with
// cause as what overtook them (such as "print cancelled").
func (s *session) failJobRequests(cause string) {
	if s.job == nil {
		return
	}
	requests := s.job.requests
	s.job.requests = nil
	for _, r := range requests {
		s.log.Warn("job request failed", "action", r.action, "cause", cause)
		if r.done != nil {
			r.done(nil, fmt.Errorf("%s before the %s completed", cause, r.action))
		}
	}
}

// printTime is the job's time in seconds, paused time excluded, as
// OctoPrint's PrintDone time.
func (j *job) printTime(now time.Time) float64 {
	paused := j.pausedTotal
	if !j.pausedAt.IsZero() {
		paused += now.Sub(j.pausedAt)
	}
	return now.Sub(j.started).Seconds() - paused.Seconds()
}

// maxFileLine is the longest raw file line read; longer ones (which no
// firmware accepts) end the job with an error instead of growing memory.
const maxFileLine = 64 * 1024

// resolvePath maps a job path onto FilesDir and rejects anything that
// would leave it.
func (s *session) resolvePath(path string) (string, error) {
	if s.p.cfg.FilesDir == "" {
		return "", errors.New("no files directory configured; start the edge with --files DIR")
	}
	if path == "" {
		return "", errors.New(`missing "path": name a file inside the edge's files directory`)
	}
	if strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("invalid file path %q: absolute paths are not allowed; give the path relative to the files directory", path)
	}
	clean := filepath.Clean("/" + path)
	if strings.Contains(path, "\x00") || clean == "/" {
		return "", fmt.Errorf("invalid file path %q: name a file inside the files directory", path)
	}
	for _, part := range strings.Split(filepath.ToSlash(path), "/") {
		if part == ".." {
			return "", fmt.Errorf("invalid file path %q: '..' is not allowed; paths are relative to the files directory", path)
		}
		// Dot names are the storage's own (.printbridge/metadata.json).
		if strings.HasPrefix(part, ".") && part != "." {
			return "", fmt.Errorf("invalid file path %q: names starting with '.' are hidden and cannot be printed", path)
		}
	}
	full := filepath.Join(s.p.cfg.FilesDir, clean)
	// A symlink inside the folder must not lead out of it.
	root, err := filepath.EvalSymlinks(s.p.cfg.FilesDir)
	if err != nil {
		return "", fmt.Errorf("files directory %s: %w", s.p.cfg.FilesDir, err)
	}
	if real, err := filepath.EvalSymlinks(full); err == nil {
		if rel, err := filepath.Rel(root, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("invalid file path %q: it is a link to %s, outside the files directory", path, real)
		}
	}
	return full, nil
}

func (s *session) selectFile(path string) error {
	if s.job != nil {
		return fmt.Errorf("cannot select %q while a print is running (state %s); cancel it first", path, s.state)
	}
	full, err := s.resolvePath(path)
	if err != nil {
		return err
	}
	st, err := os.Stat(full)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("file %q not found in the files directory %s", path, s.p.cfg.FilesDir)
		}
		return fmt.Errorf("file %q: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("file %q is not a regular file", path)
	}
	rel := strings.TrimPrefix(filepath.ToSlash(filepath.Clean("/"+path)), "/")
	s.selected = &selectedFile{name: filepath.Base(rel), path: rel, full: full, size: st.Size()}
	s.printerZ = nil
	s.emit(bridge.EventFileSelected, bridge.Payload{
		{Key: "name", Value: s.selected.name}, {Key: "path", Value: s.selected.path}, {Key: "origin", Value: "local"},
	})
	return nil
}

func (s *session) jobPayload(extra ...bridge.Field) bridge.Payload {
	f := s.selected
	p := bridge.Payload{{Key: "name", Value: f.name}, {Key: "path", Value: f.path}, {Key: "origin", Value: f.originName()}, {Key: "size", Value: f.size}}
	return append(p, extra...)
}

func (s *session) chartMark(kind, label string) {
	s.emit(bridge.EventChartMarked, bridge.Payload{
		{Key: "type", Value: kind}, {Key: "label", Value: label}, {Key: "time", Value: float64(time.Now().UnixNano()) / 1e9},
	})
}

func (s *session) startJob(path string, done DoneFunc) error {
	if !s.state.Operational() {
		return fmt.Errorf("printer is not connected (state %s); connect it first", s.state)
	}
	if s.job != nil || s.state != StateOperational {
		return fmt.Errorf("cannot start a print in state %s; wait for the running job to end", s.state)
	}
	if path != "" {
		if err := s.selectFile(path); err != nil {
			return err
		}
	}
	if s.selected == nil {
		return errors.New(`no file selected: give "path" or select a file first`)
	}
	if s.selected.origin == OriginSDCard {
		return fmt.Errorf(`%s is on the SD card: start it with "origin": "sdcard"`, s.selected.path)
	}
	if err := s.checkJobFile(); err != nil {
		return err
	}
	f, err := os.Open(s.selected.full)
	if err != nil {
		return fmt.Errorf("open %q: %w", s.selected.path, err)
	}
	s.selected.pos = 0
	s.selected.done = false
	s.job = &job{file: f, r: bufio.NewReaderSize(f, 32*1024), started: time.Now(), onStarted: done}
	s.printerZ = nil
	s.setState(StateStarting)
	s.log.Info("print started", "file", s.selected.path, "size", s.selected.size)
	s.chartMark("print", "Start")
	started := s.jobPayload()
	s.emit(bridge.EventPrintStarted, started)
	// Every print starts its own numbering, as OctoPrint's does: the job's
	// lines count from 1, and a firmware rewind cannot reach lines sent
	// before the print. The file lines wait for the M110's ok.
	s.enqueue(queued{text: "M110 N0"})
	// The script's lines are queued ahead of the marker, and file lines
	// wait for PRINTING, so they go out before the first line of the file.
	s.runScript(ScriptBeforePrintStarted, started, nil)
	s.enqueue(queued{marker: func() {
		if s.job == nil {
			return
		}
		s.leaveStarting()
		if s.job.onStarted != nil {
			s.job.onStarted(nil, nil)
			s.job.onStarted = nil
		}
	}})
	s.pump()
	return nil
}

// nextJobLine sends the next command of the file. It returns false when
// nothing was sent: at the end of the file, on a file error, or when the
// window has no room for the line, which then waits as j.pending.
func (s *session) nextJobLine() bool {
	j := s.job
	if j.sd {
		return false
	}
	if j.pending == "" {
		cmd, ok := s.readJobCommand()
		if !ok {
			return false
		}
		j.pending = cmd
	}
	cmd := j.pending
	l := wireLength(s.nextLine, ToASCII(cmd))
	if l > s.p.cfg.MaxLineLength {
		s.abortJob(fmt.Sprintf("line %q of %s is %d bytes with line number and checksum, over the firmware's maximum of %d",
			truncateText(cmd, 40), s.selected.path, l, s.p.cfg.MaxLineLength))
		return false
	}
	code := CodeOf(cmd)
	if code == "M112" {
		j.pending = ""
		s.sendEmergency(cmd, code)
		return false
	}
	// OctoPrint's pausingCommands: M0, M1 and M25 in the file pause the
	// print; M0 and M1 are also blocked by default, so they pause without
	// reaching the firmware.
	pauses := pausingCodes.Get()[code]
	if s.suppress(cmd) {
		j.pending = ""
		j.lines++
		if pauses {
			_ = s.pauseJob(nil)
		}
		return true
	}
	if code == "T" {
		if before, after, ok := s.toolChangeLines(cmd); ok {
			j.pending = ""
			j.lines++
			s.queue = append(wrapToolChange(before, after, queued{text: cmd}), s.queue...)
			return true
		}
	}
	if !s.canSend(cmd, l+1) {
		return false
	}
	j.pending = ""
	j.lines++
	s.writeNumbered(queued{text: cmd}, true)
	if pauses {
		_ = s.pauseJob(nil)
	}
	return true
}

// readJobCommand returns the next non-empty command of the file. At the
// end of the file or on an error it ends the job and returns false.
func (s *session) readJobCommand() (string, bool) {
	j := s.job
	for {
		raw, err := j.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// checkJobFile let only comments this long through.
			s.selected.pos += int64(len(raw))
			n, err := skipRestOfLine(j.r)
			s.selected.pos += n
			if err != nil && !errors.Is(err, io.EOF) {
				s.abortJob(fmt.Sprintf("read %s: %v", s.selected.path, err))
				return "", false
			}
			continue
		}
		first := s.selected.pos == 0
		s.selected.pos += int64(len(raw))
		if len(raw) == 0 && err != nil {
			if errors.Is(err, io.EOF) {
				s.finishJob()
			} else {
				s.abortJob(fmt.Sprintf("read %s: %v", s.selected.path, err))
			}
			return "", false
		}
		if cmd := fileCommand(raw, first); cmd != "" {
			return cmd, true
		}
	}
}

// utf8BOM starts the files of editors that save UTF-8 with a byte order
// mark. It is not part of the first command.
var utf8BOM = []byte("\xef\xbb\xbf")

// fileCommand returns the command of the file line raw, or "" for a line
// without one. first strips a byte order mark from the file's first line.
func fileCommand(raw []byte, first bool) string {
	if first {
		raw = bytes.TrimPrefix(raw, utf8BOM)
	}
	// Most lines of a slicer's file are printable ASCII, and many are only
	// comments: those are read without a string per line.
	if cmd, ok := printableCommand(raw, commandPart(raw)); ok {
		return string(cmd)
	}
	return NormalizeCommand(CleanLine(raw))
}

func (s *session) finishJob() {
	s.setState(StateFinishing)
	// M400 makes the ok arrive once the last move has finished, so
	// PrintDone means the printer is done, not just the stream.
	s.enqueue(queued{text: "M400"})
	s.enqueue(queued{marker: func() {
		if s.job == nil {
			return
		}
		t := s.job.printTime(time.Now())
		s.closeJob()
		s.selected.done = true
		s.log.Info("print done", "file", s.selected.path, "print_time_seconds", math.Round(t*10)/10)
		s.chartMark("done", "Done")
		done := s.jobPayload(bridge.Field{Key: "time", Value: t})
		s.emit(bridge.EventPrintDone, done)
		s.runScript(ScriptAfterPrintDone, done, nil)
		s.setState(StateOperational)
	}})
}

func (s *session) closeJob() {
	if s.job != nil {
		if s.job.file != nil {
			_ = s.job.file.Close()
		}
		if s.job.sd && s.sdAutoReport {
			// sdTick sends the M27 S0, because closeJob runs inside
			// markers, where pumping again would run later markers early.
			s.sd.stopAutoReport = true
		}
		if s.job.onStarted != nil {
			s.job.onStarted(nil, errors.New("print ended before it started"))
		}
		s.failJobRequests("print ended")
		s.job = nil
	}
}

// abortJob ends a job on a file problem; the connection stays up.
func (s *session) abortJob(msg string) {
	s.log.Error("print failed", "file", s.selected.path, "error", msg)
	s.failJob(msg)
	s.setState(StateOperational)
}

// failJob fires PrintFailed (reason error) once and drops the job.
func (s *session) failJob(msg string) {
	if s.job == nil {
		return
	}
	t := s.job.printTime(time.Now())
	fraction := s.selected.progress() / 100
	s.closeJob()
	s.dropJobQueue()
	s.printerZ = nil
	s.emit(bridge.EventPrintFailed, s.jobPayload(
		bridge.Field{Key: "time", Value: t}, bridge.Field{Key: "reason", Value: "error"},
		bridge.Field{Key: "error", Value: msg}, bridge.Field{Key: "progress", Value: fraction}))
}

// dropJobQueue removes queued markers, which all belong to the job; hook
// and user commands stay queued.
func (s *session) dropJobQueue() {
	kept := s.queue[:0]
	for _, q := range s.queue {
		if q.marker == nil {
			kept = append(kept, q)
		}
	}
	s.queue = kept
}

func (s *session) positionPayload() bridge.Payload {
	pos := bridge.Payload{{Key: "x", Value: nil}, {Key: "y", Value: nil}, {Key: "z", Value: nil}, {Key: "e", Value: nil}}
	if s.position != nil {
		pos = bridge.Payload{{Key: "x", Value: s.position.X}, {Key: "y", Value: s.position.Y}, {Key: "z", Value: s.position.Z}, {Key: "e", Value: s.position.E}}
	}
	pos = append(pos, bridge.Field{Key: "t", Value: s.tool})
	if s.feedrate != nil {
		pos = append(pos, bridge.Field{Key: "f", Value: *s.feedrate})
	} else {
		pos = append(pos, bridge.Field{Key: "f", Value: nil})
	}
	return pos
}

func (s *session) pauseJob(done DoneFunc) error {
	// A pause during STARTING is for the print whose start sequence
	// (M110, beforePrintStarted) is still going out: a client that sent it
	// on the PRINTING state of the print before cannot know better.
	if s.job != nil && (s.state == StatePausing || s.state == StatePaused) {
		return fmt.Errorf("cannot pause in state %s: the print is pausing or paused already; send resume to go on", s.state)
	}
	if s.job == nil || (s.state != StatePrinting && s.state != StateStarting) {
		return fmt.Errorf("cannot pause in state %s: no print is running", s.state)
	}
	s.setState(StatePausing)
	s.job.pausedAt = time.Now()
	request := s.trackJobRequest("pause", done)
	// M400 then M114: the position is recorded once the moves already
	// sent have finished, as OctoPrint does with logPositionOnPause.
	s.position = nil
	if s.job.sd {
		s.enqueue(queued{text: "M25"})
	}
	s.enqueue(queued{text: "M400"})
	s.enqueue(queued{marker: func() { s.positionReason = "pause" }})
	s.requestPosition()
	s.enqueue(queued{marker: func() {
		if s.job == nil {
			return
		}
		s.chartMark("pause", "Pause")
		paused := s.jobPayload(
			bridge.Field{Key: "position", Value: s.positionPayload()},
			bridge.Field{Key: "fileposition", Value: s.selected.pos},
			bridge.Field{Key: "progress", Value: int(s.selected.progress())})
		s.emit(bridge.EventPrintPaused, paused)
		s.pausePosition = payloadVars(s.positionPayload())
		s.pauseTemperatures = s.temperatureVars()
		s.runScript(ScriptAfterPrintPaused, paused, s.pauseVars())
		s.enqueue(queued{marker: func() {
			if s.job == nil {
				return
			}
			s.setState(StatePaused)
			s.finishJobRequest(request)
		}})
	}})
	s.pump()
	return nil
}

// leaveStarting switches a starting print to PRINTING once its start
// sequence is sent. A pause requested during STARTING has already moved
// the state on to PAUSING, and its own markers take it to PAUSED.
func (s *session) leaveStarting() {
	if s.state == StateStarting {
		s.setState(StatePrinting)
	}
}

func (s *session) resumeJob(done DoneFunc) error {
	if s.job == nil || s.state != StatePaused {
		return fmt.Errorf("cannot resume in state %s: no print is paused", s.state)
	}
	s.setState(StateResuming)
	request := s.trackJobRequest("resume", done)
	s.job.pausedTotal += time.Since(s.job.pausedAt)
	s.job.pausedAt = time.Time{}
	if s.job.sd {
		// As OctoPrint: resume the SD print, and read its position.
		s.enqueue(queued{text: "M24"})
		s.enqueue(queued{text: "M27"})
	}
	s.enqueue(queued{marker: func() {
		if s.job == nil {
			return
		}
		s.chartMark("resume", "Resume")
		resumed := s.jobPayload()
		s.emit(bridge.EventPrintResumed, resumed)
		s.runScript(ScriptBeforePrintResumed, resumed, s.pauseVars())
		s.enqueue(queued{marker: func() {
			if s.job == nil {
				return
			}
			s.setState(StatePrinting)
			s.finishJobRequest(request)
		}})
	}})
	s.pump()
	return nil
}

func (s *session) cancelJob(done DoneFunc, firmwareError string) error {
	if s.state == StateCancelling {
		return errors.New("cannot cancel: a cancel is already in progress; wait for the PrintCancelled event")
	}
	if s.job == nil {
		return fmt.Errorf("cannot cancel in state %s: no print is running", s.state)
	}
	s.setState(StateCancelling)
	payload := s.jobPayload()
	if firmwareError != "" {
		payload = payload.Set("firmwareError", firmwareError)
	}
	s.emit(bridge.EventPrintCancelling, payload)
	s.dropJobQueue()
	s.failJobRequests("print cancelled")
	if s.caps["EMERGENCY_PARSER"] {
		// Aborts a running M109/M190 wait; without the emergency parser
		// the firmware would only read it after the wait.
		s.sendEmergency("M108", "M108")
	}
	if s.job.sd {
		// OctoPrint's SD cancel: pause, read the position, rewind.
		s.enqueue(queued{text: "M25"})
		s.enqueue(queued{text: "M27"})
		s.enqueue(queued{text: "M26 S0"})
	}
	// M400 then M114, as for a pause: the cancel position (the
	// afterPrintCancelled script's cancel_position) is where the moves
	// already sent have ended, not where the planner stood.
	s.position = nil
	s.positionReason = "cancel"
	s.enqueue(queued{text: "M400"})
	s.requestPosition()
	s.enqueue(queued{marker: func() {
		if s.job == nil {
			return
		}
		t := s.job.printTime(time.Now())
		cancelled := s.jobPayload(
			bridge.Field{Key: "time", Value: t},
			bridge.Field{Key: "position", Value: s.positionPayload()},
			bridge.Field{Key: "fileposition", Value: s.selected.pos},
			bridge.Field{Key: "progress", Value: int(s.selected.progress())})
		s.closeJob()
		s.printerZ = nil
		s.log.Info("print cancelled", "file", s.selected.path)
		s.emit(bridge.EventPrintCancelled, cancelled)
		s.chartMark("cancel", "Cancel")
		s.runScript(ScriptAfterPrintCancelled, cancelled, map[string]any{
			"cancel_position":    payloadVars(s.positionPayload()),
			"cancel_temperature": s.temperatureVars(),
		})
		s.emit(bridge.EventPrintFailed, cancelled.Clone().Set("reason", "cancelled"))
		s.setState(StateOperational)
		if done != nil {
			done(nil, nil)
		}
	}})
	s.pump()
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// skipRestOfLine discards up to and including the next line feed.
func skipRestOfLine(r *bufio.Reader) (int64, error) {
	var n int64
	for {
		chunk, err := r.ReadSlice('\n')
		n += int64(len(chunk))
		if !errors.Is(err, bufio.ErrBufferFull) {
			return n, err
		}
	}
}

// checkJobFile reads the selected file once before a print starts, so a
// file that cannot print fails at start with its line number instead of
// in the middle of the print: a command too long for the firmware,
// control bytes (a corrupt or binary file), or no G-code at all.
func (s *session) checkJobFile() error {
	return s.checkGcodeFile(s.selected.full, s.selected.path)
}

// checkGcodeFile is checkJobFile for the file full, named path in errors.
// It also warns about commands with characters outside printable ASCII,
// which the printer gets as '?'.
func (s *session) checkGcodeFile(full, path string) error {
	found, err := checkGcodeFile(full, path, s.nextLine, s.p.cfg.MaxLineLength)
	if err != nil {
		return err
	}
	if found.nonASCIICommands > 0 {
		s.log.Warn("G-code file has commands with characters outside printable ASCII; the printer gets '?' in their place, as from OctoPrint",
			"file", path, "commands", found.nonASCIICommands, "first_line", found.firstLine,
			"character", fmt.Sprintf("%q", found.firstCharacter), "command", found.firstCommand)
	}
	return nil
}

// nonASCIIFound counts a file's commands (comments left out) that have
// characters outside printable ASCII, and records the first of them.
type nonASCIIFound struct {
	nonASCIICommands int
	firstLine        int
	firstCharacter   rune
	firstCommand     string
}

// checkGcodeFile reads the file full, named path in errors, whose first
// command would be sent with line number nextLine, and returns the first
// reason it cannot print. It reads the whole file before a print starts,
// so it allocates nothing for lines of plain ASCII G-code. A 50 MB file
// has two million of them, and their garbage grew the edge's heap by
// megabytes at the start of every large print.
func checkGcodeFile(full, path string, nextLine, maxLineLength int) (nonASCIIFound, error) {
	var found nonASCIIFound
	f, err := os.Open(full)
	if err != nil {
		return found, fmt.Errorf("open %q: %w", path, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, maxFileLine)
	lineNo, commands, gcodes := 0, 0, 0
	for {
		raw, err := r.ReadSlice('\n')
		lineNo++
		if errors.Is(err, bufio.ErrBufferFull) {
			if !bytes.HasPrefix(bytes.TrimLeft(raw, " \t"), []byte(";")) {
				return found, fmt.Errorf("line %d of %s is longer than %d bytes and is not a comment; no firmware accepts it", lineNo, path, maxFileLine)
			}
			if _, err := skipRestOfLine(r); err != nil && !errors.Is(err, io.EOF) {
				return found, fmt.Errorf("read %s: %w", path, err)
			}
			continue
		}
		if len(raw) == 0 && err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return found, fmt.Errorf("read %s: %w", path, err)
		}
		if lineNo == 1 {
			raw = bytes.TrimPrefix(raw, utf8BOM)
		}
		code := commandPart(raw)
		for _, c := range code {
			if c < 0x20 && c != '\t' {
				return found, fmt.Errorf("line %d of %s contains the control byte 0x%02x; the file is corrupt or not G-code", lineNo, path, c)
			}
		}
		// Hook and user commands interleave with the file, so the line
		// numbers are estimated with a margin.
		number := nextLine + commands + 1 + 1000
		if cmd, ok := printableCommand(raw, code); ok {
			if len(cmd) == 0 {
				continue
			}
			commands++
			if codeLength(cmd) > 0 || isToolChange(cmd) {
				gcodes++
			}
			if l := numberedLength(number, cmd); l > maxLineLength {
				return found, lineTooLong(lineNo, path, string(cmd), l, maxLineLength)
			}
			continue
		}
		cmd := NormalizeCommand(CleanLine(raw))
		if cmd == "" {
			continue
		}
		if r, ok := nonASCII(cmd); ok {
			if found.nonASCIICommands == 0 {
				found.firstLine, found.firstCharacter, found.firstCommand = lineNo, r, truncateText(cmd, 40)
			}
			found.nonASCIICommands++
		}
		commands++
		if CodeOf(cmd) != "" {
			gcodes++
		}
		if l := wireLength(number, ToASCII(cmd)); l > maxLineLength {
			return found, lineTooLong(lineNo, path, cmd, l, maxLineLength)
		}
	}
	if commands > 0 && gcodes*2 < commands {
		return found, fmt.Errorf("%s does not look like G-code: only %d of its %d commands are G or M codes", path, gcodes, commands)
	}
	return found, nil
}

// commandPart returns the part of the file line raw before its first `;`,
// without CR or LF.
func commandPart(raw []byte) []byte {
	code := bytes.TrimRight(raw, "\r\n")
	if i := bytes.IndexByte(code, ';'); i >= 0 {
		code = code[:i]
	}
	return code
}

// printableCommand returns the command of the file line raw, given code,
// its part before the first `;` with no CR or LF, when that part is
// printable ASCII. The result is then the same bytes as
// ToASCII(NormalizeCommand(CleanLine(raw))). ok is false for a line that
// needs those three: bytes outside printable ASCII, or a `\;` escape.
func printableCommand(raw, code []byte) (cmd []byte, ok bool) {
	for _, c := range code {
		if c < 0x20 || c > 0x7e {
			return nil, false
		}
	}
	if len(code) < len(raw) && len(code) > 0 && code[len(code)-1] == '\\' && raw[len(code)] == ';' {
		return nil, false
	}
	return bytes.TrimSpace(code), true
}

func lineTooLong(lineNo int, path, cmd string, length, maxLineLength int) error {
	return fmt.Errorf("line %d of %s (%q) is %d bytes with line number and checksum, over the firmware's maximum of %d; shorten it, or raise the edge's --max-line-length if the firmware's MAX_CMD_SIZE is larger",
		lineNo, path, truncateText(cmd, 40), length, maxLineLength)
}

// pauseVars are the variables of the afterPrintPaused and
// beforePrintResumed scripts: the position and temperatures recorded when
// the print paused.
func (s *session) pauseVars() map[string]any {
	vars := map[string]any{}
	if s.pausePosition != nil {
		vars["pause_position"] = s.pausePosition
		vars["pause_temperature"] = s.pauseTemperatures
	}
	return vars
}
