package virtual

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"
)

// offlineSession returns a firmware session without a pty, for driving the
// firmware loop's steps directly. Its output is dropped.
func offlineSession(ctx context.Context, cfg Config) *session {
	cfg = cfg.withDefaults()
	card, err := newSDCard(cfg)
	if err != nil {
		panic(err)
	}
	p := &Printer{
		sd:      card,
		cfg:     cfg,
		log:     slog.New(slog.DiscardHandler),
		link:    &serialLink{},
		thermal: newThermal(cfg.Extruders, cfg.HeatedBed, cfg.Speed),
		rand:    newRandomSource(1),
	}
	s := newSession(ctx, p, newRXBuffer(cfg.RXBufferSize, cfg.EmergencyParser))
	go s.planner.run(s.ctx)
	return s
}

// feed pushes data through the receive buffer and runs the firmware until
// it has executed everything that arrived.
func (s *session) feed(data []byte) {
	for len(data) > 0 && s.ctx.Err() == nil {
		n := min(s.rx.free(), len(data))
		s.rx.write(data[:n])
		data = data[n:]
		for s.ctx.Err() == nil {
			s.serviceEmergency()
			s.fillQueue()
			if len(s.queue) == 0 || s.killed {
				break
			}
			s.executeFront()
		}
	}
}

func FuzzFirmwareInput(f *testing.F) {
	f.Add([]byte(numbered(0, "M110 N0") + "\n" + numbered(1, "G28") + "\nM105\n"))
	f.Add([]byte("N1 G1 X1*0\nN-5 M110\nM112\nM999\nG2 X1 Y1 R0.1\nT9\n"))
	f.Add([]byte("\x00\xff\x80N\n*\r\nM118 A1 E1 P1\nM109 S0\nG1 E5\nM117 ;x\n"))
	f.Add([]byte("G1 X1e308 F0.0001\nG92 X-1e308\nM155 S99999999999\nG4 P-1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		watchdog := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("firmware hangs on %q", data)) })
		defer watchdog.Stop()
		for _, ep := range []bool{false, true} {
			cfg := fastConfig()
			cfg.EmergencyParser = ep
			cfg.AdvancedOK = true
			cfg.ResendRatio = 30
			// A cooling wait to below ambient never ends, as in Marlin;
			// the deadline ends such inputs.
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			s := offlineSession(ctx, cfg)
			s.feed(data)
			cancel()
			for _, cmd := range s.p.Executed() {
				if strings.ContainsAny(cmd, "\r\n;") {
					t.Errorf("recorded command %q contains a line end or comment", cmd)
				}
			}
		}
	})
}

func FuzzCommandsOf(f *testing.F) {
	f.Add([]byte("G1 X1 ; move\r\n\n  M105*12\nN5 G28\n;x\n\x00M1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cmds, err := CommandsOf(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range cmds {
			if cmd == "" || strings.ContainsAny(cmd, "\r\n;*\x00") || strings.Trim(cmd, " \t") != cmd {
				t.Errorf("command %q is not normalized", cmd)
			}
		}
	})
}

func TestCommandsOfNormalizes(t *testing.T) {
	in := "G28 ; home\r\n\n   \nM104 S200\t\r;only comment\nN12 G1 X1*57\nM117 a*b\nM1\x00garbage\n  G90"
	got, err := CommandsOf(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"G28", "M104 S200", "G1 X1", "M117 a", "M1", "G90"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("CommandsOf = %q, want %q", got, want)
	}
}

func TestCloseStopsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	p, err := New(fastConfig(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	h := openHost(t, p.Path())
	h.waitBanner()
	h.command("M155 S1")
	h.send("G4 S30") // still running when the printer closes
	waitExecuted(t, p, 2)
	h.close()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}
