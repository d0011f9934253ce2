package printer_test

import (
	"testing"

	"github.com/printbridge/printbridge/printer"
	"github.com/printbridge/printbridge/printer/virtual"
)

// TestDuplicateResendSendsLineOnce prints through a firmware that sends
// every resend request twice. The second request arrives after the edge
// has sent the line again, so answering it would put the line on the
// wire a second time.
func TestDuplicateResendSendsLineOnce(t *testing.T) {
	cases := []struct {
		name    string
		flow    string
		dialect string
	}{
		{"marlin-ping-pong", printer.FlowPingPong, virtual.DialectMarlin},
		{"marlin-window", printer.FlowWindow, virtual.DialectMarlin},
		{"repetier-ping-pong", printer.FlowPingPong, virtual.DialectRepetier},
		{"repetier-window", printer.FlowWindow, virtual.DialectRepetier},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vcfg := fastConfig()
			vcfg.Seed = quirkSeed
			vcfg.Dialect = c.dialect
			vcfg.DuplicateResend = true
			vcfg.ResendRatio = 10
			r := startRig(t, vcfg, printer.Config{Flow: c.flow})
			executed := printFile(t, r, testFile)
			assertRecordEqualsFile(t, executed)
			assertNoErrorEvents(t, r)

			st := r.vp.LineStats()
			if st.DuplicateRequests == 0 {
				t.Fatal("the firmware repeated no resend request; the test checks nothing")
			}
			assertEachLineOnce(t, st)
		})
	}
}

// TestDuplicateRewindSendsLineOnce covers a repeated request that comes
// with no error line: a firmware-initiated rewind sent twice.
func TestDuplicateRewindSendsLineOnce(t *testing.T) {
	for _, flow := range []string{printer.FlowPingPong, printer.FlowWindow} {
		t.Run(flow, func(t *testing.T) {
			vcfg := fastConfig()
			vcfg.DuplicateResend = true
			vcfg.RewindEvery = 40
			vcfg.RewindLines = 8
			r := startRig(t, vcfg, printer.Config{Flow: flow})
			executed := printFile(t, r, testFile)
			faults := r.vp.Faults()
			if len(faults) < 5 {
				t.Fatalf("%d rewinds during the print, want one every 40 lines: %+v", len(faults), faults)
			}
			assertRecordEqualsFile(t, withoutRewinds(t, executed, faults))
			assertNoErrorEvents(t, r)
			st := r.vp.LineStats()
			if st.Repeated != 0 {
				t.Errorf("%d lines reached the firmware again after it had accepted them", st.Repeated)
			}
		})
	}
}
