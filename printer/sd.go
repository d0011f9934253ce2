package printer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// OriginSDCard is OctoPrint's origin of files on the printer's SD card.
const OriginSDCard = "sdcard"

// Request kinds of the SD card, handled by handleSDRequest.
const (
	reqSDSelect = "sd_select"
	reqSDStart  = "sd_start"
	reqSDList   = "sd_list"
	reqSDUpload = "sd_upload"
	reqSDRemove = "sd_remove"
)

// sdPollInterval is the M27 period while an SD print runs on a firmware
// without AUTOREPORT_SD_STATUS, OctoPrint's sdStatus interval.
const sdPollInterval = time.Second

// maxNotSDPrinting is how many `Not SD printing` replies in a row, while
// the edge thinks the SD print runs, mean it was stopped at the printer
// (OctoPrint's maxNotSdPrinting).
const maxNotSDPrinting = 2

// sdRequest carries the SD specifics of a request.
type sdRequest struct {
	remote   string
	listDone func([]SDFile, error)
	// selectAfter and printAfter select or start an uploaded file once
	// the printer has saved it.
	selectAfter, printAfter bool
}

// sdState is the session's view of the printer's SD card.
type sdState struct {
	// ready is set once the firmware reported an initialised card.
	ready bool
	files []SDFile
	// listOpen is set between `Begin file list` and `End file list`, and
	// listing holds the entries received so far. listSeq counts finished
	// listings, so a request can tell whether its M20 produced one.
	listOpen bool
	listing  []SDFile
	listSeq  int
	// nextPoll and pollQueued schedule the M27 polls of an SD print on a
	// firmware without AUTOREPORT_SD_STATUS (session.sdAutoReport off).
	nextPoll   time.Time
	pollQueued bool
	// stopAutoReport is set when an SD print ended with the auto-report
	// on, until sdTick switches it off.
	stopAutoReport bool
	// notPrinting counts `Not SD printing` replies during an SD print.
	notPrinting int
	// starting is set while the M23 of a print start is on its way.
	starting bool
	transfer *sdTransfer
}

// sdTransfer is an upload of a local file to the SD card (M28 ... M29).
type sdTransfer struct {
	local, remote string
	file          *os.File
	r             *bufio.Reader
	started       time.Time
	// streaming is set once the firmware opened the remote file, and eof
	// once the last line went out and M29 is queued.
	streaming bool
	eof       bool
	pending   string
	first     bool
	lines     int
	done      DoneFunc
	// selectAfter and printAfter are the upload's select and print
	// requests, run by transferDone.
	selectAfter, printAfter bool
}

// SDJob runs select or start on a file of the printer's SD card; path is
// its name as M20 lists it. Pause, resume and cancel act on any running
// print through Job.
func (p *Printer) SDJob(ctx context.Context, action, path string, done DoneFunc) error {
	switch action {
	case reqSelect:
		return p.submit(ctx, request{kind: reqSDSelect, path: path, done: done})
	case reqStart:
		return p.submit(ctx, request{kind: reqSDStart, path: path, done: done})
	}
	return fmt.Errorf("job action %q takes no origin: it acts on the running print whatever its origin", action)
}

// SDList requests the SD card's file list (M20); done gets the
// listing once it has arrived.
func (p *Printer) SDList(ctx context.Context, done func([]SDFile, error)) error {
	return p.submit(ctx, request{kind: reqSDList, sd: &sdRequest{listDone: done}})
}

// SDUpload copies local (relative to the files directory) to the SD card
// as remote, or as an 8.3 name made from local when remote is empty. done
// is called when the printer has saved the file or the transfer failed.
func (p *Printer) SDUpload(ctx context.Context, local, remote string, done DoneFunc) error {
	return p.SDUploadThen(ctx, SDUploadRequest{Local: local, Remote: remote}, done)
}

