// Package bench measures printbridge on this machine. It compares serial
// streaming through the virtual printer with Debian's printcore and
// G-code analysis with Printrun's gcoder. It measures the peak memory of
// the edge and worker binaries, event throughput and hook latency
// through real brokers, start-up time, and the Go micro-benchmarks of
// the hot functions.
//
// Every measurement runs real components: the printbridge binary built
// from this checkout, the virtual printer as its own process, Mosquitto
// and nats-server on free loopback ports, and Printrun under Debian's
// /usr/bin/python3. Competing tools run in the same invocation of Run, one
// after another on the same inputs, so their numbers are comparable as
// ratios. Nothing here asserts a timing: Run returns numbers, and the
// pbbench command writes them into docs/benchmarks.md.
//
// Concurrency: Run and the measure functions block until their processes
// and goroutines have stopped. Call them one at a time, because runs that
// overlap compete for the same cores and skew each other's numbers.
package bench
