package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkCase is one line through Check: rule "" means the line passes.
type checkCase struct {
	line     string
	printing bool
	force    bool
	rule     string
	entry    string
}

func runCheckCases(t *testing.T, p *Policy, cases []checkCase) {
	t.Helper()
	for _, c := range cases {
		err := p.Check(c.line, c.printing, c.force)
		if c.rule == "" {
			if err != nil {
				t.Errorf("Check(%q, printing=%v, force=%v) = %v, want nil", c.line, c.printing, c.force, err)
			}
			continue
		}
		var pe *PolicyError
		if !errors.As(err, &pe) {
			t.Errorf("Check(%q, printing=%v, force=%v) = %v, want *PolicyError with rule %s", c.line, c.printing, c.force, err, c.rule)
			continue
		}
		if pe.Rule != c.rule {
			t.Errorf("Check(%q, printing=%v, force=%v) rule = %s, want %s (%v)", c.line, c.printing, c.force, pe.Rule, c.rule, err)
		}
		if c.entry != "" && pe.Entry != c.entry {
			t.Errorf("Check(%q) entry = %q, want %q", c.line, pe.Entry, c.entry)
		}
		if !strings.Contains(err.Error(), pe.Rule) {
			t.Errorf("Check(%q) error %q does not name rule %s", c.line, err, pe.Rule)
		}
	}
}

func TestDefaultPolicyLines(t *testing.T) {
	runCheckCases(t, Default(), []checkCase{
		{line: "G28"},
		{line: "M117 Hello world"},
		{line: "G1 X10 Y10 F3000 ; move"},
		{line: ""},
		{line: "   "},
		{line: "; only a comment"},
		{line: "@pause"},
		{line: "M104 S0"},
		{line: "M104 S215", printing: true},
		{line: "M117 \tTab"},

		// OctoPrint's blocked commands, in every spelling Marlin accepts.
		{line: "M0", rule: RuleDeny, entry: "M0"},
		{line: "M1", rule: RuleDeny, entry: "M1"},
		{line: "m0", rule: RuleDeny},
		{line: "M00", rule: RuleDeny},
		{line: "M 0", rule: RuleDeny},
		{line: "  M0 Press the button", rule: RuleDeny},
		{line: "M0.5", rule: RuleDeny},
		{line: "M000000000000000000001", rule: RuleDeny, entry: "M1"},
		{line: "M0 ; comment", force: true, rule: RuleDeny},
		{line: "M10"},
		{line: "M100"},

		// Emergency codes always pass, also while printing.
		{line: "M112", printing: true},
		{line: "m108", printing: true},
		{line: "M410", printing: true},

		// Mid-print rules, and force.
		{line: "M104 S0", printing: true, rule: RuleWhilePrinting, entry: "M104 S<1"},
		{line: "M104 T1 S0", printing: true, rule: RuleWhilePrinting},
		{line: "M104S0", printing: true, rule: RuleWhilePrinting},
		{line: "m104 s0.0", printing: true, rule: RuleWhilePrinting},
		{line: "M104 S 0", printing: true, rule: RuleWhilePrinting},
		{line: "M104 S0.9", printing: true, rule: RuleWhilePrinting},
		{line: "M104 S-10", printing: true, rule: RuleWhilePrinting},
		{line: "M104 S1", printing: true},
		{line: "M104 T0", printing: true},
		{line: "M140 S0", printing: true, rule: RuleWhilePrinting, entry: "M140 S<1"},
		{line: "M190 R0", printing: true, rule: RuleWhilePrinting, entry: "M190 R<1"},
		{line: "G28", printing: true, rule: RuleWhilePrinting, entry: "G28"},
		{line: "G28 X", printing: true, rule: RuleWhilePrinting},
		{line: "g 28", printing: true, rule: RuleWhilePrinting},
		{line: "G29.1", printing: true, rule: RuleWhilePrinting, entry: "G29"},
		{line: "G280", printing: true},
		{line: "M502", printing: true, rule: RuleWhilePrinting},
		{line: "M500", printing: true, rule: RuleWhilePrinting},
		{line: "M84", printing: true, rule: RuleWhilePrinting},
		{line: "M104 S0", printing: true, force: true},
		{line: "G28", printing: true, force: true},
		{line: "G28"},

		// Framing that would confuse the firmware.
		{line: "M117 a\nM112", rule: RuleLineBreak},
		{line: "G28\r", rule: RuleLineBreak},
		{line: "M117 \x00", rule: RuleControl},
		{line: "M117 \x1b[2J", rule: RuleControl},
		{line: "M117 \x7f", rule: RuleControl},
		{line: "M117 ünï", rule: RuleNonASCII},
		{line: "G28 ; ünï", rule: RuleNonASCII},
		{line: "G28*12", rule: RuleChecksum},
		{line: "N10 G28*12", rule: RuleChecksum},
		{line: "G28 * 7 ", rule: RuleChecksum},
		{line: "G28*", rule: RuleChecksum},
		{line: "M117 a*b", rule: RuleAsterisk},
		{line: "M117 a ; star * in a comment"},
		{line: "N10 G28", rule: RuleLineNumber},
		{line: "n 5 G28", rule: RuleLineNumber},
		{line: "N-1 M110", rule: RuleLineNumber},
		{line: "M117 " + strings.Repeat("x", 92), rule: RuleLineLength},
		{line: "M117 " + strings.Repeat("x", 91)},
		{line: "M117 x ; " + strings.Repeat("long comment ", 20)},
	})
}

