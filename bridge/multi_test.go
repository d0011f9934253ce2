package bridge

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// fakeBus records calls and fails every call while failWith is set. A fake
// is enough here because Multi only fans out; the adapters are tested
// against real brokers in their own packages.
type fakeBus struct {
	name     string
	failWith error
	// down makes Connected report a lost connection.
	down bool

	mu       sync.Mutex
	calls    []string
	events   []func(EventMessage)
	commands []func(CommandMessage)
	replies  []func([]byte)
}

func (f *fakeBus) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return f.failWith
}

func (f *fakeBus) recorded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeBus) Name() string { return f.name }

func (f *fakeBus) Connected() bool { return !f.down }

func (f *fakeBus) PublishEvent(_ context.Context, env *Envelope, _ []byte) error {
	return f.record("event " + env.Printer + " " + env.Event)
}

func (f *fakeBus) PublishState(_ context.Context, printer string, _ []byte) error {
	return f.record("state " + printer)
}

func (f *fakeBus) PublishAvailability(_ context.Context, printer string, online bool) error {
	if online {
		return f.record("availability " + printer + " online")
	}
	return f.record("availability " + printer + " offline")
}

func (f *fakeBus) PublishReply(_ context.Context, printer, replyTo string, _ []byte) error {
	return f.record("reply " + printer + " " + replyTo)
}

func (f *fakeBus) PublishHook(_ context.Context, printer string, _ []byte) error {
	return f.record("hook " + printer)
}

func (f *fakeBus) PublishCommand(_ context.Context, printer, kind string, _ []byte) error {
	return f.record("command " + printer + " " + kind)
}

func (f *fakeBus) SubscribeCommands(_ context.Context, printer string, h func(CommandMessage)) error {
	if err := f.record("subscribe commands " + printer); err != nil {
		return err
	}
	f.mu.Lock()
	f.commands = append(f.commands, h)
	f.mu.Unlock()
	return nil
}

func (f *fakeBus) SubscribeEvents(_ context.Context, printer, group string, h func(EventMessage)) error {
	if err := f.record("subscribe events " + printer + " " + group); err != nil {
		return err
	}
	f.mu.Lock()
	f.events = append(f.events, h)
	f.mu.Unlock()
	return nil
}

func (f *fakeBus) SubscribeReplies(_ context.Context, printer string, h func([]byte)) error {
	if err := f.record("subscribe replies " + printer); err != nil {
		return err
	}
	f.mu.Lock()
	f.replies = append(f.replies, h)
	f.mu.Unlock()
	return nil
}

func (f *fakeBus) Close() error {
	return f.record("close")
}

// deliverEvent calls every event handler as the bus's delivery goroutine
// would.
func (f *fakeBus) deliverEvent(msg EventMessage) {
	f.mu.Lock()
	handlers := append([](func(EventMessage)){}, f.events...)
	f.mu.Unlock()
	for _, h := range handlers {
		h(msg)
	}
}

func TestMultiName(t *testing.T) {
	m := NewMulti(&fakeBus{name: "mqtt"}, &fakeBus{name: "nats"})
	if got := m.Name(); got != "mqtt+nats" {
		t.Errorf("Name() = %q, want %q", got, "mqtt+nats")
	}
}

