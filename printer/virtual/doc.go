// Package virtual is a Marlin 2.1-like printer firmware on a Linux
// pseudo-terminal, for tests and demos of hosts that speak Marlin's serial
// protocol. The host opens the pty slave (Printer.Path) like a USB serial
// port and gets the banner, line-number and checksum checks, resend
// requests, a BUFSIZE-deep command queue, a planner with move timing, a
// heater model and the reports of a stock Marlin build. Quirks of other
// firmware versions, faults and the Repetier and Prusa dialects are
// switched on in Config.
//
// Every command that the firmware executes is kept in order (Executed)
// and optionally appended to a record file, so a test can compare what a
// host sent with the G-code it meant to send (CommandsOf). Simulated
// rewinds and resets are listed with their place in that record (Faults).
//
// Concurrency: a Printer owns its goroutines. One reads the pty master
// (the serial receive interrupt of a real board), one runs the firmware
// main loop that parses, queues and executes commands, one executes the
// planner's blocks and one sends periodic reports. Run starts them and
// returns after ctx is done or Close is called; Close waits for all of
// them. Executed, Faults and Path are safe to call from any goroutine.
package virtual
