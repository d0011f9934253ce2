package bench

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Targets the project has set.
const (
	targetCeilingShare   = 0.97
	targetVsPrintcore    = 2.0
	targetEdgeRSS        = 20 << 20
	targetWorkerRSS      = 15 << 20
	targetNATSEvents     = 100_000
	targetHookP99        = 5 * time.Millisecond
	targetAnalysisFactor = 20.0
)

// targetTable compares the results with the project's targets. A target
// whose measurement did not run is left out.
func targetTable(res *Results) Table {
	t := Table{Title: "Against the targets", Columns: []string{"Target", "Measured", "Met"}}
	add := func(target, measured string, met bool) {
		t.Rows = append(t.Rows, []string{target, measured, yesNo(met)})
	}
	if rows := windowRows(res); len(rows) > 0 {
		var shares, ratios []string
		metShare, metRatio := true, true
		for _, w := range rows {
			shares = append(shares, fmt.Sprintf("%s at %d", formatPercent(w.window.CeilingShare()), w.window.Baud))
			ratio := w.window.LinesPerSecond() / w.printcore.LinesPerSecond()
			ratios = append(ratios, fmt.Sprintf("%s at %d", formatRatio(ratio), w.window.Baud))
			metShare = metShare && w.window.CeilingShare() >= targetCeilingShare
			metRatio = metRatio && ratio >= targetVsPrintcore
		}
		add("windowed streaming ≥ 97 % of the wire ceiling", strings.Join(shares, ", "), metShare)
		add("windowed streaming ≥ 2x printcore", strings.Join(ratios, ", "), metRatio)
	}
	if m := res.EdgeMemory; m != nil {
		add(fmt.Sprintf("edge peak RSS ≤ 20 MiB (%.0f MB file)", float64(m.FileBytes)/1e6), formatMiB(m.EdgePeakRSS), m.EdgePeakRSS <= targetEdgeRSS)
	}
	if m := res.LeanEdgeMemory; m != nil {
		add(fmt.Sprintf("edge peak RSS ≤ 20 MiB (%.0f MB file), -tags %s", float64(m.FileBytes)/1e6, LeanBuildTag), formatMiB(m.EdgePeakRSS),
			m.EdgePeakRSS <= targetEdgeRSS)
	}
	for _, m := range res.WorkerMemory {
		add("worker peak RSS ≤ 15 MiB, "+workerPace(m), formatMiB(m.PeakRSS), m.PeakRSS <= targetWorkerRSS)
	}
	for _, m := range res.LeanWorkerMemory {
		add(fmt.Sprintf("worker peak RSS ≤ 15 MiB, %s, -tags %s", workerPace(m), LeanBuildTag), formatMiB(m.PeakRSS), m.PeakRSS <= targetWorkerRSS)
	}
	for _, p := range res.Pipelines {
		if p.Broker == BrokerNATS {
			add("≥ 100k events/s through NATS core, edge to worker", formatRate(p.EventsPerSecond())+" events/s", p.EventsPerSecond() >= targetNATSEvents)
		}
	}
	for _, l := range res.Latencies {
		// The row without TCP_QUICKACK is a comparison, not a setup of printbridge.
		if l.Broker == BrokerMosquittoNoQuickAck {
			continue
		}
		add("p99 ≤ 5 ms from serial line to hook G-code, "+l.Broker, formatDuration(l.Percentile(99)), l.Percentile(99) <= targetHookP99)
	}
	if len(res.Analyses) > 0 {
		var ratios []float64
		for _, a := range res.Analyses {
			ratios = append(ratios, a.GoMBPerSecond()/a.GcoderMBPerSecond())
		}
		slices.Sort(ratios)
		add("G-code analysis ≥ 20x gcoder on every file",
			fmt.Sprintf("%s to %s, median %s", formatRatio(ratios[0]), formatRatio(ratios[len(ratios)-1]), formatRatio(ratios[len(ratios)/2])),
			ratios[0] >= targetAnalysisFactor)
	}
	return t
}

type windowRow struct{ window, printcore StreamResult }

// windowRows pairs the windowed run with printcore's for each baud at
// speed 0, where the wire alone limits both.
func windowRows(res *Results) []windowRow {
	var rows []windowRow
	for _, w := range res.Streams {
		if w.Host != HostWindow || w.Speed != 0 {
			continue
		}
		for _, p := range res.Streams {
			if p.Host == HostPrintcore && p.Baud == w.Baud && p.Speed == 0 {
				rows = append(rows, windowRow{window: w, printcore: p})
			}
		}
	}
	return rows
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// workerPace names the event rate of a worker memory run.
func workerPace(m WorkerMemoryResult) string {
	if m.Rate == 0 {
		return "unpaced burst"
	}
	return fmt.Sprintf("%d events/s", m.Rate)
}
