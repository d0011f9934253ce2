package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Table is one section of the report: a Markdown table and the notes
// printed under it.
type Table struct {
	Title   string
	Columns []string
	Rows    [][]string
	Notes   []string
}

// Machine describes where the numbers were taken.
type Machine struct {
	CPU       string
	Cores     int
	GoVersion string
	Kernel    string
	// LoadAverage is /proc/loadavg's 1, 5 and 15 minute averages when
	// the run started, because other work on the machine skews every
	// number.
	LoadAverage string
	// TimerLateness is how late a 100µs timer fires on average. The
	// virtual printer paces its serial line with such timers, so it
	// bounds how close the simulator gets to its nominal baud.
	TimerLateness time.Duration
}

// Report is the outcome of one Run.
type Report struct {
	Machine  Machine
	Started  time.Time
	Duration time.Duration
	Profile  string
	Tables   []Table
}

// ReadMachine reads the CPU model from /proc/cpuinfo and the kernel
// release from /proc/sys/kernel/osrelease; fields that cannot be read are
// "unknown".
func ReadMachine() Machine {
	m := Machine{CPU: "unknown", Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Kernel: "unknown", LoadAverage: "unknown"}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
				m.CPU = strings.TrimSpace(value)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) >= 3 {
			m.LoadAverage = strings.Join(f[:3], " ")
		}
	}
	m.TimerLateness = timerLateness(100*time.Microsecond, 200)
	return m
}

// timerLateness returns the mean delay past d of n timers of d.
func timerLateness(d time.Duration, n int) time.Duration {
	var late time.Duration
	for range n {
		start := time.Now()
		t := time.NewTimer(d)
		<-t.C
		late += time.Since(start) - d
	}
	return late / time.Duration(n)
}

// Markdown renders the report: the machine, then every table with its
// notes.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s (profile %s, %s in all) on %s, %d cores, Linux %s, %s. "+
		"Load average at the start: %s. A 100 µs Go timer fired %s late on average.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Profile, r.Duration.Round(time.Second),
		r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel, r.Machine.GoVersion, r.Machine.LoadAverage,
		formatDuration(r.Machine.TimerLateness))
	for _, t := range r.Tables {
		fmt.Fprintf(&b, "### %s\n\n", t.Title)
		writeTable(&b, t.Columns, t.Rows)
		for _, n := range t.Notes {
			fmt.Fprintf(&b, "\n%s\n", n)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func writeTable(b *strings.Builder, columns []string, rows [][]string) {
	b.WriteString("| " + strings.Join(columns, " | ") + " |\n")
	sep := make([]string, len(columns))
	for i := range sep {
		sep[i] = "---"
	}
	b.WriteString("| " + strings.Join(sep, " | ") + " |\n")
	for _, row := range rows {
		cells := make([]string, len(columns))
		copy(cells, row)
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
}

// Number formatting shared by the tables.

func formatRate(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func formatPercent(share float64) string {
	return strconv.FormatFloat(share*100, 'f', 1, 64) + " %"
}

func formatRatio(v float64) string {
	return strconv.FormatFloat(v, 'f', 2, 64) + "x"
}

func formatMiB(bytes int64) string {
	return strconv.FormatFloat(float64(bytes)/(1<<20), 'f', 1, 64) + " MiB"
}

func formatDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
	case d >= time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
	default:
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64) + " µs"
	}
}
