package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// multi fans every call out to several buses.
type multi struct {
	buses []Bus
}

// NewMulti returns a Bus that publishes to and subscribes on every bus.
// A call runs on all buses at once, each under the caller's ctx, and
// returns the failures joined, each prefixed with the bus name. So a
// broker that is down fails only its own part and does not use up the
// time of the other bus, although the call returns only when every bus
// has finished or ctx has ended. Subscribing does the same, and the buses
// that succeeded stay subscribed.
//
// A bus whose connection is down, such as a Pending bus that is not
// attached yet, is left out of publishes while another bus is connected.
// Subscriptions on a Pending bus are recorded and made when it attaches.
//
// A handler receives the messages of every bus, one call at a time, so it
// needs no locking of its own. CommandMessage.Bus names the bus a command
// came from, and PublishReplyOn publishes replies on that bus only. An event that
// arrives on two buses is delivered twice, and workers deduplicate by
// event id.
func NewMulti(buses ...Bus) Bus {
	return &multi{buses: append([]Bus(nil), buses...)}
}

// Buses returns the buses that b fans out to when b comes from NewMulti,
// and b alone otherwise.
func Buses(b Bus) []Bus {
	if m, ok := b.(*multi); ok {
		return append([]Bus(nil), m.buses...)
	}
	return []Bus{b}
}

// BusNamed returns the member of the fan-out b called name ("mqtt" or
// "nats"), b itself when b is a single bus of that name, or nil.
func BusNamed(b Bus, name string) Bus {
	for _, member := range Buses(b) {
		if member.Name() == name {
			return member
		}
	}
	return nil
}

// Name joins the names of the buses with '+', such as "mqtt+nats".
func (m *multi) Name() string {
	names := make([]string, len(m.buses))
	for i, b := range m.buses {
		names[i] = b.Name()
	}
	return strings.Join(names, "+")
}

