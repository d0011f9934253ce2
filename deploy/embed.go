// Package deploy carries the files the demo runs on, so that an installed
// printbridge binary runs `printbridge demo` outside a checkout too.
package deploy

import _ "embed"

// DemoConfigName is the path of DemoConfig in the repository.
const DemoConfigName = "deploy/demo-config.yaml"

// DemoConfig is the OctoPrint config whose hooks the demo's worker runs.
//
//go:embed demo-config.yaml
var DemoConfig []byte

// DemoGcodeName is the file name of DemoGcode.
const DemoGcodeName = "prusaslicer-2.8.1_mk4s_mini-cube.gcode"

// DemoGcode is the real slicer file the demo prints.
//
//go:embed demo/prusaslicer-2.8.1_mk4s_mini-cube.gcode
var DemoGcode []byte
