package hooks

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wantProblem is one expected problem: its line, severity and a part of
// its message.
type wantProblem struct {
	line     int
	severity Severity
	entry    int
	contains string
}

func loadTestdata(tb testing.TB, name string) (*Config, []Problem) {
	tb.Helper()
	cfg, problems, err := LoadConfig(filepath.Join("..", "testdata", "config", name))
	if err != nil {
		tb.Fatalf("LoadConfig(%s): %v", name, err)
	}
	return cfg, problems
}

func parseTestConfig(tb testing.TB, text string) (*Config, []Problem) {
	tb.Helper()
	cfg, problems, err := ParseConfig("config.yaml", []byte(text))
	if err != nil {
		tb.Fatalf("ParseConfig: %v", err)
	}
	return cfg, problems
}

// checkProblems requires exactly the wanted problems, in file order.
func checkProblems(tb testing.TB, got []Problem, want []wantProblem) {
	tb.Helper()
	for i := 0; i < len(got) || i < len(want); i++ {
		switch {
		case i >= len(want):
			tb.Errorf("unexpected problem: %s", got[i])
		case i >= len(got):
			tb.Errorf("missing problem at line %d: %s containing %q", want[i].line, want[i].severity, want[i].contains)
		default:
			g, w := got[i], want[i]
			if g.Line != w.line || g.Severity != w.severity || g.Entry != w.entry || !strings.Contains(g.Message, w.contains) {
				tb.Errorf("problem %d = %s\nwant line %d, %s, entry #%d, containing %q", i, g, w.line, w.severity, w.entry, w.contains)
			}
		}
	}
}

func TestLoadAlveoEventLists(t *testing.T) {
	cfg, problems := loadTestdata(t, "octoprint-config_alveo3d-fan_event-lists_4space.yaml")
	checkProblems(t, problems, []wantProblem{
		{4, SeverityWarning, 1, "shell is not set"},
		{9, SeverityWarning, 2, "shell is not set"},
		{14, SeverityWarning, 3, "shell is not set"},
	})
	if len(cfg.Subscriptions) != 3 {
		t.Fatalf("loaded %d subscriptions, want 3", len(cfg.Subscriptions))
	}
	for _, ev := range []string{"PrintFailed", "PrintDone", "PrintCancelled", "Disconnected"} {
		subs := cfg.Match(ev)
		if len(subs) != 1 || subs[0].Entry != 3 {
			t.Errorf("Match(%s) = %d subscriptions, want entry #3", ev, len(subs))
		}
	}
	args := cfg.Subscriptions[2].Commands[0].Args
	if strings.Join(args, "|") != "/home/pi/send_fan.sh|stop" {
		t.Errorf("argv of entry #3 = %q", args)
	}
	if cfg.Subscriptions[0].Shell || cfg.Subscriptions[0].ShellSet {
		t.Errorf("entry #1 without shell key loaded with Shell=%v ShellSet=%v", cfg.Subscriptions[0].Shell, cfg.Subscriptions[0].ShellSet)
	}
}

func TestLoadBox3dShellChains(t *testing.T) {
	cfg, problems := loadTestdata(t, "octoprint-config_box3d-industrial-3b_io-led-hooks.yaml")
	var want []wantProblem
	for i, line := range []int{12, 16, 20, 24, 28, 32, 35} {
		want = append(want, wantProblem{line, SeverityWarning, i + 1, "shell is not set"})
		want = append(want, wantProblem{line, SeverityWarning, i + 1, `shell syntax ";"`})
	}
	checkProblems(t, problems, want)
	if len(cfg.Subscriptions) != 7 {
		t.Fatalf("loaded %d subscriptions, want 7", len(cfg.Subscriptions))
	}
	// The YAML dumper wrapped the long command onto a second line, which
	// YAML folds back with one space.
	want1 := "killall blink; ~/.octoprint/scripts/IO_off 2 3 12; ~/.octoprint/scripts/IO_on 2 3 12"
	if got := cfg.Subscriptions[0].Commands[0].Template; got != want1 {
		t.Errorf("entry #1 command = %q, want %q", got, want1)
	}
}

