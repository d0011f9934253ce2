package hooks

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// Built-in placeholder names, as OctoPrint 1.11 defines them.
const (
	PlaceholderEventName  = "__eventname"
	PlaceholderNow        = "__now"
	PlaceholderData       = "__data"
	PlaceholderJSON       = "__json"
	PlaceholderCurrentZ   = "__currentZ"
	PlaceholderProgress   = "__progress"
	PlaceholderFilename   = "__filename"
	PlaceholderFilepath   = "__filepath"
	PlaceholderFileorigin = "__fileorigin"
)

// builtinPlaceholders lists the names that exist for every event.
// __fileorigin is left out: it only exists while a file is selected.
var builtinPlaceholders = []string{
	PlaceholderEventName, PlaceholderNow, PlaceholderData, PlaceholderJSON,
	PlaceholderCurrentZ, PlaceholderProgress, PlaceholderFilename, PlaceholderFilepath,
}

// Placeholders returns the template parameters of one event as OctoPrint
// 1.11.3+ builds them, every value already converted with Python's str().
// They are the built-ins from the envelope and its printer context, then
// every top-level payload key, which wins over a built-in of the same name.
//
// now is the time the worker handles the event (OctoPrint evaluates
// __now when its event thread dispatches, not when the event fires).
// __fileorigin exists only while a file is selected, so using it without
// one is an unknown placeholder, as in OctoPrint (whose docs promise
// "NO FILE" instead).
func Placeholders(env *bridge.Envelope, now time.Time) map[string]string {
	params := map[string]string{
		PlaceholderCurrentZ:  "-1",
		PlaceholderEventName: env.Event,
		PlaceholderFilename:  "NO FILE",
		PlaceholderFilepath:  "NO PATH",
		PlaceholderProgress:  "0",
		PlaceholderData:      pythonStr(payloadValue(env.Payload)),
		PlaceholderJSON:      payloadJSON(env.Payload),
		PlaceholderNow:       isoNow(now),
	}
	if z := env.Context.CurrentZ; z != nil {
		params[PlaceholderCurrentZ] = pyFloatRepr(*z)
	}
	if file := env.Context.File; file != nil {
		params[PlaceholderFilename] = file.Name
		params[PlaceholderFilepath] = file.Path
		params[PlaceholderFileorigin] = file.Origin
		if p := env.Context.Progress; p != nil {
			params[PlaceholderProgress] = roundHalfEven(*p)
		}
	}
	for _, f := range env.Payload {
		params[f.Key] = pythonStr(f.Value)
	}
	return params
}

// placeholderLookup returns the value of a placeholder and whether the
// event has it.
type placeholderLookup func(name string) (string, bool)

// mapLookup looks placeholders up in params, as built by Placeholders.
func mapLookup(params map[string]string) placeholderLookup {
	return func(name string) (string, bool) {
		v, ok := params[name]
		return v, ok
	}
}

// placeholderSet resolves the placeholders of one event as the templates
// ask for them, with the values Placeholders would give. Building every
// one up front cost more than the rest of a hook's dispatch at high event
// rates, because __data, __json and __now format the whole payload or the
// clock, and most hooks use none of them. The set is used by one goroutine.
type placeholderSet struct {
	env *bridge.Envelope
	now time.Time

	// Values of __data, __json and __now, once asked for.
	data, json, nowText         string
	haveData, haveJSON, haveNow bool
}

func newPlaceholderSet(env *bridge.Envelope, now time.Time) *placeholderSet {
	return &placeholderSet{env: env, now: now}
}

func (p *placeholderSet) lookup(name string) (string, bool) {
	// A payload key wins over a built-in of the same name. The last of
	// two equal keys wins, as in the map that Placeholders builds.
	for i := len(p.env.Payload) - 1; i >= 0; i-- {
		if f := p.env.Payload[i]; f.Key == name {
			return pythonStr(f.Value), true
		}
	}
	ctx := p.env.Context
	switch name {
	case PlaceholderEventName:
		return p.env.Event, true
	case PlaceholderCurrentZ:
		if ctx.CurrentZ != nil {
			return pyFloatRepr(*ctx.CurrentZ), true
		}
		return "-1", true
	case PlaceholderFilename:
		if ctx.File != nil {
			return ctx.File.Name, true
		}
		return "NO FILE", true
	case PlaceholderFilepath:
		if ctx.File != nil {
			return ctx.File.Path, true
		}
		return "NO PATH", true
	case PlaceholderFileorigin:
		if ctx.File != nil {
			return ctx.File.Origin, true
		}
		return "", false
	case PlaceholderProgress:
		if ctx.File != nil && ctx.Progress != nil {
			return roundHalfEven(*ctx.Progress), true
		}
		return "0", true
	case PlaceholderData:
		if !p.haveData {
			p.data, p.haveData = pythonStr(payloadValue(p.env.Payload)), true
		}
		return p.data, true
	case PlaceholderJSON:
		if !p.haveJSON {
			p.json, p.haveJSON = payloadJSON(p.env.Payload), true
		}
		return p.json, true
	case PlaceholderNow:
		if !p.haveNow {
			p.nowText, p.haveNow = isoNow(p.now), true
		}
		return p.nowText, true
	}
	return "", false
}

// payloadValue turns a nil Payload into a nil interface, so that an event
// without payload renders as Python's None.
func payloadValue(p bridge.Payload) any {
	if p == nil {
		return nil
	}
	return p
}

// payloadJSON is OctoPrint's __json: "{}" for a missing or empty payload,
// and "" when the payload cannot be serialised.
func payloadJSON(p bridge.Payload) string {
	if len(p) == 0 {
		return "{}"
	}
	s, err := pythonJSON(p)
	if err != nil {
		return ""
	}
	return s
}

// isoNow is Python's datetime.now().isoformat(): local time without a
// zone, with microseconds only when they are not zero.
func isoNow(t time.Time) string {
	t = t.Local()
	s := t.Format("2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		s += fmt.Sprintf(".%06d", us)
	}
	return s
}

// roundHalfEven is str(round(p)) in Python 3, which rounds halves to the
// even neighbour (2.5 -> 2, 3.5 -> 4).
func roundHalfEven(p float64) string {
	if math.IsNaN(p) || math.IsInf(p, 0) {
		// NOTE: Python's round() raises on NaN and infinity, which would
		// make OctoPrint skip the hook; printbridge renders 0 instead.
		return "0"
	}
	r := math.RoundToEven(p)
	if math.Abs(r) < 1e18 {
		// Python's round() returns an int, so -0.4 gives "0", not "-0".
		return strconv.FormatInt(int64(r), 10)
	}
	return fmt.Sprintf("%.0f", r)
}
