package printer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/printer"
)

var update = flag.Bool("update", false, "rewrite the golden files of the replay tests")

var tomlString = regexp.MustCompile(`(?ms)^\s*(\w+) = (?:"""\\\n(.*?)"""|"((?:[^"\\]|\\.)*)")`)

// loadResponses reads the Teg fixture's TOML strings (key = """...""" or
// key = "..."), resolving its line continuations and escapes, into lines.
func loadResponses(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, m := range tomlString.FindAllStringSubmatch(string(data), -1) {
		body := m[2] + m[3]
		var joined strings.Builder
		for _, part := range strings.Split(body, "\\\n") {
			joined.WriteString(strings.TrimLeft(part, " "))
		}
		text := strings.NewReplacer(`\n`, "\n", `\"`, `"`).Replace(joined.String())
		var lines []string
		for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			lines = append(lines, l)
		}
		out[m[1]] = lines
	}
	return out
}

// ender3Firmware answers as the Ender 3 (Creality "Marlin 1.0.0" build)
// whose replies the Teg host project recorded.
func ender3Firmware(t *testing.T) *scriptedFirmware {
	t.Helper()
	rec := loadResponses(t, filepath.Join("..", "testdata", "serial", "teg-fixture_ender3_creality-marlin-1.0.0_responses.toml"))
	for _, key := range []string{"greeting_without_sd_card", "m115_firmware_info", "m105", "m114", "m109", "unknown_command", "min_temp", "m21_no_sd_card"} {
		if len(rec[key]) == 0 {
			t.Fatalf("fixture lacks %s", key)
		}
	}
	respond := func(fw *scriptedFirmware, n int, cmd string) []string {
		code := strings.Fields(cmd)[0]
		switch code {
		case "M115":
			return rec["m115_firmware_info"]
		case "M105":
			return rec["m105"]
		case "M114":
			return rec["m114"]
		case "M109":
			return append(append([]string{}, rec["m109"]...), "ok")
		case "M21":
			return rec["m21_no_sd_card"]
		case "M140":
			return rec["min_temp"]
		case "m23":
			return []string{`echo:Unknown command: "` + cmd + `"`, "ok"}
		}
		return nil
	}
	return newScriptedFirmware(t, rec["greeting_without_sd_card"], scriptFuncs{respond: respond})
}

// goldenEvent is an event without the values that change between runs.
type goldenEvent struct {
	Event   string         `json:"event"`
	Payload bridge.Payload `json:"payload"`
	State   string         `json:"state,omitempty"`
}

func TestReplayEnder3Session(t *testing.T) {
	fw := ender3Firmware(t)
	rec := &recorder{}
	p := printer.New(printer.Config{Port: fw.path, AutoConnect: true, PollInterval: time.Hour, ReconnectMin: time.Hour},
		slog.New(slog.DiscardHandler), rec.emit, printer.Metrics{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, "Connected", 10*time.Second, func() bool { return rec.count(bridge.EventConnected) == 1 })
	waitFor(t, "FirmwareData", 10*time.Second, func() bool { return rec.count(bridge.EventFirmwareData) == 1 })

	send := func(lines ...string) []string {
		t.Helper()
		type result struct {
			replies []string
			err     error
		}
		res := make(chan result, 1)
		if err := p.SendGcode(context.Background(), lines, "replay", func(r []string, err error) { res <- result{r, err} }); err != nil {
			t.Fatalf("send %q: %v", lines, err)
		}
		select {
		case r := <-res:
			if r.err != nil {
				t.Fatalf("send %q: %v", lines, r.err)
			}
			return r.replies
		case <-time.After(10 * time.Second):
			t.Fatalf("no reply to %q", lines)
		}
		return nil
	}
	send("G28")
	send("G1 X1")
	replies := send("M114")
	if len(replies) == 0 || !strings.HasPrefix(replies[0], "X:100.00Y:0.00") {
		t.Errorf("M114 replies = %q", replies)
	}
	send("M105")
	send("M109 S25")
	send("m23 file.txt")
	// The recorded MINTEMP error ends the connection.
	if err := p.SendGcode(context.Background(), []string{"M140 S60"}, "replay", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Disconnected", 10*time.Second, func() bool { return rec.count(bridge.EventDisconnected) == 1 })

	var got bytes.Buffer
	rec.mu.Lock()
	for _, e := range rec.events {
		g := goldenEvent{Event: e.name, Payload: e.payload, State: e.ctx.State}
		if e.name == bridge.EventConnected {
			// The pty number differs between runs.
			g.Payload = g.Payload.Clone().Set("port", "PTY")
		}
		if e.name == bridge.EventError {
			// The log tail holds line numbers that are stable, but keep
			// the golden file readable by listing only the error.
			g.Payload = g.Payload.Clone()
			if logs, ok := g.Payload.Get("logs"); ok {
				g.Payload = g.Payload.Set("logs", []any{len(logs.([]any))})
			}
		}
		data, err := json.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		got.Write(data)
		got.WriteByte('\n')
	}
	rec.mu.Unlock()

	golden := filepath.Join("..", "testdata", "golden", "ender3-session.jsonl")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run 'go test ./printer -run TestReplayEnder3Session -update' to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("envelope %d differs from %s:\n got: %s\nwant: %s\n(run with -update if the change is intended)", i, golden, g, w)
			}
		}
	}
}
