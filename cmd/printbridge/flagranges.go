package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"strconv"
	"time"
)

// flagRange is the range of values one numeric flag accepts, inclusive.
// Durations compare in seconds.
type flagRange struct {
	name     string
	min, max float64
	// expected is the hint of the error: what to give instead.
	expected string
}

// atLeast is a flagRange without an upper bound.
func atLeast(name string, min float64, expected string) flagRange {
	return flagRange{name: name, min: min, max: math.Inf(1), expected: expected}
}

// checkFlagRanges returns one error for each flag of fs whose value is
// outside its range, naming the flag, the value and what to give. It runs
// after parseFlags, so values from the command line, the environment and
// the --config file are all checked.
func checkFlagRanges(fs *flag.FlagSet, ranges []flagRange) error {
	var problems []error
	for _, r := range ranges {
		f := fs.Lookup(r.name)
		if f == nil {
			panic("checkFlagRanges: no flag " + r.name)
		}
		text := f.Value.String()
		value, err := flagNumber(f)
		if err != nil {
			panic(fmt.Sprintf("checkFlagRanges: flag %s is not numeric: %v", r.name, err))
		}
		if value < r.min || value > r.max {
			problems = append(problems, fmt.Errorf("invalid %s %s: %s", flagSource(fs, r.name), text, r.expected))
		}
	}
	return errors.Join(problems...)
}

// flagNumber returns the value of a numeric flag, in seconds for a
// duration.
func flagNumber(f *flag.Flag) (float64, error) {
	if getter, ok := f.Value.(flag.Getter); ok {
		if d, ok := getter.Get().(time.Duration); ok {
			return d.Seconds(), nil
		}
	}
	return strconv.ParseFloat(f.Value.String(), 64)
}
