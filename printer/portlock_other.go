//go:build !unix

package printer

// lockPort does nothing where flock is missing; the serial library's own
// exclusive open is the only guard there.
func lockPort(string) (func(), error) { return func() {}, nil }
