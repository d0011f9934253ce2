package hooks

import (
	"path"
	"slices"
)

const fixProgram = "write the program as fixed text and pass the value as an argument after it, as in /usr/local/bin/notify {path}"

// commandRunner describes a program that runs another program, named by
// one of its operands, with the words after it, as nice and timeout do.
type commandRunner struct {
	options cliOptions
	// fixed is the number of operands before the program, such as the
	// duration of timeout or the lock file of flock.
	fixed int
	// assignments lets NAME=value words stand between the options and
	// the program, as env reads them.
	assignments bool
	// interleaved lets NAME=value words stand between the options too,
	// as sudo reads them.
	interleaved bool
	// keepsStdin is true when the program reads the runner's standard
	// input, so that | nice sh still runs a shell on it.
	keepsStdin bool
	// noProgram lists the options after which the operands name no
	// program to run, such as taskset -p, which acts on a process id.
	noProgram []string
}

var gnuHelp = []string{"help", "version"}

// sudoOptions are the options of sudo, from the option tables in
// src/parse_args.c of sudo 1.9.17. -h takes a value only when it is
// attached, and sudo reads abbreviated long options with getopt_long.
//
// NOTE: flagLong was not compared with a sudo binary. A name missing
// from it only makes a prefix that selects it read as unknown.
var sudoOptions = cliOptions{
	value:    "aCcDgpRrTtUu",
	attached: "h",
	valueLong: []string{"auth-type", "chdir", "chroot", "close-from", "command-timeout", "group", "host", "login-class",
		"other-user", "prompt", "role", "type", "user"},
	flagLong: []string{"askpass", "background", "bell", "edit", "help", "list", "login", "no-update", "non-interactive",
		"preserve-env", "preserve-groups", "remove-timestamp", "reset-timestamp", "set-home", "shell", "stdin",
		"validate", "version"},
	abbreviations: true,
}

// flockOptions are the options of util-linux flock, which stop at the
// lock file.
var flockOptions = cliOptions{value: "wE", valueLong: []string{"timeout", "conflict-exit-code"},
	flagLong:      []string{"shared", "exclusive", "unlock", "nonblock", "close", "no-fork", "verbose", "help", "version"},
	abbreviations: true}

// xargsOptions are the options of GNU findutils xargs 4.9 and the -J,
// -R and -S of BSD xargs. -e, -i and -l take a value only when it is
// attached, and so do --eof and --replace after =.
var xargsOptions = cliOptions{value: "adEIJLnPRSs", attached: "eil",
	valueLong: []string{"arg-file", "delimiter", "max-args", "max-chars", "max-lines", "max-procs", "process-slot-var"},
	flagLong: []string{"eof", "exit", "help", "interactive", "no-run-if-empty", "null", "open-tty", "replace",
		"show-limits", "verbose", "version"},
	abbreviations: true}

// commandRunners are the programs whose program operand is checked: the
// wrappers of coreutils, util-linux and sudo, the shell builtins exec,
// command and builtin, and xargs, which runs its command with lines of
// its standard input. The options are those of the --help output of
// coreutils 9.1, util-linux 2.38, findutils 4.9, systemd 252 and the GNU
// time of Debian 12, which all take abbreviated long options.
var commandRunners = map[string]commandRunner{
	"env":   {options: envOptions, assignments: true, keepsStdin: true},
	"nice":  {options: cliOptions{value: "n", valueLong: []string{"adjustment"}, flagLong: gnuHelp, abbreviations: true}, keepsStdin: true},
	"nohup": {options: cliOptions{flagLong: gnuHelp, abbreviations: true}, keepsStdin: true},
	"setsid": {options: cliOptions{flagLong: []string{"ctty", "fork", "wait", "help", "version"}, abbreviations: true},
		keepsStdin: true},
	"stdbuf": {options: cliOptions{value: "ioe", valueLong: []string{"input", "output", "error"}, flagLong: gnuHelp, abbreviations: true},
		keepsStdin: true},
	"ionice": {options: cliOptions{value: "cnpPu", valueLong: []string{"class", "classdata", "pid", "pgid", "uid"},
		flagLong: []string{"ignore", "help", "version"}, abbreviations: true},
		keepsStdin: true, noProgram: []string{"p", "P", "u", "pid", "pgid", "uid"}},
	"timeout": {options: cliOptions{value: "ks", valueLong: []string{"kill-after", "signal"},
		flagLong: []string{"foreground", "preserve-status", "verbose", "help", "version"}, abbreviations: true},
		fixed: 1, keepsStdin: true},
	"sudo": {options: sudoOptions, interleaved: true, keepsStdin: true,
		noProgram: []string{"e", "edit", "l", "list", "v", "validate", "K", "remove-timestamp"}},
	"doas":    {options: cliOptions{value: "uC"}, keepsStdin: true, noProgram: []string{"C"}},
	"busybox": {keepsStdin: true},
	"chroot": {options: cliOptions{valueLong: []string{"groups", "userspec"}, flagLong: []string{"skip-chdir", "help", "version"}, abbreviations: true},
		fixed: 1, keepsStdin: true},
	"flock": {options: flockOptions, fixed: 1, keepsStdin: true},
	"time": {options: cliOptions{value: "fo", valueLong: []string{"format", "output"},
		flagLong: []string{"append", "portability", "quiet", "verbose", "help", "version"}, abbreviations: true},
		keepsStdin: true},
	"taskset": {options: cliOptions{flagLong: []string{"all-tasks", "cpu-list", "pid", "help", "version"}, abbreviations: true},
		fixed: 1, keepsStdin: true, noProgram: []string{"p", "pid"}},
	"chrt": {options: cliOptions{value: "DPT", valueLong: []string{"sched-deadline", "sched-period", "sched-runtime"},
		flagLong: []string{"all-tasks", "batch", "deadline", "fifo", "idle", "max", "other", "pid", "reset-on-fork", "rr",
			"verbose", "help", "version"}, abbreviations: true},
		fixed: 1, keepsStdin: true, noProgram: []string{"p", "pid", "m", "max"}},
	"systemd-run": {options: cliOptions{value: "EHMpu", valueLong: []string{"description", "gid", "host", "machine", "nice",
		"on-active", "on-boot", "on-calendar", "on-startup", "on-unit-active", "on-unit-inactive", "path-property",
		"property", "service-type", "setenv", "slice", "socket-property", "timer-property", "uid", "unit",
		"working-directory"},
		flagLong: []string{"collect", "no-ask-password", "no-block", "on-clock-change", "on-timezone-change", "pipe", "pty",
			"quiet", "remain-after-exit", "same-dir", "scope", "send-sighup", "shell", "slice-inherit", "system", "user",
			"wait", "help", "version"}, abbreviations: true}},
	"xargs": {options: xargsOptions},
	// Builtins of the shell, which commandName skips.
	"exec":    {options: cliOptions{value: "a"}, keepsStdin: true},
	"command": {options: cliOptions{}, keepsStdin: true, noProgram: []string{"v", "V"}},
	"builtin": {keepsStdin: true},
}

