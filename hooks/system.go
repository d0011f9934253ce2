package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// DefaultOutputLimit is how many bytes of a hook's output are kept: the
// last ones, because errors usually come at the end.
const DefaultOutputLimit = 4096

// waitDelay bounds how long a run waits for output after its process has
// exited or been killed. A hook that starts a background program (cmd &)
// would otherwise hold the run open for as long as that program keeps the
// output pipe.
const waitDelay = 2 * time.Second

// preparedCommand is one rendered command of a system hook.
type preparedCommand struct {
	// argv is set without a shell, script with one.
	argv   []string
	script string
	shell  bool
}

// renderSystem renders every command of sub before any runs, as OctoPrint
// does. With a shell, every value is shell-quoted first and then the whole
// template is rendered. Without one, each argument of the pre-split
// template is rendered on its own, so no value can add an argument, and
// values in the script of a shell run with -c are shell-quoted too.
func renderSystem(sub *Subscription, params placeholderLookup) ([]preparedCommand, error) {
	out := make([]preparedCommand, 0, len(sub.Commands))
	quoted := func(name string) (string, bool) {
		v, ok := params(name)
		if !ok {
			return "", false
		}
		return Quote(v), true
	}
	if sub.Shell {
		for i, c := range sub.Commands {
			script, err := formatLookup(c.Template, quoted)
			if err != nil {
				return nil, fmt.Errorf("command #%d: %w", i+1, err)
			}
			out = append(out, preparedCommand{script: script, shell: true})
		}
		return out, nil
	}
	for i, c := range sub.Commands {
		argv := make([]string, len(c.Args))
		for j, arg := range c.Args {
			lookup := params
			if j > 0 && slices.Contains(c.ScriptArgs, j) {
				// A shell parses this argument as code, so each value
				// becomes one quoted word, as with shell: true.
				lookup = quoted
			}
			s, err := formatLookup(arg, lookup)
			if err != nil {
				return nil, fmt.Errorf("command #%d: %w", i+1, err)
			}
			argv[j] = s
		}
		out = append(out, preparedCommand{argv: argv})
	}
	return out, nil
}

// systemRun is the execution context of one system hook run.
type systemRun struct {
	cwd         string
	env         []string
	timeout     time.Duration
	outputLimit int
	// recordStart, when set, durably records that command number command
	// (from 1) of the list starts as process pid, before the process may
	// run the command (see gateScript). An error keeps the command from
	// running.
	recordStart func(ctx context.Context, command int, pid int, startTicks uint64, deadline time.Time, marker string) error
	// newMarker returns a new path for the marker file of a gate, or ""
	// without a marker folder.
	newMarker func() string
	// firstNumber is the number of commands[0] in the hook's list, 1
	// unless a worker resumes a list that a killed worker had begun.
	firstNumber int
	// startAborted is called when a command whose start recordStart was
	// asked to record did not run after all, because its gate was closed.
	startAborted func(command int)
}

// run executes commands in order and stops at the first one that fails.
// The timeout covers the whole list; when it expires, the running
// command's process group is killed.
func (r systemRun) run(ctx context.Context, commands []preparedCommand) ([]CommandResult, string, error) {
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if r.timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, r.timeout)
	}
	defer cancel()
	deadline, _ := runCtx.Deadline()
	if r.timeout <= 0 {
		// A deadline of ctx alone is not this hook's timeout.
		deadline = time.Time{}
	}
	tail := newTailBuffer(r.outputLimit)
	var results []CommandResult
	for i, c := range commands {
		start := time.Now()
		number := max(r.firstNumber, 1) + i
		code, err := r.runOne(ctx, runCtx, c, tail, number, deadline)
		results = append(results, CommandResult{ExitCode: code, Duration: time.Since(start)})
		if err == nil {
			continue
		}
		switch {
		case ctx.Err() != nil:
			err = fmt.Errorf("command #%d: %w; its process group was killed", number, ErrStopped)
		case runCtx.Err() != nil:
			err = fmt.Errorf("command #%d: %w after %s; its process group was killed", number, ErrTimeout, r.timeout)
		default:
			err = fmt.Errorf("command #%d: %w", number, err)
		}
		return results, tail.String(), err
	}
	return results, tail.String(), nil
}

