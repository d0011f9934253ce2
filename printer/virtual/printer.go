package virtual

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("virtual printer closed")

// Printer is a simulated Marlin printer on a pseudo-terminal.
type Printer struct {
	cfg     Config
	log     *slog.Logger
	path    string
	link    *serialLink
	thermal *thermal // outlives sessions: a reset turns heaters off but does not cool them
	sd      *sdCard  // outlives sessions: a reset closes its open file only
	seed    int64
	rand    *randomSource

	recordMu   sync.Mutex // guards executed, faults, lines and recordFile
	executed   []string
	faults     []Fault
	lines      LineStats
	recordFile *os.File

	mu        sync.Mutex // guards running, closed and stopRun
	running   bool
	closed    bool
	stopRun   context.CancelFunc
	runDone   chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, allocates the pseudo-terminal and, if configured,
// creates the link and opens the record file. The printer serves hosts
// once Run is called.
func New(cfg Config, log *slog.Logger) (*Printer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	card, err := newSDCard(cfg)
	if err != nil {
		return nil, err
	}
	master, path, err := openPTY()
	if err != nil {
		return nil, err
	}

	log = log.With("component", "virtual_printer", "port", path)
	seed := cfg.Seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	rs := newRandomSource(seed)
	link, err := newSerialLink(master, path, cfg, rs, log)
	if err != nil {
		unix.Close(master)
		return nil, err
	}
	p := &Printer{
		cfg:     cfg,
		log:     log,
		path:    path,
		link:    link,
		thermal: newThermal(cfg.Extruders, cfg.HeatedBed, cfg.Speed),
		sd:      card,
		seed:    seed,
		rand:    rs,
	}

	if cfg.RecordPath != "" {
		p.recordFile, err = os.OpenFile(cfg.RecordPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			link.close()
			return nil, fmt.Errorf("open record file: %w", err)
		}
	}
	if cfg.LinkPath != "" {
		if err := createLink(cfg.LinkPath, path); err != nil {
			link.close()
			if p.recordFile != nil {
				p.recordFile.Close()
			}
			return nil, err
		}
	}
	return p, nil
}

// Path returns the pty slave device, such as /dev/pts/7.
func (p *Printer) Path() string { return p.path }

// Run serves hosts until ctx is done or Close is called, and then returns
// nil. Each open of the port by a host resets the firmware and prints the
// boot banner. After a host closes the port the firmware keeps running
// and its output is discarded. Run may be called once.
func (p *Printer) Run(ctx context.Context) error {
	p.mu.Lock()
	switch {
	case p.closed:
		p.mu.Unlock()
		return ErrClosed
	case p.running:
		p.mu.Unlock()
		return errors.New("virtual printer is already running")
	}
	ctx, cancel := context.WithCancel(ctx)
	p.running = true
	p.stopRun = cancel
	p.runDone = make(chan struct{})
	p.mu.Unlock()
	defer close(p.runDone)
	defer cancel()

	p.log.Info("virtual printer started", "speed", p.cfg.Speed, "extruders", p.cfg.Extruders, "dialect", p.cfg.Dialect, "seed", p.seed)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.link.readLoop(ctx)
	}()

	var current *session
	for {
		select {
		case conn := <-p.link.opens:
			if current != nil {
				current.stop()
				current = nil
			}
			if p.link.connect(conn.gen) {
				current = newSession(ctx, p, conn.rx)
				current.start()
			}
		case <-ctx.Done():
			if current != nil {
				current.stop()
			}
			wg.Wait()
			p.log.Info("virtual printer stopped")
			return nil
		}
	}
}

// Close stops Run, waits for its goroutines, closes the pty master,
// removes the link and closes the record file. An open host's reads then
// fail and the device node disappears, as when a USB cable is pulled.
func (p *Printer) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		stop, done := p.stopRun, p.runDone
		p.mu.Unlock()
		if stop != nil {
			stop()
			<-done
		}
		errs := []error{}
		if err := p.link.close(); err != nil {
			errs = append(errs, fmt.Errorf("close pty master: %w", err))
		}
		if p.cfg.LinkPath != "" {
			errs = append(errs, removeLink(p.cfg.LinkPath, p.path))
		}
		p.recordMu.Lock()
		if p.recordFile != nil {
			errs = append(errs, p.recordFile.Close())
			p.recordFile = nil
		}
		p.recordMu.Unlock()
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// Executed returns a copy of the commands executed so far, in order, as
// the record file stores them.
//
// NOTE: the list grows with every command for the life of the Printer,
// about 30 bytes per command; a simulator that runs for days should rely
// on the record file instead.
func (p *Printer) Executed() []string {
	p.recordMu.Lock()
	defer p.recordMu.Unlock()
	return append([]string(nil), p.executed...)
}

// record appends an executed command to Executed and the record file.
func (p *Printer) record(cmd string) {
	p.recordMu.Lock()
	defer p.recordMu.Unlock()
	p.executed = append(p.executed, cmd)
	if p.recordFile == nil {
		return
	}
	if _, err := p.recordFile.WriteString(cmd + "\n"); err != nil {
		p.log.Error("write record file failed; recording stops", "path", p.cfg.RecordPath, "error", err)
		p.recordFile.Close()
		p.recordFile = nil
	}
}
