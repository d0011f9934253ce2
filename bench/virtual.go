package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// VirtualConfig is the part of the virtual printer's flags that the
// measurements vary. The rest stay at the simulator's Marlin 2.1
// defaults.
type VirtualConfig struct {
	// Speed is the --speed time factor: 0 executes moves, heating and
	// dwells without waiting.
	Speed float64
	// Baud paces the line at Baud/10 bytes per second in each direction;
	// 0 is unpaced.
	Baud int
	// BufSize is Marlin's BUFSIZE; RXBufferSize the serial receive buffer.
	BufSize, RXBufferSize int
	// ProcessingTime is the --processing-time-us wait before each
	// command; it does not scale with Speed.
	ProcessingTime time.Duration
	// Record keeps every executed command in a file, for counting.
	Record bool
	// EmergencyParser builds the firmware with EMERGENCY_PARSER
	// (--emergency-parser).
	EmergencyParser bool
}

// virtualPrinter is `printbridge virtual-printer` running as its own
// process, so its memory (it keeps every executed command) and CPU are
// not the host's.
type virtualPrinter struct {
	proc       *process
	link       string
	recordPath string
}

// startVirtualPrinter starts the simulator with its link and logs in dir
// and returns once it serves hosts.
func startVirtualPrinter(ctx context.Context, bin, dir string, cfg VirtualConfig) (*virtualPrinter, error) {
	vp := &virtualPrinter{link: filepath.Join(dir, "ttyVIRTUAL0")}
	args := []string{"virtual-printer", "--link", vp.link, "--log-level", "warn",
		"--speed", strconv.FormatFloat(cfg.Speed, 'g', -1, 64), "--baud", strconv.Itoa(cfg.Baud)}
	if cfg.BufSize > 0 {
		args = append(args, "--bufsize", strconv.Itoa(cfg.BufSize))
	}
	if cfg.RXBufferSize > 0 {
		args = append(args, "--rx-buffer", strconv.Itoa(cfg.RXBufferSize))
	}
	if cfg.ProcessingTime > 0 {
		args = append(args, "--processing-time-us", strconv.FormatInt(cfg.ProcessingTime.Microseconds(), 10))
	}
	if cfg.EmergencyParser {
		args = append(args, "--emergency-parser")
	}
	if cfg.Record {
		vp.recordPath = filepath.Join(dir, "executed.gcode")
		args = append(args, "--record", vp.recordPath)
	}
	proc, err := startProcess("virtual printer", filepath.Join(dir, "virtual-printer.log"), bin, args...)
	if err != nil {
		return nil, err
	}
	vp.proc = proc
	if err := proc.waitForLog(ctx, "virtual printer ready on", readyTimeout); err != nil {
		_ = proc.stop()
		return nil, err
	}
	return vp, nil
}

func (vp *virtualPrinter) stop() error { return vp.proc.stop() }

// executedCount returns the number of commands in the record file.
func (vp *virtualPrinter) executedCount() (int, error) {
	if vp.recordPath == "" {
		return 0, fmt.Errorf("virtual printer was started without a record file")
	}
	f, err := os.Open(vp.recordPath)
	if err != nil {
		return 0, fmt.Errorf("read the virtual printer's record: %w", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}
