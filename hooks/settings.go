package hooks

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/printbridge/printbridge/bridge"
)

// Settings are the worker's own settings from the printbridge: section of
// the config file. OctoPrint ignores unknown top-level keys, so the same
// file still works for OctoPrint.
type Settings struct {
	// MQTT and NATS are broker URLs; at least one is needed to run.
	MQTT string
	NATS string
	// Printers lists the printer ids to serve; empty serves all.
	Printers []string
	// Group is the NATS queue group or MQTT shared subscription name that
	// workers share the load by; empty means every worker runs every hook.
	Group string
	// HookTimeout bounds each hook run; zero means no timeout.
	HookTimeout time.Duration
	// GcodeMaxAge skips the G-code hooks of an event once a newer event of
	// its printer is more than this much newer; zero sends them always.
	GcodeMaxAge time.Duration
	// MaxConcurrentHooks bounds the system hooks running at once.
	MaxConcurrentHooks int
	BaseTopic          string
	// LogFormat is text or json; LogLevel debug, info, warn or error.
	LogFormat string
	LogLevel  string
	// MetricsListen is the address of the Prometheus /metrics endpoint,
	// "" to disable it.
	MetricsListen string
}

// Defaults of Settings. The metrics port is one above the edge's 9464, so
// an edge and a worker on one host do not collide.
const (
	DefaultHookTimeout        = 60 * time.Second
	DefaultGcodeMaxAge        = 2 * time.Minute
	DefaultMaxConcurrentHooks = 4
	DefaultMetricsListen      = "127.0.0.1:9465"
)

// DefaultSettings returns the settings of an empty printbridge: section.
func DefaultSettings() Settings {
	return Settings{
		HookTimeout:        DefaultHookTimeout,
		GcodeMaxAge:        DefaultGcodeMaxAge,
		MaxConcurrentHooks: DefaultMaxConcurrentHooks,
		BaseTopic:          bridge.DefaultBase,
		LogFormat:          "text",
		LogLevel:           "info",
		MetricsListen:      DefaultMetricsListen,
	}
}

var settingsKeys = []string{"mqtt", "nats", "printers", "group", "hook_timeout", "gcode_max_age", "max_concurrent_hooks", "base_topic", "log_format", "log_level", "metrics_listen"}

func (l *loader) loadSettings(n *yaml.Node) {
	v := resolve(n)
	if v.kind == pyNull {
		return
	}
	if v.kind != pyMap {
		l.report(SeverityError, v.node, entryRef{}, "printbridge", "printbridge must be a mapping of worker settings, not %s", v.kind)
		return
	}
	s := &l.cfg.Settings
	for _, p := range l.uniquePairs(v.node, entryRef{}, "printbridge") {
		key := "printbridge." + p.key.Value
		val := resolve(p.value)
		var err error
		// Each setter assigns only a valid value, so an invalid one keeps
		// the default.
		switch p.key.Value {
		case "mqtt":
			err = setValue(&s.MQTT, val, settingString)
		case "nats":
			err = setValue(&s.NATS, val, settingString)
		case "group":
			err = setValue(&s.Group, val, settingString)
		case "base_topic":
			err = setValue(&s.BaseTopic, val, settingString)
			if s.BaseTopic == "" {
				s.BaseTopic = bridge.DefaultBase
			}
		case "printers":
			err = setValue(&s.Printers, val, settingPrinters)
		case "hook_timeout":
			err = setValue(&s.HookTimeout, val, parseSeconds)
		case "gcode_max_age":
			err = setValue(&s.GcodeMaxAge, val, parseSeconds)
		case "max_concurrent_hooks":
			err = setValue(&s.MaxConcurrentHooks, val, settingPositiveInt)
		case "log_format":
			err = setValue(&s.LogFormat, val, func(v pyValue) (string, error) { return settingChoice(v, "text", "json") })
		case "log_level":
			err = setValue(&s.LogLevel, val, func(v pyValue) (string, error) { return settingChoice(v, "debug", "info", "warn", "error") })
		case "metrics_listen":
			err = setValue(&s.MetricsListen, val, settingListenAddress)
		default:
			// An error, unlike an unknown key in an entry: a misspelled
			// setting such as hook_timout would leave the worker running
			// with the default of the setting that was meant.
			l.report(SeverityError, p.key, entryRef{}, key, "unknown key %s; %s", key, settingsKeyHint(p.key.Value))
			continue
		}
		if err != nil {
			l.report(SeverityError, keyOrEntry(val.node, p.key), entryRef{}, key, "invalid %s: %v", key, err)
		}
	}
}

