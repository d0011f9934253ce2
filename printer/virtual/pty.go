package virtual

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openPTY allocates a pseudo-terminal pair and returns the non-blocking
// master fd and the slave device path. The slave gets raw termios (no
// echo, no line editing, no CR/LF mapping). In the default cooked mode
// the slave would echo the firmware's own output back into the master,
// and hosts that do not set raw mode themselves would see CRLF.
// Setting termios needs the slave open, so openPTY opens and closes it
// once; that also moves the master into the state Linux keeps after a
// host closed the slave (POLLHUP, reads fail with EIO), so the first
// host is handled like every later one.
func openPTY() (master int, slavePath string, err error) {
	master, err = unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("open /dev/ptmx: %w (the kernel needs devpts mounted on /dev/pts)", err)
	}
	fail := func(err error) (int, string, error) {
		unix.Close(master)
		return -1, "", err
	}

	var unlock int32
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
		return fail(fmt.Errorf("unlock pty slave (TIOCSPTLCK): %w", errno))
	}
	index, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return fail(fmt.Errorf("get pty slave number (TIOCGPTN): %w", err))
	}
	slavePath = "/dev/pts/" + strconv.FormatUint(uint64(index), 10)

	slave, err := unix.Open(slavePath, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(fmt.Errorf("open pty slave %s: %w", slavePath, err))
	}
	err = setRaw(slave)
	unix.Close(slave)
	if err != nil {
		return fail(fmt.Errorf("set raw mode on pty slave %s: %w", slavePath, err))
	}
	return master, slavePath, nil
}

// setRaw applies cfmakeraw(3) settings at 115200 baud to a tty.
func setRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CBAUD
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL | unix.B115200
	t.Ispeed = unix.B115200
	t.Ospeed = unix.B115200
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

// createLink points path at target, replacing an existing symlink.
func createLink(path, target string) error {
	info, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("check link path %s: %w", path, err)
	case info.Mode()&fs.ModeSymlink == 0:
		return fmt.Errorf("link path %s exists and is not a symlink: remove it or choose another --link path", path)
	default:
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("replace old symlink %s: %w", path, err)
		}
	}
	if err := os.Symlink(target, path); err != nil {
		return fmt.Errorf("create symlink %s -> %s: %w", path, target, err)
	}
	return nil
}

// removeLink deletes the symlink at path if it still points at target, so
// a link that another simulator took over in the meantime survives.
func removeLink(path, target string) error {
	dest, err := os.Readlink(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("read symlink %s: %w", path, err)
	}
	if dest != target {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove symlink %s: %w", path, err)
	}
	return nil
}
