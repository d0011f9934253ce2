package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/hooks"
	"github.com/printbridge/printbridge/printer"
	"go.bug.st/serial"
)

// latencyMarker is the text of the hook's G-code line, which the port
// wrapper recognises among the edge's writes.
const latencyMarker = "M117 bench-hook"

// latencyHooks sends one G-code line for every position report.
const latencyHooks = `events:
  enabled: true
  subscriptions:
  - event: PositionUpdate
    name: bench-position
    type: gcode
    command: "` + latencyMarker + `"
`

// LatencyResult holds the times from a position report arriving at the
// edge's serial port to the hook's G-code line being written to it.
type LatencyResult struct {
	Broker  string
	Samples []time.Duration
}

// Percentile returns the p-th percentile (0-100) by the nearest-rank
// method.
func (r LatencyResult) Percentile(p float64) time.Duration {
	if len(r.Samples) == 0 {
		return 0
	}
	s := slices.Clone(r.Samples)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// MeasureHookLatency runs the whole chain in this process (printer,
// edge, worker) on brokerName against a virtual printer process and
// times samples round trips. In each, M114 makes the simulator send a
// position report and the edge fires PositionUpdate. The worker's gcode
// hook then sends a line back through the bus, and the edge writes it to
// the printer.
func MeasureHookLatency(ctx context.Context, bin, workDir, brokerName string, samples int, log *slog.Logger) (LatencyResult, error) {
	res := LatencyResult{Broker: brokerName}
	dir, err := os.MkdirTemp(workDir, "latency-")
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
	stopWorker, err := startWorker(ctx, br, latencyHooks, 0, func(hooks.Result) {}, log)
	if err != nil {
		return res, err
	}
	defer stopWorker()

	port := &stampedPort{hookWrites: make(chan time.Duration, 16)}
	rec := newEventRecorder()
	var emit printer.EventFunc
	p := printer.New(printer.Config{
		Port: vp.link, AutoConnect: true,
		Open: func(path string, baud int) (io.ReadWriteCloser, error) {
			sp, err := serial.Open(path, &serial.Mode{BaudRate: baud})
			if err != nil {
				return nil, fmt.Errorf("open serial port %s: %w", path, err)
			}
			port.setPort(sp)
			return port, nil
		},
	}, log, func(name string, payload bridge.Payload, c bridge.Context) {
		rec.emit(name, payload, c)
		emit(name, payload, c)
	}, printer.Metrics{})
	e, stopEdge, err := startEdge(ctx, br, dir, p, nil, log)
	if err != nil {
		return res, err
	}
	defer stopEdge()
	emit = e.Emit
	pctx, stopPrinter := context.WithCancel(ctx)
	printerDone := make(chan error, 1)
	go func() { printerDone <- p.Run(pctx) }()
	defer func() {
		stopPrinter()
		<-printerDone
	}()
	if _, err := rec.wait(ctx, readyTimeout, bridge.EventConnected); err != nil {
		return res, fmt.Errorf("the edge did not connect to the virtual printer: %w", err)
	}

	// The first round trip also waits for the worker's subscriptions, so
	// it is not counted.
	for i := -1; i < samples; i++ {
		if err := p.SendGcode(ctx, []string{"M114"}, "bench", nil); err != nil {
			return res, fmt.Errorf("send M114: %w", err)
		}
		timeout := 10 * time.Second
		if i < 0 {
			timeout = readyTimeout
		}
		select {
		case d := <-port.hookWrites:
			if i >= 0 {
				res.Samples = append(res.Samples, d)
			}
		case <-time.After(timeout):
			return res, fmt.Errorf("no hook G-code reached the serial port within %s of a position report (sample %d)", timeout, i)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	return res, nil
}

// stampedPort wraps the serial port of the edge and notes when a
// position report arrives and when the hook's line is written.
type stampedPort struct {
	mu         sync.Mutex // guards port, partial and reportAt
	port       io.ReadWriteCloser
	partial    []byte
	reportAt   time.Time
	hookWrites chan time.Duration
}

func (s *stampedPort) setPort(p io.ReadWriteCloser) {
	s.mu.Lock()
	s.port, s.partial = p, nil
	s.mu.Unlock()
}

func (s *stampedPort) current() io.ReadWriteCloser {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Read stamps the moment the bytes that complete a position report
// line (`X:... Count ...`) come out of the port.
func (s *stampedPort) Read(b []byte) (int, error) {
	n, err := s.current().Read(b)
	if n > 0 {
		now := time.Now()
		s.mu.Lock()
		s.partial = append(s.partial, b[:n]...)
		for {
			i := bytes.IndexByte(s.partial, '\n')
			if i < 0 {
				break
			}
			line := s.partial[:i]
			if bytes.HasPrefix(line, []byte("X:")) && bytes.Contains(line, []byte("Count")) {
				s.reportAt = now
			}
			s.partial = s.partial[i+1:]
		}
		s.mu.Unlock()
	}
	return n, err
}

// Write reports the time since the last position report when the edge
// writes the hook's line.
func (s *stampedPort) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte(latencyMarker)) {
		now := time.Now()
		s.mu.Lock()
		d := now.Sub(s.reportAt)
		s.mu.Unlock()
		select {
		case s.hookWrites <- d:
		default:
		}
	}
	return s.current().Write(b)
}

func (s *stampedPort) Close() error { return s.current().Close() }
