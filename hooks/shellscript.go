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

// shellScriptArg returns the index in args of the script that a POSIX
// shell runs with -c, or 0 when args do not run one. args is a command
// without a shell split into words, with its placeholders unfilled. The
// program is found by base name as args[0], after env and its options
// and variables, or after busybox. Wrappers such as nice, timeout or sudo
// in front of the shell are not looked through.
func shellScriptArg(args []string) int {
	i := 0
	for hops := 0; hops < 3 && i < len(args); hops++ {
		prog := path.Base(args[i])
		if prog == "busybox" {
			i++
			continue
		}
		if prog != "env" {
			break
		}
		if i = envProgramArg(args, i); i == 0 {
			return 0
		}
	}
	if i >= len(args) || !posixShells[path.Base(args[i])] {
		return 0
	}
	scriptFlag := false
	for j := i + 1; j < len(args); j++ {
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

// envProgramArg returns the index of the program that env at args[at]
// runs, after its options and NAME=VALUE words, or 0 for none or for
// env -S, whose split string is not looked into.
func envProgramArg(args []string, at int) int {
	for j := at + 1; j < len(args); j++ {
		a := args[j]
		switch {
		case a == "-u" || a == "-C" || a == "--unset" || a == "--chdir":
			j++
		case a == "--":
			if j+1 < len(args) {
				return j + 1
			}
			return 0
		case strings.HasPrefix(a, "-S") || strings.HasPrefix(a, "--split-string"):
			return 0
		case strings.HasPrefix(a, "-"), strings.Contains(a, "="):
		default:
			return j
		}
	}
	return 0
}

// codeInterpreters maps interpreters to the flags whose value is program
// code, for the warning about placeholders in such code.
var codeInterpreters = map[string][]string{
	"python": {"-c"}, "perl": {"-e", "-E"}, "ruby": {"-e"}, "node": {"-e", "-p", "--eval", "--print"},
	"php": {"-r"}, "lua": {"-e"}, "fish": {"-c"}, "csh": {"-c"}, "tcsh": {"-c"},
}

// interpreterCodeArg returns the index in args of a code argument that an
// interpreter such as python3 -c or perl -e runs, and the interpreter's
// name, or 0 and "". Only a word that equals one of the code flags counts,
// so a group such as python3 -Ic is not found.
func interpreterCodeArg(args []string) (int, string) {
	if len(args) < 3 {
		return 0, ""
	}
	name := path.Base(args[0])
	key := strings.TrimRight(name, "0123456789.")
	flags, ok := codeInterpreters[key]
	if !ok {
		return 0, ""
	}
	for j := 1; j+1 < len(args); j++ {
		for _, f := range flags {
			if args[j] == f {
				return j + 1, name
			}
		}
		if !strings.HasPrefix(args[j], "-") {
			return 0, ""
		}
	}
	return 0, ""
}
