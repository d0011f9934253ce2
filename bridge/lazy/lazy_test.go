package lazy

import (
	"sync"
	"testing"
)

var testTable = Map[string, int]{Build: func() map[string]int {
	builds++
	return map[string]int{"a": 1}
}}

var builds int

func TestMapBuildsOnce(t *testing.T) {
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := testTable.Get()["a"]; got != 1 {
				t.Errorf("Get()[a] = %d, expected 1", got)
			}
		}()
	}
	wg.Wait()
	if builds != 1 {
		t.Errorf("Build ran %d times, expected once", builds)
	}
}

var testPattern = Regexp{Expr: `^N(\d+)`}

func TestRegexpCompilesOnce(t *testing.T) {
	first := testPattern.Get()
	if m := first.FindStringSubmatch("N42 G28"); len(m) != 2 || m[1] != "42" {
		t.Errorf("FindStringSubmatch = %q, expected [N42 42]", m)
	}
	if testPattern.Get() != first {
		t.Error("second Get returned another *regexp.Regexp")
	}
}

func TestRegexpInvalidPanics(t *testing.T) {
	bad := Regexp{Expr: `(`}
	defer func() {
		if recover() == nil {
			t.Error("Get of an invalid expression did not panic")
		}
	}()
	bad.Get()
}

var valueBuilds int

var testValue = Value[*[2]int]{Build: func() *[2]int {
	valueBuilds++
	return &[2]int{1, 2}
}}

func TestValueBuildsOnce(t *testing.T) {
	first := testValue.Get()
	if testValue.Get() != first {
		t.Error("second Get returned another value")
	}
	if valueBuilds != 1 {
		t.Errorf("Build ran %d times, expected once", valueBuilds)
	}
}
