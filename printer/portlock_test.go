//go:build unix

package printer_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

func TestSecondOpenOfPortFails(t *testing.T) {
	vcfg := virtual.DefaultConfig()
	vcfg.LinkPath = filepath.Join(t.TempDir(), "printer")
	vp, err := virtual.New(vcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- vp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = vp.Close()
	})
	waitFor(t, "the virtual printer's link", 10*time.Second, func() bool {
		_, err := os.Stat(vcfg.LinkPath)
		return err == nil
	})

	first, err := printer.OpenSerial(vcfg.LinkPath, 115200)
	if err != nil {
		t.Fatalf("first open: %v", err)
	}
	second, err := printer.OpenSerial(vcfg.LinkPath, 115200)
	if err == nil {
		second.Close()
		t.Fatal("second open of a port in use succeeded")
	}
	if !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("second open error = %q, want it to say the port is in use", err)
	}
	if err := first.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	again, err := printer.OpenSerial(vcfg.LinkPath, 115200)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	again.Close()
}

func TestOpenMissingPortNamesFix(t *testing.T) {
	port := filepath.Join(t.TempDir(), "ttyACM9")
	_, err := printer.OpenSerial(port, 115200)
	if err == nil {
		t.Fatal("open of a port that does not exist succeeded")
	}
	for _, want := range []string{port + " not found", "check --port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestOpenNonSerialFileNamesFix(t *testing.T) {
	port := filepath.Join(t.TempDir(), "not-a-tty")
	if err := os.WriteFile(port, []byte("G28\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := printer.OpenSerial(port, 115200)
	if err == nil {
		t.Fatal("open of a regular file as a serial port succeeded")
	}
	for _, want := range []string{port, "not a serial device", "check --port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