func TestLoadYota9MixedTypes(t *testing.T) {
	cfg, problems := loadTestdata(t, "octoprint-config_yota9_system-and-gcode-hooks.yaml")
	checkProblems(t, problems, []wantProblem{
		{8, SeverityWarning, 1, "shell is not set"},
		{9, SeverityWarning, 1, `shell syntax "~"`},
		{11, SeverityWarning, 2, "shell is not set"},
		{12, SeverityWarning, 2, `shell syntax "~"`},
		{26, SeverityWarning, 6, "shell is not set"},
		{29, SeverityWarning, 7, "shell is not set"},
	})
	if n := len(cfg.Match("PrintStarted")); n != 2 {
		t.Errorf("Match(PrintStarted) = %d subscriptions, want 2", n)
	}
	paused := cfg.Match("PrintPaused")
	if len(paused) != 1 || paused[0].Type != TypeGcode || paused[0].Commands[0].Template != "G28" {
		t.Errorf("PrintPaused hook = %+v, want one gcode hook sending G28", paused)
	}
	args := cfg.Subscriptions[0].Commands[0].Args
	if len(args) < 6 || args[5] != "./input_uvc.so" {
		t.Errorf("argv of entry #1 = %q, want the quoted \"./input_uvc.so\" as one argument", args)
	}
}

func TestLoadOctoPrintDocsExample(t *testing.T) {
	cfg, problems := loadTestdata(t, "octoprint-docs_events-example_v1.11.3_shell-name.yaml")
	checkProblems(t, problems, []wantProblem{
		{11, SeverityWarning, 2, "placeholder {file} is not in the payload of PrintStarted"},
		{16, SeverityWarning, 3, "placeholder {file} is not in the payload of PrintDone"},
		// printbridge refuses the docs' own example entry #4: its quotes
		// around {__eventname} and {name} would let a file name run shell
		// code under shell: true.
		{25, SeverityError, 4, "placeholder {__eventname} in command #1 is inside shell quotes"},
	})
	if len(cfg.Subscriptions) != 3 {
		t.Fatalf("loaded %d subscriptions, want 3 (entry #1 is disabled, entry #4 refused)", len(cfg.Subscriptions))
	}
	if n := len(cfg.Match("Disconnected")); n != 0 {
		t.Errorf("Match(Disconnected) = %d subscriptions, want 0 for the disabled entry", n)
	}
	if n := len(cfg.Match("PrintFailed")); n != 0 {
		t.Errorf("Match(PrintFailed) = %d subscriptions, want 0: the refused entry #4 was the only one", n)
	}
}

func TestLoadPushbulletMissingType(t *testing.T) {
	cfg, problems := loadTestdata(t, "readme-snippet_pushbullet_last-hook-missing-type.yaml")
	checkProblems(t, problems, []wantProblem{
		{4, SeverityWarning, 1, "shell is not set"},
		{5, SeverityWarning, 1, "placeholder {file} is not in the payload of PrintDone"},
		{5, SeverityWarning, 1, `shell syntax "~"`},
		{7, SeverityWarning, 2, "shell is not set"},
		{8, SeverityWarning, 2, "placeholder {file} is not in the payload of PrintFailed"},
		{8, SeverityWarning, 2, `shell syntax "~"`},
		{10, SeverityWarning, 3, "shell is not set"},
		{11, SeverityWarning, 3, `shell syntax "~"`},
		{13, SeverityError, 4, "missing type"},
	})
	if len(cfg.Subscriptions) != 3 {
		t.Errorf("loaded %d subscriptions, want 3", len(cfg.Subscriptions))
	}
	if n := len(cfg.Match("CaptureDone")); n != 0 {
		t.Errorf("the entry without type was loaded for CaptureDone")
	}
	if !HasErrors(problems) {
		t.Errorf("HasErrors = false with a missing type")
	}
	if got := problems[8].String(); got != "../testdata/config/readme-snippet_pushbullet_last-hook-missing-type.yaml:13:5: error: missing type: OctoPrint skips entries without type: system or type: gcode (entry #4)" {
		t.Errorf("String() = %q", got)
	}
}