// SDUploadRequest is an upload to the SD card with what to do once the
// printer has saved the file.
type SDUploadRequest struct {
	// Local is the file's path relative to the files directory, and
	// Remote its SD name, or empty for an 8.3 name made from Local.
	Local, Remote string
	// Select selects the SD file after the upload, and Print starts
	// printing it (OctoPrint's upload with select or print).
	Select, Print bool
}

// SDUploadThen runs up like SDUpload and fires Upload with target sdcard
// once the transfer has started. done is called when the printer has
// saved the file or the transfer failed, before the select or print,
// whose failure is logged.
func (p *Printer) SDUploadThen(ctx context.Context, up SDUploadRequest, done DoneFunc) error {
	sd := &sdRequest{remote: up.Remote, selectAfter: up.Select, printAfter: up.Print}
	return p.submit(ctx, request{kind: reqSDUpload, path: up.Local, sd: sd, done: done})
}

// SDRemove deletes a file from the SD card (M30).
func (p *Printer) SDRemove(ctx context.Context, name string, done DoneFunc) error {
	return p.submit(ctx, request{kind: reqSDRemove, path: name, done: done})
}

func (s *session) handleSDRequest(r request) error {
	if s.port == nil || !s.state.Operational() {
		return fmt.Errorf("printer is not connected (state %s); connect it first", s.state)
	}
	if r.kind == reqSDList {
		return s.sdList(r.sd.listDone)
	}
	if !s.sd.ready {
		return errors.New("the printer reports no usable SD card; insert one and send M21, or check that the firmware has SD support")
	}
	switch r.kind {
	case reqSDSelect:
		if err := s.sdCheckIdle("select an SD file"); err != nil {
			return err
		}
		name, err := s.sdName(r.path)
		if err != nil {
			return err
		}
		s.sdSelect(name, false, func(err error) {
			if r.done != nil {
				r.done(nil, err)
			}
		})
		s.pump()
		return nil
	case reqSDStart:
		return s.sdStart(r.path, r.done)
	case reqSDUpload:
		return s.sdUpload(r.path, r.sd, r.done)
	case reqSDRemove:
		return s.sdRemove(r.path, r.done)
	}
	return fmt.Errorf("unknown request %q", r.kind)
}

// sdCheckIdle rejects an SD operation that needs an idle printer.
func (s *session) sdCheckIdle(what string) error {
	if s.sd.transfer != nil {
		return fmt.Errorf("cannot %s while %s is being uploaded to the SD card; wait for the transfer or cancel it", what, s.sd.transfer.local)
	}
	if s.job != nil || s.sd.starting || s.state != StateOperational {
		return fmt.Errorf("cannot %s in state %s; wait for the running print to end", what, s.state)
	}
	return nil
}

// sdName validates an SD file name from a command and returns it the way
// the last listing spells it.
func (s *session) sdName(name string) (string, error) {
	name = strings.TrimPrefix(strings.TrimSpace(name), "/")
	if name == "" {
		return "", errors.New(`missing "path": name a file of the SD card as the file list shows it`)
	}
	if strings.ContainsAny(name, ";*\\") || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		return "", fmt.Errorf("invalid SD file name %q: use the printable ASCII name the file list shows, without ';', '*' or '\\'", name)
	}
	for _, f := range s.sd.files {
		if strings.EqualFold(f.Name, name) || f.LongName != "" && strings.EqualFold(f.LongName, name) {
			return f.Name, nil
		}
	}
	return name, nil
}

// ---- listing ----

// sdList sends M20 (M20 L T when the firmware has EXTENDED_M20) and calls
// done with the listing.
func (s *session) sdList(done func([]SDFile, error)) error {
	if !s.sd.ready {
		return errors.New("the printer reports no usable SD card; insert one and send M21, or check that the firmware has SD support")
	}
	s.sdRefresh(done)
	s.pump()
	return nil
}

