package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// dupTimeout bounds each wait of the duplicate edge tests. The edges
// decide within their presence wait of 2s; the rest is for a slow start.
const dupTimeout = time.Minute

// dupRunningLog is what an edge logs once no other edge of its printer id
// responded to its probe.
const dupRunningLog = "no other edge of this printer id responded to the presence probe; taking commands"

// dupBroker is a broker that the edge processes of a test share.
type dupBroker struct {
	name string
	// edgeArgs are the broker flags of an edge.
	edgeArgs []string
	// observer connects a client that records the printer's events and
	// replies and sends its commands.
	observer func(t *testing.T, printer string, col *collector) bridge.Bus
}

func dupBrokers(t *testing.T) []dupBroker {
	t.Helper()
	natsURL := brokertest.StartNATS(t, false, false).NATSURL()
	mqttURL := brokertest.StartMosquitto(t)
	return []dupBroker{
		{name: "nats", edgeArgs: []string{"--nats", natsURL}, observer: func(t *testing.T, printer string, col *collector) bridge.Bus {
			return natsObserver(t, natsURL, printer, col)
		}},
		{name: "mosquitto", edgeArgs: []string{"--mqtt", mqttURL}, observer: func(t *testing.T, printer string, col *collector) bridge.Bus {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			b, err := mqtt.New(ctx, mqtt.Config{URL: mqttURL, ClientID: "dup-observer-" + printer}, brokertest.Logger())
			if err != nil {
				t.Fatalf("connect the observer: %v", err)
			}
			return subscribeObserver(t, b, printer, col)
		}},
	}
}

func natsObserver(t *testing.T, natsURL, printer string, col *collector) bridge.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := natsbus.New(ctx, natsbus.Config{URL: natsURL, Name: "dup-observer-" + printer}, brokertest.Logger())
	if err != nil {
		t.Fatalf("connect the observer: %v", err)
	}
	return subscribeObserver(t, b, printer, col)
}

func subscribeObserver(t *testing.T, b bridge.Bus, printer string, col *collector) bridge.Bus {
	t.Helper()
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.SubscribeEvents(ctx, printer, "", col.onEvent); err != nil {
		t.Fatal(err)
	}
	if err := b.SubscribeReplies(ctx, printer, col.onReply); err != nil {
		t.Fatal(err)
	}
	return b
}

// dupEdge is one virtual printer on a pseudo-terminal and the edge
// process that serves it, each with its own data folder and metrics port.
type dupEdge struct {
	t       *testing.T
	name    string
	vp      *proc
	edge    *proc
	record  string
	metrics string
}

// newDupEdge starts the virtual printer and prepares, without starting,
// an edge of printer with the broker flags brokerArgs and extra flags.
func newDupEdge(t *testing.T, bin, dir, name, printer string, brokerArgs []string, extra ...string) *dupEdge {
	t.Helper()
	d := &dupEdge{t: t, name: name, record: filepath.Join(dir, name+"-record.gcode"),
		metrics: "127.0.0.1:" + strconv.Itoa(brokertest.FreePort(t))}
	link := filepath.Join(dir, name+"-tty")
	d.vp = newProc(t, dir, name+"-virtual-printer", bin, "virtual-printer", "--link", link, "--record", d.record, "--log-level", "warn")
	d.vp.ready = "virtual printer ready"
	d.vp.Start()
	args := append([]string{"edge", "--port", link, "--printer", printer, "--data-dir", filepath.Join(dir, name+"-data"),
		"--metrics-listen", d.metrics}, brokerArgs...)
	d.edge = newProc(t, dir, name+"-edge", bin, append(args, extra...)...)
	return d
}

// pid returns the process id of the running edge.
func (d *dupEdge) pid() int {
	d.edge.mu.Lock()
	defer d.edge.mu.Unlock()
	if d.edge.cmd == nil {
		d.t.Fatalf("edge %s is not running", d.name)
	}
	return d.edge.cmd.Process.Pid
}

