package hooks

import (
	"path"
	"strings"
)

// posixShells are the programs whose -c script is quoted and checked as
// with shell: true. Python's shlex.quote output is one word in each of
// them. fish and csh are left out because their quoting rules differ: in
// fish, for one, a backslash inside single quotes is an escape.
var posixShells = map[string]bool{
	"sh": true, "bash": true, "dash": true, "zsh": true, "ksh": true, "ksh93": true,
	"mksh": true, "lksh": true, "pdksh": true, "ash": true, "yash": true, "posh": true,
}

// shellScriptArgs returns the indexes in args of the scripts that a POSIX
// shell runs with -c, in order. args is a command split into words, with
// its placeholders unfilled. A shell is any word whose base name is in
// posixShells and that a -c option group and a script follow. It counts
// wherever it is in args, so the shell is found behind env, busybox and wrappers such as
// nice, timeout, sudo, nohup, setsid, chroot, stdbuf, xargs or
// find -exec. A word such as sh that is only data to the program before
// it is taken for a shell too: its script is then quoted when it need
// not be, which changes the value but cannot run it.
func shellScriptArgs(args []string) []int {
	var scripts []int
	for i := 0; i < len(args); i++ {
		if !posixShells[path.Base(args[i])] {
			continue
		}
		if j := dashCScript(args, i); j > 0 {
			scripts = append(scripts, j)
			i = j
		}
	}
	return scripts
}

// scriptShell returns the shell word, as written, that runs the script
// at args[script], as found by shellScriptArgs.
func scriptShell(args []string, script int) string {
	for k := script - 1; k >= 0; k-- {
		if posixShells[path.Base(args[k])] {
			return args[k]
		}
	}
	return "sh"
}

// dashCScript returns the index of the script that the shell at
// args[at] runs with -c, or 0 when its options have no -c or no script.
func dashCScript(args []string, at int) int {
	scriptFlag := false
	for j := at + 1; j < len(args); j++ {
		a := args[j]
		switch {
		case a == "--" || a == "-":
			// Both end the options in sh, and the script follows.
			if scriptFlag && j+1 < len(args) {
				return j + 1
			}
			return 0
		case a == "--rcfile" || a == "--init-file":
			j++
		case strings.HasPrefix(a, "--"):
			// bash long options such as --norc take no value.
		case len(a) > 1 && (a[0] == '-' || a[0] == '+'):
			// A group of short options such as -ec, -lc or +x -o pipefail.
			for _, f := range a[1:] {
				switch f {
				case 'c':
					scriptFlag = scriptFlag || a[0] == '-'
				case 'o', 'O':
					j++
				}
			}
		default:
			if scriptFlag {
				return j
			}
			return 0
		}
	}
	return 0
}

// suCommandArg returns the index in args of the word that holds the
// command of su or runuser -c (also -cCMD, --command=CMD and
// --session-command), or 0. su runs that command with the target user's
// login shell, which may be fish or csh, so no quoting of a value is
// known to keep it one word there.
func suCommandArg(args []string) int {
	for i := 0; i < len(args); i++ {
		if name := path.Base(args[i]); name != "su" && name != "runuser" {
			continue
		}
		for j := i + 1; j < len(args); j++ {
			a := args[j]
			switch {
			case a == "--command" || a == "--session-command":
				if j+1 < len(args) {
					return j + 1
				}
				return 0
			case strings.HasPrefix(a, "--command=") || strings.HasPrefix(a, "--session-command="):
				return j
			case a == "--":
				// The words after -- are the user and the shell's arguments.
				j = len(args)
			case strings.HasPrefix(a, "--"):
				if a == "--shell" || a == "--group" || a == "--supp-group" || a == "--whitelist-environment" {
					j++
				}
			case len(a) > 1 && a[0] == '-':
				at := strings.IndexByte(a[1:], 'c')
				if at < 0 {
					if strings.ContainsAny(a[len(a)-1:], "sgGw") {
						j++
					}
					continue
				}
				if at+2 < len(a) {
					// -cCMD and -lcCMD: the rest of the word is the command.
					return j
				}
				if j+1 < len(args) {
					return j + 1
				}
				return 0
			}
		}
	}
	return 0
}

// codeInterpreters maps interpreters to the flags whose value is program
// code, for the error about placeholders in such code.
var codeInterpreters = map[string][]string{
	"python": {"-c"}, "perl": {"-e", "-E"}, "ruby": {"-e"}, "node": {"-e", "-p", "--eval", "--print"},
	"php": {"-r"}, "lua": {"-e"}, "fish": {"-c"}, "csh": {"-c"}, "tcsh": {"-c"},
}

// interpreterCodeArg returns the index in args of the first code
// argument that an interpreter such as python3 -c or perl -e runs, and
// the interpreter's name, or 0 and "". The interpreter may stand anywhere
// in args, as behind nice or sudo. Only a word that equals one of the
// code flags counts, so a group such as python3 -Ic is not found.
func interpreterCodeArg(args []string) (int, string) {
	for i := 0; i+2 < len(args); i++ {
		name := path.Base(args[i])
		flags, ok := codeInterpreters[strings.TrimRight(name, "0123456789.")]
		if !ok {
			continue
		}
		for j := i + 1; j+1 < len(args) && strings.HasPrefix(args[j], "-"); j++ {
			for _, f := range flags {
				if args[j] == f {
					return j + 1, name
				}
			}
		}
	}
	return 0, ""
}
