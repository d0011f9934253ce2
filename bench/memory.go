package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/printbridge/printbridge/bridge"
)

// LeanBuildTag leaves the embedded nats-server, which only the demo
// uses, out of the binary.
const LeanBuildTag = "noembeddedbroker"

// EdgeMemoryResult is one print of a large file by the edge binary.
type EdgeMemoryResult struct {
	FileBytes int64
	Lines     int
	Elapsed   time.Duration
	// EdgeIdleRSS is the edge's VmRSS once connected, before the job.
	EdgeIdleRSS int64
	// EdgePeakRSS and VirtualPeakRSS are the peak RSS of the two
	// processes at the end of the print, as process.peakRSS reads it.
	EdgePeakRSS, VirtualPeakRSS int64
	// EdgeEnd is the edge's resident memory by kind when the print is done.
	EdgeEnd RSSKinds
}

// busObserver records the envelopes of the bench printer as a
// subscriber on the broker receives them.
type busObserver struct {
	rec *eventRecorder
	bus bridge.Bus
}

func observe(ctx context.Context, br *broker) (*busObserver, error) {
	bus, err := br.connect(ctx, "bench-observer")
	if err != nil {
		return nil, err
	}
	o := &busObserver{rec: newEventRecorder(), bus: bus}
	err = bus.SubscribeEvents(ctx, benchPrinter, "", func(m bridge.EventMessage) {
		if env, err := bridge.DecodeEnvelope(m.Data); err == nil {
			o.rec.emit(env.Event, nil, bridge.Context{})
		}
	})
	if err != nil {
		_ = bus.Close()
		return nil, fmt.Errorf("subscribe to the bench printer's events: %w", err)
	}
	return o, nil
}

// edgeArgs are the flags of the edge binary in the measurements: no
// metrics listener, warnings only.
func edgeArgs(br *broker, link, filesDir, dataDir string) []string {
	args := []string{"edge", "--port", link, "--printer", benchPrinter, "--files", filesDir, "--data-dir", dataDir,
		"--metrics-listen", "", "--log-level", "warn"}
	return append(args, br.busFlags()...)
}

// MeasureEdgeMemory prints a file of at least size bytes, made from the
// layers of src, with the edge binary on an embedded NATS server. The
// virtual printer process executes without waiting and without baud
// pacing. It returns the peak RSS of both processes.
func MeasureEdgeMemory(ctx context.Context, bin, workDir, src string, size int64, log *slog.Logger) (EdgeMemoryResult, error) {
	var res EdgeMemoryResult
	dir, err := os.MkdirTemp(workDir, "edge-memory-")
	if err != nil {
		return res, err
	}
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o750); err != nil {
		return res, err
	}
	job := filepath.Join(files, "large.gcode")
	if res.FileBytes, err = writeLargeFile(src, job, size); err != nil {
		return res, err
	}
	if res.Lines, _, err = scanJob(job); err != nil {
		return res, err
	}
	vp, err := startVirtualPrinter(ctx, bin, dir, VirtualConfig{})
	if err != nil {
		return res, err
	}
	defer vp.stop()
	br, err := startBroker(ctx, BrokerNATS, dir, log)
	if err != nil {
		return res, err
	}
	defer br.stop()
	obs, err := observe(ctx, br)
	if err != nil {
		return res, err
	}
	defer obs.bus.Close()

	edgeProc, err := startProcess("edge", filepath.Join(dir, "edge.log"), bin, edgeArgs(br, vp.link, files, filepath.Join(dir, "data"))...)
	if err != nil {
		return res, err
	}
	defer edgeProc.stop()
	if _, err := obs.rec.wait(ctx, readyTimeout, bridge.EventConnected); err != nil {
		return res, fmt.Errorf("edge did not connect: %w\n%s", err, edgeProc.logTail(20))
	}
	if res.EdgeIdleRSS, err = edgeProc.rss(); err != nil {
		return res, err
	}
	cmd, _ := json.Marshal(bridge.Command{ID: "bench-job", Action: bridge.ActionStart, Path: filepath.Base(job)})
	if err := obs.bus.PublishCommand(ctx, benchPrinter, bridge.CommandJob, cmd); err != nil {
		return res, err
	}
	// Unpaced, the chain moves some ten thousand lines a second; the
	// timeout leaves room for a machine ten times slower.
	timeout := max(time.Minute, time.Duration(res.Lines/1000)*time.Second)
	end, err := obs.rec.wait(ctx, timeout, bridge.EventPrintDone, bridge.EventPrintFailed, bridge.EventError)
	if err != nil {
		return res, fmt.Errorf("large print: %w\n%s", err, edgeProc.logTail(20))
	}
	if end != bridge.EventPrintDone {
		return res, fmt.Errorf("large print ended with %s\n%s", end, edgeProc.logTail(20))
	}
	started, _ := obs.rec.firstTime(bridge.EventPrintStarted)
	done, _ := obs.rec.firstTime(bridge.EventPrintDone)
	res.Elapsed = done.Sub(started)
	if res.EdgeEnd, err = edgeProc.rssKinds(); err != nil {
		return res, err
	}
	if res.EdgePeakRSS, err = edgeProc.peakRSS(); err != nil {
		return res, err
	}
	if res.VirtualPeakRSS, err = vp.proc.peakRSS(); err != nil {
		return res, err
	}
	if err := edgeProc.stop(); err != nil {
		return res, err
	}
	return res, vp.stop()
}

