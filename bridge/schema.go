package bridge

import (
	"encoding/json"
	"fmt"
	"strings"
)

// JSONSchema returns a JSON Schema (draft 2020-12) for the event
// envelope, with one payload schema per catalogue event under
// $defs/payloads, selected by the envelope's event name.
func JSONSchema() ([]byte, error) {
	payloads := map[string]any{}
	var rules []any
	for _, d := range catalogue {
		payloads[d.Name] = payloadSchema(d)
		rules = append(rules, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"event": map[string]any{"const": d.Name}}},
			"then": map[string]any{"properties": map[string]any{"payload": map[string]any{"$ref": "#/$defs/payloads/" + d.Name}}},
		})
	}
	schema := map[string]any{
		"$schema":              "https://json-schema.org/draft/2020-12/schema",
		"$id":                  "https://printbridge.invalid/schema/envelope-v1.json",
		"title":                "printbridge event envelope",
		"description":          "One OctoPrint event as published by printbridge on printbridge/<printer>/event/<EventName>.",
		"type":                 "object",
		"required":             []string{"schema", "id", "seq", "printer", "event", "time", "payload", "context"},
		"additionalProperties": false,
		"properties": map[string]any{
			"schema":  map[string]any{"const": SchemaVersion},
			"id":      map[string]any{"type": "string", "description": "UUIDv7, unique per event, kept on redelivery"},
			"seq":     map[string]any{"type": "integer", "minimum": 1, "description": "per-printer sequence, strictly increasing across restarts"},
			"printer": map[string]any{"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
			"event":   map[string]any{"type": "string", "description": "OctoPrint event name, or GcodeScript<Name>Running/Finished, or plugin_<id>_<name>"},
			"time":    map[string]any{"type": "string", "format": "date-time"},
			"payload": map[string]any{"type": []string{"object", "null"}},
			"context": map[string]any{
				"type": "object",
				"properties": map[string]any{
					"currentZ": map[string]any{"type": []string{"number", "null"}},
					"progress": map[string]any{"type": []string{"number", "null"}, "minimum": 0, "maximum": 100},
					"file": map[string]any{"type": []string{"object", "null"}, "properties": map[string]any{
						"name": map[string]any{"type": "string"}, "path": map[string]any{"type": "string"},
						"origin": map[string]any{"enum": []string{"local", "sdcard"}}}},
					"state": map[string]any{"type": "string"},
				},
			},
		},
		"allOf": rules,
		"$defs": map[string]any{"payloads": payloads},
	}
	return json.MarshalIndent(schema, "", "  ")
}

func payloadSchema(d EventDef) map[string]any {
	if len(d.Fields) == 0 {
		return map[string]any{"type": "null", "description": d.Doc}
	}
	props := map[string]any{}
	var required []string
	for _, f := range d.Fields {
		p := map[string]any{}
		if f.Type != TypeAny {
			types := []string{string(f.Type)}
			if f.Nullable {
				types = append(types, "null")
			}
			if len(types) == 1 {
				p["type"] = types[0]
			} else {
				p["type"] = types
			}
		}
		if f.Doc != "" {
			p["description"] = f.Doc
		}
		props[f.Name] = p
		if !f.Optional {
			required = append(required, f.Name)
		}
	}
	out := map[string]any{"type": "object", "description": d.Doc, "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		out["required"] = required
	}
	return out
}

// EventsMarkdown renders the catalogue as the docs/events.md reference.
func EventsMarkdown() string {
	var b strings.Builder
	b.WriteString("# Event reference\n\n")
	b.WriteString("Generated from the event catalogue by `printbridge events --markdown`; do not edit by hand.\n\n")
	b.WriteString("Every event uses OctoPrint's name and payload keys. \"Fired by\" says which activity fires it in\n")
	b.WriteString("printbridge, or which subsystem printbridge does not have yet (those events can still be\n")
	b.WriteString("published with `printbridge publish`, and hooks on them load, with a warning that says so).\n")
	b.WriteString("OctoPrint's documentation lists `Dwell`; the event that fires is `Dwelling`, and a hook on\n")
	b.WriteString("`Dwell` gets a warning that suggests it.\n\n")
	b.WriteString("The print GCODE scripts (beforePrintStarted, afterPrintPaused, beforePrintResumed, afterPrintDone,\n")
	b.WriteString("afterPrintCancelled) fire `GcodeScript${ScriptName}Running` before and `GcodeScript${ScriptName}Finished`\n")
	b.WriteString("after their lines are queued, with the print job payload, also when the script file does not exist, as in\n")
	b.WriteString("OctoPrint. `${ScriptName}` is the script's name with its first letter upper-cased, as in\n")
	b.WriteString("`GcodeScriptBeforePrintStartedRunning`.\n")
	b.WriteString("The connection and tool change scripts fire nothing. See [GCODE scripts](scripts.md) for the scripts,\n")
	b.WriteString("the printer profile and the blocked and ignored commands.\n\n")
	group := ""
	for _, d := range ListedEvents() {
		if d.Group != group {
			group = d.Group
			fmt.Fprintf(&b, "## %s\n\n", strings.ToUpper(group[:1])+group[1:])
		}
		fmt.Fprintf(&b, "### %s\n\n%s\n\nFired by: %s.\n\n", headingName(d.Name), d.Doc, d.FiredBy)
		if d.PayloadNote != "" {
			fmt.Fprintf(&b, "Payload: %s.\n\n", d.PayloadNote)
		}
		if len(d.Fields) == 0 {
			if d.PayloadNote == "" {
				b.WriteString("Payload: none (`null`).\n\n")
			}
			continue
		}
		b.WriteString("| key | type | notes |\n|---|---|---|\n")
		for _, f := range d.Fields {
			var notes []string
			if f.Optional {
				notes = append(notes, "optional")
			}
			if f.Nullable {
				notes = append(notes, "may be null")
			}
			if f.Doc != "" {
				notes = append(notes, f.Doc)
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", f.Name, f.Type, strings.Join(notes, "; "))
		}
		b.WriteString("\n")
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// headingName returns an event name for a Markdown heading. A templated
// name goes in backticks, because Markdown renderers take <id> for an
// HTML tag and drop it.
func headingName(name string) string {
	if isTokenName(name, len(name), false) {
		return name
	}
	return "`" + name + "`"
}
