package hooks

import "strings"

// reparsedField is a placeholder whose value a program parses again as
// code after the quoting that printbridge added has been removed.
type reparsedField struct {
	field string
	// where is the place of the field in words, for an error message.
	where string
	// fix is the advice on how to pass the value instead.
	fix string
}

const (
	fixShellArgument = `pass the value as an argument after the script and use it as "$1", as in sh -c 'echo "$1"' sh {name}, without eval`
	fixInterpreter   = "pass the value as a separate argument after the code and read it there (sys.argv in python, @ARGV in perl, ARGV in ruby, process.argv in node, $argv in php, arg in lua)"
)

// argvReparse returns the first placeholder in the words of one command
// that a program parses as code. Those are the script of su -c, the code
// of an interpreter such as python3 -c, shell code that a -c script runs
// again (eval, a nested sh -c), the arguments of a -c script that runs
// eval, and the commands of the wrappers in wrappers.go (ssh, flock -c,
// sudo -s, a script file). The words that env -S splits its string into
// are checked too. In shell code (inShellCode), the words come from a
// command that a shell already unquoted, so a placeholder anywhere in a
// nested -c script is raw code as well. Outside shell code, printbridge
// quotes the values in a -c script itself (see Command.ScriptArgs).
func argvReparse(args []string, inShellCode bool) *reparsedField {
	words, _, r := expandEnvSplit(args)
	if r != nil {
		return r
	}
	if r := remoteShellField(words); r != nil {
		return r
	}
	if r := sessionCommandField(words); r != nil {
		return r
	}
	if r := remoteCopyField(words); r != nil {
		return r
	}
	for _, s := range dashCScripts(words) {
		if inShellCode {
			if f := firstField(words[s]); f != "" {
				return &reparsedField{f, "in the script of a shell that shell code runs with -c, which parses the value again after the outer shell removed its quoting", fixShellArgument}
			}
		} else if r := shellCodeReparse(words[s], scriptShell(words, s)); r != nil {
			return r
		}
		if runsEval(words[s]) {
			if f := fieldIn(words[s+1:]); f != "" {
				return &reparsedField{f, "an argument of a -c script that runs eval or trap, which parses the value as shell code", "use the value as \"$1\" without eval"}
			}
		}
		if r := positionalField(words, s); r != nil {
			return r
		}
	}
	if r := ownShellField(words); r != nil {
		return r
	}
	if j, interpreter := interpreterCodeArg(words); j > 0 {
		if f := firstField(words[j]); f != "" {
			return &reparsedField{f, "part of the code that " + interpreter + " runs", fixInterpreter}
		}
	}
	if r := programTextField(words); r != nil {
		return r
	}
	if r := macroProgramField(words); r != nil {
		return r
	}
	if r := scriptFileField(words); r != nil {
		return r
	}
	if inShellCode {
		// shellCodeReparse checks the program of each simple command
		// that is no continuation of another.
		return nil
	}
	return programField(words, false)
}

// shellCodeReparse returns the first placeholder in shell code (a shell:
// true command or a -c script) whose value is parsed as code a second
// time: one that the shell evaluates as arithmetic (arithmeticReparse),
// one in a pipeline into a shell (pipelineField), an argument of eval,
// the file of . or source, or a word that argvReparse finds in one of
// the code's simple commands. shell is the shell that runs the code.
func shellCodeReparse(code, shell string) *reparsedField {
	commands := splitShellCommands(code)
	if r := arithmeticReparse(code, commands, shell); r != nil {
		return r
	}
	if r := pipelineField(commands); r != nil {
		return r
	}
	if r := evalTextField(commands, code); r != nil {
		return r
	}
	if r := processSubstitutionField(code); r != nil {
		return r
	}
	for _, c := range commands {
		if r := redirectedStdinField(c); r != nil {
			return r
		}
		words := c.arguments().words
		if first := commandName(words); first >= 0 && words[first] == "eval" {
			if f := fieldIn(words[first+1:]); f != "" {
				return &reparsedField{f, "an argument of eval, which parses the value again as shell code after the shell removed its quoting", "write the command without eval, with the placeholder as a word of its own"}
			}
		}
		if r := variableNameField(words); r != nil {
			return r
		}
		if r := sourcedFileField(words); r != nil {
			return r
		}
		if r := argvReparse(words, true); r != nil {
			return r
		}
		if !c.continued {
			if r := programField(words, true); r != nil {
				return r
			}
		}
	}
	return nil
}

// runsEval reports whether shell code runs eval, or trap, which runs its
// action with eval.
func runsEval(code string) bool {
	for _, words := range shellCommands(code) {
		if first := commandName(words); first >= 0 && (words[first] == "eval" || words[first] == "trap") {
			return true
		}
	}
	return false
}

// commandName returns the index of the command name in the words of a
// simple command, after reserved words, variable assignments and the
// builtins command, builtin and exec, or -1 for none.
func commandName(words []string) int {
	for i, w := range words {
		switch {
		case w == "!" || w == "if" || w == "then" || w == "else" || w == "elif" || w == "do" || w == "while" || w == "until" || w == "{{" || w == "time":
		case w == "command" || w == "builtin" || w == "exec":
		case isAssignment(w):
		default:
			return i
		}
	}
	return -1
}

func isAssignment(w string) bool {
	eq := strings.IndexByte(w, '=')
	if eq <= 0 {
		return false
	}
	for i, c := range w[:eq] {
		if c != '_' && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// firstField returns the first replacement field of a template word,
// such as "{name}", or "".
func firstField(w string) string {
	if names, _ := checkTemplate(w); len(names) > 0 {
		return "{" + names[0] + "}"
	}
	return ""
}