func (s *session) sdRefresh(done func([]SDFile, error)) {
	cmd := "M20"
	if s.caps["EXTENDED_M20"] {
		cmd = "M20 L T"
	}
	seq := s.sd.listSeq
	req := &gcodeRequest{pending: 1, source: "sdcard", done: func(replies []string, err error) {
		if done == nil {
			return
		}
		switch {
		case err != nil:
			done(nil, err)
		case s.sd.listSeq == seq:
			done(nil, fmt.Errorf("the printer sent no file list for %s (replies: %s)", cmd, strings.Join(replies, " | ")))
		default:
			done(append([]SDFile(nil), s.sd.files...), nil)
		}
	}}
	s.enqueue(queued{text: cmd, owner: req})
}

// sdListLine takes the lines of an M20 listing, which are file names and
// must not be read as anything else (a name may start with "ok").
func (s *session) sdListLine(line string) bool {
	if line == "Begin file list" {
		s.sd.listOpen = true
		s.sd.listing = nil
		return true
	}
	if !s.sd.listOpen {
		return false
	}
	if line == "End file list" || line == "ok" {
		s.sd.listOpen = false
		s.sd.files = s.sd.listing
		s.sd.listing = nil
		s.sd.listSeq++
		s.log.Info("SD card file list received", "files", len(s.sd.files))
		// OctoPrint fires UpdatedFiles for every SD listing it receives.
		s.emit(bridge.EventUpdatedFiles, bridge.Payload{{Key: "type", Value: "printables"}})
		// An ok means the firmware never sent the end line; it is still
		// the ok of the M20.
		return line != "ok"
	}
	f, ok := ParseFileListLine(line)
	if !ok {
		return true
	}
	if !machineCode(f.Name) && !machineCode(f.LongName) {
		s.log.Debug("SD card entry that is no G-code ignored", "line", line)
		return true
	}
	s.sd.listing = append(s.sd.listing, f)
	return true
}

// gluedSDMessages are SD replies after which an ok can lose its line
// feed; they end in letters or "ok", which splitGlued's digit rule misses.
var gluedSDMessages = []string{
	"echo:SD card ok", "SD card ok", "echo:SD init fail", "echo:No media", "echo:SD card released",
	"Begin file list", "End file list", "File selected", "Done saving file.", "Done printing file", "Not SD printing",
}

// splitGluedSD splits an SD reply with an ok glued to its end, such as
// `End file listok`; it returns nil for any other line.
func splitGluedSD(line string) []string {
	rest, found := strings.CutSuffix(line, "ok")
	if !found {
		return nil
	}
	for _, m := range gluedSDMessages {
		if rest == m {
			return []string{rest, "ok"}
		}
	}
	switch {
	case strings.HasPrefix(rest, "Writing to file: ") && machineCode(rest):
		return []string{rest, "ok"}
	case (strings.HasPrefix(rest, "open failed") || strings.HasPrefix(rest, "Deletion failed")) && strings.HasSuffix(rest, "."):
		return []string{rest, "ok"}
	}
	return nil
}

// machineCode reports OctoPrint's machine-code file extensions.
func machineCode(name string) bool {
	switch strings.ToLower(strings.TrimPrefix(filepath.Ext(name), ".")) {
	case "gcode", "gco", "g":
		return true
	}
	return false
}

// ---- capabilities and reports ----

// sdOnCapabilities initialises the card (M21) unless the firmware reported
// no SD support.
func (s *session) sdOnCapabilities() {
	if on, reported := s.caps["SDCARD"]; reported && !on {
		s.log.Info("firmware has no SD card support")
		return
	}
	s.enqueue(queued{text: "M21"})
}