// waitExit waits until the edge process exits and returns its exit error,
// or fails the test when it is still running after dupTimeout.
func (d *dupEdge) waitExit() error {
	d.t.Helper()
	d.edge.mu.Lock()
	exited, exitErr := d.edge.exited, d.edge.exitErr
	d.edge.mu.Unlock()
	if exited == nil {
		d.t.Fatalf("edge %s was not started", d.name)
	}
	select {
	case <-exited:
		return *exitErr
	case <-time.After(dupTimeout):
		d.t.Fatalf("edge %s still runs after %s, want it to stop:\n%s", d.name, dupTimeout, d.edge.Tail(30))
		return nil
	}
}

// metricValue returns the value of one sample line, such as
// `printbridge_commands_stopped`, from the edge's metrics endpoint.
func (d *dupEdge) metricValue(sample string) float64 {
	d.t.Helper()
	resp, err := http.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		d.t.Fatalf("metrics of edge %s: %v", d.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if value, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				d.t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	d.t.Fatalf("edge %s exports no %s:\n%s", d.name, sample, body)
	return 0
}

// recorded reports whether the edge's virtual printer executed line.
func (d *dupEdge) recorded(line string) bool {
	data, err := os.ReadFile(d.record)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		d.t.Fatal(err)
	}
	return strings.Contains(string(data), line+"\n")
}

// checkPrinterUntouched checks that the edge never talked to its virtual
// printer, whose record would hold the handshake's M110 and M115.
func (d *dupEdge) checkPrinterUntouched() {
	d.t.Helper()
	data, err := os.ReadFile(d.record)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		d.t.Fatal(err)
	}
	if len(data) > 0 {
		d.t.Errorf("edge %s sent commands to its printer before it stopped:\n%s", d.name, data)
	}
}

// sendGcode sends one G-code command with id and waits for its first
// final reply.
func sendGcode(t *testing.T, observer bridge.Bus, col *collector, printer, id, line string) bridge.Reply {
	t.Helper()
	data := fmt.Sprintf(`{"id": %q, "commands": [%q]}`, id, line)
	if err := observer.PublishCommand(context.Background(), printer, bridge.CommandGcode, []byte(data)); err != nil {
		t.Fatal(err)
	}
	var final bridge.Reply
	waitFor(t, "a final reply to "+id, dupTimeout, func() bool {
		for _, status := range []string{bridge.ReplyDone, bridge.ReplyFailed, bridge.ReplyRejected} {
			if r, ok := col.reply(id, status); ok {
				final = r
				return true
			}
		}
		return false
	})
	return final
}

func countEvents(col *collector, event string) int {
	n := 0
	for _, env := range col.snapshot() {
		if env.Event == event {
			n++
		}
	}
	return n
}

func checkRefusal(t *testing.T, refused, other *dupEdge, printer string, otherPID int) {
	t.Helper()
	err := refused.waitExit()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("refused edge exited with %v, want exit code 1", err)
	}
	host, herr := os.Hostname()
	if herr != nil {
		t.Fatal(herr)
	}
	log := refused.edge.Log()
	for _, part := range []string{
		"printbridge edge: another edge of printer " + printer,
		fmt.Sprintf("on host %s, pid %d, data dir %s", host, otherPID, filepath.Dir(refused.record)+"/"+other.name+"-data"),
		"does not start, so that no command runs twice or on the wrong printer. Stop the other edge, or give this printer its own --printer id",
	} {
		if !strings.Contains(log, part) {
			t.Errorf("refused edge's output does not contain %q:\n%s", part, refused.edge.Tail(30))
		}
	}
}

