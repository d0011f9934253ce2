package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrNotConnected is returned by a Pending bus whose broker connection is
// not up yet.
var ErrNotConnected = errors.New("broker connection not up yet; it is being retried in the background")

// ErrBusClosed is returned by Attach when the Pending bus was closed
// before its connection came up.
var ErrBusClosed = errors.New("bus closed before its broker connection came up")

// Pending is a placeholder for a bus whose first broker connection is
// still being retried, so that a process on two buses can start on the one that
// is up. Publishing returns ErrNotConnected until Attach hands over the
// connected bus. Subscribing is recorded and made on the bus by Attach,
// so handlers receive its messages from then on.
//
// A multi bus (NewMulti) leaves a Pending bus out of publishes until it is
// attached, so a broker that is down at start neither fails nor delays
// the publishes on the other bus.
type Pending struct {
	name  string
	ready chan struct{}

	mu     sync.Mutex
	bus    Bus
	closed bool
	subs   []pendingSubscription
}

// pendingSubscription is a subscription made before Attach.
type pendingSubscription struct {
	ctx context.Context
	do  func(ctx context.Context, b Bus) error
}

// NewPending returns a Pending bus that names itself name ("mqtt" or
// "nats") until it is attached.
func NewPending(name string) *Pending {
	return &Pending{name: name, ready: make(chan struct{})}
}

// Attach hands over the connected bus and makes on it the subscriptions
// recorded so far, each under the context of its request. A subscription
// whose context has ended is dropped. Attach returns the subscription
// errors joined. On a closed Pending it closes b and returns ErrBusClosed.
func (p *Pending) Attach(b Bus) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = b.Close()
		return fmt.Errorf("%s: %w", p.name, ErrBusClosed)
	}
	if p.bus != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: attached twice", p.name)
	}
	p.bus = b
	subs := p.subs
	p.subs = nil
	p.mu.Unlock()
	close(p.ready)

	var errs []error
	for _, s := range subs {
		if s.ctx.Err() != nil {
			continue
		}
		if err := s.do(s.ctx, b); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Ready is closed once Attach has handed over the bus.
func (p *Pending) Ready() <-chan struct{} { return p.ready }

// Attached returns the bus handed over by Attach, or nil.
func (p *Pending) Attached() Bus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bus
}

// Connected reports whether the bus is attached and its connection is up.
func (p *Pending) Connected() bool {
	b := p.Attached()
	return b != nil && Connected(b)
}

// Name returns the name given to NewPending.
func (p *Pending) Name() string { return p.name }

// current returns the attached bus or ErrNotConnected, named by bus.
func (p *Pending) current() (Bus, error) {
	if b := p.Attached(); b != nil {
		return b, nil
	}
	return nil, fmt.Errorf("%s: %w", p.name, ErrNotConnected)
}

// subscribe runs do on the attached bus, or records it for Attach.
func (p *Pending) subscribe(ctx context.Context, do func(ctx context.Context, b Bus) error) error {
	p.mu.Lock()
	b := p.bus
	if b == nil {
		if p.closed {
			p.mu.Unlock()
			return fmt.Errorf("%s: the bus is closed", p.name)
		}
		p.subs = append(p.subs, pendingSubscription{ctx: ctx, do: do})
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	return do(ctx, b)
}

func (p *Pending) PublishEvent(ctx context.Context, env *Envelope, data []byte) error {
	b, err := p.current()
	if err != nil {
		return err
	}
	return b.PublishEvent(ctx, env, data)
}

// PublishEvents publishes through the attached bus's batch publisher.
func (p *Pending) PublishEvents(ctx context.Context, events []OutgoingEvent) (int, error) {
	b, err := p.current()
	if err != nil {
		return 0, err
	}
	return PublishEvents(ctx, b, events)
}

func (p *Pending) PublishState(ctx context.Context, printer string, data []byte) error {
	b, err := p.current()
	if err != nil {
		return err
	}
	return b.PublishState(ctx, printer, data)
}

func (p *Pending) PublishAvailability(ctx context.Context, printer string, online bool) error {
	b, err := p.current()
	if err != nil {
		return err
	}
	return b.PublishAvailability(ctx, printer, online)
}

// OwnsAvailability reports whether the attached bus publishes printer's
// availability itself; before Attach it is false.
func (p *Pending) OwnsAvailability(printer string) bool {
	owner, ok := p.Attached().(AvailabilityOwner)
	return ok && owner.OwnsAvailability(printer)
}

func (p *Pending) PublishReply(ctx context.Context, printer, replyTo string, data []byte) error {
	b, err := p.current()
	if err != nil {
		return err
	}
	return b.PublishReply(ctx, printer, replyTo, data)
}

func (p *Pending) PublishHook(ctx context.Context, printer string, data []byte) error {
	b, err := p.current()
	if err != nil {
		return err
	}
	return b.PublishHook(ctx, printer, data)
}

func (p *Pending) PublishCommand(ctx context.Context, printer, kind string, data []byte) error {
	b, err := p.current()
	if err != nil {
		return err
	}
	return b.PublishCommand(ctx, printer, kind, data)
}

// PublishBridgeInfo publishes on the attached bus when it is a
// BridgeInfoPublisher.
func (p *Pending) PublishBridgeInfo(ctx context.Context, printer string, data []byte) error {
	b, err := p.current()
	if err != nil {
		return err
	}
	if ib, ok := b.(BridgeInfoPublisher); ok {
		return ib.PublishBridgeInfo(ctx, printer, data)
	}
	return nil
}

// PublishPresence publishes on the attached bus when it is a PresenceBus.
func (p *Pending) PublishPresence(ctx context.Context, printer string, data []byte) error {
	b, err := p.current()
	if err != nil {
		return err
	}
	pb, ok := b.(PresenceBus)
	if !ok {
		return fmt.Errorf("%s carries no presence messages", b.Name())
	}
	return pb.PublishPresence(ctx, printer, data)
}

func (p *Pending) SubscribeCommands(ctx context.Context, printer string, h func(CommandMessage)) error {
	return p.subscribe(ctx, func(ctx context.Context, b Bus) error { return b.SubscribeCommands(ctx, printer, h) })
}

func (p *Pending) SubscribeEvents(ctx context.Context, printer, group string, h func(EventMessage)) error {
	return p.subscribe(ctx, func(ctx context.Context, b Bus) error { return b.SubscribeEvents(ctx, printer, group, h) })
}

func (p *Pending) SubscribeReplies(ctx context.Context, printer string, h func(data []byte)) error {
	return p.subscribe(ctx, func(ctx context.Context, b Bus) error { return b.SubscribeReplies(ctx, printer, h) })
}

// SubscribePresence subscribes on the attached bus when it is a
// PresenceBus.
func (p *Pending) SubscribePresence(ctx context.Context, printer string, h func(data []byte)) error {
	return p.subscribe(ctx, func(ctx context.Context, b Bus) error {
		pb, ok := b.(PresenceBus)
		if !ok {
			return fmt.Errorf("%s carries no presence messages", b.Name())
		}
		return pb.SubscribePresence(ctx, printer, h)
	})
}

// Close closes the attached bus. A bus attached after Close is closed by
// Attach.
func (p *Pending) Close() error {
	p.mu.Lock()
	wasClosed := p.closed
	p.closed = true
	b := p.bus
	p.subs = nil
	p.mu.Unlock()
	if b != nil && !wasClosed {
		return b.Close()
	}
	return nil
}

// Waiting reports whether b is a Pending bus whose first connection is
// not up yet.
func Waiting(b Bus) bool {
	p, ok := b.(*Pending)
	return ok && p.Attached() == nil
}