// sdReport handles the SD lines of parseReport and reports whether line
// was one.
func (s *session) sdReport(line string) bool {
	if pos, total, printing, ok := ParseSDStatus(line); ok {
		s.onSDStatus(pos, total, printing)
		return true
	}
	if IsSDPrintDone(line) {
		s.onSDPrintDone()
		return true
	}
	lower := strings.ToLower(line)
	switch {
	case strings.Contains(lower, "sd card ok"), strings.Contains(lower, "card successfully initialized"):
		if !s.sd.ready {
			s.sd.ready = true
			s.log.Info("SD card ready")
			// As OctoPrint, the card is listed only while the printer is
			// idle, so that M20 never lands between the lines of a print.
			if s.job == nil && s.sd.transfer == nil {
				s.sdRefresh(nil)
			}
		}
		return true
	case strings.Contains(lower, "sd init fail"), strings.Contains(lower, "volume.init failed"), strings.Contains(lower, "no media"),
		strings.Contains(lower, "openroot failed"), strings.Contains(lower, "sd card unmounted"), strings.Contains(lower, "sd card released"):
		if s.sd.ready || s.sd.files != nil {
			s.log.Warn("SD card not available", "line", line)
		}
		had := len(s.sd.files) > 0
		s.sd.ready = false
		s.sd.files = nil
		if had {
			s.emit(bridge.EventUpdatedFiles, bridge.Payload{{Key: "type", Value: "printables"}})
		}
		return true
	}
	return false
}

func (s *session) sdJobRunning() bool {
	return s.job != nil && s.job.sd
}

func (s *session) onSDStatus(pos, total int64, printing bool) {
	if !s.sdJobRunning() {
		return
	}
	if printing {
		s.sd.notPrinting = 0
		s.selected.pos = pos
		if s.selected.size <= 0 {
			s.selected.size = total
		}
		return
	}
	if s.state != StatePrinting {
		return
	}
	s.sd.notPrinting++
	if s.sd.notPrinting > maxNotSDPrinting {
		s.log.Warn("the printer reports no SD print any more; it was stopped at the printer, so the print counts as cancelled",
			"file", s.selected.path, "replies", s.sd.notPrinting)
		s.sd.notPrinting = 0
		_ = s.cancelJob(nil, "")
	}
}

func (s *session) onSDPrintDone() {
	if !s.sdJobRunning() || s.state == StateCancelling || s.state == StateFinishing {
		return
	}
	s.selected.pos = s.selected.size
	s.finishJob()
	s.pump()
}

// sdTick polls M27 while an SD print runs without auto-report, and
// switches the auto-report off after an SD print.
func (s *session) sdTick(now time.Time) {
	if s.sd.stopAutoReport && s.port != nil {
		s.sd.stopAutoReport = false
		s.enableSDAutoReport(false)
	}
	if !s.sdJobRunning() || s.state != StatePrinting || s.sdAutoReport || s.sd.pollQueued || now.Before(s.sd.nextPoll) {
		return
	}
	s.sd.nextPoll = now.Add(sdPollInterval)
	s.sd.pollQueued = true
	req := &gcodeRequest{pending: 1, source: "sd_status_poll", done: func([]string, error) { s.sd.pollQueued = false }}
	s.queue = append([]queued{{text: "M27", owner: req}}, s.queue...)
	s.pump()
}

// sdErrorLine takes a firmware error that is not fatal; a write error
// during an upload fails the transfer.
func (s *session) sdErrorLine(line string) {
	t := s.sd.transfer
	if t == nil || !strings.Contains(strings.ToLower(line), "error writing to file") {
		return
	}
	s.failTransfer(fmt.Sprintf("the printer could not write %s to its SD card (%s)", t.remote, strings.TrimSpace(line)), true)
}

// sdConnectionLost ends a transfer and forgets the card when the
// connection ends or the firmware resets.
func (s *session) sdConnectionLost(reason string) {
	s.failTransfer(reason, false)
	s.sd = sdState{}
}

// sdStateText returns OctoPrint's state strings of SD prints.
func (s *session) sdStateText(st State, text string) string {
	if !s.sdJobRunning() {
		return text
	}
	switch st {
	case StateStarting:
		return "Starting print from SD"
	case StatePrinting:
		return "Printing from SD"
	}
	return text
}

// ---- select and print ----

