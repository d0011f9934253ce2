package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"

	"github.com/printbridge/printbridge/bridge"
)

// File is the YAML policy file: defaults for every printer, and sections
// per printer id whose keys replace the defaults' keys of the same name.
//
//	defaults:
//	  deny: [M0, M1, M303]
//	  rate: {lines_per_second: 20, burst: 100}
//	printers:
//	  mk3s-1:
//	    allow: [G0, G1, G28, M104, M140, M117, T]
type File struct {
	Defaults Config            `yaml:"defaults"`
	Printers map[string]Config `yaml:"printers"`
}

// ParseFile parses a policy file and returns the policy of printerID. An
// unknown key is an error, so a misspelled rule never passes silently.
func ParseFile(data []byte, printerID string) (*Policy, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("invalid policy YAML: %w", err)
	}
	for id, override := range f.Printers {
		if err := bridge.ValidatePrinterID(id); err != nil {
			return nil, fmt.Errorf("printers: %w", err)
		}
		// Every printer's section is checked, so that a farm's shared
		// file fails on every edge, not only on the one it names.
		if id != printerID {
			if _, err := New(merge(f.Defaults, override)); err != nil {
				return nil, fmt.Errorf("policy of printer %s: %w", id, err)
			}
		}
	}
	cfg := f.Defaults
	if override, ok := f.Printers[printerID]; ok {
		cfg = merge(cfg, override)
	}
	p, err := New(cfg)
	if err != nil {
		return nil, fmt.Errorf("policy of printer %s: %w", printerID, err)
	}
	return p, nil
}

// merge returns base with every key that override sets replaced.
func merge(base, override Config) Config {
	if override.Allow != nil {
		base.Allow = override.Allow
	}
	if override.Deny != nil {
		base.Deny = override.Deny
	}
	if override.WhilePrinting != nil {
		base.WhilePrinting = override.WhilePrinting
	}
	if override.MaxLineLength != nil {
		base.MaxLineLength = override.MaxLineLength
	}
	if override.MaxMessageBytes != nil {
		base.MaxMessageBytes = override.MaxMessageBytes
	}
	if override.MaxLines != nil {
		base.MaxLines = override.MaxLines
	}
	if override.AllowNonASCII != nil {
		base.AllowNonASCII = override.AllowNonASCII
	}
	if override.Rate != nil {
		base.Rate = override.Rate
	}
	if override.TotalRate != nil {
		base.TotalRate = override.TotalRate
	}
	return base
}
