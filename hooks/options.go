package hooks

import (
	"slices"
	"strings"
)

// cliOptions describes the options of a program, for walking them as
// getopt does.
type cliOptions struct {
	// value lists the short options that take a value: the rest of
	// their word, or else the next word.
	value string
	// valueLong lists the long options that take the next word as their
	// value when no = follows the name.
	valueLong []string
	// permute lets options follow operands, as GNU getopt does unless
	// the option string starts with +.
	permute bool
	// plus makes words that start with + option groups too, as in sh +x.
	plus bool
}

// cliOption is one option that walkOptions found.
type cliOption struct {
	// name is the letter of a short option or the name of a long one,
	// without its =value.
	name string
	// value is the index of the word that holds the value: the option's
	// own word for -cVALUE and --name=VALUE. It is -1 without a value.
	value int
}

// walkOptions returns the options of the program at args[at] and the
// index of its first operand, or len(args) when it has none. Without
// permute, options end at the first operand. Options always end at --,
// and a lone - is an operand.
func walkOptions(args []string, at int, spec cliOptions) (options []cliOption, operand int) {
	operand = -1
	for j := at + 1; j < len(args); j++ {
		a := args[j]
		switch {
		case a == "--":
			if operand < 0 {
				operand = j + 1
			}
			return options, operand
		case strings.HasPrefix(a, "--"):
			name, _, attached := strings.Cut(a[2:], "=")
			option := cliOption{name: name, value: -1}
			if attached {
				option.value = j
			} else if slices.Contains(spec.valueLong, name) && j+1 < len(args) {
				j++
				option.value = j
			}
			options = append(options, option)
		case len(a) > 1 && (a[0] == '-' || spec.plus && a[0] == '+'):
			for k := 1; k < len(a); k++ {
				option := cliOption{name: a[k : k+1], value: -1}
				takesValue := strings.IndexByte(spec.value, a[k]) >= 0
				if takesValue && k+1 < len(a) {
					option.value = j
				} else if takesValue && j+1 < len(args) {
					j++
					option.value = j
				}
				options = append(options, option)
				if takesValue {
					break
				}
			}
		default:
			if operand < 0 {
				operand = j
			}
			if !spec.permute {
				return options, operand
			}
		}
	}
	if operand < 0 {
		operand = len(args)
	}
	return options, operand
}

// hasOption reports whether options contain one of names.
func hasOption(options []cliOption, names ...string) bool {
	for _, o := range options {
		if slices.Contains(names, o.name) {
			return true
		}
	}
	return false
}

// optionValueField returns the first placeholder in the value of an
// option named name, or "". A value attached to its option, as in
// -vNAME, is searched together with the option.
func optionValueField(words []string, options []cliOption, name string) string {
	for _, o := range options {
		if o.name == name && o.value >= 0 {
			if f := firstField(words[o.value]); f != "" {
				return f
			}
		}
	}
	return ""
}
