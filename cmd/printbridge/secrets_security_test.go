package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/printer/virtual"
)

// startPasswordNATS runs an in-process nats-server that accepts one user.
func startPasswordNATS(t *testing.T, username, password string) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		Username: username, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return srv.ClientURL()
}

// startVirtualPrinter runs a virtual printer until the test ends.
func startVirtualPrinter(t *testing.T) *virtual.Printer {
	t.Helper()
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	vp, err := virtual.New(vcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- vp.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		<-done
	})
	return vp
}

// runEdgeCommand runs `printbridge edge args...` in process, as main
// does, with everything it writes captured.
type edgeCommand struct {
	output *syncBuffer
	stop   context.CancelFunc
	done   chan error
}

func runEdgeCommand(t *testing.T, args ...string) *edgeCommand {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	c := &edgeCommand{output: &syncBuffer{}, stop: stop, done: make(chan error, 1)}
	go func() { c.done <- runEdge(ctx, args, c.output, c.output) }()
	t.Cleanup(func() { c.wait() })
	return c
}

// wait stops the edge and returns what it returned.
func (c *edgeCommand) wait() error {
	if c.stop == nil {
		return nil
	}
	c.stop()
	c.stop = nil
	return <-c.done
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func requireAbsent(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("a secret appears in the %s:\n%s", where, tail(text, 4096))
		}
	}
}

func TestEdgeRunLogsNoSecrets(t *testing.T) {
	mqttPassword, natsPassword := randomSecret(t), randomSecret(t)
	passwd := filepath.Join(t.TempDir(), "passwd")
	if out, err := execMosquittoPasswd(passwd, "edge-leak", mqttPassword); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	port := startSecureMosquitto(t, "allow_anonymous false", "password_file "+passwd)
	mqttURL := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	natsURL := startPasswordNATS(t, "edge-leak", natsPassword)
	vp := startVirtualPrinter(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))

	// The MQTT password comes from the environment, the NATS one from a
	// file: the two ways the docs recommend.
	t.Setenv("PRINTBRIDGE_MQTT_PASSWORD", mqttPassword)
	natsFile := writeSecret(t, t.TempDir(), "nats-password", natsPassword)
	info := &topicLog{}
	observer := rawMQTT(t, mqttURL, "leak-observer", "edge-leak", mqttPassword)
	rawSubscribeAll(t, observer, info, "printbridge/#")

	edge := runEdgeCommand(t, "--port", vp.Path(), "--printer", "leak", "--data-dir", t.TempDir(),
		"--mqtt", mqttURL, "--mqtt-username", "edge-leak",
		"--nats", natsURL, "--nats-user", "edge-leak", "--nats-password-file", natsFile,
		"--metrics-listen", metricsAddr, "--log-level", "debug", "--log-format", "json")
	waitUntil(t, "Connected on MQTT", func() bool { return info.hasTopic("printbridge/leak/event/Connected") })
	waitUntil(t, "state on MQTT", func() bool { return info.hasTopic("printbridge/leak/state") })

	requireAbsent(t, "metrics", scrape(t, metricsAddr), mqttPassword, natsPassword)
	if err := edge.wait(); err != nil {
		t.Errorf("edge returned %v", err)
	}
	requireAbsent(t, "edge output", edge.output.String(), mqttPassword, natsPassword)
	if !strings.Contains(edge.output.String(), `"edge stopped"`) {
		t.Errorf("edge output has no stop line, so the check above saw too little:\n%s", tail(edge.output.String(), 2048))
	}

	// NOTE: an edge with two brokers publishes no bridge/info, because
	// bridge.NewMulti has no PublishBridgeInfo; one broker shows it.
	mqttFile := writeSecret(t, t.TempDir(), "mqtt-password", mqttPassword)
	t.Setenv("PRINTBRIDGE_MQTT_PASSWORD", "")
	os.Unsetenv("PRINTBRIDGE_MQTT_PASSWORD")
	edge = runEdgeCommand(t, "--port", vp.Path(), "--printer", "leak", "--data-dir", t.TempDir(),
		"--mqtt", mqttURL, "--mqtt-username", "edge-leak", "--mqtt-password-file", mqttFile, "--metrics-listen", "")
	waitUntil(t, "bridge info", func() bool { return info.hasTopic("printbridge/bridge/info") })
	waitUntil(t, "the second Connected", func() bool {
		return strings.Count(strings.Join(info.topics(), " "), "printbridge/leak/event/Connected") >= 2
	})
	if err := edge.wait(); err != nil {
		t.Errorf("second edge returned %v", err)
	}
	requireAbsent(t, "second edge output", edge.output.String(), mqttPassword)
	info.mu.Lock()
	for _, m := range info.msgs {
		requireAbsent(t, "message on "+m.Topic(), string(m.Payload()), mqttPassword, natsPassword)
	}
	info.mu.Unlock()
}

