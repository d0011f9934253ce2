package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
	"github.com/printbridge/printbridge/hooks"
	"github.com/printbridge/printbridge/printer/virtual"
)

// The example ACL and NATS authorization in deploy/ name these users and
// printers; the tests run them unchanged.
const (
	aclPrinterA = "mk3s"
	aclPrinterB = "mk4"
	aclWaitTime = 30 * time.Second
)

var aclUsers = []string{"edge-mk3s", "edge-mk4", "worker", "dashboard"}

// randomSecret returns a password that appears nowhere else.
func randomSecret(tb testing.TB) string {
	tb.Helper()
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	return "pw-" + hex.EncodeToString(b[:])
}

// writeSecret writes a secret file with mode 0600.
func writeSecret(tb testing.TB, dir, name, secret string) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// startSecureMosquitto runs mosquitto on a free loopback port with the
// given settings after the listener line, and returns the port.
func startSecureMosquitto(tb testing.TB, settings ...string) int {
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
	conf := append([]string{
		"per_listener_settings false", "persistence false", "user " + runAs,
		"log_dest file " + logPath, "log_type all",
		fmt.Sprintf("listener %d 127.0.0.1", port),
	}, settings...)
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confPath)
	out, err := os.Create(filepath.Join(dir, "mosquitto.out"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v (install Debian's mosquitto package)", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(exited)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if tb.Failed() {
			data, _ := os.ReadFile(logPath)
			outData, _ := os.ReadFile(out.Name())
			tb.Logf("mosquitto log (last 8 KiB):\n%s\n%s", tail(string(data), 8192), outData)
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
			outData, _ := os.ReadFile(out.Name())
			tb.Fatalf("mosquitto exited at start: %s", outData)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("mosquitto did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// mosquittoPasswords makes a password file for users with mosquitto_passwd
// and returns it with the clear-text passwords.
func mosquittoPasswords(tb testing.TB, users []string) (string, map[string]string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "passwd")
	passwords := map[string]string{}
	for i, name := range users {
		passwords[name] = randomSecret(tb)
		args := []string{"-b", path, name, passwords[name]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
			tb.Fatalf("mosquitto_passwd %s: %v: %s", name, err, out)
		}
	}
	return path, passwords
}

// topicLog records every message a raw client receives.
type topicLog struct {
	mu   sync.Mutex
	msgs []paho.Message
}

func (l *topicLog) add(_ paho.Client, m paho.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, m)
}

// topics returns the topics of the messages received so far.
func (l *topicLog) topics() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, len(l.msgs))
	for i, m := range l.msgs {
		out[i] = m.Topic()
	}
	return out
}

func (l *topicLog) has(pred func(topic, payload string) bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if pred(m.Topic(), string(m.Payload())) {
			return true
		}
	}
	return false
}

func (l *topicLog) hasTopic(topic string) bool {
	return l.has(func(t, _ string) bool { return t == topic })
}

// rawMQTT connects a plain paho client, so a test can do what the bus
// adapter never does, such as publishing on another printer's topics.
func rawMQTT(tb testing.TB, url, clientID, username, password string) paho.Client {
	tb.Helper()
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).SetUsername(username).SetPassword(password).
		SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(true)
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(aclWaitTime) || tok.Error() != nil {
		tb.Fatalf("connect %s as %s: %v", clientID, username, tok.Error())
	}
	tb.Cleanup(func() { c.Disconnect(100) })
	return c
}

func rawPublish(tb testing.TB, c paho.Client, topic string, retained bool, payload string) {
	tb.Helper()
	tok := c.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(aclWaitTime) || tok.Error() != nil {
		tb.Fatalf("publish to %s: %v", topic, tok.Error())
	}
}

func rawSubscribeAll(tb testing.TB, c paho.Client, log *topicLog, filters ...string) {
	tb.Helper()
	for _, f := range filters {
		tok := c.Subscribe(f, 1, log.add)
		if !tok.WaitTimeout(aclWaitTime) || tok.Error() != nil {
			tb.Fatalf("subscribe to %s: %v", f, tok.Error())
		}
	}
}

func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(aclWaitTime)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", aclWaitTime, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// secureEdge is a virtual printer and an edge started through
// runEdgeWith, as the edge subcommand runs them.
type secureEdge struct {
	vp   *virtual.Printer
	logs *syncBuffer
}

