package gcode

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// referenceParseCommand and referenceParseParams are parseCommand and
// parseParams as they were before they were tuned for speed, with
// parseLongNumber for numbers. The tests below hold the tuned parser to
// the same results.
func referenceParseCommand(code []byte, c *command) bool {
	c.reset()
	if i := bytes.IndexByte(code, '*'); i >= 0 {
		code = code[:i]
	}
	i := skipSpace(code, 0)
	if i < len(code) && upper(code[i]) == 'N' && i+1 < len(code) && isDigit(code[i+1]) {
		i++
		for i < len(code) && isDigit(code[i]) {
			i++
		}
		i = skipSpace(code, i)
	}
	if i >= len(code) {
		return false
	}

	if isExtendedWord(code[i:]) {
		end := i
		for end < len(code) && !isSpace(code[end]) {
			end++
		}
		c.extended = code[i:end]
		c.args = code[end:]
		return true
	}

	letter := upper(code[i])
	if letter != 'G' && letter != 'M' && letter != 'T' {
		return false
	}
	j := i + 1
	n, next := readInt(code, j)
	if next == j {
		return false
	}
	c.letter, c.code = letter, n
	j = next
	if j < len(code) && code[j] == '.' {
		sub, after := readInt(code, j+1)
		if after > j+1 {
			c.sub = sub
			j = after
		}
	}

	if letter == 'M' && takesText(n) {
		return true
	}
	referenceParseParams(code[j:], c)
	return true
}

func referenceParseParams(b []byte, c *command) {
	i := 0
	for i < len(b) {
		if b[i] == '"' {
			// A quoted string (M862.3 P "MK4S") holds no parameters.
			end := bytes.IndexByte(b[i+1:], '"')
			if end < 0 {
				return
			}
			i += end + 2
			continue
		}
		ch := upper(b[i])
		if ch < 'A' || ch > 'Z' {
			i++
			continue
		}
		i++
		v, n, ok := parseLongNumber(b[i:])
		bit := uint32(1) << (ch - 'A')
		if ok {
			i += n
			if math.Abs(v) <= maxParam {
				c.has |= bit
				c.params[ch-'A'] = v
			}
			continue
		}
		// A letter with no number, such as the axes of G28 X Y.
		if i >= len(b) || isSpace(b[i]) {
			c.has |= bit
			c.params[ch-'A'] = 0
		}
	}
}

// checkSameCommand fails when parseCommand and referenceParseCommand
// read code differently.
func checkSameCommand(t *testing.T, code []byte) {
	t.Helper()
	var got, want command
	gotOK, wantOK := parseCommand(code, &got), referenceParseCommand(code, &want)
	if gotOK != wantOK {
		t.Fatalf("parseCommand(%q) = %v, reference %v", code, gotOK, wantOK)
	}
	if !gotOK {
		return
	}
	if got.letter != want.letter || got.code != want.code || got.sub != want.sub || got.has != want.has {
		t.Fatalf("parseCommand(%q) = %c%d.%d params %b, reference %c%d.%d params %b",
			code, got.letter, got.code, got.sub, got.has, want.letter, want.code, want.sub, want.has)
	}
	for i := range got.params {
		if got.has&(1<<i) != 0 && math.Float64bits(got.params[i]) != math.Float64bits(want.params[i]) {
			t.Fatalf("parseCommand(%q) %c = %v, reference %v", code, 'A'+i, got.params[i], want.params[i])
		}
	}
	if !bytes.Equal(got.extended, want.extended) || !bytes.Equal(got.args, want.args) {
		t.Fatalf("parseCommand(%q) extended %q %q, reference %q %q", code, got.extended, got.args, want.extended, want.args)
	}
}

func TestParseCommandMatchesReference(t *testing.T) {
	// Every line of the real files, comment removed as analyzer.line does.
	files, err := filepath.Glob(filepath.Join(realDir, "*.gcode"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.SplitAfter(data, []byte("\n")) {
			code, _, _ := bytes.Cut(line, []byte(";"))
			checkSameCommand(t, code)
		}
	}

	// Random lines from the bytes that G-code lines are made of.
	rng := rand.New(rand.NewPCG(11, 12))
	words := []string{"G", "M", "T", "N", "g1", "G1", "G0", "M862.3", "M117", "SET_VELOCITY_LIMIT", "X", "Y", "E", "F", "x",
		"-", "+", ".", "1", "23", "0.5", "1e9", "2000000000", " ", " ", "\t", "\r", "\n", "*", "\"", "=", "ACCEL=5", "?"}
	for range 200000 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(words[rng.IntN(len(words))])
		}
		checkSameCommand(t, []byte(b.String()))
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"G1 X10 Y-2.5 E.3 F1200", "N42 G28 X Y*99", "M862.3 P \"MK4S\"", "SET_VELOCITY_LIMIT ACCEL=5000", "T2", "g1x1e9"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, code []byte) {
		checkSameCommand(t, code)
	})
}