// sdSelect opens name with M23; then gets nil once the printer opened it
// and the file is selected, or the error. quiet leaves out FileSelected,
// for the re-selection at a print start.
func (s *session) sdSelect(name string, quiet bool, then func(error)) {
	req := &gcodeRequest{pending: 1, source: "sdcard", done: func(replies []string, err error) {
		if err != nil {
			then(err)
			return
		}
		for _, r := range replies {
			if _, size, ok := ParseFileOpened(r); ok {
				if s.job != nil {
					then(fmt.Errorf("a print started while %s was being opened", name))
					return
				}
				s.selected = &selectedFile{name: name, path: name, origin: OriginSDCard, size: size}
				s.printerZ = nil
				if !quiet {
					s.emit(bridge.EventFileSelected, bridge.Payload{
						{Key: "name", Value: name}, {Key: "path", Value: name}, {Key: "origin", Value: OriginSDCard},
					})
				}
				then(nil)
				return
			}
			if strings.Contains(strings.ToLower(r), "open failed") || strings.Contains(strings.ToLower(r), "no media") {
				then(fmt.Errorf("the printer could not open %q on its SD card (%s); list the card to see its files", name, r))
				return
			}
		}
		then(fmt.Errorf("the printer did not confirm opening %q (replies: %s)", name, strings.Join(replies, " | ")))
	}}
	s.enqueue(queued{text: "M23 " + name, owner: req})
}

func (s *session) sdStart(path string, done DoneFunc) error {
	if err := s.sdCheckIdle("start an SD print"); err != nil {
		return err
	}
	name := path
	if name == "" {
		if s.selected == nil || s.selected.origin != OriginSDCard {
			return errors.New(`no SD file selected: give "path" or select an SD file first`)
		}
		name = s.selected.path
	}
	name, err := s.sdName(name)
	if err != nil {
		return err
	}
	quiet := s.selected != nil && s.selected.origin == OriginSDCard && strings.EqualFold(s.selected.path, name)
	s.sd.starting = true
	// M23 again before every start, so the firmware reads the file from
	// its first byte (a cancelled print leaves it open somewhere else).
	s.sdSelect(name, quiet, func(err error) {
		s.sd.starting = false
		if err == nil {
			err = s.beginSDPrint(done)
		}
		if err != nil && done != nil {
			done(nil, err)
		}
	})
	s.pump()
	return nil
}

func (s *session) beginSDPrint(done DoneFunc) error {
	if s.port == nil || s.state != StateOperational || s.job != nil {
		return fmt.Errorf("cannot start the SD print in state %s", s.state)
	}
	s.selected.pos = 0
	s.selected.done = false
	s.job = &job{sd: true, started: time.Now(), onStarted: done}
	s.printerZ = nil
	s.sd.notPrinting = 0
	s.setState(StateStarting)
	s.log.Info("SD print started", "file", s.selected.path, "size", s.selected.size)
	s.chartMark("print", "Start")
	s.emit(bridge.EventPrintStarted, s.jobPayload())
	// Unlike OctoPrint, which switches it on at connect, the auto-report
	// runs only during SD prints, so its lines never mix into the
	// resend handling of host-streamed prints. closeJob switches it off.
	// Without the capability sdTick polls M27 instead.
	s.sd.stopAutoReport = false
	if !s.sdAutoReport {
		s.enableSDAutoReport(true)
	}
	s.enqueue(queued{text: "M24"})
	s.enqueue(queued{marker: func() {
		if s.job == nil {
			return
		}
		s.leaveStarting()
		s.sd.nextPoll = time.Now()
		if s.job.onStarted != nil {
			s.job.onStarted(nil, nil)
			s.job.onStarted = nil
		}
	}})
	s.pump()
	return nil
}

// ---- remove ----