func TestParseRuleErrors(t *testing.T) {
	for _, text := range []string{"", "X10", "M", "G", "M104S0", "M104 0", "M104 S<", "M104 S<=x", "M104 SS", "@pause"} {
		if _, err := parseRule(text); err == nil {
			t.Errorf("parseRule(%q) = nil error, want an error", text)
		}
	}
	for _, text := range []string{"T", "T0", "G29.1", "M104 S", "M104 S0", "M104 S<1", "M104 S>=280", "M109 R=0", "m104 s0"} {
		if _, err := parseRule(text); err != nil {
			t.Errorf("parseRule(%q) = %v, want nil", text, err)
		}
	}
}

func TestAllowList(t *testing.T) {
	p, err := New(Config{Allow: []string{"G0", "G1", "M117", "T", "M104 S<=250"}})
	if err != nil {
		t.Fatal(err)
	}
	runCheckCases(t, p, []checkCase{
		{line: "G1 X10"},
		{line: "g0 y5"},
		{line: "T1"},
		{line: "t0"},
		{line: "M104 S200"},
		{line: "M104 S300", rule: RuleAllow},
		{line: "M104", rule: RuleAllow},
		{line: "G28", rule: RuleAllow},
		{line: "@pause", rule: RuleAllow},
		{line: "hello", rule: RuleAllow},
		{line: "M0", rule: RuleDeny},
		{line: "M112"},
		{line: "; comment only"},
	})
}

func TestEmergencyCodesCannotBeDenied(t *testing.T) {
	for _, cfg := range []Config{
		{Deny: &[]string{"M112"}},
		{WhilePrinting: &[]string{"m410"}},
	} {
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "emergency") {
			t.Errorf("New(%+v) = %v, want an error about emergency codes", cfg, err)
		}
	}
}

func TestEmptyDenyClearsDefaults(t *testing.T) {
	p, err := New(Config{Deny: &[]string{}, WhilePrinting: &[]string{}})
	if err != nil {
		t.Fatal(err)
	}
	runCheckCases(t, p, []checkCase{{line: "M0"}, {line: "G28", printing: true}})
}

func TestParseFilePerPrinter(t *testing.T) {
	data := []byte(`
defaults:
  deny: [M0, M1, M303]
  max_line_length: 60
printers:
  mk3s-1:
    deny: [M0]
    allow_non_ascii: true
    while_printing: [M104 S<1]
`)
	other, err := ParseFile(data, "other")
	if err != nil {
		t.Fatal(err)
	}
	runCheckCases(t, other, []checkCase{
		{line: "M303 E0 S200", rule: RuleDeny},
		{line: "M117 ünï", rule: RuleNonASCII},
		{line: "G28", printing: true, rule: RuleWhilePrinting},
		{line: "M117 " + strings.Repeat("x", 56), rule: RuleLineLength},
	})
	mk3s, err := ParseFile(data, "mk3s-1")
	if err != nil {
		t.Fatal(err)
	}
	runCheckCases(t, mk3s, []checkCase{
		{line: "M303 E0 S200"},
		{line: "M1"},
		{line: "M0", rule: RuleDeny},
		{line: "M117 ünï"},
		{line: "G28", printing: true},
		{line: "M104 S0", printing: true, rule: RuleWhilePrinting},
		{line: "M117 " + strings.Repeat("x", 56), rule: RuleLineLength},
	})
}

