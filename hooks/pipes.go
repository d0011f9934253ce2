package hooks

import (
	"path"
	"slices"
	"strings"
)

// stdinFiles are the names under which source and . read standard input.
var stdinFiles = []string{"/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "-"}

// pipeWrappers are programs that run the rest of their words as a
// command with the same standard input, so | nice sh still runs a shell.
//
// NOTE: walkOptions reads no abbreviated long option, so a pipeline into
// env --chd DIR sh is not found, although getopt_long takes --chd.
var pipeWrappers = map[string]cliOptions{
	"env":     {value: envValueOptions, valueLong: envValueLongOptions()},
	"nice":    {value: "n", valueLong: []string{"adjustment"}},
	"nohup":   {},
	"setsid":  {},
	"stdbuf":  {value: "ioe"},
	"ionice":  {value: "cnp", valueLong: []string{"class", "classdata", "pid"}},
	"timeout": {value: "ks", valueLong: []string{"kill-after", "signal"}},
	"sudo":    sudoOptions,
	"doas":    {value: "uC"},
	"busybox": {},
}

// pipelineField returns the first placeholder in a pipeline stage whose
// output, through this stage or later ones, reaches a command that runs
// its standard input as code: a shell or interpreter without a script
// (| sh, | python3 -), source /dev/stdin, or xargs whose command runs
// an input line as code (xargs sh -c, xargs -I X sh -c 'echo X').
func pipelineField(commands []shellCommand) *reparsedField {
	field := ""
	for _, c := range commands {
		if field != "" {
			if r := stdinCodeField(c.words, field); r != nil {
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
// input of a simple command, after the wrappers in pipeWrappers and the
// NAME=value words of env, or -1.
func pipedProgram(words []string) int {
	k := commandName(words)
	for k >= 0 && k < len(words) {
		spec, ok := pipeWrappers[path.Base(words[k])]
		if !ok {
			return k
		}
		_, next := walkOptions(words, k, spec)
		if path.Base(words[k]) == "timeout" {
			// timeout DURATION COMMAND
			next++
		}
		for next < len(words) && isAssignment(words[next]) {
			next++
		}
		if next >= len(words) {
			return -1
		}
		k = next
	}
	return k
}

// xargsField returns the error for field when the xargs at words[at],
// reading lines that hold the value, runs a command that parses a value
// as code. The command gets each line in place of the -I, -i or -J
// replacement string, or as its last argument, and is checked as shell
// code checks a command with the placeholder in that place.
func xargsField(words []string, at int, field string) *reparsedField {
	replace := ""
	command := len(words)
	for j := at + 1; j < len(words); j++ {
		a := words[j]
		if a == "--" {
			command = j + 1
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			command = j
			break
		}
		if strings.HasPrefix(a, "--") {
			name, value, attached := strings.Cut(a[2:], "=")
			switch {
			case name == "replace":
				// --replace without a value means {}, written {{}} in a
				// template.
				replace = "{{}}"
				if attached {
					replace = value
				}
			case !attached && slices.Contains([]string{"arg-file", "delimiter", "max-args", "max-procs", "max-chars", "process-slot-var"}, name):
				j++
			}
			continue
		}
	group:
		for p := 1; p < len(a); p++ {
			rest := a[p+1:]
			switch a[p] {
			case 'I', 'J':
				if rest == "" && j+1 < len(words) {
					j++
					rest = words[j]
				}
				replace = rest
				break group
			case 'i':
				replace = "{{}}"
				if rest != "" {
					replace = rest
				}
				break group
			case 'e', 'l':
				// An optional value, attached only.
				break group
			case 'a', 'd', 'E', 'L', 'n', 'P', 's', 'R', 'S':
				if rest == "" {
					j++
				}
				break group
			}
		}
	}
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
		return nil
	}
	return &reparsedField{field, "in a pipeline into xargs, which passes each input line to " + strings.Join(words[command:], " ") + ", and there the line is " + r.where, r.fix}
}