func TestLoadWebhookTypoEventKey(t *testing.T) {
	cfg, problems := loadTestdata(t, "readme-snippet_webhook_typo-event-key.yaml")
	checkProblems(t, problems, []wantProblem{
		{1, SeverityError, 0, `top-level key "event" is not read by OctoPrint`},
	})
	if !strings.Contains(problems[0].Message, `did you mean "events"?`) {
		t.Errorf("message without suggestion: %s", problems[0].Message)
	}
	if len(cfg.Subscriptions) != 0 || cfg.EventsEnabled {
		t.Errorf("loaded %d subscriptions with events enabled %v, want none", len(cfg.Subscriptions), cfg.EventsEnabled)
	}
}

func TestLoadEnabledTruthiness(t *testing.T) {
	cfg, problems := parseTestConfig(t, `events:
  subscriptions:
  - {event: PrintDone, command: "echo 1", type: system, shell: false, enabled: "false"}
  - {event: PrintDone, command: "echo 2", type: system, shell: false, enabled: false}
  - {event: PrintDone, command: "echo 3", type: system, shell: false, enabled: no}
  - {event: PrintDone, command: "echo 4", type: system, shell: false, enabled: 0}
  - {event: PrintDone, command: "echo 5", type: system, shell: false, enabled: ""}
  - {event: PrintDone, command: "echo 6", type: system, shell: false, enabled: "no"}
  - {event: PrintDone, command: "echo 7", type: system, shell: false, enabled: 0.0}
  - {event: PrintDone, command: "echo 8", type: system, shell: false, enabled: null}
  - {event: PrintDone, command: "echo 9", type: system, shell: false, enabled: on}
  - {event: PrintDone, command: "echo 10", type: system, shell: false, enabled: [x]}
`)
	checkProblems(t, problems, []wantProblem{
		{3, SeverityWarning, 1, `enabled is the string "false", which OctoPrint treats as true`},
		{8, SeverityWarning, 6, `enabled is the string "no"`},
	})
	var entries []string
	for _, s := range cfg.Match("PrintDone") {
		entries = append(entries, strconv.Itoa(s.Entry))
	}
	if got := strings.Join(entries, ","); got != "1,6,9,10" {
		t.Errorf("enabled entries = %s, want 1,6,9,10", got)
	}
}

func TestLoadEventsEnabledParser(t *testing.T) {
	cases := []struct {
		value   string
		enabled bool
	}{
		{"true", true}, {"True", true}, {"yes", true}, {`"y"`, true}, {`"1"`, true}, {"1", true}, {"2.5", true},
		{"false", false}, {"no", false}, {"off", false}, {`"on"`, false}, {`"enabled"`, false}, {"0", false}, {"null", false},
	}
	for _, c := range cases {
		cfg, problems := parseTestConfig(t, "events:\n  enabled: "+c.value+"\n  subscriptions:\n  - {event: Home, command: M117 hi, type: gcode}\n")
		if cfg.EventsEnabled != c.enabled {
			t.Errorf("events.enabled: %s read as %v, want %v", c.value, cfg.EventsEnabled, c.enabled)
		}
		if got := len(cfg.Match("Home")); (got == 1) != c.enabled {
			t.Errorf("events.enabled: %s: Match(Home) = %d subscriptions", c.value, got)
		}
		if !c.enabled && (len(problems) != 1 || problems[0].Line != 2) {
			t.Errorf("events.enabled: %s: problems %v, want one warning on line 2", c.value, problems)
		}
	}
}