func startSecureEdge(t *testing.T, printerID string, bus busOptions, metricsListen string) *secureEdge {
	t.Helper()
	dir := t.TempDir()
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	vp, err := virtual.New(vcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vpCtx, stopVP := context.WithCancel(context.Background())
	vpDone := make(chan error, 1)
	go func() { vpDone <- vp.Run(vpCtx) }()

	se := &secureEdge{vp: vp, logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(se.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := edgeOptions{
		port: vp.Path(), baud: 115200, printerID: printerID, dataDir: filepath.Join(dir, "edge"),
		maxLineLength: 96, autoConnect: true, bus: bus, metricsListen: metricsListen,
		flow: "auto", rxBuffer: 128, outboxFsync: "batch", outboxFsyncInterval: 100 * time.Millisecond,
		// The wait makes the edge check that its own probe came back, so
		// that the ACL is seen to allow the presence topic.
		presenceWait: 2 * time.Second,
	}
	edgeCtx, stopEdge := context.WithCancel(context.Background())
	edgeDone := make(chan error, 1)
	go func() { edgeDone <- runEdgeWith(edgeCtx, opts, log, nil) }()
	t.Cleanup(func() {
		stopEdge()
		if err := <-edgeDone; err != nil {
			t.Errorf("edge %s stopped with error: %v", printerID, err)
		}
		stopVP()
		<-vpDone
		// Cancelling Run leaves the pty master and its inotify instance
		// open; only Close releases them.
		_ = vp.Close()
		if t.Failed() {
			t.Logf("edge %s log:\n%s", printerID, tail(se.logs.String(), 16384))
		}
	})
	return se
}

// checkPresenceAllowed checks that the edge's presence check worked
// under the broker's access control.
func checkPresenceAllowed(t *testing.T, se *secureEdge) {
	t.Helper()
	waitUntil(t, "the edge's presence check", func() bool { return strings.Contains(se.logs.String(), "taking commands") })
	for _, problem := range []string{"did not come back", "presence topic failed", "presence probe failed"} {
		if strings.Contains(se.logs.String(), problem) {
			t.Errorf("the edge's presence check failed under the access control (%q):\n%s", problem, tail(se.logs.String(), 4096))
		}
	}
}

// startHookWorker runs a worker with a gcode hook on Connected, on a
// bus the caller opened with the worker's credentials. It returns the
// worker's log.
func startHookWorker(t *testing.T, bus bridge.Bus) *syncBuffer {
	t.Helper()
	cfg, problems, err := hooks.ParseConfig("config.yaml", []byte(`events:
  enabled: true
  subscriptions:
  - event: Connected
    name: greet
    type: gcode
    command: M117 acl-hook {__eventname}
`))
	if err != nil || hooks.HasErrors(problems) {
		t.Fatalf("hook config: %v %v", err, problems)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	w := hooks.NewWorker(cfg, bus, slog.New(slog.NewTextHandler(logs, nil)))
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		<-done
	})
	return logs
}

func executedContains(vp *virtual.Printer, line string) bool {
	return slices.Contains(vp.Executed(), line)
}

func TestMosquittoACLIsolatesPrinters(t *testing.T) {
	aclPath, err := filepath.Abs(filepath.Join(repoRoot, "deploy", "mosquitto", "acl"))
	if err != nil {
		t.Fatal(err)
	}
	passwd, passwords := mosquittoPasswords(t, aclUsers)
	port := startSecureMosquitto(t, "allow_anonymous false", "password_file "+passwd, "acl_file "+aclPath)
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)

	// The dashboard user reads everything, like Home Assistant would.
	seen := &topicLog{}
	dashboard := rawMQTT(t, url, "acl-dashboard", "dashboard", passwords["dashboard"])
	rawSubscribeAll(t, dashboard, seen, "printbridge/#")

	// The worker runs a gcode hook through its own least-privilege user.
	workerBus, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "acl-worker", Username: "worker",
		Password: passwords["worker"], Topics: bridge.Topics{}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("worker connect: %v", err)
	}
	t.Cleanup(func() { _ = workerBus.Close() })
	workerLog := startHookWorker(t, workerBus)

	secrets := t.TempDir()
	bus := busOptions{mqttURL: url, mqttUser: "edge-" + aclPrinterA, baseTopic: bridge.DefaultBase}
	bus.secrets.mqttPasswordFile = writeSecret(t, secrets, "mqtt-password", passwords["edge-"+aclPrinterA])
	edgeA := startSecureEdge(t, aclPrinterA, bus, "")

	// Everything the edge may do works: events, state, availability,
	// info, commands with replies, and the worker's hook.
	waitUntil(t, "Connected from printer A", func() bool { return seen.hasTopic("printbridge/mk3s/event/Connected") })
	checkPresenceAllowed(t, edgeA)
	waitUntil(t, "printer A's presence", func() bool { return seen.hasTopic("printbridge/mk3s/presence") })
	waitUntil(t, "the worker's hook G-code on printer A", func() bool { return executedContains(edgeA.vp, "M117 acl-hook Connected") })
	waitUntil(t, "the worker's hook result", func() bool { return seen.hasTopic("printbridge/mk3s/hook") })
	// The worker may subscribe to the printers' availability markers.
	if strings.Contains(workerLog.String(), "subscribing to availability markers failed") {
		t.Errorf("the access control denies the worker the availability topics:\n%s", workerLog.String())
	}
	for _, topic := range []string{"printbridge/mk3s/state", "printbridge/mk3s/availability", "printbridge/mk3s/info", "printbridge/bridge/info"} {
		waitUntil(t, topic, func() bool { return seen.hasTopic(topic) })
	}

	// The edge cannot be made to publish on printer B's topics through
	// reply_to: the edge rejects the command on its own reply topic, and
	// the broker's ACL would drop such a reply too. The second command's
	// reply on A's own topic comes after it, so once it is here the
	// first one would have been too.
	rawPublish(t, dashboard, "printbridge/mk3s/command/gcode", false,
		`{"id": "deputy-1", "commands": ["M117 deputy"], "reply_to": "printbridge/mk4/event/PrintDone"}`)
	rawPublish(t, dashboard, "printbridge/mk3s/command/gcode", false, `{"id": "sentinel-1", "commands": ["M117 sentinel"]}`)
	waitUntil(t, "reply to sentinel-1", func() bool {
		return seen.has(func(topic, payload string) bool {
			return topic == "printbridge/mk3s/reply" && strings.Contains(payload, `"sentinel-1"`) && strings.Contains(payload, `"done"`)
		})
	})

	// A client with A's credentials cannot publish as printer B, retained
	// or not, nor send commands to B.
	impostor := rawMQTT(t, url, "acl-impostor", "edge-"+aclPrinterA, passwords["edge-"+aclPrinterA])
	rawPublish(t, impostor, "printbridge/mk4/event/PrintDone", false, `{"forged": true}`)
	rawPublish(t, impostor, "printbridge/mk4/state", true, `{"forged": true}`)
	rawPublish(t, impostor, "printbridge/mk4/availability", true, "online")
	rawPublish(t, impostor, "printbridge/mk4/info", true, `{"forged": true}`)
	rawPublish(t, impostor, "printbridge/mk4/reply", false, `{"forged": true}`)
	rawPublish(t, impostor, "printbridge/mk4/command/gcode", false, `{"id": "forged", "commands": ["M84"]}`)
	rawPublish(t, impostor, "printbridge/mk4/presence", false, `{"forged": true}`)
	rawPublish(t, impostor, "printbridge/mk3s/command/gcode", false, `{"id": "self-command", "commands": ["M117 self"]}`)
	// On its own topic, an envelope that names printer B must not make the
	// worker run B's hooks, which would send G-code to B's command topic.
	rawPublish(t, impostor, "printbridge/mk3s/event/Connected", false,
		`{"schema": 1, "id": "impostor-b", "seq": 1, "printer": "mk4", "event": "Connected", "payload": {}}`)
	rawPublish(t, impostor, "printbridge/mk3s/event/Sentinel", false, `{"sentinel": true}`)
	waitUntil(t, "the impostor's sentinel on A's own topic", func() bool { return seen.hasTopic("printbridge/mk3s/event/Sentinel") })

	// Nor can it read B's commands: the dashboard sends one to B and then
	// one to A, which the impostor may read.
	read := &topicLog{}
	rawSubscribeAll(t, impostor, read, "printbridge/mk4/command/#", "printbridge/+/command/#", "printbridge/mk3s/command/#")
	rawPublish(t, dashboard, "printbridge/mk4/command/gcode", false, `{"id": "for-b", "commands": ["M117 b"]}`)
	rawPublish(t, dashboard, "printbridge/mk3s/command/sentinel", false, `{"id": "for-a"}`)
	waitUntil(t, "the sentinel command on A's topic", func() bool { return read.hasTopic("printbridge/mk3s/command/sentinel") })

	// The worker cannot start, cancel or disconnect jobs.
	workerRaw := rawMQTT(t, url, "acl-worker-raw", "worker", passwords["worker"])
	rawPublish(t, workerRaw, "printbridge/mk3s/command/job", false, `{"id": "worker-job", "action": "cancel"}`)
	rawPublish(t, workerRaw, "printbridge/mk3s/command/connection", false, `{"id": "worker-conn", "action": "disconnect"}`)
	rawPublish(t, workerRaw, "printbridge/mk3s/event/PrintDone", false, `{"forged": true}`)
	rawPublish(t, workerRaw, "printbridge/mk3s/hook", false, `{"sentinel": "worker"}`)
	waitUntil(t, "the worker's sentinel", func() bool {
		return seen.has(func(topic, payload string) bool {
			return topic == "printbridge/mk3s/hook" && strings.Contains(payload, "sentinel")
		})
	})

	// Only the dashboard's own command to B may show up under B.
	if seen.has(func(topic, payload string) bool {
		return strings.HasPrefix(topic, "printbridge/mk4/") && !strings.Contains(payload, `"for-b"`)
	}) {
		t.Errorf("a message reached printer B's topics: %q", seen.topics())
	}
	if seen.has(func(topic, payload string) bool { return strings.Contains(payload, "forged") }) {
		t.Error("a forged message reached the dashboard")
	}
	for _, topic := range []string{"printbridge/mk3s/command/job", "printbridge/mk3s/command/connection"} {
		if seen.hasTopic(topic) {
			t.Errorf("the worker's %s command passed the ACL", topic)
		}
	}
	// An edge only reads its command topics, so it cannot command itself.
	if seen.has(func(topic, payload string) bool { return strings.Contains(payload, "self-command") }) {
		t.Error("printer A's credentials published on A's own command topic")
	}
	for _, topic := range read.topics() {
		if strings.HasPrefix(topic, "printbridge/mk4/") {
			t.Errorf("printer A's credentials read B's command on %s", topic)
		}
	}
	if !seen.has(func(topic, payload string) bool {
		return topic == "printbridge/mk3s/reply" && strings.Contains(payload, `"deputy-1"`) && strings.Contains(payload, `"rejected"`)
	}) {
		t.Error("the command with a reply_to on printer B's event topic got no rejected reply on A's reply topic")
	}
	if executedContains(edgeA.vp, "M117 deputy") {
		t.Error("the command with a reply_to on printer B's event topic ran on printer A")
	}

	// The worker reads the markers too, so it does not send the G-code
	// hook of printer B, whose edge left "offline".
	stoppedB := rawMQTT(t, url, "acl-stopped-b", "edge-"+aclPrinterB, passwords["edge-"+aclPrinterB])
	rawPublish(t, stoppedB, "printbridge/mk4/availability", true, "offline")
	rawPublish(t, stoppedB, "printbridge/mk4/event/Connected", false,
		`{"schema":1,"id":"01a2462b-9ad0-7c91-9056-986064903eb2","seq":1,"printer":"mk4","event":"Connected","time":"2026-12-05T12:00:00Z","payload":{}}`)
	waitUntil(t, "the worker's offline result for printer B", func() bool {
		return seen.has(func(topic, payload string) bool {
			return topic == "printbridge/mk4/hook" && strings.Contains(payload, `"result":"offline"`)
		})
	})
}

