package printer

import (
	"maps"
	"time"
)

// TemperatureSnapshot is one heater in the state snapshot.
type TemperatureSnapshot struct {
	Actual float64  `json:"actual"`
	Target *float64 `json:"target"`
}

// JobSnapshot describes the selected file and the running job.
type JobSnapshot struct {
	Name         string   `json:"name"`
	Path         string   `json:"path"`
	Origin       string   `json:"origin"`
	Size         int64    `json:"size"`
	Progress     float64  `json:"progress"`
	FilePosition int64    `json:"fileposition"`
	PrintTime    *float64 `json:"print_time"`
}

// Snapshot is the printer state published on the retained state topic.
type Snapshot struct {
	State        string                         `json:"state_id"`
	StateString  string                         `json:"state_string"`
	Flags        Flags                          `json:"flags"`
	Error        string                         `json:"error,omitempty"`
	Job          *JobSnapshot                   `json:"job"`
	Temperatures map[string]TemperatureSnapshot `json:"temperatures"`
	Position     *Position                      `json:"position"`
	CurrentZ     *float64                       `json:"current_z"`
	Tool         int                            `json:"tool"`
	Firmware     string                         `json:"firmware,omitempty"`
	Capabilities map[string]bool                `json:"capabilities,omitempty"`
	Port         string                         `json:"port"`
	Baud         int                            `json:"baudrate"`
}

// Flags are OctoPrint's state flags, for dashboards and Home Assistant.
type Flags struct {
	Operational   bool `json:"operational"`
	Printing      bool `json:"printing"`
	Paused        bool `json:"paused"`
	Cancelling    bool `json:"cancelling"`
	Ready         bool `json:"ready"`
	Error         bool `json:"error"`
	ClosedOrError bool `json:"closedOrError"`
	// SDReady is set while the printer reports an initialised SD card.
	SDReady bool `json:"sdReady"`
}

// publishSnapshot stores a fresh snapshot when something visible changed
// and signals Changed.
func (s *session) publishSnapshot() {
	snap := s.buildSnapshot()
	old := s.p.snap.Load()
	if old != nil && snapshotsEqual(old, &snap) {
		return
	}
	s.p.snap.Store(&snap)
	select {
	case s.p.changed <- struct{}{}:
	default:
	}
}

func (s *session) buildSnapshot() Snapshot {
	st := s.state
	snap := Snapshot{
		State:        string(st),
		StateString:  s.sdStateText(st, st.String()),
		Temperatures: maps.Clone(s.temps),
		Tool:         s.tool,
		Firmware:     s.firmwareName,
		Port:         s.p.cfg.Port,
		Baud:         s.p.cfg.Baud,
		Flags: Flags{
			Operational:   st.Operational(),
			Printing:      st == StatePrinting || st == StateStarting || st == StateFinishing || st == StateResuming || st == StatePausing,
			Paused:        st == StatePaused,
			Cancelling:    st == StateCancelling,
			Ready:         st == StateOperational,
			Error:         st == StateError || st == StateClosedWithError,
			ClosedOrError: !st.Operational(),
			SDReady:       s.sd.ready,
		},
	}
	if st == StateError || st == StateClosedWithError {
		snap.Error = s.lastError
	}
	if len(s.caps) > 0 {
		snap.Capabilities = maps.Clone(s.caps)
	}
	if s.position != nil {
		pos := *s.position
		snap.Position = &pos
	}
	if s.printerZ != nil {
		z := *s.printerZ
		snap.CurrentZ = &z
	}
	if f := s.selected; f != nil {
		snap.Job = &JobSnapshot{Name: f.name, Path: f.path, Origin: f.originName(), Size: f.size, Progress: f.progress(), FilePosition: f.pos}
		if s.job != nil {
			t := s.job.printTime(time.Now())
			snap.Job.PrintTime = &t
		}
	}
	return snap
}

// snapshotsEqual ignores the running print time, which changes on every
// tick; progress and everything else count.
func snapshotsEqual(a, b *Snapshot) bool {
	if a.State != b.State || a.Error != b.Error || a.Tool != b.Tool || a.Firmware != b.Firmware || a.Flags != b.Flags {
		return false
	}
	if !floatPtrEqual(a.CurrentZ, b.CurrentZ) || (a.Position == nil) != (b.Position == nil) ||
		(a.Position != nil && *a.Position != *b.Position) {
		return false
	}
	if (a.Job == nil) != (b.Job == nil) || (a.Job != nil && (a.Job.Path != b.Job.Path || a.Job.FilePosition != b.Job.FilePosition)) {
		return false
	}
	if len(a.Temperatures) != len(b.Temperatures) || len(a.Capabilities) != len(b.Capabilities) {
		return false
	}
	for k, t := range a.Temperatures {
		u, ok := b.Temperatures[k]
		if !ok || t.Actual != u.Actual || !floatPtrEqual(t.Target, u.Target) {
			return false
		}
	}
	return true
}

func floatPtrEqual(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
