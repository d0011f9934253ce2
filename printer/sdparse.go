package printer

import (
	"strconv"
	"strings"

	"github.com/printbridge/printbridge/bridge/lazy"
)

// SDFile is one entry of an M20 file list.
type SDFile struct {
	// Name is the DOS (8.3) name the firmware uses in M23.
	Name string
	// Size is the size in bytes, -1 when the firmware did not report it.
	Size int64
	// Timestamp is the FAT date and time (date<<16 | time) of EXTENDED_M20
	// listings, 0 when absent.
	Timestamp int64
	// LongName is the long file name (M20 L), without quotes.
	LongName string
}

// ParseFileListLine reads one line between `Begin file list` and `End
// file list`: `name`, `name size`, `name size 0x<ts>`, `name size long
// name`, or `name size 0x<ts> "long name"`. A size that is not a number
// makes the whole line the name, as OctoPrint reads it.
func ParseFileListLine(line string) (SDFile, bool) {
	line = strings.TrimSpace(line)
	if line == "" {
		return SDFile{}, false
	}
	f := SDFile{Size: -1}
	name, rest, _ := strings.Cut(line, " ")
	sizeText, rest, _ := strings.Cut(strings.TrimSpace(rest), " ")
	if sizeText == "" {
		f.Name = name
		return f, true
	}
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil || size < 0 {
		f.Name = line
		return f, true
	}
	f.Name, f.Size = name, size
	rest = strings.TrimSpace(rest)
	if strings.HasPrefix(rest, "0x") || strings.HasPrefix(rest, "0X") {
		tsText, after, _ := strings.Cut(rest, " ")
		if ts, err := strconv.ParseInt(tsText[2:], 16, 64); err == nil {
			f.Timestamp = ts
			rest = strings.TrimSpace(after)
		}
	}
	if len(rest) >= 2 && rest[0] == '"' && rest[len(rest)-1] == '"' {
		rest = rest[1 : len(rest)-1]
	}
	f.LongName = rest
	return f, true
}

var sdProgressPattern = lazy.Regexp{Expr: `SD printing byte (\d+)\s*/\s*(\d+)`}

// ParseSDStatus reads an M27 reply. printing is false for `Not SD
// printing`; ok is false for lines that are no M27 reply.
func ParseSDStatus(line string) (pos, total int64, printing, ok bool) {
	if strings.Contains(line, "Not SD printing") {
		return 0, 0, false, true
	}
	m := sdProgressPattern.Get().FindStringSubmatch(line)
	if m == nil {
		return 0, 0, false, false
	}
	pos, _ = strconv.ParseInt(m[1], 10, 64)
	total, _ = strconv.ParseInt(m[2], 10, 64)
	// Marlin reports 0/0 right after a print ended, which is no print.
	return pos, total, total > 0, true
}

var fileOpenedPattern = lazy.Regexp{Expr: `^File opened:\s*(.*?)\s+Size:\s*(\d+)`}

// ParseFileOpened reads the M23 answer `File opened: <name> Size: <n>`.
func ParseFileOpened(line string) (name string, size int64, ok bool) {
	m := fileOpenedPattern.Get().FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return "", 0, false
	}
	size, _ = strconv.ParseInt(m[2], 10, 64)
	return m[1], size, true
}

// ParseHostAction reads `//action:<name> [params]`, such as
// `//action:pause` or `//action:prompt_begin Filament runout`.
func ParseHostAction(line string) (action, params string, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(line), "//action:")
	if !found {
		return "", "", false
	}
	action, params, _ = strings.Cut(strings.TrimSpace(rest), " ")
	if action == "" {
		return "", "", false
	}
	return action, strings.TrimSpace(params), true
}

// IsSDPrintDone reports Marlin's end-of-SD-print line.
func IsSDPrintDone(line string) bool {
	return strings.HasPrefix(strings.TrimSpace(line), "Done printing file")
}
