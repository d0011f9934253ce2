package main

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestMemoryDefaultsSetGCPercent(t *testing.T) {
	t.Run("unset", func(t *testing.T) {
		// Setenv restores the environment of `go test`, which may carry
		// GOGC, after the test has removed the variable.
		t.Setenv("GOGC", "")
		if err := os.Unsetenv("GOGC"); err != nil {
			t.Fatalf("unset GOGC: %v", err)
		}
		previous := debug.SetGCPercent(100)
		defer debug.SetGCPercent(previous)
		applyMemoryDefaults()
		if got := debug.SetGCPercent(100); got != gcPercentDefault {
			t.Errorf("GC percent after applyMemoryDefaults = %d, want %d", got, gcPercentDefault)
		}
	})
	t.Run("set", func(t *testing.T) {
		t.Setenv("GOGC", "200")
		previous := debug.SetGCPercent(200)
		defer debug.SetGCPercent(previous)
		applyMemoryDefaults()
		if got := debug.SetGCPercent(200); got != 200 {
			t.Errorf("GC percent with GOGC=200 = %d, want 200 left alone", got)
		}
	})
}
