package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/printbridge/printbridge/bridge"
)

// parseFlags parses args into fs with three sources, lowest priority
// first: a YAML file named by the --config flag (keys are flag names),
// environment variables PRINTBRIDGE_<FLAG> (upper case, '-' as '_'), and
// the command line. fs must not define "config" itself unless configFlag
// is false, in which case the YAML source is skipped.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, configFlag bool) error {
	var configPath string
	if configFlag {
		fs.StringVar(&configPath, "config", "", "YAML file with flag values (keys are flag names)")
	}
	// The flag package prints the whole usage after a bad value too; only
	// -h gets it here, so the error is not scrolled away.
	var parseOutput strings.Builder
	fs.SetOutput(&parseOutput)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stderr, parseOutput.String())
			return err
		}
		fmt.Fprintf(stderr, "printbridge %s: %v%s\nRun 'printbridge %s -h' for its flags.\n", fs.Name(), err, parseErrorHint(fs, err), fs.Name())
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "printbridge %s: unexpected argument %q\nRun 'printbridge %s -h' for its flags.\n", fs.Name(), fs.Arg(0), fs.Name())
		return errUsage
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	warnMisspelledEnv(fs, os.Environ(), stderr)
	configSource := "--config"
	if configFlag && !explicit["config"] {
		configPath = os.Getenv("PRINTBRIDGE_CONFIG")
		configSource = "PRINTBRIDGE_CONFIG"
	}

	var fileValues map[string]any
	if configPath != "" {
		data, err := os.ReadFile(configPath)
		if err != nil {
			return fmt.Errorf("%s: read config file: %w", configSource, err)
		}
		if err := yaml.Unmarshal(data, &fileValues); err != nil {
			return fmt.Errorf("parse config file %s: %w", configPath, err)
		}
		var unknown []string
		for key := range fileValues {
			if fs.Lookup(key) == nil || key == "config" {
				unknown = append(unknown, unknownKey(fs, key))
			}
		}
		if len(unknown) > 0 {
			slices.Sort(unknown)
			return fmt.Errorf("config file %s: unknown key %s; keys are the flag names of 'printbridge %s -h'", configPath, strings.Join(unknown, ", "), fs.Name())
		}
	}

	// Every bad value is reported, not only the first, so that one run
	// shows everything to fix in the file and the environment.
	var problems []error
	fs.VisitAll(func(f *flag.Flag) {
		if explicit[f.Name] || f.Name == "config" {
			return
		}
		env := "PRINTBRIDGE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Value.Set(v); err != nil {
				problems = append(problems, fmt.Errorf("invalid value %q in %s: %s", v, env, valueProblem(fs, f, err)))
			}
			return
		}
		if v, ok := fileValues[f.Name]; ok {
			if _, isList := v.([]any); isList {
				problems = append(problems, fmt.Errorf("config file %s: %q must be a single value, not a list", configPath, f.Name))
				return
			}
			if err := f.Value.Set(yamlScalar(v)); err != nil {
				problems = append(problems, fmt.Errorf("config file %s: invalid value %v for %q: %s", configPath, v, f.Name, valueProblem(fs, f, err)))
			}
		}
	})
	return errors.Join(problems...)
}

// unknownKey quotes a config file key that names no flag, with the flag
// it most likely means. That is a flag that differs only in case or in
// underscores for hyphens (auto_connect for auto-connect), else the one
// flag within two edits of it (auto-conect).
func unknownKey(fs *flag.FlagSet, key string) string {
	guess := strings.ToLower(strings.ReplaceAll(key, "_", "-"))
	if guess != key && guess != "config" && fs.Lookup(guess) != nil {
		return fmt.Sprintf("%q (did you mean %q?)", key, guess)
	}
	var near []string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "config" && bridge.EditDistance(guess, f.Name) <= 2 {
			near = append(near, f.Name)
		}
	})
	if len(near) == 1 {
		return fmt.Sprintf("%q (did you mean %q?)", key, near[0])
	}
	return strconv.Quote(key)
}

// warnMisspelledEnv warns about a PRINTBRIDGE_ variable that names no
// flag of fs but is within two edits of one, such as
// PRINTBRIDGE_AUTO_CONECT, which would otherwise be ignored without a
// word. Variables for the flags of other commands are left alone,
// because one environment often serves both the edge and the worker.
func warnMisspelledEnv(fs *flag.FlagSet, environ []string, stderr io.Writer) {
	for _, kv := range environ {
		key, _, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(key, "PRINTBRIDGE_")
		if !ok {
			continue
		}
		name := strings.ToLower(strings.ReplaceAll(rest, "_", "-"))
		if fs.Lookup(name) != nil || name == "config" {
			continue
		}
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name != "config" && bridge.EditDistance(name, f.Name) <= 2 {
				fmt.Fprintf(stderr, "printbridge %s: warning: environment variable %s names no flag and is ignored; did you mean PRINTBRIDGE_%s?\n",
					fs.Name(), key, strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")))
			}
		})
	}
}

