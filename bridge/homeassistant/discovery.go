package homeassistant

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/printbridge/printbridge/bridge"
)

// Button press payloads accepted on the button topic. Home Assistant
// sends the payload_press of the pressed button.
const (
	PressPause         = "pause"
	PressResume        = "resume"
	PressCancel        = "cancel"
	PressEmergencyStop = "emergency_stop"
	PressConnect       = "connect"
)

// Platforms of the components in the discovery payload.
const (
	platformSensor       = "sensor"
	platformBinarySensor = "binary_sensor"
	platformButton       = "button"
	platformEvent        = "event"
)

// eventEntities are the printbridge events exposed as Home Assistant
// event entities, by component id.
var eventEntities = []struct{ id, event, name string }{
	{"print_started", bridge.EventPrintStarted, "Print started"},
	{"print_done", bridge.EventPrintDone, "Print done"},
	{"print_failed", bridge.EventPrintFailed, "Print failed"},
	{"print_paused", bridge.EventPrintPaused, "Print paused"},
	{"error", bridge.EventError, "Error"},
}

// Templates read the retained state snapshot. "None" is the payload that
// Home Assistant's MQTT sensors take as an unknown value.
const (
	tplStateString = `{{ value_json.state_string }}`
	tplProgress    = `{% if value_json.job %}{{ value_json.job.progress | round(1) }}{% else %}None{% endif %}`
	tplFile        = `{% if value_json.job %}{{ value_json.job.name }}{% else %}None{% endif %}`
	tplFileAttrs   = `{{ (value_json.job or {}) | to_json }}`
	tplPrintTime   = `{% if value_json.job and value_json.job.print_time is not none %}` +
		`{{ value_json.job.print_time | round(0) | int }}{% else %}None{% endif %}`
	// The time left assumes the rest of the file prints at the average
	// speed so far in bytes per second, so it is an estimate that is
	// poor early in a print and around long moves or heating.
	tplTimeLeft = `{% set job = value_json.job %}` +
		`{% if job and job.print_time is not none and job.progress > 0 %}` +
		`{{ (job.print_time * (100 - job.progress) / job.progress) | round(0) | int }}{% else %}None{% endif %}`
	tplCurrentZ  = `{% if value_json.current_z is not none %}{{ value_json.current_z }}{% else %}None{% endif %}`
	tplConnected = `{{ 'ON' if value_json.flags.operational else 'OFF' }}`
	tplPrinting  = `{{ 'ON' if value_json.flags.printing else 'OFF' }}`
	// tplEvent turns an event envelope into an event entity payload: the
	// OctoPrint payload keys as attributes, plus the envelope id and seq.
	tplEvent = `{{ dict(value_json.payload or {}, event_type=value_json.event, event_id=value_json.id, seq=value_json.seq) | to_json }}`

	// Availability templates on the state topic. The serial link is up in
	// every state with an open, operational connection.
	tplLinkUp      = `{{ 'online' if value_json.flags.operational else 'offline' }}`
	tplCanPause    = `{{ 'online' if value_json.state_id in ['PRINTING', 'STARTING'] else 'offline' }}`
	tplCanResume   = `{{ 'online' if value_json.state_id == 'PAUSED' else 'offline' }}`
	tplCanCancel   = `{{ 'online' if value_json.flags.printing or value_json.flags.paused else 'offline' }}`
	tplCanConnect  = `{{ 'online' if not value_json.flags.operational and value_json.state_id not in ['OPEN_SERIAL', 'CONNECTING'] else 'offline' }}`
	availableValue = "online"
	missingValue   = "offline"
)

// component is one entry of the discovery payload's components mapping.
type component map[string]any

// deviceInfo is the printer data the discovery payload depends on.
type deviceInfo struct {
	heaters  []string
	firmware string
}

// topics are the MQTT topics one device's components refer to.
type topics struct {
	state        string
	availability string
	button       string
	events       bridge.Topics
	printer      string
}

func (t topics) edgeOnline() map[string]any {
	return map[string]any{"topic": t.availability, "payload_available": availableValue, "payload_not_available": missingValue}
}

func (t topics) stateTemplate(tpl string) map[string]any {
	return map[string]any{"topic": t.state, "value_template": tpl}
}

