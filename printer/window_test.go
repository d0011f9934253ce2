package printer_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

// heatUpConfig is a printer whose M109 S200 takes about 40 s, so a test
// acts while it waits.
func heatUpConfig(emergencyParser bool) virtual.Config {
	c := virtual.DefaultConfig()
	c.Speed = 1
	c.EmergencyParser = emergencyParser
	return c
}

// writeJob stores lines as a job file in the rig's files directory.
func (r *rig) writeJob(name string, lines ...string) {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.files, name), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// waitExecuting waits until cmd is the last command the simulator
// started, which it then runs without reading its RX buffer.
func (r *rig) waitExecuting(cmd string) {
	r.t.Helper()
	waitFor(r.t, cmd+" running", 20*time.Second, func() bool {
		ex := r.vp.Executed()
		return len(ex) > 0 && ex[len(ex)-1] == cmd
	})
}

// wireBytes returns the bytes of job lines numbered from first, with
// checksum and line feed.
func wireBytes(first int, lines ...string) int {
	n := 0
	for i, l := range lines {
		n += len(printer.FormatNumbered(first+i, l)) + 1
	}
	return n
}

// fillers returns count static display lines of about 20 bytes on the
// wire. Their length makes the window's 5 reserved bytes matter for the
// line numbers 1 to 9: without the reserve, one more filler would fit
// (see windowFit).
func fillers(count int) []string {
	var out []string
	for i := range count {
		out = append(out, "M117 xxxxxxxx"+string(rune('a'+i)))
	}
	return out
}

// runningLine returns the line number of cmd, which the simulator runs:
// the job's M110 N0 sets 0, and every command executed since then was a
// numbered line.
func (r *rig) runningLine(cmd string) int {
	r.t.Helper()
	executed := r.vp.Executed()
	reset := -1
	for i, c := range executed {
		if c == "M110 N0" {
			reset = i
		}
	}
	i := slices.Index(executed[reset+1:], cmd)
	if reset < 0 || i < 0 {
		r.t.Fatalf("no %s after an M110 N0 in %q", cmd, executed)
	}
	return i + 1
}

// bytesBehind returns the bytes of the lines after line n that reached
// the simulator while it runs n: those it moved to its command queue, as
// Marlin does up to BUFSIZE, and those still in its RX buffer.
func (r *rig) bytesBehind(n int, lines []string) int {
	accepted := r.vp.LineStats().Accepted
	sum := r.vp.RXStats().Held
	for k, l := range lines {
		if accepted[int64(n+1+k)] > 0 {
			sum += wireBytes(n+1+k, l)
		}
	}
	return sum
}

// windowFit returns how many of lines fit behind the line head numbered
// n, and their bytes, when the window reserves room for an emergency line
// behind a long-running command: 127 bytes for RX 128, less 5. It fails
// the test when the reserve makes no difference for these lines.
func windowFit(t *testing.T, n int, head string, lines []string) (int, int) {
	t.Helper()
	sum := wireBytes(n, head)
	for k, l := range lines {
		size := wireBytes(n+1+k, l)
		if sum+size > 127-5 || k+1 >= 8 {
			if sum+size > 127 || k+1 >= 8 {
				t.Fatalf("test setup: line %d of %d bytes would not fit without the reserve either", n+1+k, size)
			}
			return k, sum - wireBytes(n, head)
		}
		sum += size
	}
	t.Fatalf("test setup: all %d lines fit behind line %d", len(lines), n)
	return 0, 0
}

func TestWindowBehindHeatUp(t *testing.T) {
	job := append([]string{"M109 S200"}, fillers(7)...)
	cases := []struct {
		name   string
		flow   string
		parser bool
		lines  bool // lines go behind M109
	}{
		{"window", printer.FlowWindow, true, true},
		{"window-without-emergency-parser", printer.FlowWindow, false, false},
		{"ping-pong", printer.FlowPingPong, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := startRig(t, heatUpConfig(c.parser), printer.Config{Flow: c.flow})
			r.writeJob("heat.gcode", job...)
			r.waitState("OPERATIONAL", 10*time.Second)
			r.job(bridge.ActionStart, "heat.gcode")
			r.waitExecuting("M109 S200")
			n := r.runningLine("M109 S200")
			want := 0
			if c.lines {
				_, want = windowFit(t, n, job[0], job[1:])
			}
			waitFor(t, "lines behind M109", 5*time.Second, func() bool { return r.bytesBehind(n, job[1:]) >= want })
			// Give the host time to send more than it may; nothing else
			// arrives while M109 runs.
			time.Sleep(300 * time.Millisecond)
			if got := r.bytesBehind(n, job[1:]); got != want {
				t.Errorf("%d bytes arrived behind M109, want %d", got, want)
			}
			st := r.vp.RXStats()
			if st.Overruns != 0 {
				t.Errorf("RX buffer overran %d times", st.Overruns)
			}
			if st.Peak > 127 {
				t.Errorf("RX buffer peaked at %d bytes, over the 127 a Marlin ring of 128 holds", st.Peak)
			}
		})
	}
}

