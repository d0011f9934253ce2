package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrInterrupted is a hook that an earlier worker started and did not see
// end, because that worker was killed. The hook is not started again, and
// its outcome is unknown.
var ErrInterrupted = errors.New("the worker that started the hook stopped before it ended; not started again")

// hookStart is the durable record of a system hook command that a worker
// started. It is written before the command's process passes its start
// gate, so a worker that finds it must take the command as possibly run.
type hookStart struct {
	// Hook is the subscription's position among the event's matching
	// subscriptions, from 0, and Name its HookName; a record matches a
	// subscription only when both agree.
	Hook int    `json:"hook"`
	Name string `json:"name"`
	// Command is the 1-based number of the command of the hook's list
	// that was started. The commands before it ended with status 0.
	Command int `json:"command"`
	// PID and StartTicks identify the process: StartTicks is field 22 of
	// /proc/PID/stat (clock ticks after boot), which tells a reused pid
	// apart.
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"start_ticks"`
	Host       string `json:"host"`
	Worker     string `json:"worker"`
	// Deadline is when the hook's timeout ends, zero without a timeout.
	Deadline time.Time `json:"deadline,omitzero"`
	// Marker is the file that the gate creates when it opens, just before
	// it execs the command; empty when the worker has no marker folder.
	Marker string `json:"marker,omitempty"`
	// Ended is set once the hook's last command ended; a worker writes it
	// with its next write, so a kill may lose it.
	Ended bool `json:"ended,omitempty"`
}

// gateScript holds a hook process until the worker has recorded its
// start: it reads one line from fd 3, creates the marker file named by
// "$0" and then execs the hook's own argv, which it gets as "$@", never as
// text of the script. When the worker dies first, the pipe closes, read
// fails and the hook never runs. The marker tells a later worker on this
// host whether the gate opened. A marker that cannot be created does not
// stop the hook. exec keeps the pid and the process group, so the
// recorded pid is the hook's, and a timeout still kills the whole group.
const gateScript = `read _ <&3 || exit 125; exec 3<&-; : >"$0" 2>/dev/null; exec "$@"`

// noMarker is the marker argument of a gate without a marker folder.
const noMarker = "/dev/null"

// hostName is this host's name in hook start records.
var hostName = func() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "host"
	}
	return h
}()

// processStartTicks returns field 22 of /proc/pid/stat, the start time
// of the process in clock ticks after boot, and whether it is a zombie.
func processStartTicks(pid int) (ticks uint64, zombie bool, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	// The command name (field 2) is in parentheses and may contain
	// spaces, so fields are counted after the last ')'.
	end := strings.LastIndexByte(string(data), ')')
	if end < 0 {
		return 0, false, fmt.Errorf("unexpected /proc/%d/stat: no ')'", pid)
	}
	fields := strings.Fields(string(data[end+1:]))
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, false, fmt.Errorf("unexpected /proc/%d/stat: %d fields after the name", pid, len(fields))
	}
	ticks, err = strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("unexpected /proc/%d/stat start time %q: %w", pid, fields[19], err)
	}
	return ticks, fields[0] == "Z", nil
}

// stillRunning reports whether the process of rec runs on this host: the
// same pid with the same start time, and not a zombie.
func (rec hookStart) stillRunning() bool {
	if rec.Host != hostName || rec.PID <= 0 {
		return false
	}
	ticks, zombie, err := processStartTicks(rec.PID)
	return err == nil && !zombie && ticks == rec.StartTicks
}

// atGate reports whether the process of rec still waits at its gate: a
// gate whose worker died exits as soon as it sees the pipe closed.
func (rec hookStart) atGate() bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(rec.PID) + "/cmdline")
	return err == nil && strings.HasPrefix(string(cmdline), "/bin/sh\x00-c\x00"+gateScript+"\x00")
}

// gateNeverOpened reports whether the gate of rec is known to have exited
// without running the command: its process is gone, it ran on this host,
// and its marker folder exists but the marker does not.
func (rec hookStart) gateNeverOpened() bool {
	if rec.Host != hostName || rec.Marker == "" || rec.stillRunning() {
		return false
	}
	if _, err := os.Stat(filepath.Dir(rec.Marker)); err != nil {
		return false
	}
	_, err := os.Stat(rec.Marker)
	return errors.Is(err, os.ErrNotExist)
}

// gateExitWait bounds how long dispatch waits for a gate whose worker
// died to notice the closed pipe and exit.
const gateExitWait = 5 * time.Second

// waitGateExit waits while the process of rec is still at its gate, up to
// gateExitWait.
func waitGateExit(ctx context.Context, rec hookStart) {
	deadline := time.Now().Add(gateExitWait)
	for rec.stillRunning() && rec.atGate() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// orphanPoll is how often a worker looks whether a hook process that an
// earlier worker started has ended. It cannot wait(2) for a process that
// is not its child.
const orphanPoll = 100 * time.Millisecond

// waitOrphan waits until the process of rec has ended. At rec.Deadline it
// kills the process group, as the timeout of the worker that started it
// would have. It returns ErrTimeout when it killed the group and
// ErrStopped when ctx ended first.
func waitOrphan(ctx context.Context, rec hookStart) error {
	var killed bool
	t := time.NewTicker(orphanPoll)
	defer t.Stop()
	for rec.stillRunning() {
		if !killed && !rec.Deadline.IsZero() && time.Now().After(rec.Deadline) {
			// The hook runs in a process group of its own whose id is
			// its pid, and stillRunning just checked that the pid is
			// still that process.
			if err := syscall.Kill(-rec.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill process group %d at the hook's timeout: %w", rec.PID, err)
			}
			killed = true
		}
		select {
		case <-ctx.Done():
			return ErrStopped
		case <-t.C:
		}
	}
	if killed {
		return ErrTimeout
	}
	return nil
}

// priorStarts are the hook start records an earlier worker left for one
// event, by subscription position.
type priorStarts map[int]hookStart

func newPriorStarts(recs []hookStart) priorStarts {
	if len(recs) == 0 {
		return nil
	}
	p := make(priorStarts, len(recs))
	for _, r := range recs {
		p[r.Hook] = r
	}
	return p
}

// lookup returns the record of the subscription at position hook named
// name.
func (p priorStarts) lookup(hook int, name string) (hookStart, bool) {
	rec, ok := p[hook]
	if !ok || rec.Name != name {
		return hookStart{}, false
	}
	return rec, true
}

// upsertStart replaces the record of rec.Hook in recs or appends rec.
func upsertStart(recs []hookStart, rec hookStart) []hookStart {
	for i := range recs {
		if recs[i].Hook == rec.Hook {
			recs[i] = rec
			return recs
		}
	}
	return append(recs, rec)
}

// removeStart deletes the record of hook from recs.
func removeStart(recs []hookStart, hook int) []hookStart {
	for i := range recs {
		if recs[i].Hook == hook {
			return append(recs[:i], recs[i+1:]...)
		}
	}
	return recs
}

// markEnded sets Ended on the record of hook in recs.
func markEnded(recs []hookStart, hook int) {
	for i := range recs {
		if recs[i].Hook == hook {
			recs[i].Ended = true
		}
	}
}