func (s *session) sdRemove(path string, done DoneFunc) error {
	if s.sd.transfer != nil {
		return fmt.Errorf("cannot remove an SD file while %s is being uploaded; wait for the transfer or cancel it", s.sd.transfer.local)
	}
	name, err := s.sdName(path)
	if err != nil {
		return err
	}
	selected := s.selected != nil && s.selected.origin == OriginSDCard && strings.EqualFold(s.selected.path, name)
	if selected && s.job != nil {
		return fmt.Errorf("cannot remove %q from the SD card: it is being printed; cancel the print first", name)
	}
	req := &gcodeRequest{pending: 1, source: "sdcard", done: func(replies []string, err error) {
		for _, r := range replies {
			if strings.Contains(strings.ToLower(r), "deletion failed") {
				err = fmt.Errorf("the printer could not delete %q from its SD card (%s)", name, r)
			}
		}
		if err == nil {
			s.log.Info("SD file removed", "file", name)
			if s.selected != nil && s.selected.origin == OriginSDCard && strings.EqualFold(s.selected.path, name) && s.job == nil {
				s.selected = nil
				s.printerZ = nil
				s.emit(bridge.EventFileDeselected, nil)
			}
			if s.sd.ready {
				s.sdRefresh(nil)
			}
		}
		if done != nil {
			done(nil, err)
		}
	}}
	s.enqueue(queued{text: "M30 " + name, owner: req})
	s.pump()
	return nil
}

// ---- upload ----

func (s *session) sdUpload(local string, up *sdRequest, done DoneFunc) error {
	remote := up.remote
	if err := s.sdCheckIdle("upload to the SD card"); err != nil {
		return err
	}
	if on, reported := s.caps["SD_WRITE"]; reported && !on {
		return errors.New("the firmware reports no SD write support (Cap:SD_WRITE:0); it cannot store uploads")
	}
	full, err := s.resolvePath(local)
	if err != nil {
		return err
	}
	st, err := os.Stat(full)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("file %q not found in the files directory %s", local, s.p.cfg.FilesDir)
		}
		return fmt.Errorf("file %q: %w", local, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("file %q is not a regular file", local)
	}
	rel := strings.TrimPrefix(filepath.ToSlash(filepath.Clean("/"+local)), "/")
	if err := s.checkGcodeFile(full, rel); err != nil {
		return err
	}
	if remote == "" {
		remote = dosFileName(filepath.Base(rel), s.sd.files, s.caps["LFN_WRITE"])
	} else if err := checkRemoteName(remote, s.caps["LFN_WRITE"]); err != nil {
		return err
	}
	f, err := os.Open(full)
	if err != nil {
		return fmt.Errorf("open %q: %w", rel, err)
	}
	t := &sdTransfer{local: rel, remote: remote, file: f, r: bufio.NewReaderSize(f, 32*1024), started: time.Now(), first: true, done: done,
		selectAfter: up.selectAfter, printAfter: up.printAfter}
	s.sd.transfer = t
	s.printerZ = nil
	s.setState(StateTransferringFile)
	s.log.Info("SD upload started", "local", rel, "remote", remote, "size", st.Size())
	s.emit(bridge.EventTransferStarted, bridge.Payload{{Key: "local", Value: rel}, {Key: "remote", Value: remote}})
	// As OctoPrint's upload API, which fires Upload once the transfer to
	// the card has started. The select or print is granted, because the
	// upload itself needs an idle printer.
	s.emit(bridge.EventUpload, bridge.Payload{
		{Key: "name", Value: remote}, {Key: "path", Value: remote}, {Key: "target", Value: OriginSDCard},
		{Key: "select", Value: up.selectAfter}, {Key: "print", Value: up.printAfter},
		{Key: "effective_select", Value: up.selectAfter || up.printAfter}, {Key: "effective_print", Value: up.printAfter},
	})
	// As OctoPrint: line numbers restart, then M28 opens the file; the
	// lines follow once the firmware confirmed it. The empty marker holds
	// M28 back until M110's ok, because Marlin sets the line number again
	// when it executes M110 and would reject a line sent behind it; the
	// resent M28 would then be written into the file.
	s.enqueue(queued{text: "M110 N0"})
	s.enqueue(queued{marker: func() {}})
	req := &gcodeRequest{pending: 1, source: "sdcard", done: func(replies []string, err error) {
		if s.sd.transfer != t {
			return
		}
		if err != nil {
			s.failTransfer(err.Error(), false)
			return
		}
		for _, r := range replies {
			if strings.HasPrefix(strings.TrimSpace(r), "Writing to file") {
				t.streaming = true
				s.pump()
				return
			}
		}
		s.failTransfer(fmt.Sprintf("the printer did not open %s for writing (replies: %s)", remote, strings.Join(replies, " | ")), false)
	}}
	s.enqueue(queued{text: "M28 " + remote, owner: req})
	s.pump()
	return nil
}