func TestLoadEventNameChecks(t *testing.T) {
	cfg, problems := parseTestConfig(t, `events:
  subscriptions:
  - event: [Dwell, printdone, GcodeScriptAfterPrintDoneRunning, plugin_octolapse_movie_done, PrintDone, PrintDone, "GcodeScript${ScriptName}Finished"]
    command: M117 hi
    type: gcode
`)
	checkProblems(t, problems, []wantProblem{
		{3, SeverityWarning, 1, `unknown event "Dwell" never fires (names are case-sensitive); did you mean "Dwelling"?`},
		{3, SeverityWarning, 1, `unknown event "printdone" never fires (names are case-sensitive); did you mean "PrintDone"?`},
		{3, SeverityWarning, 1, `event "PrintDone" is listed twice`},
		{3, SeverityWarning, 1, `event "GcodeScript${ScriptName}Finished" is a name template and never fires as written; ` +
			`put the script's or plugin's name in place of the placeholders, such as "GcodeScriptAfterPrintDoneFinished"`},
	})
	if n := len(cfg.Match("PrintDone")); n != 2 {
		t.Errorf("Match(PrintDone) = %d, want 2 for a name listed twice", n)
	}
	for _, ev := range []string{"Dwell", "GcodeScriptAfterPrintDoneRunning", "plugin_octolapse_movie_done"} {
		if n := len(cfg.Match(ev)); n != 1 {
			t.Errorf("Match(%s) = %d, want 1", ev, n)
		}
	}
}

// TestTemplateErrorKeepsPlaceholderWarnings loads a command with unknown
// placeholders before a positional field. check-config reported only the
// positional field, so the user found the unknown names one run later.
func TestTemplateErrorKeepsPlaceholderWarnings(t *testing.T) {
	_, problems := parseTestConfig(t, `events:
  subscriptions:
  - {event: PrintDone, type: system, shell: false, command: "echo {nam} {__foo} {0} {}"}
`)
	checkProblems(t, problems, []wantProblem{
		{3, SeverityError, 1, "positional fields"},
		{3, SeverityWarning, 1, "placeholder {nam} is not in the payload of PrintDone"},
		{3, SeverityWarning, 1, "placeholder {__foo} is not in the payload of PrintDone"},
	})
}

func TestLoadTemplateErrorsSkipEntry(t *testing.T) {
	cfg, problems := parseTestConfig(t, `events:
  subscriptions:
  - {event: PrintDone, type: system, shell: false, command: "notify {}"}
  - {event: PrintDone, type: system, shell: true, command: "notify {time:.1f}"}
  - {event: PrintCancelled, type: system, shell: true, command: "notify {position[x]}"}
  - {event: PrintDone, type: system, shell: true, command: "awk '{print $1}' {name"}
  - {event: PrintDone, type: system, shell: false, command: "notify 'unterminated {name}"}
  - {event: PrintDone, type: gcode, command: ["M117 {name.upper}"]}
  - {event: PrintDone, type: system, shell: false, command: "   "}
  - {event: PrintDone, type: system, shell: false, command: "notify {name} {{literal}}"}
`)
	checkProblems(t, problems, []wantProblem{
		{3, SeverityError, 1, "positional fields"},
		{4, SeverityError, 2, "Unknown format code 'f' for object of type 'str'"},
		{5, SeverityError, 3, "string indices must be integers"},
		{6, SeverityError, 4, "expected '}' before end of string"},
		// Read before the error: OctoPrint takes {print $1} for a
		// placeholder too.
		{6, SeverityWarning, 4, "placeholder {print $1} is not in the payload of PrintDone"},
		{7, SeverityError, 5, "cannot be split into arguments (No closing quotation)"},
		{8, SeverityError, 6, "attribute access .upper is not supported"},
		{9, SeverityError, 7, "is empty"},
	})
	subs := cfg.Match("PrintDone")
	if len(subs) != 1 || subs[0].Entry != 8 {
		t.Fatalf("Match(PrintDone) = %+v, want only entry #8", subs)
	}
	if !strings.Contains(problems[1].Message, "numeric formats such as {time:.1f} fail") {
		t.Errorf("no hint for a numeric format: %s", problems[1].Message)
	}
}

