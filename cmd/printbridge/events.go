package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/printbridge/printbridge/bridge"
)

func init() {
	register("events", "list every event name with its group and payload keys, OctoPrint's templated names included, or print the JSON Schema (--schema) or reference (--markdown)", runEvents)
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
		for _, d := range bridge.ListedEvents() {
			line := fmt.Sprintf("%-34s %-22s %s", d.Name, d.Group, payloadKeys(d))
			fmt.Fprintln(stdout, strings.TrimRight(line, " "))
		}
	}
	return nil
}

// payloadKeys joins the payload keys of d with commas. A payload that
// Fields does not fully describe ends in "..." when it has keys listed,
// and is "any" otherwise.
func payloadKeys(d bridge.EventDef) string {
	names := make([]string, 0, len(d.Fields)+1)
	for _, f := range d.Fields {
		names = append(names, f.Name)
	}
	switch {
	case d.PayloadNote == "":
	case len(names) == 0:
		return "any"
	default:
		names = append(names, "...")
	}
	return strings.Join(names, ",")
}
