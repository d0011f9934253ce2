package main

import (
	"flag"
	"io"
	"path/filepath"
	"testing"

	"github.com/printbridge/printbridge/printer/virtual"
)

// parseScenario reads a virtual printer scenario file as the command
// does and returns the configuration it selects.
func parseScenario(t *testing.T, path string) virtual.Config {
	t.Helper()
	fs := flag.NewFlagSet("virtual-printer", flag.ContinueOnError)
	o := &virtualPrinterFlags{cfg: virtual.DefaultConfig(), busyKeepalive: true, m117Echo: true, autoreportPos: true}
	o.register(fs)
	if err := parseFlags(fs, []string{"--config", path}, io.Discard, true); err != nil {
		t.Fatalf("scenario %s: %v", path, err)
	}
	if err := o.apply(); err != nil {
		t.Fatalf("scenario %s: %v", path, err)
	}
	if err := o.cfg.Validate(); err != nil {
		t.Fatalf("scenario %s: %v", path, err)
	}
	return o.cfg
}

func TestVirtualPrinterScenariosParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "printer", "virtual", "scenarios", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenario files found")
	}
	for _, f := range files {
		parseScenario(t, f)
	}
}

func TestScenarioRejectsM110(t *testing.T) {
	cfg := parseScenario(t, filepath.Join("..", "..", "printer", "virtual", "scenarios", "repetier-m110-rejected.yaml"))
	if cfg.Dialect != virtual.DialectRepetier {
		t.Errorf("dialect = %q, want %q", cfg.Dialect, virtual.DialectRepetier)
	}
	if cfg.RejectM110 != 1 {
		t.Errorf("RejectM110 = %d, want 1", cfg.RejectM110)
	}
}

func TestAutoreportPosFlagOff(t *testing.T) {
	fs := flag.NewFlagSet("virtual-printer", flag.ContinueOnError)
	o := &virtualPrinterFlags{cfg: virtual.DefaultConfig(), busyKeepalive: true, m117Echo: true, autoreportPos: true}
	o.register(fs)
	if err := parseFlags(fs, []string{"--autoreport-pos=off"}, io.Discard, false); err != nil {
		t.Fatal(err)
	}
	if err := o.apply(); err != nil {
		t.Fatal(err)
	}
	if !o.cfg.NoAutoreportPos {
		t.Error("--autoreport-pos=off left AUTO_REPORT_POSITION on")
	}
}