// TestDuplicateEdgeRefused starts a second edge process of a running
// edge's printer id, with its own data folder and virtual printer, so the
// data folder lock cannot stop it. The second edge must exit with an
// error naming the first, publish nothing and run no command, and the
// first must warn, count the probe and keep running.
func TestDuplicateEdgeRefused(t *testing.T) {
	bin := buildPrintbridge(t)
	for _, broker := range dupBrokers(t) {
		t.Run(broker.name, func(t *testing.T) {
			dir := t.TempDir()
			const printer = "dup1"
			col := &collector{}
			observer := broker.observer(t, printer, col)
			first := newDupEdge(t, bin, dir, "first", printer, broker.edgeArgs)
			first.edge.Start()
			// The edge publishes its events only once its check has let it
			// run, so Connected shows that it is running.
			waitFor(t, "Connected of the first edge", dupTimeout, func() bool { return col.has(bridge.EventConnected) })
			firstPID := first.pid()

			second := newDupEdge(t, bin, dir, "second", printer, broker.edgeArgs)
			second.edge.Start()
			secondPID := second.pid()
			checkRefusal(t, second, first, printer, firstPID)
			if log := second.edge.Log(); strings.Contains(log, dupRunningLog) {
				t.Errorf("refused edge logged that it takes commands:\n%s", second.edge.Tail(30))
			}
			second.checkPrinterUntouched()

			waitFor(t, "the first edge's warning", dupTimeout, func() bool {
				return strings.Contains(first.edge.Log(), "another edge of this printer id is starting; it does not start")
			})
			if log := first.edge.Log(); !strings.Contains(log, "other_pid="+strconv.Itoa(secondPID)) {
				t.Errorf("the first edge's warning does not name the second edge's pid %d:\n%s", secondPID, first.edge.Tail(30))
			}
			if got := first.metricValue(`printbridge_duplicate_edge_messages_total{kind="probe"}`); got != 1 {
				t.Errorf("first edge counted %v probes, want 1", got)
			}
			if !first.edge.Running() {
				t.Fatalf("the first edge exited:\n%s", first.edge.Tail(30))
			}

			reply := sendGcode(t, observer, col, printer, "after-refusal", "M117 dup after refusal")
			if reply.Status != bridge.ReplyDone {
				t.Errorf("command after the refusal got %s (%s), want done", reply.Status, reply.Reason)
			}
			if !first.recorded("M117 dup after refusal") {
				t.Error("the first edge's printer did not execute the command")
			}
			if second.recorded("M117 dup after refusal") {
				t.Error("the refused edge's printer executed the command")
			}
			if n := countEvents(col, bridge.EventStartup); n != 1 {
				t.Errorf("%d Startup events on the broker, want 1 from the first edge", n)
			}
			if strings.Contains(first.edge.Log(), "lost connection") {
				t.Errorf("the first edge lost its broker connection:\n%s", first.edge.Tail(30))
			}
		})
	}
}

// TestDuplicateEdgeSimultaneousStart starts two edge processes of one
// printer id at the same moment: exactly one must exit with the error,
// and the other must run and take commands.
func TestDuplicateEdgeSimultaneousStart(t *testing.T) {
	bin := buildPrintbridge(t)
	for _, broker := range dupBrokers(t) {
		t.Run(broker.name, func(t *testing.T) {
			dir := t.TempDir()
			const printer = "dup2"
			col := &collector{}
			observer := broker.observer(t, printer, col)
			edges := []*dupEdge{
				newDupEdge(t, bin, dir, "left", printer, broker.edgeArgs),
				newDupEdge(t, bin, dir, "right", printer, broker.edgeArgs),
			}
			for _, d := range edges {
				d.edge.Start()
			}
			pids := []int{edges[0].pid(), edges[1].pid()}

			var refused, running *dupEdge
			runningPID := 0
			waitFor(t, "one edge to exit", dupTimeout, func() bool {
				for i, d := range edges {
					if !d.edge.Running() {
						refused, running, runningPID = d, edges[1-i], pids[1-i]
						return true
					}
				}
				return false
			})
			checkRefusal(t, refused, running, printer, runningPID)
			waitFor(t, "the other edge to take commands", dupTimeout, func() bool {
				return strings.Contains(running.edge.Log(), dupRunningLog)
			})
			if !running.edge.Running() {
				t.Fatalf("both edges exited:\n%s", running.edge.Tail(30))
			}
			if strings.Contains(refused.edge.Log(), dupRunningLog) {
				t.Errorf("the refused edge logged that it takes commands:\n%s", refused.edge.Tail(30))
			}
			refused.checkPrinterUntouched()

			waitFor(t, "Connected of the running edge", dupTimeout, func() bool { return col.has(bridge.EventConnected) })
			reply := sendGcode(t, observer, col, printer, "after-race", "M117 dup after race")
			if reply.Status != bridge.ReplyDone {
				t.Errorf("command after the race got %s (%s), want done", reply.Status, reply.Reason)
			}
			if !running.recorded("M117 dup after race") {
				t.Error("the running edge's printer did not execute the command")
			}
			if refused.recorded("M117 dup after race") {
				t.Error("the refused edge's printer executed the command")
			}
			if !running.edge.Running() {
				t.Errorf("the running edge exited:\n%s", running.edge.Tail(30))
			}
		})
	}
}