// nextTransferLine sends the next command of the uploaded file, like
// nextJobLine. At the end of the file it queues M29 and returns false.
func (s *session) nextTransferLine() bool {
	t := s.sd.transfer
	if t.pending == "" {
		cmd, ok := s.readTransferCommand()
		if !ok {
			return false
		}
		t.pending = cmd
	}
	l := wireLength(s.nextLine, ToASCII(t.pending))
	if l > s.p.cfg.MaxLineLength {
		s.failTransfer(fmt.Sprintf("line %q of %s is %d bytes with line number and checksum, over the firmware's maximum of %d",
			truncateText(t.pending, 40), t.local, l, s.p.cfg.MaxLineLength), true)
		return false
	}
	if !s.canSend(t.pending, l+1) {
		return false
	}
	cmd := t.pending
	t.pending = ""
	t.lines++
	// The lines are stored, not executed, so they fire no G-code events,
	// as OctoPrint skips its phase handlers while streaming to SD.
	s.writeNumbered(queued{text: cmd}, false)
	return true
}

func (s *session) readTransferCommand() (string, bool) {
	t := s.sd.transfer
	for {
		raw, err := t.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// checkGcodeFile let only comments this long through.
			if _, err := skipRestOfLine(t.r); err != nil && !errors.Is(err, io.EOF) {
				s.failTransfer(fmt.Sprintf("read %s: %v", t.local, err), true)
				return "", false
			}
			continue
		}
		if len(raw) == 0 && err != nil {
			if !errors.Is(err, io.EOF) {
				s.failTransfer(fmt.Sprintf("read %s: %v", t.local, err), true)
				return "", false
			}
			s.endTransfer()
			return "", false
		}
		first := t.first
		t.first = false
		if cmd := fileCommand(raw, first); cmd != "" {
			return cmd, true
		}
	}
}

// endTransfer queues M29 after the last line; its reply finishes the
// transfer.
func (s *session) endTransfer() {
	t := s.sd.transfer
	t.eof = true
	req := &gcodeRequest{pending: 1, source: "sdcard", done: func(replies []string, err error) {
		if s.sd.transfer != t {
			return
		}
		if err != nil {
			s.failTransfer(err.Error(), false)
			return
		}
		for _, r := range replies {
			if strings.HasPrefix(strings.TrimSpace(r), "Done saving file") {
				s.transferDone()
				return
			}
		}
		// NOTE: a firmware whose M29 sends no ok stalls here until the
		// communication timeout; Marlin 2.x sends one after its message.
		s.failTransfer(fmt.Sprintf("the printer did not confirm saving %s (replies: %s)", t.remote, strings.Join(replies, " | ")), true)
	}}
	s.enqueue(queued{text: "M29", owner: req})
}

func (s *session) transferDone() {
	t := s.sd.transfer
	elapsed := time.Since(t.started).Seconds()
	_ = t.file.Close()
	s.sd.transfer = nil
	s.setState(StateOperational)
	s.log.Info("SD upload done", "local", t.local, "remote", t.remote, "lines", t.lines, "seconds", math.Round(elapsed*10)/10)
	s.emit(bridge.EventTransferDone, bridge.Payload{{Key: "local", Value: t.local}, {Key: "remote", Value: t.remote}, {Key: "time", Value: elapsed}})
	if t.done != nil {
		t.done([]string{"stored on the SD card as " + t.remote}, nil)
	}
	s.sdRefresh(nil)
	s.runAfterUpload(t)
	s.pump()
}

