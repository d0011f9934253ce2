package edge

import (
	"strings"
	"testing"
)

func TestLogTextShortensLongStrings(t *testing.T) {
	if got := logText("node-red"); got != "node-red" {
		t.Errorf("logText of a short string = %q, want it whole", got)
	}
	long := strings.Repeat("s", 2000)
	got := logText(long)
	if want := strings.Repeat("s", maxLogText) + "... (2000 bytes)"; got != want {
		t.Errorf("logText of 2000 bytes = %q, want %q", got, want)
	}
	// A multi-byte rune at the cut is dropped whole, not split.
	got = logText(strings.Repeat("a", maxLogText-1) + strings.Repeat("é", 10))
	if want := strings.Repeat("a", maxLogText-1) + "... (119 bytes)"; got != want {
		t.Errorf("logText cut inside a rune = %q, want %q", got, want)
	}
}
