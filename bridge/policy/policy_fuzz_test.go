package policy

import (
	"errors"
	"strings"
	"testing"
)

func FuzzPolicyCheck(f *testing.F) {
	for _, seed := range []string{
		"G28", "M0", "m 0", "M104 S0", "M104S-0.5", "N10 G28*12", "M117 a*b", "M117 ünï", "M117 a\nM112",
		"T", "t1", "G29.1 X", "M112", "@pause", "; comment", "M000000000000000000000000001", "M104 S 1e9", "G1 X.",
	} {
		f.Add(seed, false, false)
		f.Add(seed, true, false)
		f.Add(seed, true, true)
	}
	p := Default()
	f.Fuzz(func(t *testing.T, line string, printing, force bool) {
		err := p.Check(line, printing, force)
		if err != nil {
			var pe *PolicyError
			if !errors.As(err, &pe) || pe.Rule == "" {
				t.Fatalf("Check(%q) = %v (%T), want a *PolicyError with a rule", line, err, err)
			}
			return
		}
		// Whatever passes is safe to frame: one printable ASCII line with
		// no checksum marker and no line number of its own.
		if strings.ContainsAny(line, "\r\n*") && !strings.Contains(line, ";") {
			t.Fatalf("Check(%q) passed a line break or '*'", line)
		}
		for i := 0; i < len(line); i++ {
			if c := line[i]; (c < 0x20 && c != '\t') || c > 0x7e {
				t.Fatalf("Check(%q) passed byte 0x%02x", line, c)
			}
		}
		// A line that passes while printing without force also passes
		// when idle or forced: those conditions only lift rules.
		if printing && !force {
			if err := p.Check(line, false, false); err != nil {
				t.Fatalf("Check(%q) passed while printing but not idle: %v", line, err)
			}
			if err := p.Check(line, true, true); err != nil {
				t.Fatalf("Check(%q) passed without force but not with it: %v", line, err)
			}
		}
		cmd := parseCommand(line)
		if cmd.ok && cmd.code.letter == 'M' && (cmd.code.number == 0 || cmd.code.number == 1) && !strings.Contains(line, ";") {
			t.Fatalf("Check(%q) passed %s, which is denied", line, cmd.code)
		}
	})
}
