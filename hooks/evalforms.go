package hooks

import (
	"path"
	"slices"
	"strings"
)

const fixEval = `use the value as a word of its own without eval, such as "$1" in sh -c 'echo "$1"' sh {name}; an eval or trap that needs a variable goes in a command of its own without placeholders`

// evalTextField returns the error for shell code with a placeholder that
// runs eval or trap on text that is not constant. trap runs its action
// with eval when the signal comes, so a placeholder among the arguments
// of trap is code. eval "$x", eval "$1" after set -- {name}, eval "$l"
// in a read loop and eval $(cat) parse text that may be the value. A
// single-quoted '$x' stays constant, because eval then expands x without
// parsing the value.
//
// NOTE: eval "$SETUP" is rejected too when the command has a placeholder
// anywhere, because the check does not follow where a value flows.
func evalTextField(commands []shellCommand, code string) *reparsedField {
	field := firstField(code)
	if field == "" {
		return nil
	}
	for _, c := range commands {
		c = c.arguments()
		first := commandName(c.words)
		if first < 0 {
			continue
		}
		name := c.words[first]
		if name != "eval" && name != "trap" {
			continue
		}
		if name == "trap" {
			if f := fieldIn(c.words[first+1:]); f != "" {
				return &reparsedField{f, "an argument of trap, whose action the shell runs with eval when the signal comes, so the value is parsed as shell code", fixEval}
			}
		}
		dynamic := c.substituted || name == "eval" && first+1 == len(c.words)
		for k := first + 1; k < len(c.words); k++ {
			dynamic = dynamic || c.expands[k]
		}
		if dynamic {
			return &reparsedField{field, "in shell code that runs " + name + " on text that is not constant (a $ or backtick expansion outside single quotes), which can parse the value as shell code", fixEval}
		}
	}
	return nil
}