func TestLoadTypeTypo(t *testing.T) {
	_, problems := parseTestConfig(t, `events:
  subscriptions:
  - {event: PrintCancelled, command: gpio write 1 0, type: sytem}
  - {event: PrintCancelled, command: gpio write 1 0, type: System}
  - {command: gpio write 1 0, type: system}
  - {event: PrintDone, type: system}
`)
	checkProblems(t, problems, []wantProblem{
		{3, SeverityError, 1, `type "sytem" is not "system" or "gcode" (exact, lower case), so OctoPrint skips the entry; did you mean "system"?`},
		{4, SeverityError, 2, `did you mean "system"?`},
		{5, SeverityError, 3, "missing event"},
		{6, SeverityError, 4, "missing command"},
	})
}

func TestLoadStructureProblems(t *testing.T) {
	_, problems := parseTestConfig(t, `events:
  subscriptions:
  - just a string
  - event: PrintDone
    command: [echo, 42]
    type: system
    shell: false
    comand: typo
    name: first
    name: second
  - event: Home
    type: gcode
    command: G28
  - event: ZChange
    type: gcode
    command: "G1 Z{new}"
  - event: Connected
    type: gcode
    command: "M115,M117 hi,G28"
    cwd: /tmp
`)
	checkProblems(t, problems, []wantProblem{
		{3, SeverityError, 1, "the entry is a string, not a mapping"},
		{5, SeverityError, 2, "command #2 is an integer, not a string"},
		{8, SeverityWarning, 2, `unknown key "comand" is ignored, as OctoPrint ignores it; did you mean "command"?`},
		{9, SeverityWarning, 2, `key "name" appears again at line 10`},
		{13, SeverityWarning, 3, "G-code command #1 fires Home itself"},
		{16, SeverityWarning, 4, "G-code command #1 fires ZChange itself"},
		{19, SeverityWarning, 5, "contains commas; it is sent as one line"},
		{20, SeverityWarning, 5, "cwd has no effect on gcode hooks"},
	})
	if problems[3].Name != "second" {
		t.Errorf("entry name = %q, want the last value, second", problems[3].Name)
	}
}

func TestLoadSettingsSection(t *testing.T) {
	cfg, problems := parseTestConfig(t, `printbridge:
  nats: nats://127.0.0.1:4222
  mqtt: tcp://127.0.0.1:1883
  printers: [mk3s-1, ender]
  group: workers
  hook_timeout: 90s
  max_concurrent_hooks: 2
  base_topic: shop
  log_format: json
  log_level: debug
events:
  subscriptions: []
`)
	checkProblems(t, problems, nil)
	s := cfg.Settings
	if s.NATS != "nats://127.0.0.1:4222" || s.MQTT != "tcp://127.0.0.1:1883" || s.Group != "workers" || s.BaseTopic != "shop" {
		t.Errorf("settings = %+v", s)
	}
	if strings.Join(s.Printers, ",") != "mk3s-1,ender" {
		t.Errorf("printers = %q", s.Printers)
	}
	if s.HookTimeout != 90*time.Second || s.MaxConcurrentHooks != 2 || s.LogFormat != "json" || s.LogLevel != "debug" {
		t.Errorf("settings = %+v", s)
	}

	cfg, problems = parseTestConfig(t, `printbridge:
  hook_timeout: 2.5
  printers: "a, b"
  max_concurrent_hooks: 0
  log_level: verbose
  printer: x
  base_topic:
events: {subscriptions: []}
`)
	checkProblems(t, problems, []wantProblem{
		{4, SeverityError, 0, "invalid printbridge.max_concurrent_hooks"},
		{5, SeverityError, 0, `"verbose" is not one of debug, info, warn, error`},
		{6, SeverityError, 0, "unknown key printbridge.printer; did you mean printbridge.printers?"},
	})
	if cfg.Settings.HookTimeout != 2500*time.Millisecond || strings.Join(cfg.Settings.Printers, ",") != "a,b" {
		t.Errorf("settings = %+v", cfg.Settings)
	}
	if cfg.Settings.MaxConcurrentHooks != DefaultMaxConcurrentHooks || cfg.Settings.BaseTopic != "printbridge" {
		t.Errorf("invalid values did not keep the defaults: %+v", cfg.Settings)
	}
	if problems[0].Key != "printbridge.max_concurrent_hooks" {
		t.Errorf("Key = %q", problems[0].Key)
	}
}

