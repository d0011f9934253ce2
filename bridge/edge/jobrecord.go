package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// jobRecord is the running print as stored in DataDir/<printer>.job.json
// between PrintStarted and its PrintDone or PrintFailed. A record found at
// start means the previous run of the edge died mid-print, so that print
// never got its closing event.
type jobRecord struct {
	Name    string    `json:"name"`
	Path    string    `json:"path"`
	Origin  string    `json:"origin"`
	Size    any       `json:"size"`
	Started time.Time `json:"started"`
	// LastSeen is the time of the last event of the job that was
	// recorded, and Progress the job completion in percent then (nil when
	// the event carried none).
	LastSeen time.Time `json:"last_seen"`
	Progress *float64  `json:"progress,omitempty"`
}

// jobRecordInterval is the maximum time between two rewrites of the record
// while events of the job arrive, so the PrintFailed of a killed run
// under-states the print time by at most this much plus the time since
// the job's last event.
const jobRecordInterval = 10 * time.Second

// jobRecordStore keeps the running print's record. All methods run under
// the edge's emitMu, so they need no lock of their own.
type jobRecordStore struct {
	path    string
	current *jobRecord
	// written is when current was last written to disk.
	written time.Time
}

func newJobRecordStore(dataDir, printerID string) *jobRecordStore {
	if dataDir == "" {
		return &jobRecordStore{}
	}
	return &jobRecordStore{path: filepath.Join(dataDir, printerID+".job.json")}
}

// load reads the record a previous run left. It returns nil and no error
// when there is none, and an error naming the file when it cannot be read
// or decoded.
func (s *jobRecordStore) load() (*jobRecord, error) {
	if s.path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read running print record %s: %w", s.path, err)
	}
	var r jobRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("running print record %s is corrupt: %w", s.path, err)
	}
	if r.Path == "" || r.Started.IsZero() {
		return nil, fmt.Errorf("running print record %s is corrupt: missing path or start time", s.path)
	}
	return &r, nil
}

// observe updates the record for one event: PrintStarted writes it,
// PrintDone and PrintFailed remove it, and other events during the job
// refresh LastSeen and Progress when a whole percent of progress has passed
// or jobRecordInterval since the last write, so a print rewrites the
// record about a hundred times plus once per interval.
func (s *jobRecordStore) observe(env *bridge.Envelope) error {
	if s.path == "" {
		return nil
	}
	switch env.Event {
	case bridge.EventPrintStarted:
		s.current = &jobRecord{Started: env.Time, LastSeen: env.Time, Size: payloadValue(env.Payload, "size")}
		s.current.Name, _ = payloadValue(env.Payload, "name").(string)
		s.current.Path, _ = payloadValue(env.Payload, "path").(string)
		s.current.Origin, _ = payloadValue(env.Payload, "origin").(string)
		return s.write(env.Time)
	case bridge.EventPrintDone, bridge.EventPrintFailed:
		s.current = nil
		return s.remove()
	}
	if s.current == nil {
		return nil
	}
	progress := env.Context.Progress
	if env.Time.Sub(s.written) < jobRecordInterval && !newPercent(s.current.Progress, progress) {
		return nil
	}
	s.current.LastSeen = env.Time
	if progress != nil {
		p := *progress
		s.current.Progress = &p
	}
	return s.write(env.Time)
}

// write replaces the record through a temporary file and a rename, so a
// kill leaves either the old or the new record, never a torn one.
func (s *jobRecordStore) write(now time.Time) error {
	data, err := json.Marshal(s.current)
	if err != nil {
		return fmt.Errorf("encode running print record: %w", err)
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		return fmt.Errorf("write running print record: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("replace running print record: %w", err)
	}
	s.written = now
	return nil
}

func (s *jobRecordStore) remove() error {
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove running print record: %w", err)
	}
	return nil
}

// newPercent reports whether progress reached another whole percent since
// the recorded one.
func newPercent(recorded, progress *float64) bool {
	if progress == nil {
		return false
	}
	return recorded == nil || math.Floor(*progress) != math.Floor(*recorded)
}

func payloadValue(p bridge.Payload, key string) any {
	v, _ := p.Get(key)
	return v
}

// interruptedJobPayload is the PrintFailed payload for a print that a
// killed run left open, with OctoPrint's fields. time is the print time up
// to the last recorded event (paused time included, because the record
// does not track pauses), and null when no event after PrintStarted was
// recorded.
func interruptedJobPayload(r *jobRecord) bridge.Payload {
	var elapsed any
	if r.LastSeen.After(r.Started) {
		elapsed = r.LastSeen.Sub(r.Started).Seconds()
	}
	p := bridge.Payload{
		{Key: "name", Value: r.Name}, {Key: "path", Value: r.Path}, {Key: "origin", Value: r.Origin}, {Key: "size", Value: jsonInt(r.Size)},
		{Key: "time", Value: elapsed}, {Key: "reason", Value: "error"},
		{Key: "error", Value: "the edge stopped during the print without ending it (killed, crashed or power loss); the print was interrupted"},
	}
	if r.Progress != nil {
		p = append(p, bridge.Field{Key: "progress", Value: *r.Progress / 100})
	}
	return p
}

// jsonInt turns a size decoded from JSON (float64) back into an integer,
// as PrintStarted sent it.
func jsonInt(v any) any {
	if f, ok := v.(float64); ok && f == float64(int64(f)) {
		return int64(f)
	}
	return v
}

// closeInterruptedJobLocked fires PrintFailed for the print that the previous
// run left open, if any. A corrupt record is logged, counted and removed,
// because no event can be built from it.
func (e *Edge) closeInterruptedJobLocked() {
	r, err := e.jobs.load()
	if err != nil {
		e.metrics.JobRecordErrors.Inc()
		e.log.Error("running print record of the previous run is unusable; removing it, so that print gets no PrintFailed", "error", err)
		if rerr := e.jobs.remove(); rerr != nil {
			e.log.Error("removing the running print record failed; remove it by hand", "error", rerr)
		}
		return
	}
	if r == nil {
		return
	}
	e.log.Warn("the previous run stopped during a print; firing PrintFailed for it", "path", r.Path, "origin", r.Origin,
		"started", r.Started, "last_seen", r.LastSeen)
	// NOTE: an SD card print (origin sdcard) may still run in a firmware
	// that the reconnect does not reset, and the edge does not take such
	// a print over, so it reports it as failed too.
	// emitLocked removes the record when it stores this PrintFailed.
	ctx := bridge.Context{File: &bridge.FileRef{Name: r.Name, Path: r.Path, Origin: r.Origin}, Progress: r.Progress, State: "OFFLINE"}
	e.emitLocked(e.newEnvelope(bridge.EventPrintFailed, interruptedJobPayload(r), ctx))
}
