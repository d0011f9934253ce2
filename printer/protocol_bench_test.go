package printer_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/printbridge/printbridge/printer"
)

// serialCapture is what a Marlin 2.1 build sends while printing with
// temperature auto-report on: mostly oks, with reports in between.
const serialCapture = "ok\nok\n T:210.12 /210.00 B:60.03 /60.00 @:127 B@:0\nok\n" +
	"X:100.00 Y:100.00 Z:0.20 E:12.34 Count X:8000 Y:8000 Z:80\nok\nok\necho:busy: processing\nok\n"

func BenchmarkLineReader(b *testing.B) {
	stream := bytes.Repeat([]byte(serialCapture), 256)
	lines := bytes.Count(stream, []byte("\n"))
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	r := bytes.NewReader(stream)
	for b.Loop() {
		r.Reset(stream)
		lr := printer.NewLineReader(r, 4096)
		n := 0
		for {
			_, err := lr.ReadLine()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != lines {
			b.Fatalf("read %d lines, want %d", n, lines)
		}
	}
}

func BenchmarkFormatNumbered(b *testing.B) {
	const move = "G1 X112.034 Y98.512 E0.03519"
	b.ReportAllocs()
	n := 1
	for b.Loop() {
		if wire := printer.FormatNumbered(n, move); !strings.HasPrefix(wire, "N") {
			b.Fatalf("FormatNumbered returned %q", wire)
		}
		n++
	}
}

func BenchmarkParseTemperatures(b *testing.B) {
	const report = "ok T:210.12 /210.00 B:60.03 /60.00 T0:210.12 /210.00 T1:25.00 /0.00 @:127 B@:0 @0:127 @1:0"
	b.ReportAllocs()
	for b.Loop() {
		if temps := printer.ParseTemperatures(report); len(temps) != 3 {
			b.Fatalf("parsed %d heaters, want 3: %v", len(temps), temps)
		}
	}
}

func BenchmarkParsePosition(b *testing.B) {
	const report = "X:112.03 Y:98.51 Z:0.20 E:1234.56 Count X:8962 Y:7880 Z:80"
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := printer.ParsePosition(report); !ok {
			b.Fatal("position report not parsed")
		}
	}
}

func BenchmarkAppendNumbered(b *testing.B) {
	const move = "G1 X112.034 Y98.512 E0.03519"
	b.ReportAllocs()
	buf := make([]byte, 0, 64)
	n := 1
	for b.Loop() {
		buf = printer.AppendNumbered(buf[:0], n, move)
		if buf[0] != 'N' {
			b.Fatalf("AppendNumbered returned %q", buf)
		}
		n++
	}
}
