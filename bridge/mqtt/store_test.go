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
