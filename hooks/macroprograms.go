package hooks

import "path"

// dcOptions are the options of GNU dc 1.4: -e gives program text and
// -f names a program file.
var dcOptions = cliOptions{value: "ef", valueLong: []string{"expression", "file"}, flagLong: []string{"help", "version"},
	abbreviations: true, permute: true}

// m4Options are the options of GNU m4 1.4.19 that take a value. -d
// takes one only when it is attached.
var m4Options = cliOptions{value: "BDFHILNRSTUlot", attached: "d", permute: true,
	valueLong: []string{"arglength", "debugfile", "define", "error-output", "freeze-state", "hashsize", "include",
		"nesting-limit", "reload-state", "trace", "undefine", "warn-macro-sequence"},
	flagLong: []string{"debug", "fatal-warnings", "gnu", "help", "interactive", "prefix-builtins", "quiet", "silent",
		"synclines", "traditional", "version"},
	abbreviations: true}

const (
	fixMake = `pass the value in the environment and use it in the recipe as "$$NAME", which the recipe's shell expands and make does not, as in env NAME={name} make -C /srv/notify; a recipe that writes $(NAME) lets make expand the value`
	fixDC   = "compute with the shell's $((...)) after a case pattern has checked that the value is a number (see Arithmetic in docs/hooks.md), or pass the value to a program that reads it as data"
	fixM4   = `fill the template with a program that runs no commands, such as envsubst with the value in the environment: env NAME={name} envsubst < template.txt`
)

// macroProgramField returns the first placeholder among the arguments
// of make, dc or m4, whose arguments are all code or name code. make
// expands a variable assignment such as N=$(shell cmd), at once for
// N:=..., reads a value that starts with - as an option such as
// --eval=..., and reads the makefile of -f or of the folder of -C. dc
// runs its -e text, its -f file and its file operands, and ! in them
// runs a shell command. m4 reads its -D definitions and file operands as
// input, in which syscmd and esyscmd run shell commands.
func macroProgramField(words []string) *reparsedField {
	for i, w := range words {
		name := path.Base(w)
		var where, fix string
		switch name {
		case "make", "gmake":
			where, fix = "an argument of "+name+", which expands a variable assignment such as N=$(shell cmd) (N:=... at once), reads a value that starts with - as an option such as --eval, and reads the makefile that -f or -C names", fixMake
		case "dc":
			where, fix = "an argument of dc, which runs its -e text, -f file and file operands as dc programs, where ! runs a shell command", fixDC
		case "m4":
			where, fix = "an argument of m4, which reads its -D definitions and file operands as m4 input, where syscmd and esyscmd run shell commands", fixM4
		default:
			continue
		}
		if f := fieldIn(words[i+1:]); f != "" {
			return &reparsedField{f, where, fix}
		}
	}
	return nil
}

// macroReadsStdin reports whether the dc or m4 at words[at] reads its
// standard input as a program: without a program or file of its own, or
// with - as one.
func macroReadsStdin(words []string, at int) bool {
	isDC := path.Base(words[at]) == "dc"
	spec := m4Options
	if isDC {
		spec = dcOptions
	}
	options, operands := walkArguments(words, at, spec)
	for _, k := range operands {
		if words[k] == "-" {
			return true
		}
	}
	if !isDC {
		return len(operands) == 0
	}
	for _, o := range options {
		if (o.name == "f" || o.name == "file") && o.text == "-" {
			return true
		}
	}
	return len(operands) == 0 && !hasOption(options, "e", "expression", "f", "file")
}
