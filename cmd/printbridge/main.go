// Command printbridge puts a 3D printer on a message bus: the edge speaks
// Marlin on the serial line and publishes OctoPrint's events on MQTT and
// NATS, the worker runs OctoPrint event hooks, and the virtual printer and
// demo run the whole chain without hardware.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/printbridge/printbridge/bridge/edge"
)

// subcommand is one `printbridge <name>` entry point.
type subcommand struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var subcommands = map[string]subcommand{}

func register(name, summary string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	subcommands[name] = subcommand{summary: summary, run: run}
}

// errUsage marks an error that has already printed its usage text.
var errUsage = errors.New("usage error")

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "version" || args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintln(stdout, "printbridge", edge.Version)
		return 0
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := subcommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "printbridge: unknown command %q\n\n", args[0])
		printUsage(stderr)
		return 2
	}
	if args[0] == "edge" || args[0] == "worker" {
		applyMemoryDefaults()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "printbridge %s: %v\n", args[0], err)
		return 1
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: printbridge <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(subcommands))
	for name := range subcommands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-16s %s\n", name, subcommands[name].summary)
	}
	fmt.Fprintf(w, "  %-16s %s\n", "version", "prints the version")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'printbridge <command> -h' for the flags of one command.")
}

// newLogger builds the process logger; format is "text" or "json".
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	if err := checkLogLevel(level); err != nil {
		return nil, err
	}
	var lvl slog.Level
	lvl.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lvl}
	if err := checkLogFormat(format); err != nil {
		return nil, err
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func checkLogLevel(level string) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("invalid log level %q: use debug, info, warn or error", level)
	}
	return nil
}

func checkLogFormat(format string) error {
	switch format {
	case "text", "", "json":
		return nil
	}
	return fmt.Errorf("invalid log format %q: use text or json", format)
}