// maxSettingsKeyDistance is the largest edit distance at which an unknown
// key of the printbridge: section is taken for a misspelling of a known one.
const maxSettingsKeyDistance = 3

// settingsKeyHint returns "did you mean ...?" with the valid key closest to
// key, or the list of valid keys when none is close.
func settingsKeyHint(key string) string {
	closest, best := "", maxSettingsKeyDistance+1
	for _, k := range settingsKeys {
		if d := levenshtein(strings.ToLower(key), k); d < best {
			closest, best = k, d
		}
	}
	if closest == "" {
		return "valid keys are " + strings.Join(settingsKeys, ", ")
	}
	return fmt.Sprintf("did you mean printbridge.%s?", closest)
}

func setValue[T any](dst *T, v pyValue, parse func(pyValue) (T, error)) error {
	x, err := parse(v)
	if err != nil {
		return err
	}
	*dst = x
	return nil
}

func settingString(v pyValue) (string, error) {
	switch v.kind {
	case pyNull:
		return "", nil
	case pyStr:
		return v.text, nil
	}
	return "", fmt.Errorf("want a string, got %s", v.kind)
}

func settingChoice(v pyValue, choices ...string) (string, error) {
	s, err := settingString(v)
	if err != nil {
		return "", err
	}
	if containsString(choices, s) {
		return s, nil
	}
	return "", fmt.Errorf("%q is not one of %s", s, strings.Join(choices, ", "))
}

// settingListenAddress accepts host:port, or null or "" to disable the
// endpoint.
func settingListenAddress(v pyValue) (string, error) {
	s, err := settingString(v)
	if err != nil || s == "" {
		return s, err
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "", fmt.Errorf("%q is not a listen address such as 127.0.0.1:9465 (or \"\" to disable): %w", s, err)
	}
	return s, nil
}

func settingPositiveInt(v pyValue) (int, error) {
	if v.kind != pyInt {
		return 0, fmt.Errorf("want a whole number of 1 or more, got %s", v.kind)
	}
	n, err := strconv.Atoi(strings.ReplaceAll(v.text, "_", ""))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("want a whole number of 1 or more, got %s", v.text)
	}
	return n, nil
}

// settingPrinters accepts a list of ids or one string of comma-separated
// ids.
func settingPrinters(v pyValue) ([]string, error) {
	var ids []string
	switch v.kind {
	case pyNull:
		return nil, nil
	case pyList:
		for _, item := range v.node.Content {
			iv := resolve(item)
			if iv.kind == pyList || iv.kind == pyMap || iv.kind == pyNull {
				return nil, fmt.Errorf("want printer ids, got %s in the list", iv.kind)
			}
			ids = append(ids, iv.text)
		}
	case pyMap:
		return nil, errors.New("want a list of printer ids, got a mapping")
	default:
		ids = SplitList(v.text)
	}
	for _, id := range ids {
		if err := bridge.ValidatePrinterID(id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// SplitList splits a comma-separated list, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// parseSeconds reads a duration: a Go duration string ("90s", "2m") or a
// number of seconds. Zero means no timeout.
func parseSeconds(v pyValue) (time.Duration, error) {
	var d time.Duration
	switch v.kind {
	case pyInt, pyFloat:
		f, err := strconv.ParseFloat(strings.ReplaceAll(v.text, "_", ""), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f > math.MaxInt64/float64(time.Second) {
			return 0, fmt.Errorf("%q is not a number of seconds", v.text)
		}
		d = time.Duration(f * float64(time.Second))
	case pyStr:
		var err error
		if d, err = time.ParseDuration(strings.TrimSpace(v.text)); err != nil {
			return 0, fmt.Errorf("%q is not a duration such as 90s or 2m", v.text)
		}
	default:
		return 0, fmt.Errorf("want a duration such as 90s or a number of seconds, got %s", v.kind)
	}
	if d < 0 {
		return 0, fmt.Errorf("%s is negative; give a duration of 0 or more, where 0 turns the limit off", v.text)
	}
	return d, nil
}
