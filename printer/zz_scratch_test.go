package printer_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

func TestScratchDebug(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "tty")
	vcfg := fastConfig()
	vcfg.Seed = quirkSeed
	vcfg.DuplicateResend = true
	vcfg.ResendRatio = 10
	vcfg.LinkPath = link
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	vp, err := virtual.New(vcfg, log.With("side", "FW"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go vp.Run(ctx)
	files := filepath.Join(dir, "files")
	os.MkdirAll(files, 0o750)
	data, _ := os.ReadFile(filepath.Join("..", "testdata", "gcode", testFile))
	os.WriteFile(filepath.Join(files, testFile), data, 0o600)
	rec := &recorder{}
	p := printer.New(printer.Config{Port: link, FilesDir: files, AutoConnect: true, Flow: printer.FlowPingPong, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}, log.With("side", "EDGE"), rec.emit, printer.Metrics{})
	go p.Run(ctx)
	waitFor(t, "op", 10*time.Second, func() bool { return p.Snapshot().State == "OPERATIONAL" })
	if err := p.Job(ctx, bridge.ActionStart, testFile, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "done", 30*time.Second, func() bool { return rec.count(bridge.EventPrintDone) == 1 })
	time.Sleep(200 * time.Millisecond)
	assertRecordEqualsFile(t, vp.Executed())
}
