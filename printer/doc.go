// Package printer is the serial side of the edge: it speaks the
// Marlin-style host protocol (line numbers, checksums, resends, busy and
// timeouts), streams print jobs from local G-code files, tracks the
// printer state as OctoPrint does, and turns what it sends and receives
// into OctoPrint events.
//
// One goroutine per Printer owns all protocol and job state (see
// Printer.Run); a second goroutine only reads the serial port and frames
// lines. Other goroutines talk to the owner through channels, and read
// the state through Snapshot.
package printer