func TestMultiPublishesToEveryBus(t *testing.T) {
	ctx := context.Background()
	a, b := &fakeBus{name: "mqtt"}, &fakeBus{name: "nats"}
	m := NewMulti(a, b)

	env := &Envelope{Printer: "p1", Event: "PrintStarted"}
	steps := []struct {
		call func() error
		want string
	}{
		{func() error { return m.PublishEvent(ctx, env, nil) }, "event p1 PrintStarted"},
		{func() error { return m.PublishState(ctx, "p1", nil) }, "state p1"},
		{func() error { return m.PublishAvailability(ctx, "p1", true) }, "availability p1 online"},
		{func() error { return m.PublishReply(ctx, "p1", "inbox", nil) }, "reply p1 inbox"},
		{func() error { return m.PublishHook(ctx, "p1", nil) }, "hook p1"},
		{func() error { return m.PublishCommand(ctx, "p1", CommandGcode, nil) }, "command p1 gcode"},
		{func() error { return m.SubscribeCommands(ctx, "p1", func(CommandMessage) {}) }, "subscribe commands p1"},
		{func() error { return m.SubscribeEvents(ctx, "", "workers", func(EventMessage) {}) }, "subscribe events  workers"},
		{func() error { return m.SubscribeReplies(ctx, "p1", func([]byte) {}) }, "subscribe replies p1"},
		{m.Close, "close"},
	}
	var want []string
	for _, step := range steps {
		if err := step.call(); err != nil {
			t.Errorf("%s: unexpected error %v", step.want, err)
		}
		want = append(want, step.want)
	}
	for _, bus := range []*fakeBus{a, b} {
		got := bus.recorded()
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s calls:\n%s\nwant:\n%s", bus.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestMultiFailureTriesAllBuses(t *testing.T) {
	ctx := context.Background()
	errDown := errors.New("broker down")
	failing, working := &fakeBus{name: "mqtt", failWith: errDown}, &fakeBus{name: "nats"}
	m := NewMulti(failing, working)

	err := m.PublishEvent(ctx, &Envelope{Printer: "p1", Event: "ZChange"}, nil)
	if !errors.Is(err, errDown) {
		t.Fatalf("PublishEvent error = %v, want it to wrap %v", err, errDown)
	}
	if !strings.Contains(err.Error(), "mqtt: ") {
		t.Errorf("error %q does not name the failing bus", err)
	}
	if strings.Contains(err.Error(), "nats") {
		t.Errorf("error %q names the bus that worked", err)
	}
	if got := working.recorded(); len(got) != 1 || got[0] != "event p1 ZChange" {
		t.Errorf("working bus calls = %q, want the event after the other bus failed", got)
	}

	if err := m.SubscribeEvents(ctx, "p1", "", func(EventMessage) {}); !errors.Is(err, errDown) {
		t.Errorf("SubscribeEvents error = %v, want it to wrap %v", err, errDown)
	}
	if len(working.events) != 1 {
		t.Errorf("working bus has %d event subscriptions, want 1", len(working.events))
	}
}

func TestMultiJoinsEveryFailure(t *testing.T) {
	errA, errB := errors.New("a down"), errors.New("b down")
	m := NewMulti(&fakeBus{name: "mqtt", failWith: errA}, &fakeBus{name: "nats", failWith: errB})
	err := m.PublishState(context.Background(), "p1", nil)
	if !errors.Is(err, errA) {
		t.Errorf("error %v does not wrap %v", err, errA)
	}
	if !errors.Is(err, errB) {
		t.Errorf("error %v does not wrap %v", err, errB)
	}
}

func TestMultiNoSubscriberOnlyFromEveryBus(t *testing.T) {
	ctx := context.Background()
	noEdge := fmt.Errorf("publish: %w", ErrNoSubscriber)
	errDown := errors.New("broker down")
	for _, tc := range []struct {
		name         string
		mqtt, nats   error
		noSubscriber bool
		wantErr      error
	}{
		{name: "an edge on the other bus may get it", mqtt: nil, nats: noEdge},
		{name: "no edge on either bus", mqtt: noEdge, nats: noEdge, noSubscriber: true},
		{name: "the other bus failed", mqtt: errDown, nats: noEdge, wantErr: errDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMulti(&fakeBus{name: "mqtt", failWith: tc.mqtt}, &fakeBus{name: "nats", failWith: tc.nats})
			err := m.PublishCommand(ctx, "p1", CommandGcode, nil)
			if got := errors.Is(err, ErrNoSubscriber); got != tc.noSubscriber {
				t.Errorf("PublishCommand error %v: wraps ErrNoSubscriber = %t, want %t", err, got, tc.noSubscriber)
			}
			if (err != nil) != (tc.noSubscriber || tc.wantErr != nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Errorf("PublishCommand error = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestMultiHandlersRunOneAtATime(t *testing.T) {
	a, b := &fakeBus{name: "mqtt"}, &fakeBus{name: "nats"}
	m := NewMulti(a, b)

	// count is not guarded, so the race detector flags overlapping calls.
	count := 0
	if err := m.SubscribeEvents(context.Background(), "", "", func(EventMessage) { count++ }); err != nil {
		t.Fatal(err)
	}
	const perBus = 500
	var wg sync.WaitGroup
	for _, bus := range []*fakeBus{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perBus {
				bus.deliverEvent(EventMessage{Source: bus.name})
			}
		}()
	}
	wg.Wait()
	if count != 2*perBus {
		t.Errorf("handler ran %d times, want %d", count, 2*perBus)
	}
}

// ownerBus is a fakeBus that publishes the availability of one printer
// itself, as the MQTT bus with a last will does.
type ownerBus struct {
	fakeBus
	printer string
}

func (o *ownerBus) OwnsAvailability(printer string) bool { return printer == o.printer }

func TestPublishUnownedAvailabilitySkipsOwner(t *testing.T) {
	mqttBus := &ownerBus{fakeBus: fakeBus{name: "mqtt"}, printer: "p1"}
	natsBus := &fakeBus{name: "nats"}
	both := NewMulti(mqttBus, natsBus)

	if err := PublishUnownedAvailability(context.Background(), both, "p1", true); err != nil {
		t.Fatal(err)
	}
	if err := PublishUnownedAvailability(context.Background(), both, "p2", false); err != nil {
		t.Fatal(err)
	}
	if got := mqttBus.recorded(); len(got) != 1 || got[0] != "availability p2 offline" {
		t.Errorf("owner bus calls %q, want only the marker of p2, whose availability it does not own", got)
	}
	if got := natsBus.recorded(); len(got) != 2 || got[0] != "availability p1 online" || got[1] != "availability p2 offline" {
		t.Errorf("other bus calls %q, want both markers", got)
	}

	alone := &ownerBus{fakeBus: fakeBus{name: "mqtt"}, printer: "p1"}
	if err := PublishUnownedAvailability(context.Background(), alone, "p1", true); err != nil {
		t.Fatal(err)
	}
	if got := alone.recorded(); len(got) != 0 {
		t.Errorf("a single owner bus got %q, want no call", got)
	}
}

// hungBus is a fakeBus whose state publish waits until ctx ends, as a
// publish to a broker that is down does.
type hungBus struct {
	fakeBus
	entered chan struct{}
}

func (h *hungBus) PublishState(ctx context.Context, printer string, _ []byte) error {
	close(h.entered)
	<-ctx.Done()
	return h.record("state " + printer + " timed out")
}

func TestMultiHungBusDoesNotHoldOther(t *testing.T) {
	hung := &hungBus{fakeBus: fakeBus{name: "mqtt"}, entered: make(chan struct{})}
	working := &fakeBus{name: "nats"}
	m := NewMulti(hung, working)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.PublishState(ctx, "p1", nil) }()
	<-hung.entered
	// The working bus must be called while the hung one still waits: a
	// fan-out that calls the buses one after another would call it only
	// after cancel, and this loop would end at the deadline of the test.
	for len(working.recorded()) == 0 {
		select {
		case err := <-done:
			t.Fatalf("PublishState returned %v before its ctx ended", err)
		default:
		}
		runtime.Gosched()
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("PublishState error %v, want nil, because the fake records the hung call without failing", err)
	}
	if got := working.recorded(); len(got) != 1 || got[0] != "state p1" {
		t.Errorf("working bus calls %q, want one state publish", got)
	}
}

func TestMultiReplyGoesToCommandBus(t *testing.T) {
	mqttBus, natsBus := &fakeBus{name: "mqtt"}, &fakeBus{name: "nats"}
	m := NewMulti(mqttBus, natsBus)
	var got []CommandMessage
	if err := m.SubscribeCommands(context.Background(), "p1", func(msg CommandMessage) { got = append(got, msg) }); err != nil {
		t.Fatal(err)
	}
	for _, bus := range []*fakeBus{mqttBus, natsBus} {
		bus.mu.Lock()
		handlers := append([]func(CommandMessage){}, bus.commands...)
		bus.mu.Unlock()
		for _, h := range handlers {
			h(CommandMessage{Printer: "p1", Kind: CommandGcode})
		}
	}
	if len(got) != 2 {
		t.Fatalf("handler got %d commands, want 2", len(got))
	}
	if got[0].Bus != "mqtt" {
		t.Errorf("command from the MQTT bus has Bus %q, want mqtt", got[0].Bus)
	}
	if got[1].Bus != "nats" {
		t.Errorf("command from the NATS bus has Bus %q, want nats", got[1].Bus)
	}

	if err := PublishReplyOn(context.Background(), m, "nats", "p1", "_INBOX.1", nil); err != nil {
		t.Fatal(err)
	}
	if calls := natsBus.recorded(); calls[len(calls)-1] != "reply p1 _INBOX.1" {
		t.Errorf("NATS bus calls %q, want the reply last", calls)
	}
	for _, call := range mqttBus.recorded() {
		if strings.HasPrefix(call, "reply") {
			t.Errorf("MQTT bus got %q, want no reply to a NATS command", call)
		}
	}
	if err := PublishReplyOn(context.Background(), m, "amqp", "p1", "", nil); err == nil || !strings.Contains(err.Error(), `"amqp"`) {
		t.Errorf("reply to an unknown bus: error %v, want one naming amqp", err)
	}
}

// infoBus is a fakeBus that publishes the bridge description.
type infoBus struct {
	fakeBus
}

func (i *infoBus) PublishBridgeInfo(context.Context, string, []byte) error {
	return i.record("bridge info")
}

func TestMultiPublishesBridgeInfo(t *testing.T) {
	withInfo, without := &infoBus{fakeBus: fakeBus{name: "mqtt"}}, &fakeBus{name: "nats"}
	m := NewMulti(withInfo, without)
	ib, ok := m.(BridgeInfoPublisher)
	if !ok {
		t.Fatal("the fan-out is no BridgeInfoPublisher")
	}
	if err := ib.PublishBridgeInfo(context.Background(), "p1", nil); err != nil {
		t.Fatal(err)
	}
	if got := withInfo.recorded(); len(got) != 1 || got[0] != "bridge info" {
		t.Errorf("bus with bridge info got %q, want one publish", got)
	}
	if got := without.recorded(); len(got) != 0 {
		t.Errorf("bus without bridge info got %q, want no call", got)
	}
}
