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
	// attached lists the short options that take a value only when it
	// is attached, as in sudo -hHOST (getopt's "h::"). Alone, such an
	// option takes none.
	attached string
	// valueLong lists the long options that take the next word as their
	// value when no = follows the name.
	valueLong []string
	// flagLong lists the long options that take no separate value, also
	// those with an optional value after =. Only abbreviations need the
	// list, to tell a unique prefix from an ambiguous one.
	flagLong []string
	// abbreviations accepts a unique prefix of a long option's name, as
	// GNU getopt_long does, so that --chd is --chdir.
	abbreviations bool
	// permute lets options follow operands, as GNU getopt does unless
	// the option string starts with +.
	permute bool
	// plus makes words that start with + option groups too, as in sh +x.
	plus bool
}

// cliOption is one option that walkOptions found.
type cliOption struct {
	// name is the letter of a short option or the full name of a long
	// one, without its =value.
	name string
	// value is the index of the word that holds the value: the option's
	// own word for -cVALUE and --name=VALUE. It is -1 without a value.
	value int
	// text is the value itself, without the option letter or name.
	text string
}

// longOption returns the full name of the long option that the word
// --name selects and whether it takes the next word as its value.
// getopt_long takes an exact name first and else the only option that
// starts with name. When several options start with it, getopt_long
// fails and the program runs nothing, so name is returned as it is.
//
// NOTE: glibc also takes the first of several matches when all of them
// are aliases of one option. Such a prefix is read here as an unknown
// option without a value.
func (spec cliOptions) longOption(name string) (string, bool) {
	if slices.Contains(spec.valueLong, name) {
		return name, true
	}
	if !spec.abbreviations || name == "" || slices.Contains(spec.flagLong, name) {
		return name, false
	}
	found, takesValue := "", false
	for i, list := range [][]string{spec.valueLong, spec.flagLong} {
		for _, option := range list {
			if !strings.HasPrefix(option, name) {
				continue
			}
			if found != "" {
				return name, false
			}
			found, takesValue = option, i == 0
		}
	}
	if found == "" {
		return name, false
	}
	return found, takesValue
}

// walkOptions returns the options of the program at args[at] and the
// index of its first operand, or len(args) when it has none. Without
// permute, options end at the first operand. Options always end at --,
// and a lone - is an operand.
func walkOptions(args []string, at int, spec cliOptions) (options []cliOption, operand int) {
	options, operands := walkArguments(args, at, spec)
	if len(operands) == 0 {
		return options, len(args)
	}
	return options, operands[0]
}

// walkArguments returns the options of the program at args[at] and the
// indexes of all its operands, as walkOptions reads them.
func walkArguments(args []string, at int, spec cliOptions) (options []cliOption, operands []int) {
	for j := at + 1; j < len(args); j++ {
		a := args[j]
		switch {
		case a == "--":
			for k := j + 1; k < len(args); k++ {
				operands = append(operands, k)
			}
			return options, operands
		case strings.HasPrefix(a, "--"):
			written, text, attached := strings.Cut(a[2:], "=")
			name, takesValue := spec.longOption(written)
			option := cliOption{name: name, value: -1}
			if attached {
				option.value, option.text = j, text
			} else if takesValue && j+1 < len(args) {
				j++
				option.value, option.text = j, args[j]
			}
			options = append(options, option)
		case len(a) > 1 && (a[0] == '-' || spec.plus && a[0] == '+'):
			j = walkShortGroup(args, j, spec, &options)
		default:
			if !spec.permute {
				for k := j; k < len(args); k++ {
					operands = append(operands, k)
				}
				return options, operands
			}
			operands = append(operands, j)
		}
	}
	return options, operands
}

// walkShortGroup appends the options of the group of short options at
// args[j], such as -vS'sh -c', and returns the index of the last word
// that the group used.
func walkShortGroup(args []string, j int, spec cliOptions, options *[]cliOption) int {
	a := args[j]
	for k := 1; k < len(a); k++ {
		option := cliOption{name: a[k : k+1], value: -1}
		rest := a[k+1:]
		switch {
		case strings.IndexByte(spec.value, a[k]) >= 0:
			if rest != "" {
				option.value, option.text = j, rest
			} else if j+1 < len(args) {
				j++
				option.value, option.text = j, args[j]
			}
			*options = append(*options, option)
			return j
		case strings.IndexByte(spec.attached, a[k]) >= 0 && rest != "":
			option.value, option.text = j, rest
			*options = append(*options, option)
			return j
		}
		*options = append(*options, option)
	}
	return j
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
