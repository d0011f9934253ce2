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
// posixShells and that a -c option group and a script follow, also in
// the words that env -S splits its string into. It counts wherever it is
// in args, so the shell is found behind env, busybox and wrappers such as
// nice, timeout, sudo, doas, nohup, setsid, chroot, stdbuf, ionice,
// flock FILE, systemd-run, docker exec, kubectl exec --, xargs or
// find -exec. A word such as sh that is only data to the program before
// it is taken for a shell too: its script is then quoted when it need
// not be, which changes the value but cannot run it. A script that lies
// inside an env -S string has no placeholders (expandEnvSplit rejects
// them), so it is left out.
func shellScriptArgs(args []string) []int {
	words, origin, _ := expandEnvSplit(args)
	var scripts []int
	for _, s := range dashCScripts(words) {
		if origin[s] >= 0 {
			scripts = append(scripts, origin[s])
		}
	}
	return scripts
}

// dashCScripts returns the indexes in words of the scripts that a POSIX
// shell runs with -c, in order.
func dashCScripts(words []string) []int {
	var scripts []int
	for i := 0; i < len(words); i++ {
		if !posixShells[path.Base(words[i])] {
			continue
		}
		if j := dashCScript(words, i); j > 0 {
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

// codeInterpreters maps interpreters to the flags whose value is program
// code, for the error about placeholders in such code.
var codeInterpreters = map[string][]string{
	"python": {"-c"}, "perl": {"-e", "-E"}, "ruby": {"-e"}, "node": {"-e", "-p", "--eval", "--print"},
	"php": {"-r"}, "lua": {"-e"}, "fish": {"-c"}, "csh": {"-c"}, "tcsh": {"-c"},
	// gdb runs shell commands with its shell command, vim and ex with :!,
	// and make with $(shell ...).
	"gdb": {"-ex", "--ex", "-eval-command", "--eval-command", "-iex", "--iex"},
	"vim": {"-c", "--cmd"}, "vi": {"-c", "--cmd"}, "nvim": {"-c", "--cmd"}, "ex": {"-c", "--cmd"}, "view": {"-c", "--cmd"},
	"make": {"--eval"}, "gmake": {"--eval"},
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