// startNATSWithAuthConf runs nats-server in process from a config that
// includes deploy/nats/auth.conf, with the passwords in the environment,
// and returns its URL and the passwords. The file is used unchanged
// unless rewrite is given, which gets and returns its text.
func startNATSWithAuthConf(t *testing.T, rewrite ...func(string) string) (string, map[string]string) {
	t.Helper()
	passwords := map[string]string{}
	for _, name := range aclUsers {
		passwords[name] = randomSecret(t)
		env := "PRINTBRIDGE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_PASSWORD"
		t.Setenv(env, passwords[name])
	}
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rewrite {
		data = []byte(f(string(data)))
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	port := brokertest.FreePort(t)
	main := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(main, []byte(fmt.Sprintf("listen: 127.0.0.1:%d\ninclude ./auth.conf\n", port)), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(main)
	if err != nil {
		t.Fatalf("deploy/nats/auth.conf does not load: %v", err)
	}
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
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
	return srv.ClientURL(), passwords
}

// subjectLog records every message of a NATS subscription.
type subjectLog struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func (l *subjectLog) add(m *nats.Msg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, m)
}

func (l *subjectLog) has(pred func(subject, payload string) bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if pred(m.Subject, string(m.Data)) {
			return true
		}
	}
	return false
}

func (l *subjectLog) hasSubject(subject string) bool {
	return l.has(func(s, _ string) bool { return s == subject })
}