func TestLoadDefaultsAndEmpty(t *testing.T) {
	cfg, problems := parseTestConfig(t, "")
	checkProblems(t, problems, []wantProblem{{1, SeverityWarning, 0, "the file is empty"}})
	if cfg.Settings.HookTimeout != 60*time.Second || cfg.Settings.MaxConcurrentHooks != 4 {
		t.Errorf("defaults = %+v", cfg.Settings)
	}
	_, problems = parseTestConfig(t, "events:\n  subscriptions:\n")
	checkProblems(t, problems, []wantProblem{{2, SeverityWarning, 0, "events.subscriptions is null"}})
	if _, _, err := ParseConfig("bad.yaml", []byte("events: [\n")); err == nil {
		t.Errorf("ParseConfig accepted invalid YAML")
	}
}

func TestLoadMergeKeysAndAliases(t *testing.T) {
	cfg, problems := parseTestConfig(t, `base: &base
  type: system
  shell: false
  enabled: true
events:
  subscriptions:
  - <<: *base
    event: PrintDone
    command: echo done
  - <<: *base
    event: PrintStarted
    command: echo started
    enabled: false
`)
	checkProblems(t, problems, nil)
	if len(cfg.Match("PrintDone")) != 1 || len(cfg.Match("PrintStarted")) != 0 {
		t.Errorf("merge keys: PrintDone %d, PrintStarted %d subscriptions", len(cfg.Match("PrintDone")), len(cfg.Match("PrintStarted")))
	}
}

func TestOwnerPlaceholderNeverSet(t *testing.T) {
	_, problems := parseTestConfig(t, "events:\n  enabled: true\n  subscriptions:\n  - event: PrintStarted\n    type: system\n    shell: false\n    command: /bin/echo owner={owner} user={user}\n")
	checkProblems(t, problems, []wantProblem{
		{7, SeverityWarning, 1, "placeholder {owner} is never set by printbridge"},
		{7, SeverityWarning, 1, "placeholder {user} is never set by printbridge"},
	})
}

func TestLoadWarnsNonStringName(t *testing.T) {
	_, problems := parseTestConfig(t, `events:
  subscriptions:
  - name: [1, 2]
    event: PrintDone
    type: system
    shell: false
    command: "true"
  - name: 42
    event: PrintDone
    type: system
    shell: false
    command: "true"
  - name: "42"
    event: PrintDone
    type: system
    shell: false
    command: "true"
`)
	checkProblems(t, problems, []wantProblem{
		{3, SeverityWarning, 1, `name is a list, not a string, so the hook is named "#1 <event>"`},
		{8, SeverityWarning, 2, `name is an integer, not a string, so its text "42" is used`},
	})
}

func TestYAMLErrorNamesMistakeLine(t *testing.T) {
	for _, c := range []struct {
		name, text, want string
	}{
		{"indentation", "events:\n  subscriptions:\n  - name: a\n    event: PrintDone\n    type: system\n   command: \"true\"\n    shell: false\n",
			"bad.yaml:6: invalid YAML: did not find expected key (in the block that starts at line 1)"},
		{"after multi-line flow", "events:\n  subscriptions:\n  - event: [PrintDone,\n      PrintStarted]\n    type: system\n   shell: false\n",
			"bad.yaml:6: invalid YAML"},
		{"tab", "events:\n  subscriptions:\n  - event: PrintDone\n\ttype: system\n",
			"bad.yaml:4: invalid YAML: found a tab character"},
		{"unclosed flow", "events:\n  subscriptions:\n  - event: [PrintDone\n",
			"bad.yaml:3: invalid YAML"},
	} {
		_, _, err := ParseConfig("bad.yaml", []byte(c.text))
		if err == nil {
			t.Errorf("%s: ParseConfig accepted invalid YAML", c.name)
			continue
		}
		if !errors.Is(err, ErrInvalidYAML) {
			t.Errorf("%s: error %v is not ErrInvalidYAML", c.name, err)
		}
		if !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: error = %q, want it to start with %q", c.name, err, c.want)
		}
	}
}

