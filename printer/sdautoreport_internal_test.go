package printer

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openPTY returns both ends of a raw pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
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
	sfd, err := unix.Open("/dev/pts/"+strconv.FormatUint(uint64(index), 10), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	tio, err := unix.IoctlGetTermios(sfd, unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	if err := unix.IoctlSetTermios(sfd, unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	master, slave = os.NewFile(uintptr(mfd), "ptmx"), os.NewFile(uintptr(sfd), "pts")
	t.Cleanup(func() {
		master.Close()
		slave.Close()
	})
	return master, slave
}

// connectedSession returns a session that is operational on the slave
// end of a pty, with caps as the firmware's capabilities, and a reader
// of the lines it writes.
func connectedSession(t *testing.T, caps map[string]bool) (*session, *bufio.Reader) {
	t.Helper()
	master, slave := openPTY(t)
	cfg := Config{Port: "pty"}
	cfg.setDefaults()
	s := newSession(New(cfg, nil, nil, Metrics{}))
	s.port = slave
	s.resetProtocol()
	s.nextLine = 1
	s.state = StateOperational
	s.caps = caps
	s.capsApplied = true
	return s, bufio.NewReader(master)
}

func readSent(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read the line the session sent: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestSDAutoReportFollowsSDPrint(t *testing.T) {
	s, sent := connectedSession(t, map[string]bool{"AUTOREPORT_SD_STATUS": true})

	if !s.enableSDAutoReport(true) {
		t.Fatal("enableSDAutoReport(true) = false for a firmware with AUTOREPORT_SD_STATUS")
	}
	if got, want := readSent(t, sent), FormatNumbered(1, "M27 S1"); got != want {
		t.Fatalf("sent %q, want %q", got, want)
	}
	s.handleLine("ok")
	if !s.sdAutoReport {
		t.Error("SD auto-report not recorded as on after M27 S1")
	}

	if !s.enableSDAutoReport(false) {
		t.Fatal("enableSDAutoReport(false) = false for a firmware with AUTOREPORT_SD_STATUS")
	}
	if got, want := readSent(t, sent), FormatNumbered(2, "M27 S0"); got != want {
		t.Fatalf("sent %q, want %q", got, want)
	}
	s.handleLine("ok")
	if s.sdAutoReport {
		t.Error("SD auto-report still recorded as on after M27 S0")
	}
}

func TestSDAutoReportNeedsCapability(t *testing.T) {
	for _, caps := range []map[string]bool{{}, {"AUTOREPORT_SD_STATUS": false}} {
		s, _ := connectedSession(t, caps)
		if s.enableSDAutoReport(true) {
			t.Errorf("enableSDAutoReport(true) = true with capabilities %v", caps)
		}
		if len(s.inflight) != 0 || len(s.queue) != 0 {
			t.Errorf("lines sent or queued without the capability: in flight %v, queued %v", s.inflight, s.queue)
		}
	}
}