func execMosquittoPasswd(path, username, password string) ([]byte, error) {
	return exec.Command("mosquitto_passwd", "-b", "-c", path, username, password).CombinedOutput()
}

func TestFailedConnectShowsNoSecrets(t *testing.T) {
	right, wrongMQTT, wrongNATS, wrongToken := randomSecret(t), randomSecret(t), randomSecret(t), randomSecret(t)
	path := filepath.Join(t.TempDir(), "passwd")
	if out, err := execMosquittoPasswd(path, "edge-leak", right); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	port := startSecureMosquitto(t, "allow_anonymous false", "password_file "+path)
	natsURL := startPasswordNATS(t, "edge-leak", right)
	vp := startVirtualPrinter(t)

	// Secrets on the command line, in the URL and in a file, all wrong.
	urlWithPassword := fmt.Sprintf("tcp://edge-leak:%s@127.0.0.1:%d", wrongMQTT, port)
	tokenFile := writeSecret(t, t.TempDir(), "token", wrongToken)
	edge := runEdgeCommand(t, "--port", vp.Path(), "--printer", "leak", "--data-dir", t.TempDir(),
		"--mqtt", urlWithPassword, "--metrics-listen", "", "--log-level", "debug")
	waitUntil(t, "the MQTT connect failure", func() bool {
		return strings.Contains(edge.output.String(), "not Authorized")
	})
	if err := edge.wait(); err != nil {
		t.Errorf("edge returned %v", err)
	}
	requireAbsent(t, "edge output", edge.output.String(), wrongMQTT, right)

	edge = runEdgeCommand(t, "--port", vp.Path(), "--printer", "leak1", "--data-dir", t.TempDir(),
		"--nats", natsURL, "--nats-user", "edge-leak", "--nats-password", wrongNATS, "--metrics-listen", "", "--log-level", "debug")
	waitUntil(t, "the NATS connect failure", func() bool {
		return strings.Contains(edge.output.String(), "Authorization Violation")
	})
	if err := edge.wait(); err != nil {
		t.Errorf("edge returned %v", err)
	}
	out := edge.output.String()
	requireAbsent(t, "edge output", out, wrongNATS, right)
	if !strings.Contains(out, "secret given on the command line") || !strings.Contains(out, "--nats-password") {
		t.Errorf("no warning about --nats-password on the command line:\n%s", tail(out, 4096))
	}

	// A NATS token that the server rejects.
	edge = runEdgeCommand(t, "--port", vp.Path(), "--printer", "leak2", "--data-dir", t.TempDir(),
		"--nats", natsURL, "--nats-token-file", tokenFile, "--metrics-listen", "", "--log-level", "debug")
	waitUntil(t, "the NATS token failure", func() bool {
		return strings.Contains(edge.output.String(), "Authorization Violation")
	})
	if err := edge.wait(); err != nil {
		t.Errorf("edge returned %v", err)
	}
	requireAbsent(t, "edge output", edge.output.String(), wrongToken)
}

