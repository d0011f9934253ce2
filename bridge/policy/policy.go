// Package policy decides which G-code lines from the command topics the
// edge may send to the printer. A policy has allow and deny lists by code,
// rules for what may run while a job prints, checks that keep a line from
// confusing the firmware's line protocol, and token-bucket rate limits.
//
// A Policy is built once from a YAML file (Load, Parse) or from Default
// and is safe for concurrent use: Check only reads it, and Allow locks
// the rate limiter.
package policy

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/lazy"
	"github.com/printbridge/printbridge/printer"
)

// Rules name the check that rejected a line or message, in PolicyError.Rule.
const (
	RuleLineBreak     = "line_break"
	RuleControl       = "control_character"
	RuleNonASCII      = "non_ascii"
	RuleChecksum      = "checksum"
	RuleAsterisk      = "asterisk"
	RuleLineNumber    = "line_number"
	RuleLineLength    = "max_line_length"
	RuleDeny          = "deny"
	RuleAllow         = "allow"
	RuleWhilePrinting = "while_printing"
	RuleRate          = "rate"
	RuleTotalRate     = "total_rate"
	RuleMessageBytes  = "max_message_bytes"
	RuleMessageLines  = "max_lines"
)

// PolicyError is a line or message the policy rejects. Rule is one of the
// Rule constants, Entry the list entry that matched (for deny, allow and
// while_printing), and Line the offending line, if any.
type PolicyError struct {
	Rule   string
	Entry  string
	Line   string
	Reason string
}

func (e *PolicyError) Error() string {
	if e.Line == "" {
		return fmt.Sprintf("rejected by policy rule %s: %s", e.Rule, e.Reason)
	}
	return fmt.Sprintf("line %q rejected by policy rule %s: %s", truncate(e.Line, 60), e.Rule, e.Reason)
}

// Emergency codes are never denied and never rate limited, because they
// are how a user stops a printer that misbehaves: OctoPrint's
// emergencyCommands default.
var emergencyCodes = lazy.Map[string, bool]{Build: func() map[string]bool {
	return map[string]bool{"M112": true, "M108": true, "M410": true}
}}

// Policy is the command policy of one printer.
type Policy struct {
	allow          []rule
	deny           []rule
	whilePrinting  []rule
	maxLineLength  int
	maxMessageSize int
	maxLines       int
	allowNonASCII  bool
	limiter        *limiter
}

// Defaults of a Policy, used for every key a policy file leaves out.
const (
	DefaultMaxLineLength   = 96
	DefaultMaxMessageBytes = 64 * 1024
	DefaultMaxLines        = 1000
	DefaultLinesPerSecond  = 20
	DefaultBurst           = 100
	// The printer-wide bucket bounds a sender that makes up a new source
	// name for every message, because the source field is not
	// authenticated.
	DefaultTotalLinesPerSecond = 50
	DefaultTotalBurst          = 250
)

// DefaultDeny blocks the codes of OctoPrint's serial.blockedCommands
// default: M0 and M1 wait for a button press on the printer, which a
// remote sender cannot give.
var DefaultDeny = []string{"M0", "M1"}

// DefaultWhilePrinting are codes rejected while a job prints unless the
// command carries force. They turn heaters off (a target below 1 °C,
// because Marlin 2.x reads S as whole degrees), home or probe (moving the
// head through the part), turn motors off (losing the position), run PID
// autotune, write, load or reset the EEPROM settings, or update firmware.
var DefaultWhilePrinting = []string{
	"M104 S<1", "M109 S<1", "M109 R<1", "M140 S<1", "M190 S<1", "M190 R<1",
	"G28", "G29", "M18", "M84", "M303", "M500", "M501", "M502", "M997",
}