func TestConfigCountsSkippedEntries(t *testing.T) {
	for _, c := range []struct {
		name, text string
		want       int
	}{
		{"entry errors", `events:
  subscriptions:
  - {name: good, event: PrintDone, type: system, command: "true"}
  - {name: no type, event: PrintDone, command: "true"}
  - just a string
  - {name: two errors, event: {a: 1}, type: shell}
`, 3},
		{"disabled entry", `events:
  subscriptions:
  - {name: off, event: PrintDone, type: system, command: "true", enabled: false}
`, 0},
		{"subscriptions not a list", "events:\n  subscriptions: {event: PrintDone}\n", 0},
	} {
		cfg, _, err := ParseConfig("c.yaml", []byte(c.text))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if cfg.SkippedEntries != c.want {
			t.Errorf("%s: SkippedEntries = %d, want %d", c.name, cfg.SkippedEntries, c.want)
		}
	}
}

func TestConfigUnknownSettingIsError(t *testing.T) {
	cfg, problems := parseTestConfig(t, `printbridge:
  hook_timout: 30s
  colour: blue
events: {subscriptions: []}
`)
	checkProblems(t, problems, []wantProblem{
		{2, SeverityError, 0, "unknown key printbridge.hook_timout; did you mean printbridge.hook_timeout?"},
		{3, SeverityError, 0, "unknown key printbridge.colour; valid keys are mqtt, nats, printers, group, hook_timeout,"},
	})
	if cfg.Settings.HookTimeout != DefaultHookTimeout {
		t.Errorf("hook_timeout = %v, want the default %v", cfg.Settings.HookTimeout, DefaultHookTimeout)
	}
	if cfg.Errors != 2 {
		t.Errorf("Errors = %d, want 2", cfg.Errors)
	}
}

func TestConfigCountsErrors(t *testing.T) {
	for _, c := range []struct {
		name, text string
		want       int
	}{
		{"good", "events:\n  subscriptions:\n  - {event: PrintDone, type: system, command: \"true\"}\n", 0},
		{"misspelled subscriptions", "events:\n  subscription:\n  - {event: PrintDone, type: system, command: \"true\"}\n", 1},
		{"misspelled enabled", "events:\n  enabeld: true\n  subscriptions: []\n", 1},
		{"entry without type", "events:\n  subscriptions:\n  - {event: PrintDone, command: \"true\"}\n", 1},
		{"misspelled events", "evnets:\n  subscriptions: []\n", 1},
	} {
		cfg, problems := parseTestConfig(t, c.text)
		if cfg.Errors != c.want {
			t.Errorf("%s: Errors = %d, want %d (problems %v)", c.name, cfg.Errors, c.want, problems)
		}
		if got := CountErrors(problems); got != cfg.Errors {
			t.Errorf("%s: CountErrors = %d, want Errors %d", c.name, got, cfg.Errors)
		}
	}
}

func TestConfigMisspelledSettingsSectionIsError(t *testing.T) {
	for _, name := range []string{"printbrige", "Printbridge", "print_bridge"} {
		_, problems := parseTestConfig(t, name+`:
  hook_timeout: 30s
events: {subscriptions: []}
`)
		checkProblems(t, problems, []wantProblem{
			{1, SeverityError, 0, `top-level key "` + name + `" is not the worker's printbridge: section, so its settings are not read; did you mean "printbridge"?`},
		})
	}
	_, problems := parseTestConfig(t, `serial:
  port: /dev/ttyACM0
plugins: {}
events: {subscriptions: []}
`)
	checkProblems(t, problems, nil)
}