// withAvailability sets the availability of c: the edge's online marker
// and every given state template must all report online.
func (t topics) withAvailability(c component, stateTemplates ...string) component {
	list := []map[string]any{t.edgeOnline()}
	for _, tpl := range stateTemplates {
		list = append(list, t.stateTemplate(tpl))
	}
	c["availability"] = list
	c["availability_mode"] = "all"
	return c
}

// invalidIDChars returns the pattern of the characters that an id part
// must not contain. It compiles on first use, so that commands without
// Home Assistant discovery run no code of this package at start (see
// crcTable in package outbox).
func invalidIDChars() *regexp.Regexp {
	invalidIDCharsOnce.Do(func() { invalidIDCharsPattern = regexp.MustCompile(`[^a-z0-9_]+`) })
	return invalidIDCharsPattern
}

var (
	invalidIDCharsOnce    sync.Once
	invalidIDCharsPattern *regexp.Regexp
)

// heaterID turns a heater key of the state snapshot (tool0, bed, chamber)
// into a component id part.
func heaterID(heater string) string {
	return strings.Trim(invalidIDChars().ReplaceAllString(strings.ToLower(heater), "_"), "_")
}

// heaterName turns a heater key into an entity name: "Tool 0", "Bed".
func heaterName(heater string) string {
	if n, ok := strings.CutPrefix(heater, "tool"); ok && n != "" {
		return "Tool " + n
	}
	if heater == "" {
		return heater
	}
	return strings.ToUpper(heater[:1]) + heater[1:]
}

// jinjaString quotes s as a Jinja string literal. JSON string syntax is a
// subset of Jinja's for the printable characters heater keys contain.
func jinjaString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// components builds every component of the device, by component id.
func (d *Device) components(info deviceInfo) map[string]component {
	t := d.topics
	uid := func(id string) string { return d.node + "_" + id }
	sensor := func(id, name, tpl string) component {
		return component{"p": platformSensor, "unique_id": uid(id), "name": name, "state_topic": t.state, "value_template": tpl}
	}
	comps := map[string]component{}

	// The state and the link itself stay available while the link is
	// down, so they can show that it is.
	state := sensor("state", "State", tplStateString)
	state["json_attributes_topic"] = t.state
	state["icon"] = "mdi:printer-3d"
	comps["state"] = t.withAvailability(state)

	connected := component{"p": platformBinarySensor, "unique_id": uid("connected"), "name": "Connected",
		"state_topic": t.state, "value_template": tplConnected, "device_class": "connectivity"}
	comps["connected"] = t.withAvailability(connected)

	printing := component{"p": platformBinarySensor, "unique_id": uid("printing"), "name": "Printing",
		"state_topic": t.state, "value_template": tplPrinting, "device_class": "running"}
	comps["printing"] = t.withAvailability(printing, tplLinkUp)

	progress := sensor("progress", "Progress", tplProgress)
	progress["unit_of_measurement"] = "%"
	progress["state_class"] = "measurement"
	progress["icon"] = "mdi:progress-clock"
	comps["progress"] = t.withAvailability(progress, tplLinkUp)

	file := sensor("file", "File", tplFile)
	file["json_attributes_topic"] = t.state
	file["json_attributes_template"] = tplFileAttrs
	file["icon"] = "mdi:file"
	comps["file"] = t.withAvailability(file, tplLinkUp)

	printTime := sensor("print_time", "Print time", tplPrintTime)
	printTime["device_class"] = "duration"
	printTime["unit_of_measurement"] = "s"
	printTime["state_class"] = "measurement"
	comps["print_time"] = t.withAvailability(printTime, tplLinkUp)

	timeLeft := sensor("time_left", "Time left (estimate)", tplTimeLeft)
	timeLeft["device_class"] = "duration"
	timeLeft["unit_of_measurement"] = "s"
	timeLeft["state_class"] = "measurement"
	comps["time_left"] = t.withAvailability(timeLeft, tplLinkUp)

	z := sensor("current_z", "Current Z", tplCurrentZ)
	z["device_class"] = "distance"
	z["unit_of_measurement"] = "mm"
	z["state_class"] = "measurement"
	comps["current_z"] = t.withAvailability(z, tplLinkUp)

	for _, heater := range info.heaters {
		id := heaterID(heater)
		if id == "" {
			continue
		}
		lookup := `{% set t = (value_json.temperatures or {}).get(` + jinjaString(heater) + `) %}`
		actual := sensor(id+"_temperature", heaterName(heater)+" temperature",
			lookup+`{% if t %}{{ t.actual }}{% else %}None{% endif %}`)
		target := sensor(id+"_target", heaterName(heater)+" target",
			lookup+`{% if t and t.target is not none %}{{ t.target }}{% else %}None{% endif %}`)
		for _, c := range []component{actual, target} {
			c["device_class"] = "temperature"
			c["unit_of_measurement"] = "°C"
			c["state_class"] = "measurement"
		}
		comps[id+"_temperature"] = t.withAvailability(actual, tplLinkUp)
		comps[id+"_target"] = t.withAvailability(target, tplLinkUp)
	}

	button := func(id, name, press, icon string, when string) {
		c := component{"p": platformButton, "unique_id": uid(id), "name": name,
			"command_topic": t.button, "payload_press": press, "icon": icon}
		comps[id] = t.withAvailability(c, when)
	}
	button("pause", "Pause", PressPause, "mdi:pause", tplCanPause)
	button("resume", "Resume", PressResume, "mdi:play", tplCanResume)
	button("cancel", "Cancel", PressCancel, "mdi:stop", tplCanCancel)
	button("emergency_stop", "Emergency stop", PressEmergencyStop, "mdi:alert-octagon", tplLinkUp)
	button("connect", "Connect", PressConnect, "mdi:connection", tplCanConnect)

	for _, ev := range eventEntities {
		c := component{"p": platformEvent, "unique_id": uid(ev.id), "name": ev.name,
			"state_topic": t.events.MQTTEvent(t.printer, ev.event), "event_types": []string{ev.event},
			"value_template": tplEvent}
		comps[ev.id] = t.withAvailability(c)
	}
	return comps
}

