package printer_test

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/printbridge/printbridge/printer"
)

// scriptedFirmware is a pty whose far end is a test script instead of the
// virtual printer: it checks line numbers and checksums as Marlin does
// and lets the script answer each accepted command, to reproduce
// transcripts from bug reports byte for byte.
type scriptedFirmware struct {
	t      *testing.T
	master *os.File
	slave  *os.File
	path   string

	// mu guards last, received and the writes to master.
	mu       sync.Mutex
	silent   bool
	last     int
	received []string
	// respond returns the lines for an accepted command (n is its line
	// number, -1 when unnumbered). Nil means a plain ok.
	respond func(fw *scriptedFirmware, n int, cmd string) []string
	reject  func(fw *scriptedFirmware, n int, cmd string) []string
	// onBadLine, if set, replaces Marlin's answer to a line that fails the
	// sequence or checksum check.
	onBadLine func(fw *scriptedFirmware, raw string, expected int) []string
}

// scriptFuncs are the answers of a scripted firmware.
type scriptFuncs struct {
	// reject, if it returns lines, refuses a line that passed the checks:
	// the lines are sent and the line is not accepted.
	reject    func(fw *scriptedFirmware, n int, cmd string) []string
	respond   func(fw *scriptedFirmware, n int, cmd string) []string
	onBadLine func(fw *scriptedFirmware, raw string, expected int) []string
}

func newScriptedFirmware(t *testing.T, greeting []string, script scriptFuncs) *scriptedFirmware {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	var unlock int32
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
		t.Fatalf("unlock pty: %v", errno)
	}
	index, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	path := "/dev/pts/" + strconv.FormatUint(uint64(index), 10)
	// Holding the slave open keeps the master readable while the edge
	// reopens the port; raw mode stops the line discipline from echoing.
	sfd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	tio, err := unix.IoctlGetTermios(sfd, unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB
	tio.Cflag |= unix.CS8
	if err := unix.IoctlSetTermios(sfd, unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	fw := &scriptedFirmware{t: t, master: os.NewFile(uintptr(mfd), "ptmx"), slave: os.NewFile(uintptr(sfd), path), path: path,
		respond: script.respond, onBadLine: script.onBadLine, reject: script.reject}
	t.Cleanup(func() {
		fw.master.Close()
		fw.slave.Close()
	})
	fw.send(greeting...)
	go fw.serve()
	return fw
}

func (fw *scriptedFirmware) send(lines ...string) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.sendLocked(lines...)
}

func (fw *scriptedFirmware) sendLocked(lines ...string) {
	for _, l := range lines {
		if _, err := fw.master.WriteString(l + "\n"); err != nil {
			return
		}
	}
}

var numberedLine = regexp.MustCompile(`^N(-?\d+)\s+(.*)\*(\d+)$`)

func (fw *scriptedFirmware) serve() {
	sc := bufio.NewScanner(fw.master)
	for sc.Scan() {
		raw := strings.TrimSpace(sc.Text())
		if raw == "" {
			continue
		}
		fw.handle(raw)
	}
}

func (fw *scriptedFirmware) handle(raw string) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.silent {
		return
	}
	n, cmd := -1, raw
	if m := numberedLine.FindStringSubmatch(raw); m != nil {
		n, _ = strconv.Atoi(m[1])
		cmd = m[2]
		cs, _ := strconv.Atoi(m[3])
		head := raw[:strings.LastIndexByte(raw, '*')]
		isM110 := strings.HasPrefix(cmd, "M110")
		switch {
		case int(printer.Checksum(head)) != cs:
			fw.badLineLocked(raw, fmt.Sprintf("Error:checksum mismatch, Last Line: %d", fw.last))
			return
		case !isM110 && n != fw.last+1:
			fw.badLineLocked(raw, fmt.Sprintf("Error:Line Number is not Last Line Number+1, Last Line: %d", fw.last))
			return
		}
		if fw.reject != nil {
			if out := fw.reject(fw, n, cmd); out != nil {
				fw.sendLocked(out...)
				return
			}
		}
		fw.last = n
	}
	fw.received = append(fw.received, cmd)
	var out []string
	if fw.respond != nil {
		out = fw.respond(fw, n, cmd)
	}
	if out == nil {
		out = []string{"ok"}
	}
	fw.sendLocked(out...)
}

func (fw *scriptedFirmware) badLineLocked(raw, errLine string) {
	if fw.onBadLine != nil {
		fw.sendLocked(fw.onBadLine(fw, raw, fw.last+1)...)
		return
	}
	fw.sendLocked(errLine, fmt.Sprintf("Resend: %d", fw.last+1), "ok")
}

// commands returns the accepted commands so far.
func (fw *scriptedFirmware) commands() []string {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return append([]string(nil), fw.received...)
}
