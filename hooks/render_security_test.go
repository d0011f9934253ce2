package hooks

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// propertySeed fixes the random values, so a failure repeats; the seed is
// in every failure message.
const propertySeed = 0x7072696e74627264

// hostileRunes are what payload values are made of: shell syntax, quotes,
// placeholder braces, whitespace of every kind and non-ASCII text.
var hostileRunes = []rune(" \t\n\r;|&$()`'\"\\<>*?~{}[]#!%=-,.:/aZ09üé😀\u00a0\u2028")

// randomValue returns a string of up to 24 hostile runes; NUL is left out
// because no argv can carry it (see TestHookNULValueFails).
func randomValue(r *rand.Rand) string {
	n := r.IntN(25)
	var b strings.Builder
	for range n {
		b.WriteRune(hostileRunes[r.IntN(len(hostileRunes))])
	}
	return b.String()
}

func TestArgvCountPropertyNoShell(t *testing.T) {
	r := rand.New(rand.NewPCG(propertySeed, 1))
	template := `record --file {name} "Print {name} done" {__eventname} x{name}y {name}{path}`
	sub := testSub(t, fmt.Sprintf(`{event: PrintDone, type: system, shell: false, command: %q}`, template))
	want, err := Split(template)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		name, path := randomValue(r), randomValue(r)
		env := testEnvelope(bridge.Payload{{Key: "name", Value: name}, {Key: "path", Value: path}})
		commands, err := renderSystem(sub, mapLookup(Placeholders(env, time.Now())))
		if err != nil {
			t.Fatalf("seed %#x, case %d: render with name %q: %v", propertySeed, i, name, err)
		}
		argv := commands[0].argv
		if len(argv) != len(want) {
			t.Fatalf("seed %#x, case %d: name %q gave %d arguments %q, the template has %d", propertySeed, i, name, len(argv), argv, len(want))
		}
		expected := []string{"record", "--file", name, "Print " + name + " done", "PrintDone", "x" + name + "y", name + path}
		for j := range expected {
			if argv[j] != expected[j] {
				t.Fatalf("seed %#x, case %d: argument %d = %q, want %q", propertySeed, i, j, argv[j], expected[j])
			}
		}
	}
}

func TestShellQuotingPropertyRender(t *testing.T) {
	r := rand.New(rand.NewPCG(propertySeed, 2))
	sub := testSub(t, `{event: PrintDone, type: system, shell: true, command: 'record --file {name} done | cat; record {__eventname}'}`)
	for i := range 5000 {
		name := randomValue(r)
		commands, err := renderSystem(sub, mapLookup(Placeholders(testEnvelope(bridge.Payload{{Key: "name", Value: name}}), time.Now())))
		if err != nil {
			t.Fatalf("seed %#x, case %d: render with name %q: %v", propertySeed, i, name, err)
		}
		// The script splits back into the template's words, with the value
		// as one word: shlex.split is the POSIX reading of the quoting.
		words, err := Split(commands[0].script)
		if err != nil {
			t.Fatalf("seed %#x, case %d: script %q does not split: %v", propertySeed, i, commands[0].script, err)
		}
		want := []string{"record", "--file", name, "done", "|", "cat;", "record", "PrintDone"}
		if strings.Join(words, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("seed %#x, case %d: name %q gave script %q, words %q", propertySeed, i, name, commands[0].script, words)
		}
	}
}

func TestHookRunPropertyNoShell(t *testing.T) {
	rec := newRecorder(t)
	cwd := t.TempDir()
	r := rand.New(rand.NewPCG(propertySeed, 3))
	sub := testSub(t, fmt.Sprintf(`{event: PrintDone, type: system, shell: false, cwd: %q, command: 'record --file {name} "Print {name} done" {__eventname}'}`, cwd))
	const runs = 60
	var names []string
	for i := range runs {
		name := randomValue(r)
		names = append(names, name)
		if _, out, err := runTestHook(t, sub, testEnvelope(bridge.Payload{{Key: "name", Value: name}}), time.Minute); err != nil {
			t.Fatalf("seed %#x, run %d: hook for %q failed: %v (output %q)", propertySeed, i, name, err, out)
		}
	}
	calls := rec.calls(t)
	if len(calls) != runs {
		t.Fatalf("recorder ran %d times for %d hook runs", len(calls), runs)
	}
	for i, name := range names {
		want := []string{"--file", name, "Print " + name + " done", "PrintDone"}
		if argvString(calls[i].Args) != argvString(want) {
			t.Errorf("seed %#x, run %d: argv %s, want %s", propertySeed, i, argvString(calls[i].Args), argvString(want))
		}
	}
	assertNoStrayFiles(t, cwd)
}

func TestHookRunPropertyShell(t *testing.T) {
	rec := newRecorder(t)
	cwd := t.TempDir()
	r := rand.New(rand.NewPCG(propertySeed, 4))
	sub := testSub(t, fmt.Sprintf(`{event: PrintDone, type: system, shell: true, cwd: %q, command: 'record --file {name} done | cat; record {__eventname}'}`, cwd))
	const runs = 60
	var names []string
	for i := range runs {
		name := randomValue(r)
		names = append(names, name)
		if _, out, err := runTestHook(t, sub, testEnvelope(bridge.Payload{{Key: "name", Value: name}}), time.Minute); err != nil {
			t.Fatalf("seed %#x, run %d: hook for %q failed: %v (output %q)", propertySeed, i, name, err, out)
		}
	}
	// Exactly the template's two commands ran per hook, each with the
	// template's arguments: no value started or changed a command.
	calls := rec.calls(t)
	if len(calls) != 2*runs {
		t.Fatalf("recorder ran %d times for %d hook runs of two commands", len(calls), runs)
	}
	for i, name := range names {
		if got, want := argvString(calls[2*i].Args), argvString([]string{"--file", name, "done"}); got != want {
			t.Errorf("seed %#x, run %d: first command argv %s, want %s", propertySeed, i, got, want)
		}
		if got := argvString(calls[2*i+1].Args); got != "PrintDone" {
			t.Errorf("seed %#x, run %d: second command argv %s, want PrintDone", propertySeed, i, got)
		}
	}
	assertNoStrayFiles(t, cwd)
}

func TestHookNULValueFails(t *testing.T) {
	rec := newRecorder(t)
	for _, shell := range []bool{false, true} {
		sub := testSub(t, fmt.Sprintf(`{event: PrintDone, type: system, shell: %v, command: 'record {name}'}`, shell))
		_, _, err := runTestHook(t, sub, testEnvelope(bridge.Payload{{Key: "name", Value: "a\x00b"}}), time.Minute)
		if err == nil {
			t.Errorf("shell %v: a value with NUL ran the hook", shell)
		}
	}
	if calls := rec.calls(t); len(calls) != 0 {
		t.Errorf("recorder ran %d times for values with NUL: %+v", len(calls), calls)
	}
}

// assertNoStrayFiles fails when a hook left files in its working
// directory, which only a value turned into a redirect or a command can do.
func assertNoStrayFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("hook created %s in its working directory", filepath.Join(dir, e.Name()))
	}
}
