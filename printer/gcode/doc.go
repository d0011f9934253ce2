// Package gcode analyses G-code files the way OctoPrint's analysis queue
// does: estimated print time, filament length and volume per tool, the
// bounding boxes of printed and of all moves, plus the layer count and
// what the slicer states in its comments.
//
// Analyze streams its input line by line with a fixed-size buffer, so a
// file of any size is analysed in constant memory. The print time comes
// from a planner that models the firmware. Each move gets a trapezoidal
// speed profile with the file's (or Marlin's default) accelerations and
// feed rate limits. Corner speeds come from classic jerk, junction
// deviation or Klipper's square corner velocity, with a look-ahead of 64
// moves. See docs/analysis.md for how close it gets to the slicers' own
// estimates.
//
// Analyze keeps no state between calls and may run concurrently.
package gcode
