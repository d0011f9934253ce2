package hooks

import (
	"path"
	"slices"
	"strings"
)

// stdinFiles are the names under which source and . read standard input.
var stdinFiles = []string{"/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "-"}

// pipelineField returns the first placeholder in a pipeline stage whose
// output, through this stage or later ones, reaches a command that runs
// its standard input as code: a shell or interpreter without a script
// (| sh, | python3 -), source /dev/stdin, or xargs whose command runs
// an input line as code (xargs sh -c, xargs -I X sh -c 'echo X').
func pipelineField(commands []shellCommand) *reparsedField {
	field := ""
	for _, c := range commands {
		if field != "" {
			if r := stdinCodeField(c.arguments().words, field); r != nil {
				return r
			}
		}
		if field == "" {
			field = fieldIn(c.words)
		}
		if !c.pipe {
			field = ""
		}
	}
	return nil
}

// stdinCodeField returns the error for field, a placeholder in an
// earlier stage of a pipeline, when the command words runs its standard
// input as code, or nil.
func stdinCodeField(words []string, field string) *reparsedField {
	k := pipedProgram(words)
	if k < 0 {
		return nil
	}
	name := path.Base(words[k])
	switch {
	case name == "." || name == "source":
		file := sourcedFileArg(words, k)
		if file < len(words) && slices.Contains(stdinFiles, words[file]) {
			return &reparsedField{field, "in a pipeline into " + name + " " + words[file] + ", which runs its standard input as shell code", fixShellArgument}
		}
	case name == "xargs":
		return xargsField(words, k, field)
	case name == "dc" || name == "m4":
		if macroReadsStdin(words, k) {
			fix := fixM4
			if name == "dc" {
				fix = fixDC
			}
			return &reparsedField{field, "in a pipeline into " + name + ", which runs its standard input as a program that can run shell commands (! in dc, syscmd in m4)", fix}
		}
	case name == "at" || name == "batch":
		// at -f reads the job from a file, and -l, -r, -d and -c read none.
		options, _ := walkOptions(words, k, atOptions)
		if !hasOption(options, "f", "l", "r", "d", "c", "V") {
			return &reparsedField{field, "in a pipeline into " + name + ", which runs its standard input as a shell script later", fixAt}
		}
	default:
		runner, ok := lookupScriptRunner(name)
		if !ok {
			return nil
		}
		options, operand := walkOptions(words, k, runner.options)
		// A script operand such as /dev/stdin reads standard input too.
		readsStdin := operand >= len(words) || slices.Contains(stdinFiles, words[operand])
		if posixShells[name] && hasOption(options, "s") {
			readsStdin = true
		} else if hasOption(options, runner.inline...) {
			readsStdin = false
			if script := dashCScript(words, k); posixShells[name] && script > 0 {
				readsStdin = scriptReadsStdinCode(words[script])
			}
		}
		if readsStdin {
			return &reparsedField{field, "in a pipeline into " + words[k] + ", which runs its standard input as code", fixShellArgument}
		}
	}
	return nil
}

// pipedProgram returns the index of the program that gets the standard
// input of a simple command, after the runners of commandRunners that
// pass it on, such as nice, env NAME=value and timeout 10, or -1.
func pipedProgram(words []string) int {
	k, _ := wrappedProgram(words, leadingWordsEnd(words), true)
	return k
}

// xargsField returns the error for field when the xargs at words[at],
// reading lines that hold the value, runs a command that parses a value
// as code. The command gets each line in place of the -I, -i or -J
// replacement string, or as its last argument, and is checked as shell
// code checks a command with the placeholder in that place.
func xargsField(words []string, at int, field string) *reparsedField {
	replace, command := xargsCommand(words, at)
	if command >= len(words) {
		// xargs runs echo, which prints the lines.
		return nil
	}
	var line []string
	for _, w := range words[command:] {
		if replace != "" {
			w = strings.ReplaceAll(w, replace, field)
		}
		line = append(line, w)
	}
	if replace == "" {
		line = append(line, field)
	}
	r := argvReparse(line, true)
	if r == nil {
		r = programField(line, true)
	}
	if r == nil {
		return nil
	}
	return &reparsedField{field, "in a pipeline into xargs, which passes each input line to " + strings.Join(words[command:], " ") + ", and there the line is " + r.where, r.fix}
}

// xargsCommand returns the replacement string of the xargs at words[at]
// ("" without one) and the index of its command, or len(words) when it
// has none.
func xargsCommand(words []string, at int) (replace string, command int) {
	options, command := walkOptions(words, at, xargsOptions)
	for _, o := range options {
		switch o.name {
		case "I", "J":
			replace = o.text
		case "i", "replace":
			// Without a value the string is {}, written {{}} in a
			// template.
			replace = "{{}}"
			if o.value >= 0 {
				replace = o.text
			}
		}
	}
	return replace, command
}

// redirectedStdinField returns the first placeholder in the standard
// input that a redirection gives a command that runs its standard input
// as code: the text of a here-string (bash -s <<< {name}) or the file
// that < opens (sh < {path}), which a user who uploaded it wrote.
func redirectedStdinField(c shellCommand) *reparsedField {
	args := c.arguments().words
	for i, w := range c.words {
		op := c.redirects[i]
		if op != "<" && op != "<<<" {
			continue
		}
		f := firstField(w)
		if f == "" {
			continue
		}
		r := stdinCodeField(args, f)
		if r == nil {
			continue
		}
		if op == "<<<" {
			r.where = strings.Replace(r.where, "in a pipeline into ", "in a here-string (<<<) into ", 1)
			return r
		}
		r.where = strings.Replace(r.where, "in a pipeline into ", "the name of a file that < gives as standard input to ", 1)
		r.fix = fixScript
		return r
	}
	return nil
}
