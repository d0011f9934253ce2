package gcode

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func benchFile(b *testing.B) []byte {
	data, err := os.ReadFile(filepath.Join(realDir, "cura-master_marlin_dsf-unittest.gcode"))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func BenchmarkPartRead(b *testing.B) {
	data := benchFile(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		br := bufio.NewReaderSize(bytes.NewReader(data), 65536)
		for {
			_, err := br.ReadSlice('\n')
			if err != nil {
				break
			}
		}
	}
}

func BenchmarkPartParse(b *testing.B) {
	data := benchFile(b)
	b.SetBytes(int64(len(data)))
	var c command
	for b.Loop() {
		br := bufio.NewReaderSize(bytes.NewReader(data), 65536)
		for {
			line, err := br.ReadSlice('\n')
			code, _ := splitComment(line)
			parseCommand(code, &c)
			if err != nil {
				break
			}
		}
	}
}
