package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/printbridge/printbridge/printer"
)

// jobCommands returns the commands a host sends for the file: each line
// without its `;` comment and surrounding whitespace, blank lines left
// out, as printer.NormalizeCommand and printcore both strip them.
func jobCommands(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read G-code file: %w", err)
	}
	defer f.Close()
	var cmds []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if cmd := printer.NormalizeCommand(sc.Text()); cmd != "" {
			cmds = append(cmds, cmd)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read G-code file %s: %w", path, err)
	}
	return cmds, nil
}

// wireBytes is the number of bytes the commands take on the serial line
// as numbered lines with checksum and line feed, numbered from 1.
func wireBytes(cmds []string) int {
	n := 0
	for i, c := range cmds {
		n += len(printer.FormatNumbered(i+1, printer.ToASCII(c))) + 1
	}
	return n
}

// wireSeconds is how long bytes take on a line of baud with 8N1 framing
// (ten bit times per byte).
func wireSeconds(bytes, baud int) float64 {
	return float64(bytes) / (float64(baud) / 10)
}

var zWord = regexp.MustCompile(`\bZ(-?[0-9]*\.?[0-9]+)`)

// writeLargeFile writes a G-code file of at least size bytes to dst and
// returns its size. It contains the real file src once, then its layers
// (everything from the first Z move on) again and again. Each repetition
// is lifted by the file's highest Z, so Z keeps growing as in a tall
// print.
func writeLargeFile(src, dst string, size int64) (int64, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return 0, fmt.Errorf("read G-code file: %w", err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	firstZ, maxZ := -1, 0.0
	for i, line := range lines {
		cmd := printer.NormalizeCommand(line)
		if !strings.HasPrefix(cmd, "G0 ") && !strings.HasPrefix(cmd, "G1 ") {
			continue
		}
		if m := zWord.FindStringSubmatch(cmd); m != nil {
			if firstZ < 0 {
				firstZ = i
			}
			if z, err := strconv.ParseFloat(m[1], 64); err == nil && z > maxZ {
				maxZ = z
			}
		}
	}
	if firstZ < 0 {
		return 0, fmt.Errorf("%s has no G0/G1 move with Z, so it has no layers to repeat", src)
	}

	out, err := os.Create(dst)
	if err != nil {
		return 0, fmt.Errorf("create large G-code file: %w", err)
	}
	w := bufio.NewWriterSize(out, 1<<20)
	cw := &countingWriter{w: w}
	_, _ = io.WriteString(cw, string(data))
	layers := lines[firstZ:]
	for rep := 1; cw.n < size; rep++ {
		offset := float64(rep) * maxZ
		for _, line := range layers {
			_, _ = io.WriteString(cw, liftZ(line, offset))
		}
	}
	if err := w.Flush(); err != nil {
		out.Close()
		return 0, fmt.Errorf("write large G-code file %s: %w", dst, err)
	}
	return cw.n, out.Close()
}

// liftZ adds offset to the Z word of a G0/G1 line; other lines are
// returned unchanged.
func liftZ(line string, offset float64) string {
	if !strings.HasPrefix(line, "G0 ") && !strings.HasPrefix(line, "G1 ") {
		return line
	}
	code, comment, hasComment := strings.Cut(line, ";")
	lifted := zWord.ReplaceAllStringFunc(code, func(word string) string {
		z, err := strconv.ParseFloat(word[1:], 64)
		if err != nil {
			return word
		}
		return "Z" + strconv.FormatFloat(z+offset, 'f', 3, 64)
	})
	if hasComment {
		return lifted + ";" + comment
	}
	return lifted
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// scanJob counts the job lines of a file and their wire bytes without
// keeping them, for files too large to hold as strings.
func scanJob(path string) (lines, wire int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read G-code file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if cmd := printer.NormalizeCommand(sc.Text()); cmd != "" {
			lines++
			wire += len(printer.FormatNumbered(lines, printer.ToASCII(cmd))) + 1
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read G-code file %s: %w", path, err)
	}
	return lines, wire, nil
}