// processSubstitutionField returns the first placeholder inside a
// process substitution <(...) whose file a shell, an interpreter, source
// or . runs as code, as in bash < <(echo {name}) or source <(echo {name}).
func processSubstitutionField(code string) *reparsedField {
	r := []rune(code)
	inField := fieldMask(r)
	start := 0
	for i := 0; i < len(r); i++ {
		if inField[i] {
			continue
		}
		switch r[i] {
		case '\\':
			i++
		case '\'':
			for i++; i < len(r) && r[i] != '\''; i++ {
			}
		case '"':
			for i++; i < len(r) && r[i] != '"'; i++ {
				if r[i] == '\\' {
					i++
				}
			}
		case ';', '&', '|', '\n':
			start = i + 1
		case '<':
			if i+1 >= len(r) || r[i+1] != '(' {
				continue
			}
			end, depth := i+1, 0
			for ; end < len(r); end++ {
				if r[end] == '(' && !inField[end] {
					depth++
				} else if r[end] == ')' && !inField[end] {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			field := firstField(string(r[i+2 : min(end, len(r))]))
			commands := splitShellCommands(string(r[start:i]))
			if field == "" || len(commands) == 0 {
				continue
			}
			words := commands[len(commands)-1].arguments().words
			k := pipedProgram(words)
			if k < 0 {
				continue
			}
			name := path.Base(words[k])
			if _, runner := lookupScriptRunner(name); runner || name == "." || name == "source" {
				return &reparsedField{field, "in a process substitution <(...) whose output " + name + " runs as code", fixShellArgument}
			}
		}
	}
	return nil
}

// scriptReadsStdinCode reports whether the shell code of a -c script
// runs its standard input as code, as in bash -c 'source /dev/fd/0', or
// may do so because it runs eval or trap on text that is not constant,
// as in sh -c 'eval "$(cat)"'.
func scriptReadsStdinCode(script string) bool {
	commands := splitShellCommands(script)
	for _, c := range commands {
		if stdinCodeField(c.arguments().words, "{x}") != nil {
			return true
		}
	}
	// evalTextField finds eval on text that is not constant in code
	// with a placeholder, so one stands for the standard input.
	return evalTextField(commands, "{x}") != nil
}

// awkNames are the awk implementations whose first operand is program
// text, by base name. busybox awk is found through the word awk.
var awkNames = []string{"awk", "gawk", "mawk", "nawk", "original-awk"}

// awkOptions are the options of gawk, mawk and busybox awk that take a
// value. -f, -E and --file name a program file, and -e and --source give
// program text.
var awkOptions = cliOptions{value: "FvfEeiWl", valueLong: []string{"field-separator", "assign", "file", "exec", "source", "include", "load"},
	flagLong: []string{"bignum", "characters-as-bytes", "copyright", "csv", "debug", "dump-variables", "gen-pot", "help", "lint",
		"lint-old", "no-optimize", "non-decimal-data", "optimize", "posix", "pretty-print", "profile", "re-interval",
		"sandbox", "traditional", "use-lc-numeric", "version"},
	abbreviations: true}

// sedOptions are the options of GNU sed 4.9. -i takes a value only when
// it is attached, as --in-place does after =.
var sedOptions = cliOptions{value: "efl", attached: "i", valueLong: []string{"expression", "file", "line-length"},
	flagLong: []string{"binary", "debug", "follow-symlinks", "help", "in-place", "null-data", "posix", "quiet",
		"regexp-extended", "sandbox", "separate", "silent", "unbuffered", "version", "zero-terminated"},
	abbreviations: true, permute: true}

// awkLoadOptions are the options of gawk whose value names a file of
// awk source (-i, --include) or a shared library (-l, --load) that gawk
// loads besides its program.
var awkLoadOptions = []string{"i", "include", "l", "load"}

// programTextField returns the first placeholder in the program text of
// awk (its first operand or the value of -e/--source) or sed (its first
// operand or the value of -e/--expression), or in the name of a file
// that holds such text (awk -f, gawk -i and -l, sed -f). awk's system()
// and | getline run shell commands, and so do GNU sed's e command and
// s///e.
func programTextField(words []string) *reparsedField {
	for i, w := range words {
		name := path.Base(w)
		var spec cliOptions
		var textOptions, fileOptions, loadOptions []string
		switch {
		case slices.Contains(awkNames, name):
			spec, textOptions, fileOptions, loadOptions = awkOptions, []string{"e", "source"}, []string{"f", "E", "file", "exec"}, awkLoadOptions
		case name == "sed" || name == "gsed":
			spec, textOptions, fileOptions = sedOptions, []string{"e", "expression"}, []string{"f", "file"}
		default:
			continue
		}
		options, operand := walkOptions(words, i, spec)
		hasProgram := false
		for _, o := range options {
			if o.value < 0 {
				continue
			}
			f := firstField(words[o.value])
			switch {
			case slices.Contains(textOptions, o.name):
				hasProgram = true
				if f != "" {
					return &reparsedField{f, "in the program text of " + name + ", which can run shell commands (system() in awk, the e command in GNU sed)", fixProgramText}
				}
			case slices.Contains(fileOptions, o.name) || slices.Contains(loadOptions, o.name):
				hasProgram = hasProgram || slices.Contains(fileOptions, o.name)
				if f != "" {
					return &reparsedField{f, "the name of a program file that " + name + " runs, so a value that names an uploaded G-code file runs its contents, which can run shell commands (system() in awk, the e command in GNU sed)", fixProgramFile}
				}
			}
		}
		if !hasProgram && operand >= 0 && operand < len(words) {
			if f := firstField(words[operand]); f != "" {
				return &reparsedField{f, "the program text of " + name + ", its first operand, which can run shell commands (system() in awk, the e command in GNU sed)", fixProgramText}
			}
		}
	}
	return nil
}

const fixProgramFile = `write the name of the program file as fixed text and pass the value as data after it, as in awk -f ./report.awk {path}`

const fixProgramText = `write the program as fixed text and pass the value as data, as in awk -v name={name} '{{print name}}' or a file operand after the program`

// variableNameField returns the first placeholder that bash reads as a
// variable name and evaluates the array subscript of as arithmetic, which
// runs a command in a subscript such as a[$(cmd)]: the subscript of an
// element in a compound assignment such as a=([{name}]=1), the value of
// a nameref (declare -n, local -n, typeset -n) and the names of read.
func variableNameField(words []string) *reparsedField {
	for _, w := range words {
		if !strings.HasPrefix(w, "[") {
			continue
		}
		end := strings.Index(w, "]=")
		if plus := strings.Index(w, "]+="); plus > 0 && (end < 0 || plus < end) {
			end = plus
		}
		if end < 0 {
			continue
		}
		if f := firstField(w[:end+1]); f != "" {
			return &reparsedField{f, "the subscript of an element in a compound array assignment such as a=([i]=x), which bash evaluates as arithmetic and which runs the command in a subscript such as a[$(cmd)]", "write the subscript as fixed text, as in a=([0]={name})"}
		}
	}
	first := commandName(words)
	if first < 0 {
		return nil
	}
	name := words[first]
	switch name {
	case "declare", "typeset", "local":
		options, _ := walkOptions(words, first, cliOptions{})
		if !hasOption(options, "n") {
			return nil
		}
		if f := fieldIn(words[first+1:]); f != "" {
			return &reparsedField{f, "an argument of " + name + " -n, whose value bash reads as the name of a variable and evaluates the array subscript of, which runs the command in a subscript such as a[$(cmd)]", "store the value in a plain variable, as in n={name}, in place of a nameref"}
		}
	case "mapfile", "readarray":
		// bash 5.2 rejects an array name with a subscript here, and the
		// names are checked in case another version does not.
		_, operand := walkOptions(words, first, cliOptions{value: "CcdnOsu"})
		if operand < len(words) {
			if f := firstField(words[operand]); f != "" {
				return &reparsedField{f, "the array name of " + name + ", where bash may evaluate an array subscript such as a[$(cmd)] as arithmetic, which runs the command", "write the array name as fixed text"}
			}
		}
	case "getopts":
		if first+2 < len(words) {
			if f := firstField(words[first+2]); f != "" {
				return &reparsedField{f, "the variable name of getopts, where bash may evaluate an array subscript such as a[$(cmd)] as arithmetic, which runs the command", "write the variable name as fixed text"}
			}
		}
	case "read":
		options, operand := walkOptions(words, first, cliOptions{value: "adinNptu"})
		if f := optionValueField(words, options, "a"); f != "" {
			return &reparsedField{f, "the array name of read -a", "write the variable names of read as fixed text"}
		}
		if operand >= 0 && operand < len(words) {
			if f := fieldIn(words[operand:]); f != "" {
				return &reparsedField{f, "a variable name for read, where bash evaluates an array subscript such as a[$(cmd)] as arithmetic, which runs the command", "write the variable names of read as fixed text"}
			}
		}
	}
	return nil
}