func TestParseFileErrors(t *testing.T) {
	cases := map[string]string{
		"unknown key":      "defaults:\n  denny: [M0]\n",
		"bad entry":        "defaults:\n  deny: [X1]\n",
		"bad printer id":   "printers:\n  a.b:\n    deny: [M0]\n",
		"negative length":  "defaults:\n  max_line_length: -1\n",
		"rate, no burst":   "defaults:\n  rate: {lines_per_second: 5, burst: 0}\n",
		"not a mapping":    "- M0\n",
		"wrong value type": "defaults:\n  deny: M0\n",
	}
	for name, text := range cases {
		if _, err := ParseFile([]byte(text), "p1"); err == nil {
			t.Errorf("%s: ParseFile(%q) = nil error, want an error", name, text)
		}
	}
	if _, err := ParseFile(nil, "p1"); err != nil {
		t.Errorf("empty file: %v, want the defaults", err)
	}
}

func TestLoadFileNamesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("defaults:\n  deny: [Q]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(path, "p1")
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "deny[0]") {
		t.Errorf("LoadFile error = %v, want the path and deny[0]", err)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml"), "p1"); err == nil {
		t.Error("LoadFile of a missing file succeeded")
	}
}

// fakeClock is a time source that tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newClockedPolicy(t *testing.T, cfg Config) (*Policy, *fakeClock) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	p.limiter = newLimiter(p.limiter.perSource, p.limiter.total, clock.now)
	return p, clock
}

func requireRule(t *testing.T, err error, rule string) {
	t.Helper()
	var pe *PolicyError
	if !errors.As(err, &pe) || pe.Rule != rule {
		t.Fatalf("err = %v, want rule %s", err, rule)
	}
}

func TestRateLimitPerSource(t *testing.T) {
	p, clock := newClockedPolicy(t, Config{
		Rate:      &RateConfig{LinesPerSecond: 20, Burst: 100},
		TotalRate: &RateConfig{LinesPerSecond: 0},
	})
	for i := range 100 {
		if err := p.Allow("flow", 1); err != nil {
			t.Fatalf("line %d of the burst: %v", i, err)
		}
	}
	requireRule(t, p.Allow("flow", 1), RuleRate)
	// Another source has its own bucket.
	if err := p.Allow("hook:Connected", 50); err != nil {
		t.Fatalf("second source: %v", err)
	}
	clock.advance(time.Second)
	if err := p.Allow("flow", 20); err != nil {
		t.Fatalf("after one second: %v", err)
	}
	requireRule(t, p.Allow("flow", 1), RuleRate)
	// A rejected request takes nothing.
	clock.advance(500 * time.Millisecond)
	requireRule(t, p.Allow("flow", 11), RuleRate)
	if err := p.Allow("flow", 10); err != nil {
		t.Fatalf("ten lines after half a second: %v", err)
	}
}

func TestRateLimitLargeMessageDebt(t *testing.T) {
	p, clock := newClockedPolicy(t, Config{
		Rate:      &RateConfig{LinesPerSecond: 10, Burst: 20},
		TotalRate: &RateConfig{LinesPerSecond: 0},
	})
	if err := p.Allow("macro", 50); err != nil {
		t.Fatalf("a message larger than the burst with a full bucket: %v", err)
	}
	// 30 lines of debt and 20 of burst take 5s to repay.
	clock.advance(4 * time.Second)
	requireRule(t, p.Allow("macro", 20), RuleRate)
	clock.advance(time.Second)
	if err := p.Allow("macro", 20); err != nil {
		t.Fatalf("after the debt is repaid: %v", err)
	}
}

func TestRateLimitTotalBoundsSources(t *testing.T) {
	p, _ := newClockedPolicy(t, Config{
		Rate:      &RateConfig{LinesPerSecond: 20, Burst: 100},
		TotalRate: &RateConfig{LinesPerSecond: 50, Burst: 250},
	})
	// A sender that invents a source per message still hits the total.
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		err = p.Allow("source-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), 10)
	}
	requireRule(t, err, RuleTotalRate)
}