func (l *subjectLog) subjects() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, len(l.msgs))
	for i, m := range l.msgs {
		out[i] = m.Subject
	}
	return out
}

// permissionErrors collects the asynchronous permission violations the
// server reports to a connection.
type permissionErrors struct {
	mu   sync.Mutex
	errs []string
}

func (p *permissionErrors) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, err.Error())
}

func (p *permissionErrors) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.errs)
}

func rawNATS(t *testing.T, url, user, password string, perms *permissionErrors) *nats.Conn {
	t.Helper()
	opts := []nats.Option{nats.UserInfo(user, password), nats.Name("acl-raw-" + user)}
	if perms != nil {
		opts = append(opts, nats.ErrorHandler(perms.handler))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect to NATS as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func natsPublish(t *testing.T, nc *nats.Conn, subject, payload string) {
	t.Helper()
	if err := nc.Publish(subject, []byte(payload)); err != nil {
		t.Fatalf("publish to %s: %v", subject, err)
	}
	if err := nc.FlushTimeout(aclWaitTime); err != nil {
		t.Fatalf("flush after %s: %v", subject, err)
	}
}

func TestNATSAuthConfIsolatesPrinters(t *testing.T) {
	url, passwords := startNATSWithAuthConf(t)

	seen := &subjectLog{}
	dashboard := rawNATS(t, url, "dashboard", passwords["dashboard"], nil)
	if _, err := dashboard.Subscribe("printbridge.>", seen.add); err != nil {
		t.Fatal(err)
	}
	if err := dashboard.Flush(); err != nil {
		t.Fatal(err)
	}

	workerBus, err := natsbus.New(context.Background(), natsbus.Config{URL: url, Name: "acl-worker", User: "worker",
		Password: passwords["worker"], Topics: bridge.Topics{}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("worker connect: %v", err)
	}
	t.Cleanup(func() { _ = workerBus.Close() })
	startHookWorker(t, workerBus)

	secrets := t.TempDir()
	bus := busOptions{natsURL: url, natsUser: "edge-" + aclPrinterA, baseTopic: bridge.DefaultBase}
	bus.secrets.natsPasswordFile = writeSecret(t, secrets, "nats-password", passwords["edge-"+aclPrinterA])
	edgeA := startSecureEdge(t, aclPrinterA, bus, "")

	waitUntil(t, "Connected from printer A", func() bool { return seen.hasSubject("printbridge.mk3s.event.Connected") })
	checkPresenceAllowed(t, edgeA)
	waitUntil(t, "printer A's presence", func() bool { return seen.hasSubject("printbridge.mk3s.presence") })
	waitUntil(t, "the worker's hook G-code on printer A", func() bool { return executedContains(edgeA.vp, "M117 acl-hook Connected") })
	waitUntil(t, "the worker's hook result", func() bool { return seen.hasSubject("printbridge.mk3s.hook") })
	waitUntil(t, "printer A's info", func() bool { return seen.hasSubject("printbridge.mk3s.info") })

	// A NATS request gets its replies on its inbox, which
	// allow_responses permits, but a reply_to on B's subjects is rejected
	// by the edge, and the server's authorization would refuse it too.
	reply, err := dashboard.Request("printbridge.mk3s.command.gcode", []byte(`{"id": "req-1", "commands": ["M117 request"]}`), aclWaitTime)
	if err != nil || !strings.Contains(string(reply.Data), `"req-1"`) {
		t.Fatalf("request to edge A: %v %v", reply, err)
	}
	natsPublish(t, dashboard, "printbridge.mk3s.command.gcode", `{"id": "deputy-1", "commands": ["M117 deputy"], "reply_to": "printbridge.mk4.event.PrintDone"}`)
	natsPublish(t, dashboard, "printbridge.mk3s.command.gcode", `{"id": "sentinel-1", "commands": ["M117 sentinel"]}`)
	waitUntil(t, "reply to sentinel-1", func() bool {
		return seen.has(func(subject, payload string) bool {
			return subject == "printbridge.mk3s.reply" && strings.Contains(payload, `"sentinel-1"`) && strings.Contains(payload, `"done"`)
		})
	})

	perms := &permissionErrors{}
	impostor := rawNATS(t, url, "edge-"+aclPrinterA, passwords["edge-"+aclPrinterA], perms)
	for _, subject := range []string{"printbridge.mk4.event.PrintDone", "printbridge.mk4.state", "printbridge.mk4.availability",
		"printbridge.mk4.info", "printbridge.mk4.reply", "printbridge.mk4.command.gcode", "printbridge.mk3s.command.gcode", "printbridge.mk4.presence"} {
		natsPublish(t, impostor, subject, `{"forged": true}`)
	}
	// On its own subject, an envelope that names printer B must not make
	// the worker send G-code to B's command subject.
	natsPublish(t, impostor, "printbridge.mk3s.event.Connected",
		`{"schema": 1, "id": "impostor-b", "seq": 1, "printer": "mk4", "event": "Connected", "payload": {}}`)
	natsPublish(t, impostor, "printbridge.mk3s.event.Sentinel", `{"sentinel": true}`)
	waitUntil(t, "the impostor's sentinel", func() bool { return seen.hasSubject("printbridge.mk3s.event.Sentinel") })

	read := &subjectLog{}
	for _, subject := range []string{"printbridge.mk4.command.*", "printbridge.*.command.*", "printbridge.mk3s.command.*"} {
		if _, err := impostor.Subscribe(subject, read.add); err != nil {
			t.Fatal(err)
		}
	}
	if err := impostor.Flush(); err != nil {
		t.Fatal(err)
	}
	natsPublish(t, dashboard, "printbridge.mk4.command.gcode", `{"id": "for-b", "commands": ["M117 b"]}`)
	natsPublish(t, dashboard, "printbridge.mk3s.command.sentinel", `{"id": "for-a"}`)
	waitUntil(t, "the sentinel command on A's subject", func() bool { return read.hasSubject("printbridge.mk3s.command.sentinel") })
	waitUntil(t, "permission violations reported to the impostor", func() bool { return perms.count() >= 7 })

	workerRaw := rawNATS(t, url, "worker", passwords["worker"], nil)
	natsPublish(t, workerRaw, "printbridge.mk3s.command.job", `{"id": "worker-job", "action": "cancel"}`)
	natsPublish(t, workerRaw, "printbridge.mk3s.event.PrintDone", `{"forged": true}`)
	natsPublish(t, workerRaw, "printbridge.mk3s.hook", `{"sentinel": "worker"}`)
	waitUntil(t, "the worker's sentinel", func() bool {
		return seen.has(func(subject, payload string) bool {
			return subject == "printbridge.mk3s.hook" && strings.Contains(payload, "sentinel")
		})
	})

	if seen.has(func(subject, payload string) bool {
		return strings.HasPrefix(subject, "printbridge.mk4.") && !strings.Contains(payload, `"for-b"`)
	}) {
		t.Errorf("a message reached printer B's subjects: %q", seen.subjects())
	}
	if seen.has(func(_, payload string) bool { return strings.Contains(payload, "forged") }) {
		t.Error("a forged message reached the dashboard")
	}
	if seen.hasSubject("printbridge.mk3s.command.job") {
		t.Error("the worker's job command passed the authorization")
	}
	for _, subject := range read.subjects() {
		if strings.HasPrefix(subject, "printbridge.mk4.") {
			t.Errorf("printer A's credentials read B's command on %s", subject)
		}
	}
}