// Config is the YAML form of a policy. Keys left out take the defaults;
// an empty list (deny: []) clears a default list.
type Config struct {
	// Allow, when not empty, is the only codes that may be sent.
	Allow []string `yaml:"allow"`
	// Deny lists codes that are never sent.
	Deny *[]string `yaml:"deny"`
	// WhilePrinting lists codes rejected while a job prints, unless the
	// command carries force: true.
	WhilePrinting *[]string `yaml:"while_printing"`
	// MaxLineLength is the longest line in bytes, comment stripped and
	// before the edge adds line number and checksum.
	MaxLineLength *int `yaml:"max_line_length"`
	// MaxMessageBytes is the largest command message.
	MaxMessageBytes *int `yaml:"max_message_bytes"`
	// MaxLines is the most lines in one command message.
	MaxLines *int `yaml:"max_lines"`
	// AllowNonASCII lets bytes outside printable ASCII through; the edge
	// still sends them as '?', as OctoPrint does.
	AllowNonASCII *bool `yaml:"allow_non_ascii"`
	// Rate limits lines per source; TotalRate limits all sources together.
	Rate      *RateConfig `yaml:"rate"`
	TotalRate *RateConfig `yaml:"total_rate"`
}

// RateConfig is a token bucket: LinesPerSecond refill, Burst capacity.
// LinesPerSecond 0 turns the limit off.
type RateConfig struct {
	LinesPerSecond float64 `yaml:"lines_per_second"`
	Burst          int     `yaml:"burst"`
}

// Default returns the policy of an empty configuration.
func Default() *Policy {
	p, err := New(Config{})
	if err != nil {
		panic(fmt.Sprintf("default policy is invalid: %v", err))
	}
	return p
}

// New builds a policy from cfg, filling in defaults.
func New(cfg Config) (*Policy, error) {
	deny := DefaultDeny
	if cfg.Deny != nil {
		deny = *cfg.Deny
	}
	whilePrinting := DefaultWhilePrinting
	if cfg.WhilePrinting != nil {
		whilePrinting = *cfg.WhilePrinting
	}
	p := &Policy{
		maxLineLength:  intOr(cfg.MaxLineLength, DefaultMaxLineLength),
		maxMessageSize: intOr(cfg.MaxMessageBytes, DefaultMaxMessageBytes),
		maxLines:       intOr(cfg.MaxLines, DefaultMaxLines),
		allowNonASCII:  cfg.AllowNonASCII != nil && *cfg.AllowNonASCII,
	}

	var err error
	if p.allow, err = parseRules("allow", cfg.Allow, false); err != nil {
		return nil, err
	}
	if p.deny, err = parseRules("deny", deny, true); err != nil {
		return nil, err
	}
	if p.whilePrinting, err = parseRules("while_printing", whilePrinting, true); err != nil {
		return nil, err
	}
	for name, v := range map[string]int{"max_line_length": p.maxLineLength, "max_message_bytes": p.maxMessageSize, "max_lines": p.maxLines} {
		if v <= 0 {
			return nil, fmt.Errorf("invalid %s %d: give a positive number", name, v)
		}
	}
	if p.maxMessageSize > bridge.MaxCommandSize {
		return nil, fmt.Errorf("invalid max_message_bytes %d: the edge rejects command messages over %d bytes whatever max_message_bytes allows; give at most %d, and send a larger G-code file in parts (printbridge upload)",
			p.maxMessageSize, bridge.MaxCommandSize, bridge.MaxCommandSize)
	}

	perSource := RateConfig{LinesPerSecond: DefaultLinesPerSecond, Burst: DefaultBurst}
	if cfg.Rate != nil {
		perSource = *cfg.Rate
	}
	total := RateConfig{LinesPerSecond: DefaultTotalLinesPerSecond, Burst: DefaultTotalBurst}
	if cfg.TotalRate != nil {
		total = *cfg.TotalRate
	}
	for name, r := range map[string]RateConfig{"rate": perSource, "total_rate": total} {
		if r.LinesPerSecond < 0 || r.Burst < 0 || (r.LinesPerSecond > 0 && r.Burst == 0) {
			return nil, fmt.Errorf("invalid %s {lines_per_second: %g, burst: %d}: give a positive burst with a positive rate, or lines_per_second 0 to turn the limit off",
				name, r.LinesPerSecond, r.Burst)
		}
	}
	p.limiter = newLimiter(perSource, total, time.Now)
	return p, nil
}

