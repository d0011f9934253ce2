package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/printbridge/printbridge/bridge/policy"
	"github.com/printbridge/printbridge/hooks"
)

func init() {
	register("check-config", "check the event hooks and printbridge: settings of an OctoPrint config.yaml", runCheckConfig)
}

// errConfigInvalid makes check-config exit 1 once it has printed the
// problems.
var errConfigInvalid = errors.New("the config has errors")

// runCheckConfig prints every problem of FILE as
// FILE:LINE:COL: severity: message (entry #i "name") and a summary line.
// It fails when there is an error; warnings alone pass.
func runCheckConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: printbridge check-config FILE")
		fmt.Fprintln(stderr, "Checks an OctoPrint config.yaml as the worker loads it, and warns about system hook programs that this host cannot run and G-code hook lines that the edge's default command policy rejects.")
		fmt.Fprintln(stderr, "Exit status: 0 without errors (warnings allowed), 1 when the file has an error or cannot be read, 2 for a usage error.")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}

	file := fs.Arg(0)
	cfg, problems, err := hooks.LoadConfig(file)
	if err != nil {
		return err
	}
	problems = append(problems, hooks.CheckPrograms(cfg)...)
	problems = append(problems, hooks.CheckGcodePolicy(cfg, policy.Default())...)
	sort.SliceStable(problems, func(i, j int) bool {
		if problems[i].Line != problems[j].Line {
			return problems[i].Line < problems[j].Line
		}
		return problems[i].Column < problems[j].Column
	})

	var errorCount, warningCount int
	for _, p := range problems {
		fmt.Fprintln(stdout, p.String())
		if p.Severity == hooks.SeverityError {
			errorCount++
		} else {
			warningCount++
		}
	}
	fmt.Fprintf(stdout, "%s: %s loaded, %s, %s\n", file, count(len(cfg.Subscriptions), "hook"),
		count(errorCount, "error"), count(warningCount, "warning"))
	if errorCount > 0 {
		return fmt.Errorf("%s: %w (%s, listed above); %s", file, errConfigInvalid, count(errorCount, "error"), workerVerdict(problems))
	}
	return nil
}

// workerVerdict describes what the worker does with a file that has errors,
// which depends on where they are: errors in printbridge: stop it from
// starting, an entry with an error is skipped at start as in OctoPrint,
// and an error in the file's structure or the events: section leaves it
// with no hooks from that part. A SIGHUP reload rejects any of them.
func workerVerdict(problems []hooks.Problem) string {
	if n := settingsErrors(problems); n > 0 {
		return "the worker does not start with this file, because its printbridge: section has " + count(n, "error") +
			", and a SIGHUP reload rejects it; fix them, or give the flags that replace them"
	}
	var entryErrors, otherErrors int
	for _, p := range problems {
		switch {
		case p.Severity != hooks.SeverityError:
		case p.Entry > 0:
			entryErrors++
		default:
			otherErrors++
		}
	}
	const reload = "and a SIGHUP reload rejects the whole file"
	switch {
	case otherErrors > 0 && entryErrors > 0:
		return "the worker starts without the hooks that the errors outside entries keep from loading and skips the entries with errors, " + reload
	case otherErrors > 0:
		return "the worker starts, but without the hooks that these errors keep from loading, " + reload
	default:
		return "the worker starts and skips the entries with errors, as OctoPrint does, " + reload
	}
}

func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
