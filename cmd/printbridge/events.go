package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/printbridge/printbridge/bridge"
)

func init() {
	register("events", "list the event catalogue, or print its JSON Schema (--schema) or reference (--markdown)", runEvents)
}

func runEvents(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.Usage = func() { printCommandUsage(fs) }
	schema := fs.Bool("schema", false, "print the JSON Schema of the envelope and of every event's payload")
	markdown := fs.Bool("markdown", false, "print the event reference in Markdown (docs/events.md)")
	if err := parseFlags(fs, args, stderr, false); err != nil {
		return err
	}
	switch {
	case *schema:
		data, err := bridge.JSONSchema()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(data))
	case *markdown:
		fmt.Fprint(stdout, bridge.EventsMarkdown())
	default:
		for _, d := range bridge.Events() {
			keys := ""
			for i, f := range d.Fields {
				if i > 0 {
					keys += ","
				}
				keys += f.Name
			}
			fmt.Fprintf(stdout, "%-28s %-22s %s\n", d.Name, d.Group, keys)
		}
	}
	return nil
}