// each calls f on every bus concurrently and joins the errors, named by
// bus. It returns when every call has returned.
func (m *multi) each(f func(Bus) error) error {
	errs := make([]error, len(m.buses))
	var wg sync.WaitGroup
	for i, b := range m.buses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(b); err != nil {
				errs[i] = fmt.Errorf("%s: %w", b.Name(), err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// eachConnected is each for publishing: it leaves out the buses whose
// connection is down, Pending buses not attached yet included, so a
// publish neither waits for nor fails on a broker that is away while the
// other bus takes it. When every bus is down, it runs f on all of them.
func (m *multi) eachConnected(f func(Bus) error) error {
	connected := 0
	for _, b := range m.buses {
		if Connected(b) {
			connected++
		}
	}
	if connected == 0 {
		return m.each(f)
	}
	return m.each(func(b Bus) error {
		if !Connected(b) {
			return nil
		}
		return f(b)
	})
}

// bus returns the bus called name, or nil.
func (m *multi) bus(name string) Bus {
	for _, b := range m.buses {
		if b.Name() == name {
			return b
		}
	}
	return nil
}

// PublishEvent publishes on every bus, also one whose connection is down,
// as PublishEvents does.
func (m *multi) PublishEvent(ctx context.Context, env *Envelope, data []byte) error {
	return m.each(func(b Bus) error { return b.PublishEvent(ctx, env, data) })
}

// PublishEvents publishes the batch on every bus and returns the count
// that every bus confirmed, so a retry repeats the rest on each bus,
// including events that some of them already took. Unlike the other
// publishes it does not leave out a bus whose connection is down, since
// that bus would lose the events.
func (m *multi) PublishEvents(ctx context.Context, events []OutgoingEvent) (int, error) {
	var mu sync.Mutex
	taken := len(events)
	err := m.each(func(b Bus) error {
		n, err := PublishEvents(ctx, b, events)
		mu.Lock()
		taken = min(taken, n)
		mu.Unlock()
		return err
	})
	return taken, err
}

func (m *multi) PublishState(ctx context.Context, printer string, data []byte) error {
	return m.eachConnected(func(b Bus) error { return b.PublishState(ctx, printer, data) })
}

func (m *multi) PublishAvailability(ctx context.Context, printer string, online bool) error {
	return m.eachConnected(func(b Bus) error { return b.PublishAvailability(ctx, printer, online) })
}

func (m *multi) PublishReply(ctx context.Context, printer, replyTo string, data []byte) error {
	return m.eachConnected(func(b Bus) error { return b.PublishReply(ctx, printer, replyTo, data) })
}

func (m *multi) PublishHook(ctx context.Context, printer string, data []byte) error {
	return m.eachConnected(func(b Bus) error { return b.PublishHook(ctx, printer, data) })
}

// PublishCommand publishes on every connected bus. It wraps
// ErrNoSubscriber only when every bus that took the command
// reported it, because an edge on the other bus may still get it.
func (m *multi) PublishCommand(ctx context.Context, printer, kind string, data []byte) error {
	var mu sync.Mutex
	var noSubscriber []error
	delivered := false
	err := m.eachConnected(func(b Bus) error {
		err := b.PublishCommand(ctx, printer, kind, data)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			delivered = true
		case errors.Is(err, ErrNoSubscriber):
			noSubscriber = append(noSubscriber, fmt.Errorf("%s: %w", b.Name(), err))
			return nil
		}
		return err
	})
	if err != nil || delivered {
		return err
	}
	return errors.Join(noSubscriber...)
}

// SubscribeCommands subscribes on every bus and sets CommandMessage.Bus
// to the name of the bus each message arrived on, unless the bus set it.
func (m *multi) SubscribeCommands(ctx context.Context, printer string, h func(CommandMessage)) error {
	h = serialize(h)
	return m.each(func(b Bus) error {
		name := b.Name()
		return b.SubscribeCommands(ctx, printer, func(msg CommandMessage) {
			if msg.Bus == "" {
				msg.Bus = name
			}
			h(msg)
		})
	})
}

// PublishBridgeInfo publishes the bridge description on every bus that
// is a BridgeInfoPublisher.
func (m *multi) PublishBridgeInfo(ctx context.Context, printer string, data []byte) error {
	return m.eachConnected(func(b Bus) error {
		if ib, ok := b.(BridgeInfoPublisher); ok {
			return ib.PublishBridgeInfo(ctx, printer, data)
		}
		return nil
	})
}

func (m *multi) SubscribeEvents(ctx context.Context, printer, group string, h func(EventMessage)) error {
	h = serialize(h)
	return m.each(func(b Bus) error { return b.SubscribeEvents(ctx, printer, group, h) })
}

func (m *multi) SubscribeReplies(ctx context.Context, printer string, h func(data []byte)) error {
	h = serialize(h)
	return m.each(func(b Bus) error { return b.SubscribeReplies(ctx, printer, h) })
}

// PublishPresence publishes on every bus that carries presence messages.
func (m *multi) PublishPresence(ctx context.Context, printer string, data []byte) error {
	return m.eachPresence(m.eachConnected, func(b PresenceBus) error { return b.PublishPresence(ctx, printer, data) })
}

// SubscribePresence subscribes on every bus that carries presence
// messages. A message published on all of them arrives once per bus.
func (m *multi) SubscribePresence(ctx context.Context, printer string, h func(data []byte)) error {
	h = serialize(h)
	return m.eachPresence(m.each, func(b PresenceBus) error { return b.SubscribePresence(ctx, printer, h) })
}

// eachPresence runs f through each or eachConnected, for the buses that
// are a PresenceBus. It fails when none is.
func (m *multi) eachPresence(each func(func(Bus) error) error, f func(PresenceBus) error) error {
	found := false
	for _, b := range m.buses {
		if _, ok := b.(PresenceBus); ok {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("none of the buses %s carries presence messages", m.Name())
	}
	return each(func(b Bus) error {
		pb, ok := b.(PresenceBus)
		if !ok {
			return nil
		}
		return f(pb)
	})
}

// serialize makes h safe to call from the delivery goroutines of several
// buses. Handlers do not block, so the lock is held only briefly.
func serialize[T any](h func(T)) func(T) {
	var mu sync.Mutex
	return func(v T) {
		mu.Lock()
		defer mu.Unlock()
		h(v)
	}
}

// Close closes every bus and joins the errors.
func (m *multi) Close() error {
	return m.each(func(b Bus) error { return b.Close() })
}