// runAfterUpload selects or starts the uploaded file, as OctoPrint does
// when the transfer of an upload with select or print has succeeded.
func (s *session) runAfterUpload(t *sdTransfer) {
	var err error
	switch {
	case t.printAfter:
		err = s.sdStart(t.remote, func(_ []string, err error) {
			if err != nil {
				s.log.Error("SD print after the upload failed", "file", t.remote, "error", err)
			}
		})
	case t.selectAfter:
		s.sdSelect(t.remote, false, func(err error) {
			if err != nil {
				s.log.Error("SD file select after the upload failed", "file", t.remote, "error", err)
			}
		})
	}
	if err != nil {
		s.log.Error("SD print after the upload failed", "file", t.remote, "error", err)
	}
}

// failTransfer ends the transfer with TransferFailed. cleanup (when the
// connection is still up) closes the remote file with M29 and deletes it
// with M30, as OctoPrint does.
func (s *session) failTransfer(msg string, cleanup bool) {
	t := s.sd.transfer
	if t == nil {
		return
	}
	elapsed := time.Since(t.started).Seconds()
	_ = t.file.Close()
	s.sd.transfer = nil
	s.log.Error("SD upload failed", "local", t.local, "remote", t.remote, "error", msg)
	if cleanup && s.port != nil {
		if !t.eof {
			s.enqueue(queued{text: "M29"})
		}
		s.enqueue(queued{text: "M30 " + t.remote})
		s.sdRefresh(nil)
	}
	if s.port != nil && s.state == StateTransferringFile {
		s.setState(StateOperational)
	}
	s.emit(bridge.EventTransferFailed, bridge.Payload{{Key: "local", Value: t.local}, {Key: "remote", Value: t.remote}, {Key: "time", Value: elapsed}})
	if t.done != nil {
		t.done(nil, errors.New(msg))
	}
	s.pump()
}

// cancelTransfer stops an upload at the user's request.
func (s *session) cancelTransfer(done DoneFunc) error {
	s.failTransfer("transfer cancelled", true)
	if done != nil {
		done(nil, nil)
	}
	return nil
}

// dosFileName makes an SD name for an upload as OctoPrint's
// get_dos_filename does: lower case, at most 8 characters with a ~N
// suffix on collisions, and the extension gco unless it is gco or g.
// Firmware with LFN_WRITE keeps the long name.
func dosFileName(name string, existing []SDFile, longNames bool) string {
	if longNames && checkRemoteName(name, true) == nil {
		return name
	}
	ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(name), "."))
	base := strings.TrimSuffix(name, filepath.Ext(name))
	if ext != "gco" && ext != "g" {
		ext = "gco"
	}
	var b strings.Builder
	for _, r := range strings.ToLower(base) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('_')
		}
	}
	clean := b.String()
	if clean == "" {
		clean = "print"
	}
	taken := map[string]bool{}
	for _, f := range existing {
		taken[strings.ToLower(f.Name)] = true
	}
	if len(clean) <= 8 && !taken[clean+"."+ext] {
		return clean + "." + ext
	}
	for i := 1; ; i++ {
		suffix := "~" + strconv.Itoa(i)
		candidate := clean[:min(len(clean), 8-len(suffix))] + suffix + "." + ext
		if !taken[candidate] {
			return candidate
		}
	}
}

// checkRemoteName validates an SD name given for an upload.
func checkRemoteName(name string, longNames bool) error {
	if name == "" || strings.ContainsAny(name, "/\\;*\"") || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		return fmt.Errorf("invalid SD file name %q: use printable ASCII without '/', '\\', ';', '*' or '\"'", name)
	}
	if longNames {
		return nil
	}
	base, ext, _ := strings.Cut(name, ".")
	if len(base) < 1 || len(base) > 8 || len(ext) > 3 || strings.Contains(ext, ".") || strings.Contains(name, " ") {
		return fmt.Errorf("invalid SD file name %q: this firmware has no LFN_WRITE, so give an 8.3 name such as cube.gco, or leave the name out to get one", name)
	}
	return nil
}