func TestWindowStopsAtMoveBehindHeatUp(t *testing.T) {
	r := startRig(t, heatUpConfig(true), printer.Config{Flow: printer.FlowWindow})
	r.writeJob("heat.gcode", "M109 S200", "G92 E0", "G1 X10 E2 F1500", "M117 after the move")
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, "heat.gcode")
	r.waitExecuting("M109 S200")
	n := r.runningLine("M109 S200")
	lines := []string{"G92 E0", "G1 X10 E2 F1500", "M117 after the move"}
	want := wireBytes(n+1, "G92 E0")
	waitFor(t, "G92 behind M109", 5*time.Second, func() bool { return r.bytesBehind(n, lines) >= want })
	time.Sleep(300 * time.Millisecond)
	if got := r.bytesBehind(n, lines); got != want {
		t.Errorf("%d bytes arrived behind M109, want %d (G92 E0 only; the G1 waits for the ok)", got, want)
	}
}

// movesAfter returns the motion commands executed after cmd.
func movesAfter(executed []string, cmd string) []string {
	i := slices.Index(executed, cmd)
	if i < 0 {
		return nil
	}
	var moves []string
	for _, c := range executed[i+1:] {
		switch printer.CodeOf(c) {
		case "G0", "G1", "G2", "G3", "G28", "G29":
			moves = append(moves, c)
		}
	}
	return moves
}

func TestCancelDuringHeatUpRunsNoMoves(t *testing.T) {
	r := startRig(t, heatUpConfig(true), printer.Config{Flow: printer.FlowWindow})
	r.writeJob("heat.gcode", "M109 S200", "G92 E0", "M83", "G1 Z0.2 F3000", "G1 X60 E9 F1500", "G1 X100 E5")
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, "heat.gcode")
	r.waitExecuting("M109 S200")
	n := r.runningLine("M109 S200")
	want := wireBytes(n+1, "G92 E0", "M83")
	lines := []string{"G92 E0", "M83", "G1 Z0.2 F3000"}
	waitFor(t, "static lines behind M109", 5*time.Second, func() bool { return r.bytesBehind(n, lines) >= want })
	r.job(bridge.ActionCancel, "")
	waitFor(t, "PrintCancelled", 10*time.Second, func() bool { return r.rec.count(bridge.EventPrintCancelled) == 1 })
	waitFor(t, "OPERATIONAL", 10*time.Second, func() bool { return r.p.Snapshot().State == "OPERATIONAL" })

	executed := r.vp.Executed()
	if moves := movesAfter(executed, "M109 S200"); len(moves) != 0 {
		t.Errorf("moves ran after the cancel: %q (executed %q)", moves, executed)
	}
	i := slices.Index(executed, "M109 S200")
	if i < 0 || !slices.Contains(executed[i:], "M108") {
		t.Errorf("M108 never reached the command queue after M109: %q", executed)
	}
	for _, c := range []string{"G92 E0", "M83"} {
		if !slices.Contains(executed[max(i, 0):], c) {
			t.Errorf("%s, sent behind M109 before the cancel, did not run: %q", c, executed)
		}
	}
	if st := r.vp.RXStats(); st.Overruns != 0 {
		t.Errorf("RX buffer overran %d times", st.Overruns)
	}
}

