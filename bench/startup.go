package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// StartupResult holds the times from starting the edge binary to its
// Connected event arriving at a subscriber on the broker.
type StartupResult struct {
	Broker string
	Runs   []time.Duration
}

// MeasureStartup starts the edge binary runs times against one virtual
// printer process and brokerName, each time with an empty data
// directory, and times process start to Connected.
func MeasureStartup(ctx context.Context, bin, workDir, brokerName string, runs int, log *slog.Logger) (StartupResult, error) {
	res := StartupResult{Broker: brokerName}
	dir, err := os.MkdirTemp(workDir, "startup-")
	if err != nil {
		return res, err
	}
	vp, err := startVirtualPrinter(ctx, bin, dir, VirtualConfig{})
	if err != nil {
		return res, err
	}
	defer vp.stop()
	br, err := startBroker(ctx, brokerName, dir, log)
	if err != nil {
		return res, err
	}
	defer br.stop()
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o750); err != nil {
		return res, err
	}
	for i := range runs {
		d, err := startOnce(ctx, bin, br, vp, files, filepath.Join(dir, fmt.Sprintf("data-%d", i)))
		if err != nil {
			return res, err
		}
		res.Runs = append(res.Runs, d)
	}
	return res, nil
}

func startOnce(ctx context.Context, bin string, br *broker, vp *virtualPrinter, files, dataDir string) (time.Duration, error) {
	obs, err := observe(ctx, br)
	if err != nil {
		return 0, err
	}
	defer obs.bus.Close()
	start := time.Now()
	edgeProc, err := startProcess("edge", dataDir+".log", bin, edgeArgs(br, vp.link, files, dataDir)...)
	if err != nil {
		return 0, err
	}
	defer edgeProc.stop()
	if _, err := obs.rec.wait(ctx, readyTimeout, bridge.EventConnected); err != nil {
		return 0, fmt.Errorf("edge did not connect: %w\n%s", err, edgeProc.logTail(20))
	}
	at, _ := obs.rec.firstTime(bridge.EventConnected)
	return at.Sub(start), edgeProc.stop()
}