// findExecActions are the actions of find whose next word is a program
// that find runs.
var findExecActions = []string{"-exec", "-execdir", "-ok", "-okdir"}

// wrappedProgram returns the index of the program that the words from
// words[at] on run, after the runners in commandRunners, and the name of
// the last runner, or "". With stdinOnly, only runners that pass their
// standard input on are followed. It returns -1 when the words run no
// program operand, as for nice alone, flock FILE -c or command -v.
func wrappedProgram(words []string, at int, stdinOnly bool) (int, string) {
	k, runnerName := at, ""
	for k >= 0 && k < len(words) {
		name := path.Base(words[k])
		runner, ok := commandRunners[name]
		if !ok || stdinOnly && !runner.keepsStdin {
			return k, runnerName
		}
		options, next := walkOptions(words, k, runner.options)
		for runner.interleaved && next < len(words) && isAssignment(words[next]) {
			for next < len(words) && isAssignment(words[next]) {
				next++
			}
			// walkOptions reads from the word after its first index.
			more, after := walkOptions(words, next-1, runner.options)
			options = append(options, more...)
			next = after
		}
		for runner.assignments && next < len(words) && isAssignment(words[next]) {
			next++
		}
		if hasOption(options, runner.noProgram...) {
			return -1, name
		}
		next += runner.fixed
		if name == "flock" && next < len(words) && (words[next] == "-c" || words[next] == "--command") {
			// flock FILE -c CMD runs CMD through $SHELL, which
			// ownShellField checks.
			return -1, name
		}
		if next >= len(words) {
			return -1, name
		}
		k, runnerName = next, name
	}
	return -1, runnerName
}

// leadingWordsEnd returns the index of the first word of a simple
// command of shell code after its reserved words and variable
// assignments (also to an array element, as a[0]=x), or len(words).
// Unlike commandName, it stops at exec, command and builtin, which
// wrappedProgram reads as runners.
func leadingWordsEnd(words []string) int {
	for i, w := range words {
		switch {
		case w == "!" || w == "if" || w == "then" || w == "else" || w == "elif" || w == "do" || w == "while" || w == "until" || w == "{{" || w == "time":
		default:
			if _, ok := assignedName(w); !ok {
				return i
			}
		}
	}
	return len(words)
}

// programField returns the first placeholder in a word that names the
// program a command runs: its first word, the program behind the runners
// in commandRunners (nice {path}, timeout 5 {path}, exec {path}, xargs
// {name}), and the program of find -exec. A value there chooses which
// program runs, such as a path to an uploaded file or to a shell.
// inShellCode skips the reserved words and assignments that start a
// simple command of shell code.
func programField(words []string, inShellCode bool) *reparsedField {
	start := 0
	if inShellCode {
		start = leadingWordsEnd(words)
	}
	if r := programWordField(words, start, ""); r != nil {
		return r
	}
	for i, w := range words {
		if path.Base(w) != "find" {
			continue
		}
		for j := i + 1; j+1 < len(words); j++ {
			if slices.Contains(findExecActions, words[j]) {
				if r := programWordField(words, j+1, "find "+words[j]); r != nil {
					return r
				}
			}
		}
	}
	return nil
}

// programWordField returns the error for a placeholder in the program
// that the words from words[at] on run, or nil. runner names the program
// that runs words[at], or is "".
func programWordField(words []string, at int, runner string) *reparsedField {
	if at >= len(words) {
		return nil
	}
	k, last := wrappedProgram(words, at, false)
	if last != "" {
		runner = last
	}
	if k < 0 {
		return nil
	}
	f := firstField(words[k])
	if f == "" {
		return nil
	}
	where := "the program of the command"
	if runner != "" {
		where = "the program that " + runner + " runs"
	}
	return &reparsedField{f, where + ", so the value chooses which program runs", fixProgram}
}
