// Package lazy builds package-level tables and regular expressions on
// first use.
//
// Every command of the printbridge binary links every package, so what a
// package initialiser runs, every process runs at start-up. The kernel
// maps the executable in windows of up to 64 KiB around each page that a
// process touches (fault_around_bytes). An initialiser therefore keeps
// such a window of the package's code in the RSS of a command that never
// calls the package, such as the worker with the printer packages. A table
// declared as a Map, Value or Regexp literal needs no initialiser,
// because its zero state and build function are static data.
package lazy

import (
	"regexp"
	"sync"
)

// Map is a map that Build returns on the first call of Get. Callers must
// not modify the map that Get returns.
type Map[K comparable, V any] struct {
	Build func() map[K]V

	once sync.Once
	m    map[K]V
}

// Get builds the map on its first call and returns the same map from then
// on. It is safe for concurrent use.
func (l *Map[K, V]) Get() map[K]V {
	l.once.Do(func() { l.m = l.Build() })
	return l.m
}

// Value is a value that Build returns on the first call of Get.
type Value[T any] struct {
	Build func() T

	once sync.Once
	v    T
}

// Get builds the value on its first call and returns the same value from
// then on. It is safe for concurrent use.
func (l *Value[T]) Get() T {
	l.once.Do(func() { l.v = l.Build() })
	return l.v
}

// Regexp is a regular expression that is compiled on the first call of
// Get.
type Regexp struct {
	Expr string

	once sync.Once
	re   *regexp.Regexp
}

// Get compiles Expr on its first call, panicking as regexp.MustCompile
// does if it is invalid, and returns the same *regexp.Regexp from then on.
// It is safe for concurrent use.
func (l *Regexp) Get() *regexp.Regexp {
	l.once.Do(func() { l.re = regexp.MustCompile(l.Expr) })
	return l.re
}