// runOne runs one command under runCtx, which carries the timeout. ctx
// is the worker's context alone, which bounds the start record, so a
// timeout cannot cut a record write that the bucket may have stored.
func (r systemRun) runOne(ctx, runCtx context.Context, c preparedCommand, out *tailBuffer, number int, deadline time.Time) (int, error) {
	var cmd *exec.Cmd
	if c.shell {
		cmd = exec.CommandContext(runCtx, "/bin/sh", "-c", c.script)
	} else {
		if len(c.argv) == 0 || c.argv[0] == "" {
			return -1, errors.New("the program name is empty")
		}
		// A relative path with a slash is resolved against cwd, as
		// Python's subprocess does; a bare name is looked up in PATH.
		cmd = exec.CommandContext(runCtx, c.argv[0], c.argv[1:]...)
		if cmd.Err != nil {
			// Checked here, before the gate, so a missing program fails
			// as it does without one, with nothing started.
			return -1, fmt.Errorf("start %q: %w", cmd.Args[0], cmd.Err)
		}
	}

	cmd.Dir = r.cwd
	if !c.shell && r.recordStart != nil && strings.Contains(c.argv[0], "/") {
		// Behind the gate the shell would report a missing or
		// non-executable program, under the gate's marker name; checked
		// here, it fails as it does without the gate, with nothing started.
		if err := checkExecutable(r.cwd, c.argv[0]); err != nil {
			return -1, fmt.Errorf("start %q: %w", c.argv[0], err)
		}
	}
	cmd.Env = r.env
	cmd.Stdout = out
	cmd.Stderr = out
	// A process group of its own lets a timeout kill everything the hook
	// started, not only its first process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	cmd.WaitDelay = waitDelay

	name := cmd.Args[0]
	var err error
	if r.recordStart == nil {
		err = cmd.Run()
	} else {
		err = r.runGated(ctx, runCtx, cmd, number, deadline)
	}
	var gateErr *gateError
	if errors.As(err, &gateErr) {
		return -1, gateErr.err
	}
	if err == nil || (errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success()) {
		return 0, nil
	}

	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return -1, fmt.Errorf("start %q: %w", name, err)
	}
	code := exitErr.ExitCode()
	if status, ok := exitErr.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		return code, fmt.Errorf("%q was killed by signal %s", name, status.Signal())
	}
	return code, fmt.Errorf("%q exited with status %d", name, code)
}

// beforeStartRecord, when set, is called while a hook process waits at
// its gate, before its start is recorded. Only tests set it, to kill the
// worker at that moment.
var beforeStartRecord func()

// afterStartRecord, when set, is called after the start is recorded and
// before the gate opens. Only tests set it.
var afterStartRecord func()

// gateError is a command that did not pass its start gate, so it never
// ran.
type gateError struct{ err error }

func (e *gateError) Error() string { return e.err.Error() }