func TestSecretFileErrors(t *testing.T) {
	dir := t.TempDir()
	empty := writeSecret(t, dir, "empty", "")
	good := writeSecret(t, dir, "good", "hunter2-secret")
	missing := filepath.Join(dir, "missing")
	cases := []struct {
		name string
		o    busOptions
		want string
	}{
		{"password twice", busOptions{mqttPassword: "a", secrets: secretOptions{mqttPasswordFile: good}}, "keep one"},
		{"empty file", busOptions{secrets: secretOptions{natsTokenFile: empty}}, "is empty"},
		{"missing file", busOptions{secrets: secretOptions{natsPasswordFile: missing}}, missing},
		{"missing CA", busOptions{secrets: secretOptions{mqttCAFile: missing}}, missing},
		{"missing creds", busOptions{secrets: secretOptions{natsCredsFile: missing}}, missing},
	}
	for _, c := range cases {
		err := c.o.resolveSecrets(slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one naming %q", c.name, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2-secret") {
			t.Errorf("%s: the secret appears in the error %q", c.name, err)
		}
	}
}

func TestSecretFileReadOnce(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "password")
	if err := os.WriteFile(file, []byte("first-line\r\nsecond line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	o := busOptions{secrets: secretOptions{mqttPasswordFile: file}}
	if err := o.resolveSecrets(log); err != nil {
		t.Fatal(err)
	}
	if o.mqttPassword != "first-line" {
		t.Errorf("password = %q, want the first line without its line ending", o.mqttPassword)
	}
	// connectBus resolves again on its copy; that must not see a conflict.
	if err := o.resolveSecrets(log); err != nil {
		t.Errorf("second resolve: %v", err)
	}
	if !strings.Contains(logs.String(), "readable by every local user") || !strings.Contains(logs.String(), file) {
		t.Errorf("no warning about the world-readable file:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "first-line") {
		t.Errorf("the secret appears in the log:\n%s", logs.String())
	}
}

func TestSecretFlagsRegistered(t *testing.T) {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	var o edgeOptions
	o.register(fs)
	for _, name := range []string{"mqtt-password-file", "mqtt-ca-file", "mqtt-cert-file", "mqtt-key-file", "mqtt-server-name",
		"mqtt-insecure-skip-verify", "nats-password-file", "nats-token-file", "nats-nkey", "nats-creds", "nats-ca-file",
		"nats-cert-file", "nats-key-file", "nats-server-name"} {
		if fs.Lookup(name) == nil {
			t.Errorf("edge has no --%s flag", name)
		}
	}
	t.Setenv("PRINTBRIDGE_MQTT_PASSWORD_FILE", "/run/credentials/mqtt")
	if err := parseFlags(fs, []string{"--mqtt-ca-file", "/etc/ca.pem"}, io.Discard, true); err != nil {
		t.Fatal(err)
	}
	if o.bus.secrets.mqttPasswordFile != "/run/credentials/mqtt" || o.bus.secrets.mqttCAFile != "/etc/ca.pem" {
		t.Errorf("secret options = %+v, want the file from the environment and the CA from the command line", o.bus.secrets)
	}
}

func TestWarnIfRoot(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	warnIfRoot(log, 1000)
	if logs.Len() != 0 {
		t.Errorf("warning for a non-root user: %s", logs.String())
	}
	warnIfRoot(log, 0)
	out := logs.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "level=WARN") || !strings.Contains(out, "docs/security.md") {
		t.Errorf("root warning = %q, want one WARN line pointing to docs/security.md", out)
	}
}

func TestMetricsWarnsBeyondLoopback(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for _, addr := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9464},
		&net.TCPAddr{IP: net.IPv6loopback, Port: 9464},
	} {
		warnIfNotLoopback(log, "metrics", addr)
	}
	if logs.Len() != 0 {
		t.Errorf("warning for a loopback address: %s", logs.String())
	}
	for _, addr := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4zero, Port: 9464},
		&net.TCPAddr{IP: net.IPv6unspecified, Port: 9464},
		&net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 9464},
	} {
		logs.Reset()
		warnIfNotLoopback(log, "metrics", addr)
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "no authentication") {
			t.Errorf("no warning for %s: %q", addr, logs.String())
		}
	}

	// The real endpoint on loopback logs no warning.
	logs.Reset()
	stop, err := serveMetrics("127.0.0.1:0", prometheus.NewRegistry(), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("serveMetrics on 127.0.0.1 warned: %s", logs.String())
	}
}