// TestEdgesOfTwoPrintersBothRun starts edges of two printer ids at once
// on one broker: neither may take the other for a duplicate.
func TestEdgesOfTwoPrintersBothRun(t *testing.T) {
	bin := buildPrintbridge(t)
	for _, broker := range dupBrokers(t) {
		t.Run(broker.name, func(t *testing.T) {
			dir := t.TempDir()
			printers := []string{"dup3-a", "dup3-b"}
			var edges []*dupEdge
			var cols []*collector
			var observers []bridge.Bus
			for _, printer := range printers {
				col := &collector{}
				cols = append(cols, col)
				observers = append(observers, broker.observer(t, printer, col))
				edges = append(edges, newDupEdge(t, bin, dir, printer, printer, broker.edgeArgs))
			}
			for _, d := range edges {
				d.edge.Start()
			}
			for i, d := range edges {
				waitFor(t, "edge "+printers[i]+" to take commands", dupTimeout, func() bool {
					return strings.Contains(d.edge.Log(), dupRunningLog)
				})
				waitFor(t, "Connected of "+printers[i], dupTimeout, func() bool { return cols[i].has(bridge.EventConnected) })
			}
			for i, d := range edges {
				line := "M117 own command of " + printers[i]
				reply := sendGcode(t, observers[i], cols[i], printers[i], "own-"+printers[i], line)
				if reply.Status != bridge.ReplyDone {
					t.Errorf("%s: command got %s (%s), want done", printers[i], reply.Status, reply.Reason)
				}
				if !d.recorded(line) {
					t.Errorf("%s: the printer did not execute its command", printers[i])
				}
				if edges[1-i].recorded(line) {
					t.Errorf("%s: the other printer executed the command", printers[i])
				}
			}
			for i, d := range edges {
				if !d.edge.Running() {
					t.Errorf("edge %s exited:\n%s", printers[i], d.edge.Tail(30))
				}
				if log := d.edge.Log(); strings.Contains(log, "another edge") {
					t.Errorf("edge %s reported another edge:\n%s", printers[i], d.edge.Tail(30))
				}
				for _, kind := range []string{"probe", "running"} {
					if got := d.metricValue(`printbridge_duplicate_edge_messages_total{kind="` + kind + `"}`); got != 0 {
						t.Errorf("edge %s counted %v %s messages, want 0", printers[i], got, kind)
					}
				}
			}
		})
	}
}

