package mqtt

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// paho resends stored messages in the order the store's All returns, so
// All must return them in the order they were stored, message ids
// wrapping around included.
func TestResumeStoreKeepsPutOrder(t *testing.T) {
	s := newResumeStore(slog.New(slog.DiscardHandler))
	s.Open()
	var want []string
	for i := range 300 {
		// Message ids as paho hands them out near the wrap-around.
		id := uint16(65400 + i)
		if id == 0 {
			continue
		}
		key := fmt.Sprintf("o.%d", id)
		p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		p.MessageID = id
		p.TopicName = fmt.Sprintf("printbridge/p1/event/E%d", i)
		s.Put(key, p)
		want = append(want, key)
	}
	// A message acknowledged in the middle leaves the order of the rest.
	s.Del(want[10])
	want = slices.Delete(want, 10, 11)
	// paho stores a packet again under the same key when it resends it;
	// that keeps its place.
	s.Put(want[5], s.Get(want[5]))

	got := s.All()
	if !slices.Equal(got, want) {
		t.Errorf("All returned %d keys out of put order; first: %v, want %v", len(got), got[:5], want[:5])
	}

	s.Reset()
	if keys := s.All(); len(keys) != 0 {
		t.Errorf("All after Reset = %v, want none", keys)
	}
}

// After a reconnect the gate for new publishes opens only once the broker
// has acknowledged every publish that the resume sends again.
func TestResumeStoreGateWaitsForResentPublishes(t *testing.T) {
	s := newResumeStore(slog.New(slog.DiscardHandler))
	s.Open()
	for id := uint16(1); id <= 2; id++ {
		p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		p.MessageID, p.Qos, p.TopicName = id, 1, "printbridge/p1/event/ZChange"
		s.Put(fmt.Sprintf("o.%d", id), p)
	}
	sub := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	sub.MessageID = 3
	s.Put("o.3", sub)

	s.connecting()
	if keys := s.All(); len(keys) != 3 {
		t.Fatalf("All = %v, want the three stored packets", keys)
	}
	isOpen := func() bool {
		select {
		case <-s.wait():
			return true
		default:
			return false
		}
	}
	if isOpen() {
		t.Fatal("gate open while two resent publishes wait for their PUBACK")
	}
	s.Del("o.3") // SUBACK
	s.Del("o.1")
	if isOpen() {
		t.Fatal("gate open while one resent publish waits for its PUBACK")
	}
	s.Del("o.2")
	if !isOpen() {
		t.Fatal("gate closed after the PUBACKs of every resent publish")
	}

	// A resume with nothing to send again opens the gate at once.
	s.connecting()
	if isOpen() {
		t.Fatal("gate open during a connection attempt")
	}
	s.All()
	if !isOpen() {
		t.Error("gate closed after a resume with nothing to send")
	}
}
