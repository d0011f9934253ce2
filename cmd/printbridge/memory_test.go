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

func TestKeepStartupPagesEnv(t *testing.T) {
	for value, want := range map[string]bool{"1": true, "true": true, "0": false, "false": false} {
		t.Setenv(keepStartupPagesEnv, value)
		keep, err := keepStartupPages()
		if err != nil || keep != want {
			t.Errorf("%s=%s: keep = %t, %v; want %t", keepStartupPagesEnv, value, keep, err, want)
		}
	}
	t.Setenv(keepStartupPagesEnv, "yes please")
	if keep, err := keepStartupPages(); keep || err == nil {
		t.Errorf("%s=\"yes please\": keep = %t, %v; want false and an error", keepStartupPagesEnv, keep, err)
	}
}
