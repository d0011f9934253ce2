package edge

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// edgeInfoLabels returns the printer and version labels of each series of
// printbridge_edge_info in reg whose value is 1.
func edgeInfoLabels(t *testing.T, reg *prometheus.Registry) [][2]string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	for _, f := range families {
		if f.GetName() != "printbridge_edge_info" {
			continue
		}
		for _, metric := range f.GetMetric() {
			if metric.GetGauge().GetValue() != 1 {
				t.Errorf("printbridge_edge_info series %v has value %v, want 1", metric.GetLabel(), metric.GetGauge().GetValue())
			}
			labels := map[string]string{}
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out = append(out, [2]string{labels["printer"], labels["version"]})
		}
	}
	return out
}

func TestEdgeInfoNamesPrinter(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	if got := edgeInfoLabels(t, reg); len(got) != 0 {
		t.Fatalf("printbridge_edge_info before SetPrinter = %v, want no series", got)
	}

	m.SetPrinter("mk3s")
	m.SetPrinter("mk3s")
	got := edgeInfoLabels(t, reg)
	if len(got) != 1 || got[0] != [2]string{"mk3s", Version} {
		t.Errorf("printbridge_edge_info = %v, want one series with printer mk3s and version %s", got, Version)
	}

	m.SetPrinter("ender")
	got = edgeInfoLabels(t, reg)
	if len(got) != 1 || got[0] != [2]string{"ender", Version} {
		t.Errorf("printbridge_edge_info after a second printer id = %v, want only printer ender", got)
	}
}

func TestEdgeNewSetsInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := New(Config{PrinterID: "info1"}, nil, slog.New(slog.DiscardHandler), NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.close() }()
	got := edgeInfoLabels(t, reg)
	if len(got) != 1 || got[0] != [2]string{"info1", Version} {
		t.Errorf("printbridge_edge_info = %v, want one series with printer info1", got)
	}
}