// startClusterNATS starts an in-process nats-server that is a member of
// cluster "dup-test", listening for routes on clusterPort and soliciting
// the routes given.
func startClusterNATS(t *testing.T, name string, clusterPort int, routes ...string) *server.Server {
	t.Helper()
	var routeURLs []*url.URL
	for _, r := range routes {
		u, err := url.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		routeURLs = append(routeURLs, u)
	}
	opts := &server.Options{
		ServerName: name, Host: "127.0.0.1", Port: brokertest.FreePort(t), NoSigs: true, NoLog: true,
		// Without pooling, one route connection joins the two servers, so
		// the proxy in front of it cuts them apart for sure.
		Cluster: server.ClusterOpts{Name: "dup-test", Host: "127.0.0.1", Port: clusterPort, PoolSize: -1},
		Routes:  routeURLs,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server %s: %v", name, err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatalf("nats-server %s does not accept connections", name)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// TestDuplicateEdgeAfterPartitionHeals runs two edges of one printer id
// on the two servers of a NATS cluster whose route is cut while the second
// edge starts, so its check hears no answer. Once the route is back, the
// edges find each other by their announcements: the one that started
// later must stop taking commands, reject each command with an error that
// names the other, and run none, while the first runs every command.
func TestDuplicateEdgeAfterPartitionHeals(t *testing.T) {
	bin := buildPrintbridge(t)
	dir := t.TempDir()
	const printer = "dup4"
	clusterPort := brokertest.FreePort(t)
	serverA := startClusterNATS(t, "dup-a", clusterPort)
	route := brokertest.StartProxy(t, "127.0.0.1:"+strconv.Itoa(clusterPort))
	serverB := startClusterNATS(t, "dup-b", brokertest.FreePort(t), "nats-route://"+route.Addr())
	waitFor(t, "the route between the two servers", dupTimeout, func() bool { return serverA.NumRoutes() > 0 && serverB.NumRoutes() > 0 })

	col := &collector{}
	observer := natsObserver(t, serverA.ClientURL(), printer, col)
	interval := []string{"--presence-interval", "1s"}
	first := newDupEdge(t, bin, dir, "first", printer, []string{"--nats", serverA.ClientURL()}, interval...)
	first.edge.readyLog = dupRunningLog
	first.edge.Start()
	waitFor(t, "Connected of the first edge", dupTimeout, func() bool { return col.has(bridge.EventConnected) })

	route.SetDown(true)
	waitFor(t, "the route to go down", dupTimeout, func() bool { return serverA.NumRoutes() == 0 && serverB.NumRoutes() == 0 })
	second := newDupEdge(t, bin, dir, "second", printer, []string{"--nats", serverB.ClientURL()}, interval...)
	second.edge.readyLog = dupRunningLog
	second.edge.Start()
	route.SetDown(false)

	waitFor(t, "the second edge to stop taking commands", dupTimeout, func() bool {
		return strings.Contains(second.edge.Log(), "another edge of this printer id is running and started first; this edge stops taking commands")
	})
	waitFor(t, "the first edge's error", dupTimeout, func() bool {
		return strings.Contains(first.edge.Log(), "this edge started first and goes on taking commands")
	})
	if got := second.metricValue("printbridge_commands_stopped"); got != 1 {
		t.Errorf("second edge printbridge_commands_stopped = %v, want 1", got)
	}
	if got := first.metricValue("printbridge_commands_stopped"); got != 0 {
		t.Errorf("first edge printbridge_commands_stopped = %v, want 0", got)
	}
	if got := first.metricValue(`printbridge_duplicate_edge_messages_total{kind="running"}`); got < 1 {
		t.Errorf("first edge counted %v messages of a running edge, want at least 1", got)
	}

	// The second edge's command subscription reaches the first server
	// over the healed route before its presence messages do, because it
	// subscribed first.
	if err := observer.PublishCommand(context.Background(), printer, bridge.CommandGcode,
		[]byte(`{"id": "after-heal", "commands": ["M117 dup after heal"]}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the done reply of the first edge and the rejection of the second", dupTimeout, func() bool {
		_, done := col.reply("after-heal", bridge.ReplyDone)
		_, rejected := col.reply("after-heal", bridge.ReplyRejected)
		return done && rejected
	})
	rejection, _ := col.reply("after-heal", bridge.ReplyRejected)
	for _, part := range []string{"printer " + printer + " has another live edge that started first",
		fmt.Sprintf("pid %d", first.pid()), "Stop one of the two edges"} {
		if !strings.Contains(rejection.Reason, part) {
			t.Errorf("rejection %q does not contain %q", rejection.Reason, part)
		}
	}
	if !first.recorded("M117 dup after heal") {
		t.Error("the first edge's printer did not execute the command")
	}
	if second.recorded("M117 dup after heal") {
		t.Error("the second edge's printer executed the command")
	}
	for _, d := range []*dupEdge{first, second} {
		if !d.edge.Running() {
			t.Errorf("edge %s exited:\n%s", d.name, d.edge.Tail(30))
		}
	}
}

// eventsAfter returns the events that arrived after the first n, and
// waits until they include event.
func eventsAfter(t *testing.T, col *collector, n int, event string) []*bridge.Envelope {
	t.Helper()
	var after []*bridge.Envelope
	waitFor(t, event+" after event "+strconv.Itoa(n), dupTimeout, func() bool {
		after = col.snapshot()[n:]
		for _, env := range after {
			if env.Event == event {
				return true
			}
		}
		return false
	})
	return after
}

// TestRefusedEdgeLeavesNoEvents runs an edge once, then starts it three
// times with the same data folder while another edge of its printer id
// runs, and starts it again once the other edge has stopped. The refused
// runs must leave nothing in the outbox: the last start must publish one
// Startup, with the seq after the first run's last event.
func TestRefusedEdgeLeavesNoEvents(t *testing.T) {
	bin := buildPrintbridge(t)
	for _, broker := range dupBrokers(t) {
		t.Run(broker.name, func(t *testing.T) {
			dir := t.TempDir()
			const printer = "dup5"
			col := &collector{}
			broker.observer(t, printer, col)

			second := newDupEdge(t, bin, dir, "second", printer, broker.edgeArgs)
			second.edge.Start()
			eventsAfter(t, col, 0, bridge.EventConnected)
			if err := second.edge.Stop(); err != nil {
				t.Fatalf("first run of the second edge: %v", err)
			}
			firstRun := eventsAfter(t, col, 0, bridge.EventShutdown)
			lastSeq := firstRun[len(firstRun)-1].Seq
			if got := firstRun[len(firstRun)-1].Event; got != bridge.EventShutdown {
				t.Fatalf("last event of the first run is %s, want Shutdown", got)
			}

			mark := len(col.snapshot())
			first := newDupEdge(t, bin, dir, "first", printer, broker.edgeArgs)
			first.edge.readyLog = dupRunningLog
			first.edge.Start()
			eventsAfter(t, col, mark, bridge.EventConnected)
			for i := range 3 {
				second.edge.Start()
				err := second.waitExit()
				var exitErr *exec.ExitError
				if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
					t.Fatalf("refused start %d exited with %v, want exit code 1:\n%s", i+1, err, second.edge.Tail(30))
				}
				_ = second.edge.Stop()
			}
			if err := first.edge.Stop(); err != nil {
				t.Fatalf("stop the first edge: %v", err)
			}
			eventsAfter(t, col, mark, bridge.EventShutdown)

			mark = len(col.snapshot())
			second.edge.Start()
			lastRun := eventsAfter(t, col, mark, bridge.EventConnected)
			if got := countEventsIn(lastRun, bridge.EventStartup); got != 1 {
				t.Errorf("%d Startup events after the refused starts, want 1 of the last run", got)
			}
			if got := countEventsIn(lastRun, bridge.EventShutdown); got != 0 {
				t.Errorf("%d Shutdown events after the refused starts, want 0", got)
			}
			if got := lastRun[0].Event; got != bridge.EventStartup {
				t.Errorf("first event of the last run is %s, want Startup", got)
			}
			for i, env := range lastRun {
				if want := lastSeq + 1 + uint64(i); env.Seq != want {
					t.Errorf("event %d of the last run (%s) has seq %d, want %d", i, env.Event, env.Seq, want)
				}
			}
		})
	}
}

func countEventsIn(events []*bridge.Envelope, event string) int {
	n := 0
	for _, env := range events {
		if env.Event == event {
			n++
		}
	}
	return n
}
