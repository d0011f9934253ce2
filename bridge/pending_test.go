package bridge

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestPendingPublishFailsUntilAttached(t *testing.T) {
	ctx := context.Background()
	p := NewPending("nats")
	err := p.PublishState(ctx, "p1", nil)
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("PublishState before Attach = %v, want ErrNotConnected", err)
	}
	if !strings.HasPrefix(err.Error(), "nats: ") {
		t.Errorf("error %q does not name the bus first", err)
	}
	if _, err := p.PublishEvents(ctx, []OutgoingEvent{{Env: &Envelope{Printer: "p1", Event: "Home"}}}); !errors.Is(err, ErrNotConnected) {
		t.Errorf("PublishEvents before Attach = %v, want ErrNotConnected", err)
	}
	select {
	case <-p.Ready():
		t.Fatal("Ready is closed before Attach")
	default:
	}

	real := &fakeBus{name: "nats"}
	if err := p.Attach(real); err != nil {
		t.Fatal(err)
	}
	<-p.Ready()
	if err := p.PublishState(ctx, "p1", nil); err != nil {
		t.Fatalf("PublishState after Attach: %v", err)
	}
	if got := real.recorded(); !slices.Equal(got, []string{"state p1"}) {
		t.Errorf("attached bus got %q, want only the publish made after Attach", got)
	}
}

// TestPendingSubscribesOnAttach checks that a subscription asked for
// before the connection is made on the bus when it attaches, and that its
// handler then receives the bus's messages.
func TestPendingSubscribesOnAttach(t *testing.T) {
	ctx := context.Background()
	p := NewPending("mqtt")
	var got []string
	if err := p.SubscribeEvents(ctx, "p1", "workers", func(m EventMessage) { got = append(got, string(m.Data)) }); err != nil {
		t.Fatalf("SubscribeEvents before Attach: %v", err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.SubscribeReplies(ended, "p1", func([]byte) {}); err != nil {
		t.Fatalf("SubscribeReplies before Attach: %v", err)
	}

	real := &fakeBus{name: "mqtt"}
	if err := p.Attach(real); err != nil {
		t.Fatal(err)
	}
	if calls := real.recorded(); !slices.Equal(calls, []string{"subscribe events p1 workers"}) {
		t.Errorf("Attach made %q, want the events subscription only (the replies one's context had ended)", calls)
	}
	real.deliverEvent(EventMessage{Data: []byte("e1")})
	if !slices.Equal(got, []string{"e1"}) {
		t.Errorf("handler got %q, want the event delivered after Attach", got)
	}
	if err := p.SubscribeCommands(ctx, "p1", func(CommandMessage) {}); err != nil {
		t.Fatal(err)
	}
	if calls := real.recorded(); calls[len(calls)-1] != "subscribe commands p1" {
		t.Errorf("a subscription after Attach was not made at once: %q", calls)
	}
}

func TestPendingAttachReturnsSubscribeErrors(t *testing.T) {
	p := NewPending("mqtt")
	if err := p.SubscribeCommands(context.Background(), "p1", func(CommandMessage) {}); err != nil {
		t.Fatal(err)
	}
	denied := errors.New("not authorised")
	err := p.Attach(&fakeBus{name: "mqtt", failWith: denied})
	if !errors.Is(err, denied) {
		t.Errorf("Attach = %v, want the subscription's error", err)
	}
}

func TestPendingClosedBeforeAttach(t *testing.T) {
	p := NewPending("nats")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	real := &fakeBus{name: "nats"}
	if err := p.Attach(real); !errors.Is(err, ErrBusClosed) {
		t.Errorf("Attach after Close = %v, want ErrBusClosed", err)
	}
	if got := real.recorded(); !slices.Equal(got, []string{"close"}) {
		t.Errorf("the bus that connected after Close got %q, want it closed", got)
	}
}

// TestMultiLeavesOutPendingBus checks that a multi bus publishes on the
// connected bus alone while the other is not attached, without an error,
// and fails only when no bus is connected.
func TestMultiLeavesOutPendingBus(t *testing.T) {
	ctx := context.Background()
	up := &fakeBus{name: "mqtt"}
	late := NewPending("nats")
	m := NewMulti(up, late)
	if err := m.PublishAvailability(ctx, "p1", true); err != nil {
		t.Errorf("PublishAvailability with one bus connected = %v, want nil", err)
	}
	if err := m.PublishHook(ctx, "p1", nil); err != nil {
		t.Errorf("PublishHook with one bus connected = %v, want nil", err)
	}
	if err := m.SubscribeCommands(ctx, "p1", func(CommandMessage) {}); err != nil {
		t.Errorf("SubscribeCommands = %v, want nil", err)
	}

	lateReal := &fakeBus{name: "nats"}
	if err := late.Attach(lateReal); err != nil {
		t.Fatal(err)
	}
	if err := m.PublishHook(ctx, "p1", nil); err != nil {
		t.Fatal(err)
	}
	if got := lateReal.recorded(); !slices.Equal(got, []string{"subscribe commands p1", "hook p1"}) {
		t.Errorf("late bus got %q, want the recorded subscription and then the publish after it attached", got)
	}

	none := NewMulti(NewPending("mqtt"), NewPending("nats"))
	if err := none.PublishState(ctx, "p1", nil); !errors.Is(err, ErrNotConnected) {
		t.Errorf("PublishState with no bus connected = %v, want ErrNotConnected", err)
	}
}

// TestMultiLeavesOutDisconnectedBus checks that a publish skips a bus
// whose connection dropped while the other is up, so a worker's G-code
// command or hook result neither waits for nor fails on it, and that
// events still go to every bus.
func TestMultiLeavesOutDisconnectedBus(t *testing.T) {
	ctx := context.Background()
	up := &fakeBus{name: "nats"}
	lost := &fakeBus{name: "mqtt", down: true, failWith: errors.New("not connected")}
	m := NewMulti(lost, up)
	if err := m.PublishCommand(ctx, "p1", CommandGcode, nil); err != nil {
		t.Errorf("PublishCommand with MQTT down = %v, want nil", err)
	}
	if err := m.PublishHook(ctx, "p1", nil); err != nil {
		t.Errorf("PublishHook with MQTT down = %v, want nil", err)
	}
	if got := lost.recorded(); len(got) != 0 {
		t.Errorf("the bus that is down got %q, want nothing", got)
	}
	if got := up.recorded(); !slices.Equal(got, []string{"command p1 gcode", "hook p1"}) {
		t.Errorf("the connected bus got %q", got)
	}
	if err := m.PublishEvent(ctx, &Envelope{Printer: "p1", Event: "Home"}, nil); err == nil {
		t.Error("PublishEvent with MQTT down succeeded, want its error: the events must reach every bus")
	}

	up.down = true
	if err := m.PublishState(ctx, "p1", nil); err == nil {
		t.Error("PublishState with both buses down succeeded, want the error of the bus that failed")
	}
}