// parseErrorHint returns what the flag of a command-line parse error
// takes, with its default as an example, or "" when err names no flag.
// The flag package reports such errors as
// `invalid value "fast" for flag -baud: parse error`.
func parseErrorHint(fs *flag.FlagSet, err error) string {
	_, rest, ok := strings.Cut(err.Error(), " for flag -")
	if !ok || !isParseError(rest) {
		// A flag whose Set rejects a value that parses, such as 0 where 1
		// or more is needed, names the values it takes in its own error.
		return ""
	}
	name, _, _ := strings.Cut(rest, ":")
	f := fs.Lookup(name)
	if f == nil {
		return ""
	}
	expected := strings.TrimPrefix(expectedValue(fs, f), "want ")
	if getter, ok := f.Value.(flag.Getter); ok {
		switch getter.Get().(type) {
		case time.Duration:
			expected = "a duration with a unit, such as 100ms, 30s or 5m"
		case int, int64, uint, uint64:
			expected = "a whole number"
		case float64:
			expected = "a number"
		}
	}
	hint := ". Give " + expected
	if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
		hint += fmt.Sprintf(" (the default is %s)", f.DefValue)
	}
	return hint
}

// printCommandUsage writes the usage of one command: its summary and its
// flags.
func printCommandUsage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "usage: printbridge %s [flags]\n\n", fs.Name())
	if c, ok := subcommands[fs.Name()]; ok {
		fmt.Fprintf(w, "%s\n\n", c.summary)
	}
	sources := "as PRINTBRIDGE_<FLAG>"
	if f := fs.Lookup("config"); f != nil && strings.HasPrefix(f.Usage, "YAML file with flag values") {
		sources = "in the --config file or " + sources
	}
	fmt.Fprintf(w, "flags (written -flag or --flag; each can also be set %s):\n", sources)
	fs.PrintDefaults()
}

// valueProblem says why a value was rejected: the flag's own message when
// it has one (such as a blocked command that cannot be blocked), or what
// the flag takes when the flag package only reports a parse error.
func valueProblem(fs *flag.FlagSet, f *flag.Flag, err error) string {
	msg := err.Error()
	if isParseError(msg) {
		return expectedValue(fs, f)
	}
	return msg
}

// isParseError reports whether a flag error message is the flag package's
// or strconv's report of a value that does not parse.
func isParseError(msg string) bool {
	return strings.Contains(msg, "parse error") || strings.Contains(msg, "invalid syntax") ||
		strings.Contains(msg, "strconv.") || strings.Contains(msg, "time: invalid duration")
}

func yamlScalar(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case []any:
		parts := make([]string, len(x))
		for i := range x {
			parts[i] = fmt.Sprint(x[i])
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(x)
	}
}

// expectedValue says what a flag takes, for error messages.
func expectedValue(fs *flag.FlagSet, f *flag.Flag) string {
	switch f.Value.(type) {
	case interface{ IsBoolFlag() bool }:
		return "want true or false"
	}
	switch f.DefValue {
	case "0", "1", "-1":
		return "want a whole number"
	}
	if _, err := fmt.Sscanf(f.DefValue, "%d", new(int)); err == nil && !strings.ContainsAny(f.DefValue, ".:/") {
		return "want a whole number"
	}
	if strings.HasSuffix(f.DefValue, "s") || strings.HasSuffix(f.DefValue, "m0s") {
		return "want a duration such as 30s or 5m"
	}
	return fmt.Sprintf("see 'printbridge %s -h' for the expected form", fs.Name())
}

// checkedString is a string flag whose Set rejects a value that check
// rejects. A value checked only after parsing would be reported as
// --flag even when a PRINTBRIDGE_ variable or the config file gave it.
type checkedString struct {
	value *string
	check func(string) error
}

func (c checkedString) String() string {
	if c.value == nil {
		return ""
	}
	return *c.value
}

func (c checkedString) Set(v string) error {
	if err := c.check(v); err != nil {
		return err
	}
	*c.value = v
	return nil
}

// checkedStringVar defines a string flag like fs.StringVar, whose values
// must pass check.
func checkedStringVar(fs *flag.FlagSet, p *string, name, value, usage string, check func(string) error) {
	*p = value
	fs.Var(checkedString{value: p, check: check}, name, usage)
}

// flagSource returns what set the value of the flag name of fs, for
// errors found after parsing: the PRINTBRIDGE_ variable when that set
// it, else "--name" (the command line, the config file or the default).
func flagSource(fs *flag.FlagSet, name string) string {
	onCommandLine := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			onCommandLine = true
		}
	})
	env := "PRINTBRIDGE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	if _, ok := os.LookupEnv(env); ok && !onCommandLine {
		return env
	}
	return "--" + name
}
