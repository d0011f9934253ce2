package hooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
)

// pythonOracle is a script for CPython 3.11 that reads templates and
// strings as JSON on stdin and writes, for each, the result of str.format
// with the test parameters, or of shlex.split and shlex.quote.
const pythonOracle = `
import json, shlex, sys
req = json.load(sys.stdin)
out = []
for t in req["templates"]:
    try:
        r = t.format(**req["params"])
        out.append({"ok": r, "method": "built-in method" in r})
    except Exception as e:
        cls = type(e).__name__
        out.append({"cls": cls, "msg": e.args[0] if cls == "KeyError" else str(e)})
splits = []
for s in req["splits"]:
    try:
        splits.append({"words": shlex.split(s), "quote": shlex.quote(s)})
    except ValueError as e:
        splits.append({"err": str(e), "quote": shlex.quote(s)})
json.dump({"formats": out, "splits": splits}, sys.stdout)
`

// python311 returns the path of a CPython 3.11, whose error messages the
// vectors match, or skips the test.
func python311(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found; the hard-coded vectors still run")
	}
	out, err := exec.Command(path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])").Output()
	if err != nil || strings.TrimSpace(string(out)) != "3.11" {
		t.Skipf("python3 is %q, not 3.11, whose messages this test expects", strings.TrimSpace(string(out)))
	}
	return path
}

func randomText(r *rand.Rand, pieces []string, maxLen int) string {
	var b strings.Builder
	for n := 1 + r.IntN(maxLen); n > 0; n-- {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// TestFormatMatchesCPython compares Format, Split and Quote with CPython
// on random inputs from a fixed seed.
func TestFormatMatchesCPython(t *testing.T) {
	python := python311(t)
	r := rand.New(rand.NewPCG(1, 2))
	formatPieces := strings.Split("{ } { } [ ] ! : . < > ^ = + - # 0 1 3 s , _ r a d w n z x {a} {a: {w} !r !a [0] [1] :> :. {{ }}", " ")
	splitPieces := []string{"a", "b", " ", "\t", "\n", "'", `"`, `\`, "$", ";", "é", "{", "}", "  "}
	params := map[string]string{"a": "héllo wörld", "n": "x'y\"z\n\x01\u200b😀", "w": "5", "d": ""}
	req := struct {
		Params    map[string]string `json:"params"`
		Templates []string          `json:"templates"`
		Splits    []string          `json:"splits"`
	}{Params: params}
	for i := 0; i < 5000; i++ {
		req.Templates = append(req.Templates, randomText(r, formatPieces, 9))
	}
	for i := 0; i < 3000; i++ {
		req.Splits = append(req.Splits, randomText(r, splitPieces, 10))
	}

	input, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-c", pythonOracle)
	cmd.Stdin = bytes.NewReader(input)
	output, err := cmd.Output()
	if err != nil {
		t.Fatalf("run python3: %v", err)
	}

	var resp struct {
		Formats []struct {
			Ok     *string
			Method bool
			Cls    string
			Msg    string
		}
		Splits []struct {
			Words []string
			Err   string
			Quote string
		}
	}
	if err := json.Unmarshal(output, &resp); err != nil {
		t.Fatalf("python3 output: %v", err)
	}

	for i, want := range resp.Formats {
		tmpl := req.Templates[i]
		got, err := Format(tmpl, params)
		var fe *FormatError
		switch {
		case want.Method:
			// Python rendered a bound str method; printbridge rejects
			// attribute access.
			if !errors.As(err, &fe) || fe.Class != "AttributeError" {
				t.Errorf("Format(%q) = %q, %v; want an AttributeError", tmpl, got, err)
			}
		case want.Ok != nil:
			if err != nil || got != *want.Ok {
				t.Errorf("Format(%q) = %q, %v; CPython gives %q", tmpl, got, err, *want.Ok)
			}
		default:
			if !errors.As(err, &fe) || fe.Class != want.Cls || (fe.Message != want.Msg && want.Cls != "AttributeError") {
				t.Errorf("Format(%q) = %q, %v; CPython raises %s: %s", tmpl, got, err, want.Cls, want.Msg)
			}
		}
	}

	for i, want := range resp.Splits {
		s := req.Splits[i]
		if got := Quote(s); got != want.Quote {
			t.Errorf("Quote(%q) = %q, CPython gives %q", s, got, want.Quote)
		}
		got, err := Split(s)
		if want.Err != "" {
			if err == nil || err.Error() != want.Err {
				t.Errorf("Split(%q) = %q, %v; CPython raises %s", s, got, err, want.Err)
			}
			continue
		}
		if err != nil || strings.Join(got, "\x00") != strings.Join(want.Words, "\x00") || len(got) != len(want.Words) {
			t.Errorf("Split(%q) = %q, %v; CPython gives %q", s, got, err, want.Words)
		}
	}
}
