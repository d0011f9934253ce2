package hooks

import (
	"context"
	"os"
	"testing"
	"time"
)

// BenchmarkSystemHookStart runs a one-command system hook (/bin/true,
// without a shell) plainly and behind the start gate with a record that
// costs nothing, so the difference is the gate's extra exec of /bin/sh
// and the pipe.
func BenchmarkSystemHookStart(b *testing.B) {
	commands := []preparedCommand{{argv: []string{"/bin/true"}}}
	noRecord := func(context.Context, int, int, uint64, time.Time, string) error { return nil }
	for _, bench := range []struct {
		name   string
		record func(context.Context, int, int, uint64, time.Time, string) error
	}{
		{"plain", nil},
		{"gated", noRecord},
	} {
		b.Run(bench.name, func(b *testing.B) {
			run := systemRun{env: os.Environ(), outputLimit: DefaultOutputLimit, recordStart: bench.record}
			for b.Loop() {
				if _, _, err := run.run(context.Background(), commands); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