// payload builds the device discovery payload. stale lists component ids,
// with their platform, that Home Assistant must remove: each is sent with
// only its platform, which Home Assistant documents as the way to remove
// one component of a device.
func (d *Device) payload(info deviceInfo, comps map[string]component, stale map[string]string) ([]byte, error) {
	device := map[string]any{"identifiers": []string{d.node}, "name": d.cfg.DeviceName}
	if info.firmware != "" {
		device["sw_version"] = info.firmware
	}
	origin := map[string]any{"name": "printbridge"}
	if d.cfg.Version != "" {
		origin["sw_version"] = d.cfg.Version
	}
	if d.cfg.SupportURL != "" {
		origin["support_url"] = d.cfg.SupportURL
	}
	all := make(map[string]any, len(comps)+len(stale))
	for id, c := range comps {
		all[id] = c
	}
	for id, platform := range stale {
		all[id] = map[string]string{"p": platform}
	}
	data, err := json.Marshal(map[string]any{"device": device, "origin": origin, "components": all, "qos": 1})
	if err != nil {
		return nil, fmt.Errorf("encode Home Assistant discovery payload: %w", err)
	}
	return data, nil
}

// announcedComponents parses a discovery payload as read back from the
// broker and returns the platform of every component it sets up. Entries
// that carry only their platform are removals and are left out.
func announcedComponents(data []byte) (map[string]string, error) {
	var msg struct {
		Components map[string]map[string]json.RawMessage `json:"components"`
		Short      map[string]map[string]json.RawMessage `json:"cmps"`
	}
	if err := json.Unmarshal(data, &msg); err != nil {
		return nil, fmt.Errorf("invalid Home Assistant discovery payload: %w", err)
	}
	comps := msg.Components
	if comps == nil {
		comps = msg.Short
	}
	out := map[string]string{}
	for id, c := range comps {
		raw, ok := c["p"]
		if !ok {
			raw, ok = c["platform"]
		}
		var platform string
		if !ok || json.Unmarshal(raw, &platform) != nil || len(c) < 2 {
			continue
		}
		out[id] = platform
	}
	return out, nil
}

// heatersOf returns the heaters whose temperature sensors a set of
// announced components contains, sorted. Component ids carry sanitized
// heater keys, which equal the keys for tool0, bed and chamber.
func heatersOf(comps map[string]string) []string {
	var out []string
	for id := range comps {
		if h, ok := strings.CutSuffix(id, "_temperature"); ok {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out
}
