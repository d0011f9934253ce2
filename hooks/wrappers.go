package hooks

import (
	"path"
	"slices"
	"strings"
)

const (
	fixOwnShell = `run a POSIX shell yourself and pass the value as an argument, as in sudo -u USER sh -c 'echo "$1"' sh {name}`
	fixSSH      = `pass the value on ssh's standard input, as in sh -c 'printf "%s\n" "$1" | ssh HOST read-name' sh {name}, where read-name reads one line, or in an environment variable that the server accepts (ssh -o SendEnv=VAR and AcceptEnv VAR in sshd_config)`
	fixSSHArgs  = "write the destination and the options of ssh as fixed text, without placeholders"
	fixScript   = "run a fixed script and pass the value as an argument after it, as in sh ./notify.sh {name} or python3 ./notify.py {name}"
)

// sshOptions are the options of OpenSSH's ssh that take a value, as its
// 9.2 usage lists them, plus -P (a tag) of later releases. Reading one
// more option as taking a value only makes more placeholders errors.
var sshOptions = cliOptions{value: "BbcDEeFIiJLlmOoPpQRSWw"}

// autosshOptions adds autossh's -M port, and autossh hands the rest to
// ssh.
var autosshOptions = cliOptions{value: sshOptions.value + "M"}

// remoteShellField returns the first placeholder in the arguments of
// ssh, autossh or mosh in words. ssh joins the words of the remote
// command with spaces into one line, which the remote user's login shell
// parses as code with quoting rules that printbridge cannot know, so no
// quoting keeps a value one word there. A value in the destination, or
// in the first word after it, that starts with - is read as an option,
// and -oProxyCommand=... runs a local command. Option values are ssh
// configuration, such as a user or host name that ProxyCommand and Match
// exec get through %r and %h.
func remoteShellField(words []string) *reparsedField {
	copyPrograms := remoteCopyProgramWords(words)
	for i, w := range words {
		if copyPrograms[i] {
			// The value of rsync -e ssh is checked as an option of rsync.
			continue
		}
		var spec cliOptions
		switch path.Base(w) {
		case "ssh":
			spec = sshOptions
		case "autossh":
			spec = autosshOptions
		case "mosh":
			// mosh hands its options and destination to ssh and its
			// command to the remote login shell.
			if f := fieldIn(words[i+1:]); f != "" {
				return &reparsedField{f, "an argument of mosh, which hands its options and destination to ssh and its command to the login shell on the remote host", fixSSH}
			}
			continue
		default:
			continue
		}
		destination, command := sshWords(words, i, spec)
		for k := i + 1; k < len(words); k++ {
			f := firstField(words[k])
			switch {
			case f == "":
			case k == destination:
				return &reparsedField{f, "the destination of " + w + ", where a value that starts with - is an option such as -oProxyCommand=... that runs a local command", fixSSHArgs}
			case k >= command:
				return &reparsedField{f, "in the remote command of " + w + ", which ssh joins with spaces into one line for the login shell on the remote host, whose quoting rules printbridge cannot know", fixSSH}
			default:
				return &reparsedField{f, "an option of " + w + ", whose value is ssh configuration that can reach a local command through ProxyCommand or Match exec", fixSSHArgs}
			}
		}
	}
	return nil
}

// sshWords returns the indexes of the destination of the ssh at
// words[at] and of the first word of its remote command, as ssh.c parses
// them: options end at the first other word, which is the destination,
// and after it ssh reads options again up to the next other word or --.
// A missing destination is -1 and a missing command len(words).
func sshWords(words []string, at int, spec cliOptions) (destination, command int) {
	_, destination = walkOptions(words, at, spec)
	if destination >= len(words) {
		return -1, len(words)
	}
	if destination > at+1 && words[destination-1] == "--" {
		// ssh -- host cmd: options have ended for good.
		return destination, destination + 1
	}
	_, command = walkOptions(words, destination, spec)
	return destination, command
}

