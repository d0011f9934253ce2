package printer

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// octoPrintCodePattern and octoPrintToolPattern are the expressions that
// OctoPrint's comm layer reads a command's code with; CodeOf must agree
// with them on every input.
var (
	octoPrintCodePattern = regexp.MustCompile(`^([GM])(\d+)(\.\d+)?`)
	octoPrintToolPattern = regexp.MustCompile(`^T(\d+)`)
)

func codeByRegexp(line string) string {
	if m := octoPrintCodePattern.FindStringSubmatch(line); m != nil {
		return m[1] + m[2] + m[3]
	}
	if octoPrintToolPattern.MatchString(line) {
		return "T"
	}
	return ""
}

var codeCases = []string{
	"", "G", "M", "T", "G1", "G28 X0", "g28", "G028", "M600", "T1", "T", "Tx", "M862.3 P \"MK4S\"",
	"G1.", "G1.x", "G1.5", "G1.55.3", "M117 G1", " G1", "N10 G1", "GX", "G-1", "G١", "M٣", "T٠",
	"G29.12345 X", "M1.2.3", "G0\tX1",
}

func TestCodeOfMatchesRegexp(t *testing.T) {
	for _, line := range codeCases {
		if got, want := CodeOf(line), codeByRegexp(line); got != want {
			t.Errorf("CodeOf(%q) = %q, want %q", line, got, want)
		}
	}
}

func FuzzCodeOf(f *testing.F) {
	for _, line := range codeCases {
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if got, want := CodeOf(line), codeByRegexp(line); got != want {
			t.Errorf("CodeOf(%q) = %q, want %q", line, got, want)
		}
	})
}

func TestNumberedLengthMatchesFormat(t *testing.T) {
	cmds := []string{"", "G28", "M110 N0", "G1 X112.034 Y98.512 E0.03519", "M117 é", strings.Repeat("G1 X1 ", 40)}
	for _, cmd := range cmds {
		for _, n := range []int{0, 1, 9, 10, 99, 100, 12345, 99999999, -1} {
			if got, want := numberedLength(n, cmd), len(FormatNumbered(n, cmd)); got != want {
				t.Errorf("numberedLength(%d, %q) = %d, want %d", n, cmd, got, want)
			}
			if got, want := numberedLength(n, []byte(cmd)), len(FormatNumbered(n, cmd)); got != want {
				t.Errorf("numberedLength(%d, []byte(%q)) = %d, want %d", n, cmd, got, want)
			}
		}
	}
}

// fileLineCases are file lines whose command the check's ASCII path and
// the sender's path must read the same, or that must take the sender's
// path.
var fileLineCases = []string{
	"G1 X1 Y2\n", "G1 X1 Y2\r\n", "  G1 X1  ; move\n", "; only a comment\n", "\n", "   \n",
	"M117 a\\;b ; c\n", "M117 a\\;b\n", "M117 \\\n", "M117 ab\\ ;c\n", "M117 é ; c\n",
	"M117 \xe9t\xe9\n", "G1\tX1\n", "G1 X1 ;\x00\r\xff\n", "T0\n", "M104 S200;\n",
}

// checkSlowCommand is the command as the sender reads a file line.
func checkSlowCommand(raw []byte) string {
	return ToASCII(NormalizeCommand(CleanLine(raw)))
}

func checkFastCommand(raw []byte) ([]byte, bool) {
	return printableCommand(raw, commandPart(raw))
}

func TestPrintableCommandMatchesSender(t *testing.T) {
	lines := append([]string(nil), fileLineCases...)
	files, err := filepath.Glob("../testdata/gcode/*.gcode")
	if err != nil || len(files) == 0 {
		t.Fatalf("no G-code files in testdata: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				lines = append(lines, line)
			}
			if err != nil {
				break
			}
		}
	}
	fast := 0
	for _, line := range lines {
		cmd, ok := checkFastCommand([]byte(line))
		if !ok {
			continue
		}
		fast++
		if got, want := string(cmd), checkSlowCommand([]byte(line)); got != want {
			t.Errorf("line %q: ASCII path read %q, the sender reads %q", line, got, want)
		}
	}
	if fast < len(lines)*9/10 {
		t.Errorf("the ASCII path read %d of %d lines; it should read nearly all slicer output", fast, len(lines))
	}
}

func TestPrintableCommandDefersToSender(t *testing.T) {
	for _, line := range []string{"M117 a\\;b ; c\n", "M117 a\\;b\n", "M117 é ; c\n", "M117 \xe9t\xe9\n", "G1\tX1\n"} {
		if cmd, ok := checkFastCommand([]byte(line)); ok {
			t.Errorf("line %q: ASCII path read %q; it must leave the line to the sender's path", line, cmd)
		}
	}
}

func BenchmarkCheckGcodeFile(b *testing.B) {
	src := "../testdata/gcode/cura-master_marlin_dsf-unittest.gcode"
	info, err := os.Stat(src)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(info.Size())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := checkGcodeFile(src, "cura.gcode", 1, 96); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckGcodeFileAllocating reads the same file as
// BenchmarkCheckGcodeFile the way the check did before its ASCII path:
// a string per line, the code by regular expression and the length from
// the built wire line.
func BenchmarkCheckGcodeFileAllocating(b *testing.B) {
	src := "../testdata/gcode/cura-master_marlin_dsf-unittest.gcode"
	data, err := os.ReadFile(src)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r := bufio.NewReaderSize(bytes.NewReader(data), maxFileLine)
		commands := 0
		for {
			raw, err := r.ReadSlice('\n')
			if len(raw) == 0 && err != nil {
				break
			}
			cmd := NormalizeCommand(CleanLine(raw))
			if cmd == "" {
				continue
			}
			commands++
			if codeByRegexp(cmd) == "" && commands < 0 {
				b.Fatal("unreachable")
			}
			if len(FormatNumbered(commands+1000, ToASCII(cmd))) > 1<<20 {
				b.Fatal("line too long")
			}
		}
	}
}

func TestFileCommandStripsBOM(t *testing.T) {
	cases := []struct {
		raw   string
		first bool
		want  string
	}{
		{"\xef\xbb\xbfG28 ; home\r\n", true, "G28"},
		{"\xef\xbb\xbf; only a comment\n", true, ""},
		{"\xef\xbb\xbfM117 é\n", true, "M117 é"},
		{"G28\n", true, "G28"},
		{"  G1 X1 ; move\n", false, "G1 X1"},
		{"; comment\n", false, ""},
	}
	for _, c := range cases {
		if got := fileCommand([]byte(c.raw), c.first); got != c.want {
			t.Errorf("fileCommand(%q, first=%v) = %q, want %q", c.raw, c.first, got, c.want)
		}
	}
	// Past the first line a byte order mark is no longer stripped, so it
	// is not read as G-code either.
	if got := fileCommand([]byte("\xef\xbb\xbfG28\n"), false); got == "G28" {
		t.Errorf("fileCommand stripped a byte order mark after the first line")
	}
}

func TestCheckGcodeFileAcceptsBOM(t *testing.T) {
	// Half of the commands are G-code only if the first one is read
	// without the mark, so a kept mark fails the G-code share check.
	path := filepath.Join(t.TempDir(), "bom.gcode")
	if err := os.WriteFile(path, []byte("\xef\xbb\xbfG28\nX10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := checkGcodeFile(path, "bom.gcode", 1, 96); err != nil {
		t.Errorf("a file starting with a UTF-8 byte order mark failed the check: %v", err)
	}
}
