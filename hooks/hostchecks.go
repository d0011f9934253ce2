package hooks

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/printbridge/printbridge/bridge/policy"
	"github.com/printbridge/printbridge/printer"
)

// CheckPrograms returns a warning for each system hook without a shell
// whose program this host cannot run: a bare name not found in PATH, or a
// path that does not exist, is a directory or has no execute bit. (The
// loader already warns about a missing cwd.) The worker fails such a hook
// when it runs, but it may run on another host than this check, so these
// are warnings.
//
// Programs that start with a placeholder, and relative paths without an
// absolute cwd, which the worker resolves against its own working
// directory, are not checked. Neither are shell commands, whose program
// the shell looks up.
func CheckPrograms(cfg *Config) []Problem {
	var problems []Problem
	for _, sub := range cfg.Subscriptions {
		if sub.Type != TypeSystem {
			continue
		}
		if sub.Shell {
			continue
		}
		for i, c := range sub.Commands {
			if len(c.Args) == 0 {
				continue
			}
			if reason := programProblem(sub.Cwd, c.Args[0]); reason != "" {
				problems = append(problems, subscriptionProblem(cfg, sub, c.Line, c.Column, "command",
					fmt.Sprintf("command #%d: %s, so the hook fails when it runs on this host; install it, fix the path, or check it on the worker's host if the worker runs elsewhere", i+1, reason)))
			}
		}
	}
	return problems
}

// programProblem returns why program cannot be started with cwd as the
// working directory, or "" when it can be started or this host cannot
// tell.
func programProblem(cwd, program string) string {
	if strings.Contains(program, "{") {
		return ""
	}
	if !strings.Contains(program, "/") {
		// exec.LookPath checks the execute bit of what it finds too, as
		// the worker's start of the hook does.
		if _, err := exec.LookPath(program); err != nil {
			return fmt.Sprintf("program %q is not found in PATH", program)
		}
		return ""
	}
	if !filepath.IsAbs(program) && !filepath.IsAbs(cwd) {
		return ""
	}
	err := checkExecutable(cwd, program)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, os.ErrNotExist):
		return fmt.Sprintf("program %q does not exist", program)
	default:
		return fmt.Sprintf("program %q cannot be run: %v", program, err)
	}
}

// CheckGcodePolicy returns a warning for each line of a G-code hook that
// pol rejects when no job prints, so the edge would reply "rejected"
// every time the hook runs. Lines are checked as written, with their
// placeholders unfilled.
func CheckGcodePolicy(cfg *Config, pol *policy.Policy) []Problem {
	var problems []Problem
	for _, sub := range cfg.Subscriptions {
		if sub.Type != TypeGcode {
			continue
		}
		for i, c := range sub.Commands {
			err := pol.Check(c.Template, false, false)
			if err == nil {
				continue
			}
			problems = append(problems, subscriptionProblem(cfg, sub, c.Line, c.Column, "command",
				fmt.Sprintf("command #%d %q is rejected by the edge's default command policy (%s)%s",
					i+1, c.Template, policyReason(err), policyFix(c.Template, err))))
		}
	}
	return problems
}

func policyReason(err error) string {
	var pe *policy.PolicyError
	if errors.As(err, &pe) {
		return fmt.Sprintf("rule %s: %s", pe.Rule, pe.Reason)
	}
	return err.Error()
}

// policyFix returns how to let line through on the edge, beyond the
// rule's reason. A deny rule's reason already names --command-policy,
// so only the edge's separate block list of M0 and M1 is added.
func policyFix(line string, err error) string {
	var pe *policy.PolicyError
	if !errors.As(err, &pe) || pe.Rule != policy.RuleDeny {
		return "; change the line so the policy accepts it"
	}
	if slices.Contains(printer.DefaultBlockedCommands, printer.CodeOf(printer.NormalizeCommand(line))) {
		return fmt.Sprintf("; the edge also needs a --blocked-commands list without it (the default is %s)", strings.Join(printer.DefaultBlockedCommands, ","))
	}
	return ""
}

func subscriptionProblem(cfg *Config, sub *Subscription, line, column int, key, message string) Problem {
	return Problem{File: cfg.Path, Line: line, Column: column, Severity: SeverityWarning, Message: message,
		Entry: sub.Entry, Name: sub.Name, Key: fmt.Sprintf("events.subscriptions[%d].%s", sub.Entry-1, key)}
}