// ownShellRunners are programs that run one argument as a command line
// through a shell of their own choosing, with the option that names the
// argument. su and runuser use the target user's login shell, and script
// uses $SHELL. That shell may be fish or csh, so no quoting of a value is
// known to keep it one word there.
var ownShellRunners = map[string]struct {
	options cliOptions
	command []string
	shell   string
}{
	"su": {cliOptions{value: "cgGsw", valueLong: []string{"command", "session-command", "group", "supp-group", "shell", "whitelist-environment"},
		flagLong: []string{"fast", "login", "preserve-environment", "pty", "help", "version"}, abbreviations: true, permute: true},
		[]string{"c", "command", "session-command"}, "the target user's login shell"},
	"runuser": {cliOptions{value: "cgGsuw", valueLong: []string{"command", "session-command", "group", "supp-group", "shell", "user", "whitelist-environment"},
		flagLong: []string{"fast", "login", "preserve-environment", "pty", "help", "version"}, abbreviations: true, permute: true},
		[]string{"c", "command", "session-command"}, "the target user's login shell"},
	"script": {cliOptions{value: "BcEImOoT", attached: "t", valueLong: []string{"command", "echo", "log-in", "log-io", "log-out", "log-timing", "logging-format", "output-limit"},
		flagLong: []string{"append", "flush", "force", "quiet", "return", "timing", "help", "version"}, abbreviations: true, permute: true},
		[]string{"c", "command"}, "$SHELL"},
}

// ownShellCommandArg returns the index in args of the word that holds
// the command that an ownShellRunners program runs (the word itself for
// -cCMD and --command=CMD), the program's name and its shell, or 0.
func ownShellCommandArg(args []string) (int, string, string) {
	for i, a := range args {
		runner, ok := ownShellRunners[path.Base(a)]
		if !ok {
			continue
		}
		options, _ := walkOptions(args, i, runner.options)
		for _, o := range options {
			if slices.Contains(runner.command, o.name) && o.value > 0 {
				return o.value, path.Base(a), runner.shell
			}
		}
	}
	return 0, "", ""
}

// ownShellField returns the first placeholder in a command that a
// program runs through a shell it picks itself: su, runuser and script
// with -c, flock FILE -c through $SHELL, and sudo -s or -i, which joins
// its command into one line for $SHELL or the target user's login shell
// and leaves $ unescaped.
func ownShellField(words []string) *reparsedField {
	if j, name, shell := ownShellCommandArg(words); j > 0 {
		if f := firstField(words[j]); f != "" {
			return &reparsedField{f, "in the command that " + name + " runs with -c through " + shell + ", whose quoting rules printbridge cannot know", fixOwnShell}
		}
	}
	for i, w := range words {
		switch path.Base(w) {
		case "flock":
			_, file := walkOptions(words, i, flockOptions)
			if file+2 < len(words) && (words[file+1] == "-c" || words[file+1] == "--command") {
				if f := firstField(words[file+2]); f != "" {
					return &reparsedField{f, "in the command that flock runs with -c through $SHELL, whose quoting rules printbridge cannot know",
						`run a POSIX shell yourself and pass the value as an argument, as in flock FILE sh -c 'echo "$1"' sh {name}`}
				}
			}
		case "sudo":
			options, command := walkOptions(words, i, sudoOptions)
			// sudo reads NAME=value words between its options.
			for command < len(words) && isAssignment(words[command]) {
				more, next := walkOptions(words, command, sudoOptions)
				options = append(options, more...)
				command = next
			}
			if !hasOption(options, "s", "i", "shell", "login") {
				continue
			}
			if f := fieldIn(words[command:]); f != "" {
				return &reparsedField{f, "in the command that sudo -s or -i joins into one line for a shell, which leaves $ unescaped and may be the target user's login shell", fixOwnShell}
			}
		}
	}
	return nil
}

// scriptRunner describes a program that runs a script file named by its
// first operand, as sh FILE and python3 FILE do.
type scriptRunner struct {
	options cliOptions
	// inline lists the options after which no script file is read: code
	// given as an argument (sh -c, python3 -c) or read from stdin (sh -s).
	inline []string
	// script lists the options whose value is the script or module to
	// run, such as python3 -m.
	script []string
}

var shellRunner = scriptRunner{options: cliOptions{value: "oO", valueLong: []string{"rcfile", "init-file"}, plus: true}, inline: []string{"c", "s"}}

