package mqtt

import (
	"slices"
	"sync"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// recordedMessage records its Ack in a shared list, in place of paho's
// PUBACK.
type recordedMessage struct {
	paho.Message
	id    int
	mu    *sync.Mutex
	acked *[]int
}

func (m recordedMessage) Ack() {
	m.mu.Lock()
	defer m.mu.Unlock()
	*m.acked = append(*m.acked, m.id)
}

func TestAckOrderSendsInArrivalOrder(t *testing.T) {
	var mu sync.Mutex
	var acked []int
	var o ackOrder
	o.newConnection()
	msgs := make([]*orderedMessage, 6)
	for i := range msgs {
		msgs[i] = o.take(recordedMessage{id: i + 1, mu: &mu, acked: &acked})
	}
	msgs[2].Ack()    // waits for 1 and 2
	msgs[1].Ack()    // waits for 1
	msgs[0].giveUp() // 1 gets no PUBACK; 2 and 3 go out
	msgs[1].Ack()    // a second call sends nothing
	msgs[4].Ack()    // waits for 4
	if want := []int{2, 3}; !slices.Equal(acked, want) {
		t.Fatalf("PUBACKs sent = %v, want %v", acked, want)
	}

	// A reconnect leaves 4, 5 and 6 to the broker's resend with DUP.
	o.newConnection()
	msgs[3].Ack()
	msgs[5].Ack()
	if o.waiting() != 0 {
		t.Errorf("%d messages wait after the reconnect, want none", o.waiting())
	}
	dup := o.take(recordedMessage{id: 4, mu: &mu, acked: &acked})
	dup.Ack()
	if want := []int{2, 3, 4}; !slices.Equal(acked, want) {
		t.Errorf("PUBACKs sent = %v, want %v: only the copy of the new connection", acked, want)
	}
}

func TestAckOrderConcurrentReleases(t *testing.T) {
	var mu sync.Mutex
	var acked []int
	var o ackOrder
	o.newConnection()
	const n = 2000
	msgs := make([]*orderedMessage, n)
	for i := range msgs {
		msgs[i] = o.take(recordedMessage{id: i, mu: &mu, acked: &acked})
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := n - 1 - w; i >= 0; i -= 4 {
				msgs[i].Ack()
			}
		}()
	}
	wg.Wait()
	if len(acked) != n || !slices.IsSorted(acked) {
		t.Errorf("%d PUBACKs sent, want %d in arrival order", len(acked), n)
	}
}