// runGated starts cmd behind gateScript, records its start with the pid
// and only then lets it exec the command. cmd.Args stays the command's
// argv as the process sees it, because the script execs "$@". The
// shell looks a bare program name up in the same PATH that exec.Command
// used, since cmd.Env is the worker's environment.
//
// NOTE: runOne checks that a program path exists and has an execute bit,
// but other exec(2) failures differ behind the gate: a file that the
// worker's user may not execute exits with status 126 and the shell's
// message in the output instead of a start error, and a file without a
// #! line or ELF header runs as a shell script instead of failing with
// "exec format error".
func (r systemRun) runGated(ctx, runCtx context.Context, cmd *exec.Cmd, number int, deadline time.Time) error {
	gateRead, gateWrite, err := os.Pipe()
	if err != nil {
		return &gateError{fmt.Errorf("create the start gate of %q: %w", cmd.Args[0], err)}
	}
	defer gateWrite.Close()
	argv := cmd.Args
	marker := ""
	if r.newMarker != nil {
		marker = r.newMarker()
	}
	markerArg := marker
	if markerArg == "" {
		markerArg = noMarker
	}
	cmd.Path = "/bin/sh"
	cmd.Args = append([]string{"/bin/sh", "-c", gateScript, markerArg}, argv...)
	cmd.ExtraFiles = []*os.File{gateRead}
	err = cmd.Start()
	gateRead.Close()
	if err != nil {
		return &gateError{fmt.Errorf("start %q: %w", argv[0], err)}
	}
	pid := cmd.Process.Pid
	if beforeStartRecord != nil {
		beforeStartRecord()
	}
	ticks, _, err := processStartTicks(pid)
	if err == nil {
		err = r.recordStart(ctx, number, pid, ticks, deadline, marker)
	}
	if err == nil && afterStartRecord != nil {
		afterStartRecord()
	}
	if err == nil && runCtx.Err() != nil {
		err = runCtx.Err()
	}
	if err != nil {
		// Closing the write end without a line makes the gate exit
		// with status 125 before the command runs.
		gateWrite.Close()
		_ = cmd.Wait()
		if r.startAborted != nil {
			r.startAborted(number)
		}
		if runCtx.Err() != nil {
			// run reports the timeout or the stop.
			return runCtx.Err()
		}
		return &gateError{fmt.Errorf("%q not started: %w", argv[0], err)}
	}
	if _, err := gateWrite.Write([]byte("\n")); err != nil {
		// The gate process is gone, killed by the timeout or by hand,
		// so the command did not run.
		_ = cmd.Wait()
		if r.startAborted != nil {
			r.startAborted(number)
		}
		return &gateError{fmt.Errorf("%q not started: open its start gate: %w", argv[0], err)}
	}
	gateWrite.Close()
	return cmd.Wait()
}

// hookEnv is the worker's environment plus the event's identity, so a
// script can tell which event started it without a placeholder.
func hookEnv(event, eventID, printer string) []string {
	base := os.Environ()
	env := make([]string, 0, len(base)+3)
	for _, kv := range base {
		if strings.HasPrefix(kv, "PRINTBRIDGE_EVENT=") || strings.HasPrefix(kv, "PRINTBRIDGE_EVENT_ID=") ||
			strings.HasPrefix(kv, "PRINTBRIDGE_PRINTER=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PRINTBRIDGE_EVENT="+event, "PRINTBRIDGE_EVENT_ID="+eventID, "PRINTBRIDGE_PRINTER="+printer)
}

// tailBuffer keeps the last limit bytes written to it. os/exec writes to
// it from one goroutine per pipe.
type tailBuffer struct {
	mu    sync.Mutex // guards buf
	limit int
	buf   []byte
}

func newTailBuffer(limit int) *tailBuffer {
	if limit <= 0 {
		limit = DefaultOutputLimit
	}
	return &tailBuffer{limit: limit}
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// tailReadSize is the size of the chunks that ReadFrom reads: one page
// of a pipe.
const tailReadSize = 4096

// ReadFrom writes what it reads from r to t until r ends. os/exec copies
// a command's output pipe with io.Copy, which calls ReadFrom in place of
// allocating a 32 KiB buffer of its own for every command. A worker that
// runs a system hook for many events would allocate one per command.
func (t *tailBuffer) ReadFrom(r io.Reader) (int64, error) {
	chunk := make([]byte, tailReadSize)
	var total int64
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			t.Write(chunk[:n])
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// String returns the kept bytes, starting at a whole UTF-8 character.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	for i := 0; i < len(b) && i < utf8.UTFMax && !utf8.RuneStart(b[0]); i++ {
		b = b[1:]
	}
	return string(b)
}

// checkExecutable reports whether path, resolved against dir when it is
// relative, is a file that exec(2) may run: it exists, is no directory
// and has an execute bit.
func checkExecutable(dir, path string) error {
	full := path
	if !filepath.IsAbs(path) && dir != "" {
		full = filepath.Join(dir, path)
	}
	info, err := os.Stat(full)
	if err != nil {
		return err
	}
	if info.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	if info.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable: %w", path, fs.ErrPermission)
	}
	return nil
}
