package hooks

import (
	"path"
	"strings"
)

// watchOptions are the options of procps-ng 4.0 watch, whose option
// string starts with +, so options end at the first other word. -d takes
// a value only when it is attached.
var watchOptions = cliOptions{value: "nq", attached: "d", valueLong: []string{"equexit", "interval"},
	flagLong: []string{"beep", "chgexit", "color", "differences", "errexit", "exec", "no-title", "no-wrap", "precise",
		"help", "version"},
	abbreviations: true}

// tmuxOptions are the options of tmux 3.3 before its first command.
// The value of -c is a shell command.
var tmuxOptions = cliOptions{value: "cfLST"}

// atOptions are the options of at 3.2 and batch. -f names the file of
// the job, and -l, -r, -d and -c list, remove and print jobs.
var atOptions = cliOptions{value: "fqtu", permute: true}

// NOTE: fixScreen and fixAt were not tried with a real screen or at, as
// neither was installed where these checks were written. at(1) states
// that at keeps the environment for the job.
const (
	fixWatch  = "use watch -x, which runs its command without a shell, as in watch -x notify {name}"
	fixTmux   = `set the value with a tmux command of its own whose last word is the placeholder, tmux set-environment -g NAME {name}, and use it as "$NAME" in the fixed shell command of a later list entry, such as tmux new-window -d 'notify "$NAME"'`
	fixScreen = `pass the value in the environment, which screen hands to a new session, and run a fixed command: env NAME={name} screen -dm sh -c 'notify "$NAME"'`
	fixAt     = `pass the value in the environment, which at keeps for the job, and run a fixed script: env NAME={name} at now -f ./job.sh, where job.sh uses "$NAME"`
)

// sessionCommandField returns the first placeholder that watch, tmux,
// screen or at turns into shell code or a command of their own, or nil.
func sessionCommandField(words []string) *reparsedField {
	for i, w := range words {
		var r *reparsedField
		switch path.Base(w) {
		case "watch":
			r = watchField(words, i)
		case "tmux":
			r = tmuxField(words, i)
		case "screen":
			if f := fieldIn(words[i+1:]); f != "" {
				r = &reparsedField{f, "an argument of screen, where it can be the program, a screen command such as stuff, which types into a shell, or an option", fixScreen}
			}
		case "at", "batch":
			options, _ := walkOptions(words, i, atOptions)
			if f := optionValueField(words, options, "f"); f != "" {
				r = &reparsedField{f, "the file that " + path.Base(w) + " -f runs as a shell script, so a value that names an uploaded G-code file runs its contents", fixAt}
			}
		}
		if r != nil {
			return r
		}
	}
	return nil
}

// watchField returns the first placeholder among the command words of
// the watch at words[at]. watch joins them with spaces and runs the
// line with sh -c, unless -x makes it run them as an argv, whose program
// programWordField checks.
func watchField(words []string, at int) *reparsedField {
	options, command := walkOptions(words, at, watchOptions)
	if hasOption(options, "x", "exec") {
		return programWordField(words, command, "watch -x")
	}
	if command >= len(words) {
		return nil
	}
	if f := fieldIn(words[command:]); f != "" {
		return &reparsedField{f, "a command word of watch, which joins its command words with spaces and runs the line with sh -c", fixWatch}
	}
	return nil
}

// tmuxField returns the first placeholder among the arguments of the
// tmux at words[at]. tmux runs a shell command given as one word with
// $SHELL -c (new-session, new-window, split-window, run-shell, if-shell,
// -c), types the keys of send-keys into a shell, and runs #(...) in the
// formats of session and window names and display-message. An argument
// that ends in ; ends a tmux command, so the words after it run as
// another tmux command, such as run-shell. Only the value of
// set-environment without -F loads, when it is the last word.
func tmuxField(words []string, at int) *reparsedField {
	field := fieldIn(words[at+1:])
	if field == "" {
		return nil
	}
	_, first := walkOptions(words, at, tmuxOptions)
	if fieldIn(words[at+1:min(first, len(words))]) == "" && tmuxSetEnvironmentValue(words, first) {
		return nil
	}
	return &reparsedField{field, "an argument of tmux, which runs a command word as a shell command, types send-keys into a shell and runs #(...) in formats, and which reads a value that ends in ; as the end of a tmux command, so that the words after it run as another one", fixTmux}
}

// tmuxSetEnvironmentValue reports whether the only placeholders of the
// tmux command line that starts at words[first] are in the last word,
// which is the value of its last command, set-environment (setenv)
// without -F. tmux stores that value unchanged, and a ; at its end only
// ends the last command.
func tmuxSetEnvironmentValue(words []string, first int) bool {
	last := len(words) - 1
	if first > last || fieldIn(words[first:last]) != "" {
		return false
	}
	start := first
	for k := first; k < last; k++ {
		if strings.HasSuffix(words[k], ";") && !strings.HasSuffix(words[k], `\;`) {
			start = k + 1
		}
	}
	if start > last || words[start] != "set-environment" && words[start] != "setenv" {
		return false
	}
	options, operand := walkOptions(words, start, cliOptions{value: "t"})
	// The operands are the name and the value.
	return !hasOption(options, "F") && operand == last-1
}