func TestM108FitsFullWindowBehindHeatUp(t *testing.T) {
	job := append([]string{"M109 S200"}, fillers(7)...)
	r := startRig(t, heatUpConfig(true), printer.Config{Flow: printer.FlowWindow})
	r.writeJob("heat.gcode", job...)
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, "heat.gcode")
	r.waitExecuting("M109 S200")
	n := r.runningLine("M109 S200")
	fit, full := windowFit(t, n, job[0], job[1:])
	waitFor(t, "full window behind M109", 5*time.Second, func() bool { return r.bytesBehind(n, job[1:]) >= full })
	r.gcode("M108")
	waitFor(t, "PrintDone", 20*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })

	executed := r.vp.Executed()
	i := slices.Index(executed, "M109 S200")
	got := executed[i:]
	if n := len(got); n > 0 && got[n-1] == "M400" {
		got = got[:n-1]
	}
	// The parser ended the wait at once; the M108 line itself runs from
	// the command queue in the place where it was sent.
	want := append(append(slices.Clone(job[:1+fit]), "M108"), job[1+fit:]...)
	if !slices.Equal(got, want) {
		t.Errorf("executed %q, want %q", got, want)
	}
	st := r.vp.RXStats()
	if st.Overruns != 0 {
		t.Errorf("RX buffer overran %d times", st.Overruns)
	}
	if st.Peak > 127 {
		t.Errorf("RX buffer peaked at %d bytes, over the 127 a Marlin ring of 128 holds", st.Peak)
	}
	if n := r.vp.LineStats().Repeated; n != 0 {
		t.Errorf("%d lines sent twice", n)
	}
}

