package bridge

import (
	"encoding/json"
	"fmt"
	"strings"
)

// ValidatePayload checks a payload against the catalogue entry of event:
// every required key present, no unknown key, and each value of the
// declared type (null only where the field is nullable or optional).
// Dynamic events (GcodeScript..., plugin_...) accept any payload; an
// unknown name is an error.
func ValidatePayload(event string, p Payload) error {
	if IsDynamicEvent(event) {
		return nil
	}
	def, ok := LookupEvent(event)
	if !ok {
		if strings.HasPrefix(event, "plugin_") || strings.HasPrefix(event, "GcodeScript") {
			return fmt.Errorf("invalid custom event name %q: use plugin_<id>_<name> or GcodeScript<Name>Running/Finished with letters, digits and '_' only (at most 128)", event)
		}
		if s := SuggestEvent(event); s != "" {
			return fmt.Errorf("unknown event %q (did you mean %s?)", event, s)
		}
		return fmt.Errorf("unknown event %q; custom events are named plugin_<id>_<name>", event)
	}
	if len(def.Fields) == 0 {
		if len(p) > 0 {
			return fmt.Errorf("%s has no payload in OctoPrint, got keys %s", event, strings.Join(keysOf(p), ", "))
		}
		return nil
	}
	var problems []string
	known := map[string]FieldDef{}
	for _, f := range def.Fields {
		known[f.Name] = f
		v, present := p.Get(f.Name)
		if !present {
			if !f.Optional {
				problems = append(problems, fmt.Sprintf("missing %q", f.Name))
			}
			continue
		}
		if v == nil {
			if !f.Nullable && !f.Optional {
				problems = append(problems, fmt.Sprintf("%q is null", f.Name))
			}
			continue
		}
		if !typeMatches(f.Type, v) {
			problems = append(problems, fmt.Sprintf("%q is %s, want %s", f.Name, describeType(v), f.Type))
		}
	}
	for _, fld := range p {
		if _, ok := known[fld.Key]; !ok {
			problems = append(problems, fmt.Sprintf("unknown key %q", fld.Key))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid %s payload: %s", event, strings.Join(problems, "; "))
	}
	return nil
}

// ValidateEnvelope checks the envelope fields and its payload.
func ValidateEnvelope(env *Envelope) error {
	if env.Schema != SchemaVersion {
		return fmt.Errorf("envelope schema %d, want %d", env.Schema, SchemaVersion)
	}
	if env.ID == "" || env.Seq == 0 || env.Time.IsZero() {
		return fmt.Errorf("envelope of %s lacks id, seq or time", env.Event)
	}
	if err := ValidatePrinterID(env.Printer); err != nil {
		return err
	}
	return ValidatePayload(env.Event, env.Payload)
}

func keysOf(p Payload) []string {
	out := make([]string, len(p))
	for i, f := range p {
		out[i] = f.Key
	}
	return out
}

func typeMatches(t FieldType, v any) bool {
	switch t {
	case TypeAny:
		return true
	case TypeString:
		_, ok := v.(string)
		return ok
	case TypeBool:
		_, ok := v.(bool)
		return ok
	case TypeObject:
		_, ok := v.(Payload)
		return ok
	case TypeArray:
		switch v.(type) {
		case []any, []string:
			return true
		}
		return false
	case TypeInt:
		switch x := v.(type) {
		case int, int64, uint64, int32:
			return true
		case json.Number:
			return !strings.ContainsAny(x.String(), ".eE")
		}
		return false
	case TypeFloat:
		// An integer is a valid number: a tool that writes 2 for 2.0 is
		// not wrong by JSON Schema, and Python placeholders then render
		// what was sent.
		switch v.(type) {
		case float64, float32, int, int64, uint64, int32, json.Number:
			return true
		}
		return false
	}
	return false
}

func describeType(v any) string {
	switch x := v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case Payload:
		return "an object"
	case []any, []string:
		return "an array"
	case int, int64, uint64, int32:
		return "an integer"
	case float64, float32:
		return "a float"
	case json.Number:
		if strings.ContainsAny(x.String(), ".eE") {
			return "a float"
		}
		return "an integer"
	}
	return fmt.Sprintf("%T", v)
}

// isTokenName reports whether s has 1 to maxLen bytes, each an ASCII
// letter, a digit, '_' or, when dash is set, '-'. It replaces regular
// expressions such as ^[A-Za-z0-9_]{1,128}$: Go compiles a counted
// repetition into one copy of the class per count, and two of them held
// 57 kB of heap from start-up in every command (a heap profile of the
// package initialisers).
func isTokenName(s string, maxLen int, dash bool) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case c == '-' && dash:
		default:
			return false
		}
	}
	return true
}