func intOr(v *int, def int) int {
	if v == nil {
		return def
	}
	return *v
}

func parseRules(list string, entries []string, rejectEmergency bool) ([]rule, error) {
	rules := make([]rule, 0, len(entries))
	for i, text := range entries {
		r, err := parseRule(text)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", list, i, err)
		}
		if rejectEmergency && emergencyCodes.Get()[r.code.String()] {
			return nil, fmt.Errorf("%s[%d]: %s is an emergency code (M112, M108, M410), which a policy cannot block; remove the entry", list, i, r.code)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// LoadFile reads a policy file for printer; see ParseFile.
func LoadFile(path, printerID string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read command policy: %w", err)
	}
	p, err := ParseFile(data, printerID)
	if err != nil {
		return nil, fmt.Errorf("command policy %s: %w", path, err)
	}
	return p, nil
}

var checksumSuffix = lazy.Regexp{Expr: `\*\s*\d*\s*$`}

// Check reports whether line may be sent. printing is whether a job is
// active; force is the command's force flag, which lifts only the
// while_printing rules. It checks the line the edge would send: with its
// ';' comment stripped and surrounding spaces trimmed.
func (p *Policy) Check(line string, printing, force bool) error {
	if err := p.checkBytes(line); err != nil {
		return err
	}
	text := printer.NormalizeCommand(line)
	if text == "" {
		return nil
	}
	if err := p.checkFraming(line, text); err != nil {
		return err
	}
	cmd := parseCommand(text)
	if cmd.ok && cmd.code.number >= 0 && cmd.code.subcode < 0 && emergencyCodes.Get()[cmd.code.String()] {
		return nil
	}
	for _, r := range p.deny {
		if r.matches(cmd) {
			return &PolicyError{Rule: RuleDeny, Entry: r.text, Line: line,
				Reason: fmt.Sprintf("%s is on the policy's deny list. To allow it, start the edge with --command-policy naming a YAML file whose deny list leaves it out (deny: [] clears the default list of M0 and M1)", r.text)}
		}
	}
	if len(p.allow) > 0 && !matchesAny(p.allow, cmd) {
		return &PolicyError{Rule: RuleAllow, Line: line,
			Reason: "the code is not on the policy's allow list. To allow it, add it to the allow list of the --command-policy file"}
	}
	if printing && !force {
		for _, r := range p.whilePrinting {
			if r.matches(cmd) {
				return &PolicyError{Rule: RuleWhilePrinting, Entry: r.text, Line: line,
					Reason: fmt.Sprintf("%s is not allowed while a job prints; wait for the job to end, or send the command with \"force\": true", r.text)}
			}
		}
	}
	return nil
}

// checkBytes rejects line breaks, control characters and, unless allowed,
// bytes outside printable ASCII anywhere in the line, comment included.
func (p *Policy) checkBytes(line string) error {
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\r' || c == '\n':
			return &PolicyError{Rule: RuleLineBreak, Line: line,
				Reason: "a line break inside a line would send a second command; send each line as its own list entry"}
		case c < 0x20 && c != '\t' || c == 0x7f:
			return &PolicyError{Rule: RuleControl, Line: line,
				Reason: fmt.Sprintf("control character 0x%02x at byte %d; G-code lines are printable text", c, i)}
		case c > 0x7e && !p.allowNonASCII:
			return &PolicyError{Rule: RuleNonASCII, Line: line,
				Reason: fmt.Sprintf("byte 0x%02x at byte %d is not ASCII; the firmware would get '?' (set allow_non_ascii to accept it)", c, i)}
		}
	}
	return nil
}