func TestRateLimitSourcesBounded(t *testing.T) {
	p, clock := newClockedPolicy(t, Config{
		Rate:      &RateConfig{LinesPerSecond: 1, Burst: 1},
		TotalRate: &RateConfig{LinesPerSecond: 0},
	})
	for i := range 5 * maxSources {
		_ = p.Allow("s"+time.Duration(i).String(), 1)
		if i%100 == 0 {
			clock.advance(time.Millisecond)
		}
	}
	if n := len(p.limiter.sources); n > maxSources+1 {
		t.Errorf("limiter keeps %d sources, want at most %d", n, maxSources+1)
	}
}

func TestCheckCommand(t *testing.T) {
	p, _ := newClockedPolicy(t, Config{
		Rate:      &RateConfig{LinesPerSecond: 1, Burst: 3},
		TotalRate: &RateConfig{LinesPerSecond: 0},
		MaxLines:  intPtr(5),
	})
	requireRule(t, p.CheckCommand("a", []string{"G1", "G1", "G1", "G1", "G1", "G1"}, false, false), RuleMessageLines)

	err := p.CheckCommand("a", []string{"G28", "M0"}, false, false)
	requireRule(t, err, RuleDeny)
	if !strings.Contains(err.Error(), "commands[1]") {
		t.Errorf("error %q does not name commands[1]", err)
	}
	// The rejected message took no tokens, comments and emergency codes
	// take none.
	if err := p.CheckCommand("a", []string{"G28", "; note", "G1 X1", "M112", "M117 hi"}, false, false); err != nil {
		t.Fatalf("three counted lines with a burst of 3: %v", err)
	}
	requireRule(t, p.CheckCommand("a", []string{"G1"}, false, false), RuleRate)
	if err := p.CheckCommand("a", []string{"M112", "m410"}, false, false); err != nil {
		t.Errorf("emergency lines with an empty bucket: %v", err)
	}
}

func TestCheckMessageSize(t *testing.T) {
	p, err := New(Config{MaxMessageBytes: intPtr(100)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckMessageSize(100); err != nil {
		t.Errorf("100 bytes: %v", err)
	}
	err = p.CheckMessageSize(101)
	requireRule(t, err, RuleMessageBytes)
	if !strings.Contains(err.Error(), `"from"`) {
		t.Errorf("rejection %q does not say how to add a larger file", err)
	}
}

// TestMessageSizeOverCommandLimit loads a max_message_bytes above the
// size that the edge takes at all, which the policy used to accept and
// never apply.
func TestMessageSizeOverCommandLimit(t *testing.T) {
	_, err := ParseFile([]byte("defaults:\n  max_message_bytes: 1048576\n"), "p1")
	if err == nil {
		t.Fatal("max_message_bytes 1048576 loaded without an error")
	}
	for _, want := range []string{"1048576", "65536"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := ParseFile([]byte("defaults:\n  max_message_bytes: 65536\n"), "p1"); err != nil {
		t.Errorf("max_message_bytes 65536: %v", err)
	}
	// The section of another printer of a shared farm file fails too.
	_, err = ParseFile([]byte("printers:\n  other:\n    max_message_bytes: 90000\n"), "p1")
	if err == nil || !strings.Contains(err.Error(), "printer other") {
		t.Errorf("another printer's max_message_bytes 90000: err = %v, want one that names printer other", err)
	}
}

func TestIsEmergency(t *testing.T) {
	for line, want := range map[string]bool{
		"M112": true, " m112 ; stop": true, "M 108": true, "M410": true,
		"M1120": false, "M112.1": false, "G28": false, "": false, "M11": false,
	} {
		if got := IsEmergency(line); got != want {
			t.Errorf("IsEmergency(%q) = %v, want %v", line, got, want)
		}
	}
}

func intPtr(v int) *int { return &v }

func TestPolicyRejectionSaysHowToAllow(t *testing.T) {
	err := Default().Check("M0", false, false)
	if err == nil {
		t.Fatal("the default policy let M0 through")
	}
	for _, want := range []string{`line "M0" rejected by policy rule deny`, "To allow it", "--command-policy", "deny: []"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("M0 rejection %q does not contain %q", err, want)
		}
	}

	allowOnly, err := New(Config{Allow: []string{"M105"}})
	if err != nil {
		t.Fatal(err)
	}
	err = allowOnly.Check("G28", false, false)
	if err == nil {
		t.Fatal("an allow list of M105 let G28 through")
	}
	for _, want := range []string{"not on the policy's allow list", "add it to the allow list of the --command-policy file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("G28 rejection %q does not contain %q", err, want)
		}
	}
}