// workerMemoryHooks is the worker config of the memory run: a gcode hook
// on ZChange that renders its placeholders, and a system hook on Home
// that starts a process.
const workerMemoryHooks = `events:
  enabled: true
  subscriptions:
  - event: ZChange
    name: bench-zchange
    type: gcode
    command: "{new:.0}"
  - event: Home
    name: bench-home
    type: system
    shell: false
    command: /bin/true {__eventname}
  - event: ` + warmupEvent + `
    name: bench-warmup
    type: gcode
    command: "{__eventname:.0}"
`

// homeEvery makes every homeEvery-th event of the worker memory run a
// Home event, whose system hook starts /bin/true.
const homeEvery = 100

// WorkerMemoryResult is one burst of events into the worker binary.
type WorkerMemoryResult struct {
	// Events were published, and Results is the number of hook results
	// the worker published. The rest were dropped by its full hook queue
	// or its NATS client's full pending list.
	Events, Results int
	// Rate is the publish rate asked for in events per second, 0 for as
	// fast as the broker takes them.
	Rate    int
	Elapsed time.Duration
	// IdleRSS is VmRSS after the warm-up event, PeakRSS the peak RSS
	// after the burst, as process.peakRSS reads it.
	IdleRSS, PeakRSS int64
	// End is the worker's resident memory by kind after the last result.
	End RSSKinds
}

// MeasureWorkerMemory runs the worker binary on an embedded NATS server,
// publishes events from workerPublishers publishers at rate events per
// second (0: as fast as the broker takes them), waits for the worker's
// hook results, and reads its peak RSS. env is added to the worker's
// environment.
func MeasureWorkerMemory(ctx context.Context, bin, workDir string, events, rate int, env []string, log *slog.Logger) (WorkerMemoryResult, error) {
	res := WorkerMemoryResult{Events: events, Rate: rate}
	dir, err := os.MkdirTemp(workDir, "worker-memory-")
	if err != nil {
		return res, err
	}
	br, err := startBroker(ctx, BrokerNATS, dir, log)
	if err != nil {
		return res, err
	}
	defer br.stop()
	nc, err := nats.Connect(br.natsURL, nats.Name("bench-hook-results"))
	if err != nil {
		return res, fmt.Errorf("connect to the embedded NATS server: %w", err)
	}
	defer nc.Close()
	var results, warm atomic.Int64
	var lastAt atomic.Int64
	sub, err := nc.Subscribe(bridge.Topics{}.NATSHook(benchPrinter), func(m *nats.Msg) {
		var r struct {
			Event string `json:"event"`
		}
		if json.Unmarshal(m.Data, &r) != nil {
			return
		}
		if r.Event == warmupEvent {
			warm.Add(1)
			return
		}
		results.Add(1)
		lastAt.Store(time.Now().UnixNano())
	})
	if err != nil {
		return res, err
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		return res, err
	}

	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(workerMemoryHooks), 0o600); err != nil {
		return res, err
	}
	// Its own --data-dir keeps the worker from locking the seen-events
	// file of the default one, which another worker on the host may hold.
	args := append([]string{"worker", "--config", config, "--data-dir", filepath.Join(dir, "data"), "--log-level", "warn",
		"--metrics-listen", ""}, br.busFlags()...)
	workerProc, err := startProcessEnv("worker", filepath.Join(dir, "worker.log"), env, bin, args...)
	if err != nil {
		return res, err
	}
	defer workerProc.stop()
	pub, err := br.connect(ctx, "bench-publisher")
	if err != nil {
		return res, err
	}
	defer pub.Close()
	if err := waitWarm(ctx, pub, &warm, workerProc); err != nil {
		return res, err
	}
	if res.IdleRSS, err = workerProc.rss(); err != nil {
		return res, err
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workerPublishers)
	for w := range workerPublishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < events; i += workerPublishers {
				if rate > 0 {
					// Event i is due i/rate seconds after the start; a
					// publisher that fell behind catches up without
					// sleeping.
					due := start.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second)))
					if err := sleepContext(ctx, time.Until(due)); err != nil {
						errs <- err
						return
					}
				}
				name, payload := bridge.EventZChange, bridge.Payload{{Key: "new", Value: 0.2 * float64(i+1)}, {Key: "old", Value: 0.2 * float64(i)}}
				if i%homeEvery == homeEvery-1 {
					name, payload = bridge.EventHome, nil
				}
				if err := publishEnvelope(ctx, pub, name, uint64(1000+i), payload); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	if err := waitCount(ctx, &results, int64(events)); err != nil {
		log.Info("worker memory run: some events had no hook result", "error", err)
	}
	res.Results = int(results.Load())
	res.Elapsed = time.Unix(0, lastAt.Load()).Sub(start)
	if res.End, err = workerProc.rssKinds(); err != nil {
		return res, err
	}
	if res.PeakRSS, err = workerProc.peakRSS(); err != nil {
		return res, err
	}
	return res, workerProc.stop()
}

// waitWarm publishes the warm-up event until the worker's result for it
// arrives.
func waitWarm(ctx context.Context, pub bridge.Bus, warm *atomic.Int64, worker *process) error {
	deadline := time.Now().Add(readyTimeout)
	for seq := uint64(1); warm.Load() == 0; seq++ {
		if worker.exited() || time.Now().After(deadline) {
			return fmt.Errorf("the worker produced no hook result for the warm-up event\n%s", worker.logTail(20))
		}
		if err := publishEnvelope(ctx, pub, warmupEvent, seq, nil); err != nil {
			return err
		}
		if err := sleepContext(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}