func TestUserWaitWithLinesBehindNoTimeout(t *testing.T) {
	vcfg := fastConfig()
	vcfg.EmergencyParser = true
	vcfg.NoBusyKeepalive = true // no busy lines that would count as progress
	var timeouts atomic.Int64
	r := startRigMetrics(t, vcfg, printer.Config{
		Flow:        printer.FlowWindow,
		CommTimeout: 100 * time.Millisecond,
		Settings:    printer.Settings{BlockedCommands: []string{}},
	}, printer.Metrics{Timeout: func() { timeouts.Add(1) }})
	r.waitState("OPERATIONAL", 10*time.Second)
	// Print jobs wait for the capabilities; commands do not.
	waitFor(t, "capabilities", 5*time.Second, func() bool { return r.p.Snapshot().Capabilities["EMERGENCY_PARSER"] })

	done := make(chan error, 1)
	lines := []string{"M0", "M117 behind the pause", "M300 S440 P10"}
	if err := r.p.SendGcode(context.Background(), lines, "test", func(_ []string, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	r.waitExecuting("M0")
	n := r.runningLine("M0")
	behind := wireBytes(n+1, lines[1:]...)
	waitFor(t, "lines behind M0", 5*time.Second, func() bool { return r.bytesBehind(n, lines[1:]) >= behind })
	// Ten times the communication timeout without a line from the
	// firmware: the head of the window is a user wait, which never times
	// out, whatever waits behind it.
	time.Sleep(time.Second)
	if n := timeouts.Load(); n != 0 {
		t.Errorf("%d communication timeouts during M0", n)
	}
	r.gcode("M108")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("M0 request: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("M0 request not done after M108")
	}
	waitFor(t, "the M108 line run", 5*time.Second, func() bool { return slices.Contains(r.vp.Executed(), "M108") })
	// The edge's own setup lines (M155 S2, M154 S5) may run in between
	// when the request went out before the capabilities were applied.
	executed := r.vp.Executed()
	want := append(slices.Clone(lines), "M108")
	if !inOrder(executed, want) {
		t.Errorf("executed %q, want %q in this order", executed, want)
	}
	if n := r.vp.LineStats().Repeated; n != 0 {
		t.Errorf("%d lines sent twice", n)
	}
	if n := r.rec.count(bridge.EventError); n != 0 {
		t.Errorf("%d Error events", n)
	}
}

// inOrder reports whether want occurs in executed in its order, with
// other commands allowed in between.
func inOrder(executed, want []string) bool {
	i := 0
	for _, c := range executed {
		if i < len(want) && c == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestEmergencyLineWaitsForRoom(t *testing.T) {
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 1
	vcfg.EmergencyParser = true
	vcfg.PlannerSize = 2 // one queued move: the second move blocks the firmware
	r := startRig(t, vcfg, printer.Config{Flow: printer.FlowWindow})
	r.waitState("OPERATIONAL", 10*time.Second)
	waitFor(t, "capabilities", 5*time.Second, func() bool { return r.p.Snapshot().Capabilities["EMERGENCY_PARSER"] })
	// Learn the next line number once the edge's own setup lines are done.
	var last int64
	waitFor(t, "setup lines done", 10*time.Second, func() bool {
		r.gcode("M105")
		before := r.vp.LineStats().Accepted
		time.Sleep(200 * time.Millisecond)
		after := r.vp.LineStats().Accepted
		last = -1
		for k := range after {
			last = max(last, k)
		}
		return len(before) == len(after)
	})
	next := int(last) + 1

	// Two 3 s moves: the first goes to the planner and is acknowledged,
	// the second blocks the firmware. Display lines behind it fill the
	// window to exactly 127 bytes, so an M108 has no room until an ok.
	lines, sum := fillWindow(next, []string{"G91", "G1 X3 F60", "G1 X3 F60"})
	if sum != 127 {
		t.Fatalf("test setup: the blocked move and the display lines take %d bytes, want 127", sum)
	}
	fillerBytes := sum - wireBytes(next+2, lines[2])
	done := make(chan error, 1)
	if err := r.p.SendGcode(context.Background(), lines, "test", func(_ []string, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	blocked := next + 2
	waitFor(t, "window full behind the blocked move", 5*time.Second, func() bool { return r.bytesBehind(blocked, lines[3:]) >= fillerBytes })
	r.gcode("M108")
	// The move blocks for about 3 s: the M108 must not arrive meanwhile.
	time.Sleep(300 * time.Millisecond)
	if got := r.bytesBehind(blocked, lines[3:]); got != fillerBytes {
		t.Errorf("%d bytes arrived behind the blocked move after the M108, want %d: the M108 went out while the window was full", got, fillerBytes)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("request not done")
	}
	waitFor(t, "the M108 line run", 5*time.Second, func() bool { return slices.Contains(r.vp.Executed(), "M108") })
	if st := r.vp.RXStats(); st.Overruns != 0 {
		t.Errorf("RX buffer overran %d times", st.Overruns)
	}
	if !inOrder(r.vp.Executed(), append(slices.Clone(lines), "M108")) {
		t.Errorf("executed %q, want %q then M108", r.vp.Executed(), lines)
	}
}

func TestEmergencyLinesNeverOverrunRX(t *testing.T) {
	vcfg := fastConfig()
	vcfg.EmergencyParser = true
	// Paced, with processing time, so the window is full most of the time
	// and an M108 often finds no room at once.
	vcfg.Baud = 115200
	vcfg.ProcessingTime = 500 * time.Microsecond
	r := startRig(t, vcfg, printer.Config{Flow: printer.FlowWindow})
	r.waitState("OPERATIONAL", 10*time.Second)
	r.job(bridge.ActionStart, testFile)
	r.waitState("PRINTING", 10*time.Second)
	const sent = 20
	for range sent {
		r.gcode("M108")
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, "PrintDone", 60*time.Second, func() bool { return r.rec.count(bridge.EventPrintDone) == 1 })

	st := r.vp.RXStats()
	if st.Overruns != 0 {
		t.Errorf("RX buffer overran %d times", st.Overruns)
	}
	if st.Peak > 127 {
		t.Errorf("RX buffer peaked at %d bytes, over the 127 a Marlin ring of 128 holds", st.Peak)
	}
	var job []string
	m108 := 0
	for _, c := range r.vp.Executed() {
		if c == "M108" {
			m108++
			continue
		}
		job = append(job, c)
	}
	if m108 != sent {
		t.Errorf("%d M108 lines ran from the command queue, want %d", m108, sent)
	}
	// Each M108's ok completed the M108 itself, not a job line, so the
	// file ran whole and in order.
	assertRecordEqualsFile(t, job)
	if n := r.vp.LineStats().Repeated; n != 0 {
		t.Errorf("%d lines sent twice", n)
	}
}

// fillWindow appends display lines to head, whose lines are numbered from
// next, until the lines from the third on take exactly 127 bytes, and
// returns them with that sum. Line lengths are searched, because the
// checksum's digits change with the text.
func fillWindow(next int, head []string) ([]string, int) {
	var best []string
	bestSum := 0
	for width := 40; width > 5; width-- {
		lines := slices.Clone(head)
		sum := wireBytes(next+2, head[2])
		for len(lines) < 8 {
			n := next + len(lines)
			l := "M117 " + strings.Repeat("w", width)
			if wireBytes(n, l) > 127-sum {
				// The last line takes what is left, if a line fits it.
				for len(l) > 6 && wireBytes(n, l) > 127-sum {
					l = l[:len(l)-1]
				}
				if wireBytes(n, l) <= 127-sum {
					lines = append(lines, l)
					sum += wireBytes(n, l)
				}
				break
			}
			lines = append(lines, l)
			sum += wireBytes(n, l)
		}
		if sum > bestSum {
			best, bestSum = lines, sum
		}
		if sum == 127 {
			break
		}
	}
	return best, bestSum
}
