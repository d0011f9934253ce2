package printer_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/printbridge/printbridge/printer"
)

var templateVars = map[string]bool{"pause_position": true, "event": true, "tool": true, "last_temperature": true}

func TestTemplateRendersSubset(t *testing.T) {
	ctx := map[string]any{
		"pause_position":   map[string]any{"x": 10.0, "y": 2.5, "z": nil, "e": 1e-05, "t": 0, "f": 1500.0},
		"event":            map[string]any{"name": "benchy.gcode", "time": 12.6},
		"tool":             map[string]any{"old": 0, "new": 1},
		"last_temperature": map[string]any{"0": map[string]any{"actual": 210.0, "target": 215.0}, "b": map[string]any{"actual": 60.0, "target": nil}},
	}
	cases := []struct{ name, src, want string }{
		{"plain text", "G28\nG1 Z5\n", "G28\nG1 Z5\n"},
		{"python floats", "G1 X{{ pause_position.x }} Y{{ pause_position.y }} E{{ pause_position.e }}", "G1 X10.0 Y2.5 E1e-05"},
		{"none", "{{ pause_position.z }}", "None"},
		{"index forms", "{{ last_temperature[0].target }} {{ last_temperature['b'].actual }}", "215.0 60.0"},
		{"if is not none", "{% if pause_position.z is not none %}G1 Z{{ pause_position.z }}{% else %}; no z{% endif %}", "; no z"},
		{"elif", "{% if tool.new == 0 %}A{% elif tool.new == 1 %}B{% else %}C{% endif %}", "B"},
		{"and or not", "{% if not pause_position.z and (tool.old < tool.new or false) %}yes{% endif %}", "yes"},
		{"nested if", "{% if tool.new %}{% if tool.old %}x{% else %}y{% endif %}{% endif %}", "y"},
		{"comment", "M117 a{# ignored #}b", "M117 ab"},
		{"whitespace control", "G1\n  {%- if true -%}\n  X1\n{%- endif %}", "G1X1"},
		{"default filter", "{{ event.missing | default('none given') }}", "none given"},
		{"is defined", "{% if event.user is defined %}u{% else %}anonymous{% endif %}", "anonymous"},
		{"int and round", "{{ event.time | round(0) | int }} {{ event.time | round(1) }}", "13 12.6"},
		{"string compare", "{% if event.name == 'benchy.gcode' %}match{% endif %}", "match"},
		{"negative literal", "{% if tool.old > -1 %}ok{% endif %}", "ok"},
		{"bool output", "{{ tool.new == 1 }}", "True"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmpl, err := printer.ParseTemplate("afterPrintPaused", c.src, templateVars)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tmpl.Render(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("rendered %q, want %q", got, c.want)
			}
		})
	}
}

func TestTemplateRejectsUnsupportedSyntax(t *testing.T) {
	cases := []struct {
		name, src string
		line      int
		mention   string
	}{
		{"for loop", "G28\n{% for i in range(3) %}G1{% endfor %}", 2, "unsupported tag {% for %}"},
		{"set", "{% set x = 1 %}", 1, "unsupported tag {% set %}"},
		{"unknown variable", "G28\n\nM106 S{{ last_fanspeed }}", 3, `unknown variable "last_fanspeed"`},
		{"unknown filter", "{{ event.name | upper }}", 1, `unsupported filter "upper"`},
		{"arithmetic", "G1 Z{{ tool.new + 5 }}", 1, "unsupported"},
		{"unclosed output", "G1 X{{ tool.new", 1, "not closed"},
		{"missing endif", "{% if tool.new %}\nT1\n", 1, "not closed with {% endif %}"},
		{"stray endif", "G28\n{% endif %}", 2, "without a matching"},
		{"method call", "{{ event.name.upper() }}", 1, "method calls"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := printer.ParseTemplate("/scripts/afterPrintDone", c.src, templateVars)
			var terr *printer.TemplateError
			if !errors.As(err, &terr) {
				t.Fatalf("error %v is not a TemplateError", err)
			}
			if terr.Line != c.line {
				t.Errorf("line %d, want %d (%v)", terr.Line, c.line, err)
			}
			if !strings.Contains(err.Error(), "/scripts/afterPrintDone") {
				t.Errorf("error %q does not name the file", err)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %q does not mention %q", err, c.mention)
			}
		})
	}
}

func TestTemplateUndefinedOutputFails(t *testing.T) {
	tmpl, err := printer.ParseTemplate("beforePrintStarted", "M117 one\nG1 X{{ pause_position.x }}", templateVars)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tmpl.Render(map[string]any{})
	if err == nil || !strings.Contains(err.Error(), "pause_position.x is undefined") || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("error %v, want pause_position.x undefined on line 2", err)
	}
}

func TestProfileParse(t *testing.T) {
	p, err := printer.ParseProfile([]byte("id: mk3s\nheatedChamber: true\nextruder:\n  count: 2\nvolume:\n  width: 250\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Extruder.Count != 2 || !p.HeatedChamber || !p.HeatedBed || p.Volume.Width != 250 || p.Volume.Depth != 200 {
		t.Errorf("profile %+v does not keep the defaults of keys left out", p)
	}
	for src, mention := range map[string]string{
		"extruder:\n  count: 0\n":  "extruder.count 0",
		"heatedbed: false\n":       "heatedbed",
		"volume:\n  origin: top\n": "volume.origin",
		"id: ''\n":                 "id",
	} {
		if _, err := printer.ParseProfile([]byte(src)); err == nil || !strings.Contains(err.Error(), mention) {
			t.Errorf("profile %q: error %v, want one naming %s", src, err, mention)
		}
	}
}

func TestProfileTypeErrorsOneLine(t *testing.T) {
	_, err := printer.ParseProfile([]byte("id: x\nvolume:\n  width: wide\nheatedBed: sometimes\nnozzle: 0.4\n"))
	if err == nil {
		t.Fatal("a profile with wrong types was accepted")
	}
	msg := err.Error()
	for _, want := range []string{"line 3: cannot read text `wide` as a number", "line 4: cannot read text `sometimes` as true or false", `line 5: unknown key "nozzle"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") || strings.Contains(msg, "printer.Profile") || strings.Contains(msg, "float64") {
		t.Errorf("error %q spans lines or names Go types", msg)
	}
}

func TestParseCommandList(t *testing.T) {
	got, err := printer.ParseCommandList("m0, M1 G28.1,T")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "M0 M1 G28.1 T" {
		t.Errorf("parsed %q", got)
	}
	for _, bad := range []string{"M112", "X1", "M0;"} {
		if _, err := printer.ParseCommandList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got, err := printer.ParseCommandList(""); err != nil || got == nil || len(got) != 0 {
		t.Errorf("empty list = %q, %v; want an empty, non-nil list", got, err)
	}
}