// scriptRunners are the interpreters besides the POSIX shells, by name
// without a version suffix.
var scriptRunners = map[string]scriptRunner{
	"python": {options: cliOptions{value: "cmWX", valueLong: []string{"check-hash-based-pycs"}}, inline: []string{"c"}, script: []string{"m"}},
	"perl":   {options: cliOptions{value: "eEI"}, inline: []string{"e", "E"}},
	"ruby":   {options: cliOptions{value: "CeEFIr"}, inline: []string{"e"}},
	"node": {options: cliOptions{value: "Cepr", valueLong: []string{"conditions", "env-file", "eval", "experimental-loader", "import", "input-type", "loader", "print", "require"}},
		inline: []string{"e", "p", "eval", "print"}},
	"php":  {options: cliOptions{value: "BcdEfFRrtz"}, inline: []string{"B", "E", "R", "r"}, script: []string{"f", "F"}},
	"lua":  {options: cliOptions{value: "el"}, inline: []string{"e"}},
	"fish": {options: cliOptions{value: "cCdDfop", valueLong: []string{"command", "init-command"}}, inline: []string{"c", "command"}},
	"csh":  {options: cliOptions{}, inline: []string{"c", "s"}},
	// tclsh and wish run their first operand as a script, or standard
	// input without one, and Tcl's exec runs programs.
	"tclsh": {options: cliOptions{valueLong: []string{"encoding"}}},
	"wish":  {options: cliOptions{}},
	"tcsh":  {options: cliOptions{}, inline: []string{"c", "s"}},
}

// lookupScriptRunner returns the scriptRunner of the program named by
// word, such as /bin/sh or python3.11.
func lookupScriptRunner(word string) (scriptRunner, bool) {
	name := path.Base(word)
	if posixShells[name] {
		return shellRunner, true
	}
	runner, ok := scriptRunners[strings.TrimRight(name, "0123456789.")]
	return runner, ok
}

// scriptFileField returns the first placeholder that names the script
// file of a shell or interpreter (sh {path}, python3 {path}), or sits in
// one of its options before the script (python3 -m {name},
// bash --rcfile {path}). The program runs the file's contents, which a
// user who uploaded that file wrote. The arguments after the script are
// data and stay unchecked.
func scriptFileField(words []string) *reparsedField {
	for i := 0; i < len(words); i++ {
		w := words[i]
		runner, ok := lookupScriptRunner(w)
		if !ok {
			continue
		}
		options, operand := walkOptions(words, i, runner.options)
		if hasOption(options, runner.inline...) {
			// The word after the code of sh -c is $0, often sh again,
			// which names no script.
			i = operand + 1
			continue
		}
		script := operand
		for _, o := range options {
			if slices.Contains(runner.script, o.name) {
				// The options after python3 -m MODULE belong to the module.
				script = o.value
				break
			}
			if o.value < 0 || o.value == script {
				continue
			}
			if f := firstField(words[o.value]); f != "" {
				return &reparsedField{f, "the value of an option of " + w + " before its script, where a value can name a file or module that " + w + " loads and runs", fixScript}
			}
		}
		if script >= 0 && script < len(words) {
			if f := firstField(words[script]); f != "" {
				return &reparsedField{f, "the script that " + w + " runs, so a value that names an uploaded G-code file runs its contents", fixScript}
			}
		}
	}
	return nil
}

// sourcedFileField returns the placeholder in the file that the . or
// source builtin of a simple command reads as shell code, or nil.
func sourcedFileField(words []string) *reparsedField {
	first := commandName(words)
	if first < 0 || words[first] != "." && words[first] != "source" {
		return nil
	}
	file := sourcedFileArg(words, first)
	if file >= len(words) {
		return nil
	}
	if f := firstField(words[file]); f != "" {
		return &reparsedField{f, "the file that " + words[first] + " runs as shell code, so a value that names an uploaded G-code file runs its contents", fixScript}
	}
	return nil
}

// sourcedFileArg returns the index of the file that the . or source at
// words[at] reads, after an optional --, or len(words) for none.
func sourcedFileArg(words []string, at int) int {
	file := at + 1
	if file < len(words) && words[file] == "--" {
		file++
	}
	return file
}
