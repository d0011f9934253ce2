package mqtt_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// startMosquittoWith runs mosquitto with one listener on a free loopback
// port and the given listener options, and returns the port. It stops
// when the test ends and prints the broker's log if the test failed.
func startMosquittoWith(tb testing.TB, options ...string) int {
	tb.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	dir := tb.TempDir()
	port := brokertest.FreePort(tb)
	logPath := filepath.Join(dir, "mosquitto.log")
	runAs := "root"
	if u, err := user.Current(); err == nil {
		runAs = u.Username
	}
	config := append([]string{
		"per_listener_settings false", "persistence false", "user " + runAs,
		"log_dest file " + logPath, "log_type all",
		fmt.Sprintf("listener %d 127.0.0.1", port),
	}, options...)
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(config, "\n")+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v (install Debian's mosquitto package)", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if tb.Failed() {
			data, _ := os.ReadFile(logPath)
			tb.Logf("mosquitto log:\n%s", data)
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return port
		}
		select {
		case <-exited:
			data, _ := os.ReadFile(logPath)
			tb.Fatalf("mosquitto exited at start: %s\n%s", out.String(), data)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("mosquitto did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writePasswordFile runs mosquitto_passwd to make a password file with
// one user.
func writePasswordFile(tb testing.TB, username, password string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "passwd")
	out, err := exec.Command("mosquitto_passwd", "-b", "-c", path, username, password).CombinedOutput()
	if err != nil {
		tb.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	return path
}

// lockedBuffer is a log sink that several goroutines write.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const tlsPassword = "s3cret-tls-Pa55word"

// startTLSBroker runs mosquitto with a TLS listener that requires a
// client certificate from the test CA and a password.
func startTLSBroker(t *testing.T, pki *brokertest.PKI) string {
	t.Helper()
	passwd := writePasswordFile(t, "edge", tlsPassword)
	port := startMosquittoWith(t,
		"cafile "+pki.CAFile, "certfile "+pki.ServerCert, "keyfile "+pki.ServerKey,
		"require_certificate true", "tls_version tlsv1.2",
		"allow_anonymous false", "password_file "+passwd)
	return fmt.Sprintf("ssl://127.0.0.1:%d", port)
}

func tryConnect(t *testing.T, cfg mqtt.Config, log *slog.Logger) (*mqtt.Bus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cfg.ConnectTimeout = 5 * time.Second
	b, err := mqtt.New(ctx, cfg, log)
	if err == nil {
		t.Cleanup(func() { _ = b.Close() })
	}
	return b, err
}

func TestTLSClientCertAndPassword(t *testing.T) {
	pki := brokertest.NewPKI(t)
	url := startTLSBroker(t, pki)
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tlsOpts := mqtt.TLSOptions{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "broker.test"}

	pub, err := tryConnect(t, mqtt.Config{URL: url, Username: "edge", Password: tlsPassword, TLS: tlsOpts, Topics: topics}, log)
	if err != nil {
		t.Fatalf("connect over TLS with client certificate and password: %v", err)
	}
	sub, err := tryConnect(t, mqtt.Config{URL: url, Username: "edge", Password: tlsPassword, TLS: tlsOpts, Topics: topics}, log)
	if err != nil {
		t.Fatalf("second TLS client: %v", err)
	}
	got := brokertest.NewCollector[bridge.EventMessage]()
	if err := sub.SubscribeEvents(context.Background(), "tls-1", "", got.Add); err != nil {
		t.Fatal(err)
	}
	env, data := event(t, "tls-1", 1)
	if err := pub.PublishEvent(context.Background(), env, data); err != nil {
		t.Fatalf("publish over TLS: %v", err)
	}
	got.WaitFor(t, "event over TLS", atLeast[bridge.EventMessage](1))

	if strings.Contains(logs.String(), tlsPassword) {
		t.Errorf("the password appears in the log:\n%s", logs.String())
	}
}

func TestTLSRejectsWrongSetups(t *testing.T) {
	pki := brokertest.NewPKI(t)
	url := startTLSBroker(t, pki)
	good := mqtt.TLSOptions{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "broker.test"}
	cases := []struct {
		name     string
		tls      mqtt.TLSOptions
		password string
		// want lists alternatives: with TLS 1.3 the broker rejects a
		// client certificate after the handshake, so the client sees the
		// alert or, when the broker closes first, a reset.
		want []string
	}{
		{"unknown CA", mqtt.TLSOptions{CAFile: pki.OtherCAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "broker.test"}, tlsPassword, []string{"unknown authority"}},
		{"wrong server name", mqtt.TLSOptions{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}, tlsPassword, []string{"doesn't contain any IP SANs"}},
		{"no client certificate", mqtt.TLSOptions{CAFile: pki.CAFile, ServerName: "broker.test"}, tlsPassword, []string{"certificate required", "connection reset"}},
		{"client certificate of another CA", mqtt.TLSOptions{CAFile: pki.CAFile, CertFile: pki.StrangerCert, KeyFile: pki.StrangerKey, ServerName: "broker.test"}, tlsPassword, []string{"unknown certificate authority", "connection reset"}},
		{"wrong password", good, "wrong-" + tlsPassword, []string{"not Authorized"}},
	}
	for _, c := range cases {
		logs := &lockedBuffer{}
		log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		_, err := tryConnect(t, mqtt.Config{URL: url, Username: "edge", Password: c.password, TLS: c.tls, Topics: topics}, log)
		if err == nil {
			t.Errorf("%s: connect succeeded, want a failure", c.name)
			continue
		}
		t.Logf("%s: %v", c.name, err)
		if !containsAny(err.Error(), c.want) {
			t.Errorf("%s: error %q mentions none of %q", c.name, err, c.want)
		}
		if strings.Contains(err.Error(), tlsPassword) {
			t.Errorf("%s: the password appears in the error %q", c.name, err)
		}
		if strings.Contains(logs.String(), tlsPassword) {
			t.Errorf("%s: the password appears in the log:\n%s", c.name, logs.String())
		}
	}
}

func TestTLSInsecureSkipVerifyWarns(t *testing.T) {
	pki := brokertest.NewPKI(t)
	url := startTLSBroker(t, pki)
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	tlsOpts := mqtt.TLSOptions{CertFile: pki.ClientCert, KeyFile: pki.ClientKey, InsecureSkipVerify: true}
	if _, err := tryConnect(t, mqtt.Config{URL: url, Username: "edge", Password: tlsPassword, TLS: tlsOpts, Topics: topics}, log); err != nil {
		t.Fatalf("connect without verification: %v", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "verification of the MQTT broker is OFF") {
		t.Errorf("no warning about the skipped verification in the log:\n%s", logs.String())
	}
}

func TestTLSOptionsErrors(t *testing.T) {
	pki := brokertest.NewPKI(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		url  string
		tls  mqtt.TLSOptions
		want string
	}{
		{"TLS options on tcp://", "tcp://127.0.0.1:1", mqtt.TLSOptions{CAFile: pki.CAFile}, "ssl://"},
		{"missing CA file", "ssl://127.0.0.1:1", mqtt.TLSOptions{CAFile: missing}, missing},
		{"CA file without PEM", "ssl://127.0.0.1:1", mqtt.TLSOptions{CAFile: notPEM}, "no PEM certificate"},
		{"certificate without key", "ssl://127.0.0.1:1", mqtt.TLSOptions{CertFile: pki.ClientCert}, "key file"},
		{"key of another certificate", "ssl://127.0.0.1:1", mqtt.TLSOptions{CertFile: pki.ClientCert, KeyFile: pki.ServerKey}, pki.ClientCert},
	}
	for _, c := range cases {
		_, err := mqtt.New(context.Background(), mqtt.Config{URL: c.url, TLS: c.tls, Topics: topics}, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one naming %q", c.name, err, c.want)
		}
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