// checkFraming rejects what would confuse Marlin's line protocol. The edge
// numbers each line and appends "*<checksum>". Marlin checks the checksum
// after the last '*' but parses the command only up to the first, and
// other firmwares differ, so a '*' of the sender's own makes the firmware
// reject the line or run a shorter one. A leading N<number> would be a
// second line number.
func (p *Policy) checkFraming(line, text string) error {
	if i := strings.IndexByte(text, '*'); i >= 0 {
		if checksumSuffix.Get().MatchString(text[i:]) {
			return &PolicyError{Rule: RuleChecksum, Line: line,
				Reason: "the line ends with a checksum; the edge adds line numbers and checksums itself, so send the bare command"}
		}
		return &PolicyError{Rule: RuleAsterisk, Line: line,
			Reason: "'*' marks the checksum in Marlin's line protocol and cannot appear in a command"}
	}
	if hasLineNumber(text) {
		return &PolicyError{Rule: RuleLineNumber, Line: line,
			Reason: "the line starts with a line number; the edge numbers lines itself, so send the bare command"}
	}
	if len(text) > p.maxLineLength {
		return &PolicyError{Rule: RuleLineLength, Line: line,
			Reason: fmt.Sprintf("the command is %d bytes, over the policy's max_line_length of %d", len(text), p.maxLineLength)}
	}
	return nil
}

func hasLineNumber(text string) bool {
	if upper(text[0]) != 'N' {
		return false
	}
	rest := strings.TrimLeft(text[1:], " ")
	return rest != "" && (isDigit(rest[0]) || rest[0] == '-' || rest[0] == '+')
}

func matchesAny(rules []rule, cmd command) bool {
	for _, r := range rules {
		if r.matches(cmd) {
			return true
		}
	}
	return false
}

// CheckMessageSize rejects a command message larger than max_message_bytes.
func (p *Policy) CheckMessageSize(n int) error {
	if n > p.maxMessageSize {
		return &PolicyError{Rule: RuleMessageBytes,
			Reason: fmt.Sprintf("the message is %d bytes, over max_message_bytes of %d; %s", n, p.maxMessageSize, bridge.LargeCommandAdvice)}
	}
	return nil
}

// CheckCommand checks one G-code command message as a whole: the number
// of lines, every line, and then the rate limit of source for the lines
// that are not emergency codes. Nothing is counted against the rate limit
// when a line is rejected.
func (p *Policy) CheckCommand(source string, lines []string, printing, force bool) error {
	if len(lines) > p.maxLines {
		return &PolicyError{Rule: RuleMessageLines,
			Reason: fmt.Sprintf("the message has %d lines, over the policy's max_lines of %d; split it", len(lines), p.maxLines)}
	}
	counted := 0
	for i, line := range lines {
		if err := p.Check(line, printing, force); err != nil {
			var pe *PolicyError
			if errors.As(err, &pe) {
				return &PolicyError{Rule: pe.Rule, Entry: pe.Entry, Line: pe.Line,
					Reason: fmt.Sprintf("commands[%d]: %s", i, pe.Reason)}
			}
			return err
		}
		if !IsEmergency(line) && printer.NormalizeCommand(line) != "" {
			counted++
		}
	}
	if counted == 0 {
		return nil
	}
	return p.Allow(source, counted)
}

// IsEmergency reports whether line is M112, M108 or M410, in any case and
// spacing, which Check never rejects for its code and Allow should not be
// asked about.
func IsEmergency(line string) bool {
	cmd := parseCommand(printer.NormalizeCommand(line))
	return cmd.ok && cmd.code.number >= 0 && cmd.code.subcode < 0 && emergencyCodes.Get()[cmd.code.String()]
}

// Allow takes n lines from the token buckets of source and of the whole
// printer, or returns a *PolicyError with Rule RuleRate or RuleTotalRate
// when either has too few. A message of more lines than a bucket's burst
// passes only when that bucket is full, and leaves it in debt, so the
// average rate holds.
func (p *Policy) Allow(source string, n int) error {
	return p.limiter.allow(source, n)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
