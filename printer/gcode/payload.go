package gcode

import (
	"strconv"
	"strings"

	"github.com/printbridge/printbridge/bridge"
)

// Payload returns the result as an event payload (the result of
// MetadataAnalysisFinished): OctoPrint's keys first, then printbridge's.
// Lengths, times and coordinates are floats, counts are ints, and tools
// are ordered tool0, tool1, ...
func (r *Result) Payload() bridge.Payload {
	p := bridge.Payload{
		{Key: "estimatedPrintTime", Value: r.EstimatedPrintTime},
		{Key: "filament", Value: filamentPayload(r.Filament)},
		{Key: "printingArea", Value: areaPayload(r.PrintingArea)},
		{Key: "dimensions", Value: dimensionsPayload(r.Dimensions)},
		{Key: "travelArea", Value: areaPayload(r.TravelArea)},
		{Key: "travelDimensions", Value: dimensionsPayload(r.TravelDimensions)},
		{Key: "layerCount", Value: r.LayerCount},
		{Key: "slicer", Value: slicerPayload(&r.Slicer)},
		{Key: "lines", Value: r.Lines},
		{Key: "bytes", Value: r.Bytes},
		{Key: "analysisSeconds", Value: r.AnalysisSeconds},
		{Key: "time", Value: bridge.Payload{
			{Key: "moves", Value: r.Time.Moves},
			{Key: "dwell", Value: r.Time.Dwell},
			{Key: "homing", Value: r.Time.Homing},
		}},
		{Key: "filamentDiameter", Value: r.FilamentDiameter},
		{Key: "volumetricExtrusion", Value: r.VolumetricExtrusion},
		{Key: "moves", Value: r.Moves},
		{Key: "arcs", Value: r.Arcs},
	}
	if len(r.Notes) > 0 {
		notes := make([]any, len(r.Notes))
		for i, n := range r.Notes {
			notes[i] = n
		}
		p = append(p, bridge.Field{Key: "notes", Value: notes})
	}
	return p
}

func filamentPayload(f map[string]Filament) bridge.Payload {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	// Numeric order, so tool10 follows tool9.
	toolNumber := func(k string) int {
		n, err := strconv.Atoi(strings.TrimPrefix(k, "tool"))
		if err != nil {
			return 1 << 30
		}
		return n
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && toolNumber(keys[j]) < toolNumber(keys[j-1]); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	out := make(bridge.Payload, 0, len(keys))
	for _, k := range keys {
		out = append(out, bridge.Field{Key: k, Value: bridge.Payload{
			{Key: "length", Value: f[k].Length},
			{Key: "volume", Value: f[k].Volume},
		}})
	}
	return out
}

func areaPayload(a *Area) any {
	if a == nil {
		return nil
	}
	return bridge.Payload{
		{Key: "minX", Value: a.MinX}, {Key: "minY", Value: a.MinY}, {Key: "minZ", Value: a.MinZ},
		{Key: "maxX", Value: a.MaxX}, {Key: "maxY", Value: a.MaxY}, {Key: "maxZ", Value: a.MaxZ},
	}
}

func dimensionsPayload(d *Dimensions) any {
	if d == nil {
		return nil
	}
	return bridge.Payload{{Key: "width", Value: d.Width}, {Key: "depth", Value: d.Depth}, {Key: "height", Value: d.Height}}
}

func floatList(v []float64) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = x
	}
	return out
}

// slicerPayload lists only the values the file states.
func slicerPayload(s *Slicer) bridge.Payload {
	p := bridge.Payload{}
	if s.Generator != "" {
		p = append(p, bridge.Field{Key: "generator", Value: s.Generator})
	}
	if s.Flavor != "" {
		p = append(p, bridge.Field{Key: "flavor", Value: s.Flavor})
	}

	if s.EstimatedPrintTime != nil {
		p = append(p, bridge.Field{Key: "estimatedPrintTime", Value: *s.EstimatedPrintTime})
	}

	if s.FilamentLength != nil {
		p = append(p, bridge.Field{Key: "filamentLength", Value: floatList(s.FilamentLength)})
	}
	if s.FilamentVolume != nil {
		p = append(p, bridge.Field{Key: "filamentVolume", Value: floatList(s.FilamentVolume)})
	}
	if s.FilamentWeight != nil {
		p = append(p, bridge.Field{Key: "filamentWeight", Value: floatList(s.FilamentWeight)})
	}

	if s.FilamentDiameter != nil {
		p = append(p, bridge.Field{Key: "filamentDiameter", Value: *s.FilamentDiameter})
	}
	if s.LayerHeight != nil {
		p = append(p, bridge.Field{Key: "layerHeight", Value: *s.LayerHeight})
	}
	if s.LayerCount != nil {
		p = append(p, bridge.Field{Key: "layerCount", Value: *s.LayerCount})
	}
	if s.PrintingArea != nil {
		p = append(p, bridge.Field{Key: "printingArea", Value: areaPayload(s.PrintingArea)})
	}
	return p
}
