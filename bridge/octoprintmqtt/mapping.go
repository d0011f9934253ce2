package octoprintmqtt

import (
	"encoding/json"
	"math"
	"sort"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// isRetainedEvent reports whether the plugin publishes event retained
// when its broker retain setting is on, which is its default. It is a
// function, not a map, so that commands without the mirror run no code of
// this package at start (see crcTable in package outbox).
func isRetainedEvent(event string) bool {
	return event == bridge.EventZChange || event == bridge.EventFirmwareData
}

// EventPayload builds the plugin's message for one envelope: the event
// payload in OctoPrint's key order, then "_event" and "_timestamp".
func EventPayload(env *bridge.Envelope) ([]byte, error) {
	data := env.Payload.Clone()
	if data == nil {
		data = bridge.Payload{}
	}
	data = data.Set("_event", env.Event)
	data = data.Set("_timestamp", env.Time.Unix())
	return json.Marshal(data)
}

// ProgressPayload builds the plugin's progress/printing message.
func ProgressPayload(location, path string, progress int, at time.Time) ([]byte, error) {
	return json.Marshal(bridge.Payload{
		{Key: "location", Value: location},
		{Key: "path", Value: path},
		{Key: "progress", Value: progress},
		{Key: "_timestamp", Value: at.Unix()},
	})
}

// TemperaturePayload builds the plugin's temperature/<heater> message;
// a nil target is written as null.
func TemperaturePayload(actual float64, target *float64, at time.Time) ([]byte, error) {
	var t any
	if target != nil {
		t = *target
	}
	return json.Marshal(bridge.Payload{
		{Key: "actual", Value: actual},
		{Key: "target", Value: t},
		{Key: "_timestamp", Value: at.Unix()},
	})
}

func (m *Mirror) mirrorEvent(data []byte) {
	env, err := bridge.DecodeEnvelope(data)
	if err != nil {
		m.log.Warn("invalid event envelope not mirrored", "error", err)
		return
	}
	// The plugin publishes these progress messages before the event.
	origin, _ := payloadString(env.Payload, "origin")
	path, _ := payloadString(env.Payload, "path")
	switch env.Event {
	case bridge.EventPrintStarted, bridge.EventFileSelected:
		m.publishProgress(origin, path, 0, env.Time)
	case bridge.EventPrintDone:
		m.publishProgress(origin, path, 100, env.Time)
	case bridge.EventFileDeselected:
		m.publishProgress("", "", 0, env.Time)
	}
	out, err := EventPayload(env)
	if err != nil {
		m.log.Warn("encoding mirrored event failed", "event", env.Event, "event_id", env.ID, "error", err)
		return
	}
	m.publish(m.topic("event/"+env.Event), 0, isRetainedEvent(env.Event), out)
	if env.Event == bridge.EventShutdown {
		m.shutdownOnce.Do(func() { close(m.sawShutdown) })
	}
}

// stateFields are the parts of the state snapshot the plugin's progress
// and temperature topics need.
type stateFields struct {
	Flags struct {
		Printing bool `json:"printing"`
	} `json:"flags"`
	Job *struct {
		Path     string  `json:"path"`
		Origin   string  `json:"origin"`
		Progress float64 `json:"progress"`
	} `json:"job"`
	Temperatures map[string]struct {
		Actual float64  `json:"actual"`
		Target *float64 `json:"target"`
	} `json:"temperatures"`
	LastSeen time.Time `json:"last_seen"`
}

func (m *Mirror) mirrorState(data []byte) {
	var st stateFields
	if err := json.Unmarshal(data, &st); err != nil {
		m.log.Warn("invalid state snapshot not mirrored", "error", err)
		return
	}
	at := st.LastSeen
	if at.IsZero() {
		at = time.Now()
	}
	if st.Flags.Printing && st.Job != nil {
		// OctoPrint reports print progress in whole percent.
		p := int(math.Floor(st.Job.Progress))
		if !m.lastProgress.valid || m.lastProgress.path != st.Job.Path || m.lastProgress.progress != p {
			m.publishProgress(st.Job.Origin, st.Job.Path, p, at)
		}
	}
	heaters := make([]string, 0, len(st.Temperatures))
	for h := range st.Temperatures {
		heaters = append(heaters, h)
	}
	sort.Strings(heaters)
	for _, h := range heaters {
		t := st.Temperatures[h]
		target := 0.0
		if t.Target != nil {
			target = *t.Target
		}
		// As the plugin does: skip heaters reading zero with no target,
		// and publish on a new heater, an actual change of at least the
		// threshold, or a target change of at least 0.1.
		if t.Actual == 0 && target == 0 {
			continue
		}
		last, seen := m.temps[h]
		if seen && last.actual != 0 && math.Abs(t.Actual-last.actual) < m.cfg.TemperatureThreshold &&
			math.Abs(target-last.target) < 0.1 {
			continue
		}
		out, err := TemperaturePayload(t.Actual, t.Target, at)
		if err != nil {
			continue
		}
		m.publish(m.topic("temperature/"+h), 0, true, out)
		m.temps[h] = tempState{actual: t.Actual, target: target}
	}
}

func (m *Mirror) publishProgress(location, path string, progress int, at time.Time) {
	out, err := ProgressPayload(location, path, progress, at)
	if err != nil {
		return
	}
	m.publish(m.topic("progress/printing"), 0, true, out)
	m.lastProgress = progressState{path: path, progress: progress, valid: true}
}

func payloadString(p bridge.Payload, key string) (string, bool) {
	v, ok := p.Get(key)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}
