package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An edge must find configuration errors that need no broker before it
// makes its data folder or writes to the outbox. Otherwise the next good
// start publishes Startup and Shutdown of a run that never happened.
func TestEdgeBadConfigLeavesNoOutbox(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"http MQTT URL", []string{"--mqtt", "http://127.0.0.1:18831"}, `--mqtt: unsupported scheme "http"`},
		{"MQTT URL without host", []string{"--mqtt", "tcp://"}, `--mqtt: invalid URL "tcp://"`},
		{"http NATS URL", []string{"--nats", "http://127.0.0.1:4222"}, `--nats: unsupported scheme "http"`},
		{"second MQTT URL bad", []string{"--mqtt", "tcp://127.0.0.1:1,ftp://127.0.0.1:2"}, `unsupported scheme "ftp"`},
		{"no broker", nil, "no broker configured"},
		{"reserved printer id", []string{"--mqtt", "tcp://127.0.0.1:1", "--printer", "bridge"}, `invalid printer id "bridge": it is reserved for the bridge topics`},
		{"JetStream without NATS", []string{"--mqtt", "tcp://127.0.0.1:1", "--jetstream"}, "--jetstream needs a NATS server: give --nats URL"},
		{"base topic wildcard", []string{"--mqtt", "tcp://127.0.0.1:1", "--base-topic", "print/#"}, "--base-topic: invalid base topic"},
		{"bad fsync policy", []string{"--mqtt", "tcp://127.0.0.1:1", "--outbox-fsync", "sometimes"}, `invalid value "sometimes" for flag -outbox-fsync`},
		{"missing policy file", []string{"--mqtt", "tcp://127.0.0.1:1", "--command-policy", "/nonexistent/policy.yaml"}, "--command-policy"},
		{"Home Assistant without MQTT", []string{"--nats", "nats://127.0.0.1:1", "--homeassistant"}, "give --mqtt URL as well"},
		{"Home Assistant wildcard prefix", []string{"--mqtt", "tcp://127.0.0.1:1", "--homeassistant", "--homeassistant-prefix", "ha/+"}, "invalid Home Assistant discovery prefix"},
		{"missing CA file", []string{"--mqtt", "ssl://127.0.0.1:1", "--mqtt-ca-file", "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// existing is the data folder of an earlier run, which must
			// stay untouched, and fresh must not be created.
			existing := filepath.Join(dir, "existing")
			if err := os.Mkdir(existing, 0o750); err != nil {
				t.Fatal(err)
			}
			for _, dataDir := range []string{existing, filepath.Join(dir, "fresh")} {
				args := append([]string{"edge", "--data-dir", dataDir, "--metrics-listen", "", "--port", filepath.Join(dir, "no-port")}, tc.args...)
				var stdout, stderr strings.Builder
				if code := runMain(args, &stdout, &stderr); code == 0 {
					t.Fatalf("%v: exit code 0, want an error", args)
				}
				if !strings.Contains(stderr.String(), tc.want) {
					t.Errorf("%v: stderr %q does not contain %q", args, stderr.String(), tc.want)
				}
			}
			entries, err := os.ReadDir(existing)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				names := make([]string, len(entries))
				for i, e := range entries {
					names[i] = e.Name()
				}
				t.Errorf("the rejected start wrote %v into the existing data folder", names)
			}
			if _, err := os.Stat(filepath.Join(dir, "fresh")); !os.IsNotExist(err) {
				t.Errorf("the rejected start created its data folder (stat: %v)", err)
			}
		})
	}
}

// --jetstream set in the environment or in the --config file, with MQTT
// only, stops the edge as the flag does, rather than running without the
// JetStream stream that the setting requests.
func TestEdgeJetStreamSettingWithoutNATS(t *testing.T) {
	dir := t.TempDir()
	configFile := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(configFile, []byte("mqtt: tcp://127.0.0.1:1\njetstream: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"environment", map[string]string{"PRINTBRIDGE_MQTT": "tcp://127.0.0.1:1", "PRINTBRIDGE_JETSTREAM": "true"}, nil},
		{"config file", nil, []string{"--config", configFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			dataDir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"edge", "--data-dir", dataDir, "--metrics-listen", "", "--port", filepath.Join(dir, "no-port")}, tc.args...)
			var stdout, stderr strings.Builder
			if code := runMain(args, &stdout, &stderr); code == 0 {
				t.Fatalf("%v: exit code 0, want an error", args)
			}
			if want := "--jetstream needs a NATS server"; !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), want)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("the rejected start created its data folder (stat: %v)", err)
			}
		})
	}
}
