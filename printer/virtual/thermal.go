package virtual

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

// Heater model constants. The rates are estimates for a typical hotend and
// bed. In real time a hotend takes about 36 s to reach 200 °C and a bed
// about 19 s to reach 60 °C.
const (
	ambientTemp     = 22.0 // °C
	hotendHeatRate  = 5.0  // °C/s with the heater on
	hotendCoolRate  = 2.0  // °C/s toward ambient or a lower target
	bedHeatRate     = 2.0
	bedCoolRate     = 0.5
	tempWindow      = 1.0   // TEMP_WINDOW and TEMP_BED_WINDOW: ±°C that end a wait
	hotendCoolFloor = 85.0  // EXTRUDE_MINTEMP/2: M109 R0 stops waiting below it
	bedCoolFloor    = 30.0  // M190 R0 stops waiting below it
	extrudeMinTemp  = 170.0 // EXTRUDE_MINTEMP of PREVENT_COLD_EXTRUSION
	maxPower        = 127   // Marlin's soft PWM full scale
)

type heater struct {
	actual, target     float64
	heatRate, coolRate float64 // °C/s
	holdSpan           float64 // temperature rise above ambient at full power
}

// step moves the heater toward its target (or ambient when off) for dt
// seconds of model time. A negative dt means "instantly".
func (h *heater) step(dt float64) {
	goal := ambientTemp
	if h.target > 0 {
		goal = math.Max(h.target, ambientTemp)
	}
	if dt < 0 {
		h.actual = goal
		return
	}
	if h.actual < goal {
		h.actual = math.Min(goal, h.actual+h.heatRate*dt)
	} else {
		h.actual = math.Max(goal, h.actual-h.coolRate*dt)
	}
}

// power returns the heater PWM value as M105 reports it (0-127).
func (h *heater) power() int {
	if h.target <= 0 || h.target <= ambientTemp {
		return 0
	}
	if h.actual < h.target-2*tempWindow {
		return maxPower
	}
	hold := int(math.Round(maxPower * (h.target - ambientTemp) / h.holdSpan))
	return max(1, min(maxPower, hold))
}

// thermal is the heater state of the machine. It is shared by the
// firmware and report goroutines and advances with wall-clock time scaled
// by Config.Speed each time it is read.
type thermal struct {
	mu      sync.Mutex // guards all fields
	hotends []heater
	bed     *heater // nil without a heated bed
	speed   float64
	last    time.Time
}

func newThermal(extruders int, heatedBed bool, speed float64) *thermal {
	t := &thermal{speed: speed, last: time.Now()}
	for range extruders {
		t.hotends = append(t.hotends, heater{actual: ambientTemp, heatRate: hotendHeatRate, coolRate: hotendCoolRate, holdSpan: 280})
	}
	if heatedBed {
		t.bed = &heater{actual: ambientTemp, heatRate: bedHeatRate, coolRate: bedCoolRate, holdSpan: 100}
	}
	return t
}

func (t *thermal) updateLocked() {
	now := time.Now()
	dt := now.Sub(t.last).Seconds() * t.speed
	if t.speed == 0 {
		dt = -1
	}
	t.last = now
	for i := range t.hotends {
		t.hotends[i].step(dt)
	}
	if t.bed != nil {
		t.bed.step(dt)
	}
}

// heaterLocked returns hotend e, or the bed for e == bedHeater.
func (t *thermal) heaterLocked(e int) *heater {
	if e == bedHeater {
		return t.bed
	}
	return &t.hotends[e]
}

const bedHeater = -1

func (t *thermal) setTarget(e int, target float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.updateLocked()
	t.heaterLocked(e).target = math.Max(0, target)
}

// allOff sets every target to 0, as kill() and a reset do.
func (t *thermal) allOff() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.updateLocked()
	for i := range t.hotends {
		t.hotends[i].target = 0
	}
	if t.bed != nil {
		t.bed.target = 0
	}
}

// reading returns the current and target temperature of a heater.
func (t *thermal) reading(e int) (actual, target float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.updateLocked()
	h := t.heaterLocked(e)
	return h.actual, h.target
}

// report returns Marlin's print_heater_states text for the active tool:
// ` T:<a> /<t> B:<a> /<t> @:<pwm> B@:<pwm>`, with per-hotend `T<n>:` and
// `@<n>:` fields on machines with more than one hotend. Every field starts
// with a space, so M105 prints "ok" + report and autoreports print the
// report alone.
func (t *thermal) report(active int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.updateLocked()
	var b strings.Builder
	h := t.hotends[active]
	fmt.Fprintf(&b, " T:%.2f /%.2f", h.actual, h.target)
	if t.bed != nil {
		fmt.Fprintf(&b, " B:%.2f /%.2f", t.bed.actual, t.bed.target)
	}
	if len(t.hotends) > 1 {
		for i, h := range t.hotends {
			fmt.Fprintf(&b, " T%d:%.2f /%.2f", i, h.actual, h.target)
		}
	}
	fmt.Fprintf(&b, " @:%d", h.power())
	if t.bed != nil {
		fmt.Fprintf(&b, " B@:%d", t.bed.power())
	}
	if len(t.hotends) > 1 {
		for i, h := range t.hotends {
			fmt.Fprintf(&b, " @%d:%d", i, h.power())
		}
	}
	return b.String()
}
