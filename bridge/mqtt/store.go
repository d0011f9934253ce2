package mqtt

import (
	"cmp"
	"log/slog"
	"slices"
	"strings"
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// maxResumes is the number of resumes in a row that may find one
// outgoing message still unacknowledged. A broker that closes the
// connection because of a message (MQTT 3.1.1 has no negative PUBACK)
// would otherwise get it again after every reconnect, and the client
// would never stay connected. The publisher's token then ends by its
// context's timeout and its error is logged by the caller.
const maxResumes = 3

// resumeStore is paho's memory store with a gate that opens when
// publishing is safe again after a connect.
//
// After a reconnect, paho 1.5.1 marks the connection usable before its
// resume step reads the store's keys and sends the stored messages again.
// A message published in between is sent live and also taken up by
// resume, which sets its DUP flag while the sender goroutine writes it (a
// data race inside paho) and replaces its token. paho calls All at the
// start of resume and Reset instead when a clean session connects for the
// first time. Reset opens the gate; All opens it once the broker has
// acknowledged every QoS 1 message that the resume sends again, and every
// connection attempt closes it. Bus.send waits for the gate.
//
// Waiting for those PUBACKs keeps a printer's events in order at the
// broker. paho's resume completes the token of a resent message at once,
// so the edge's outbox takes that event as delivered and goes on with the
// next ones. Without the wait they could reach the broker before the
// resent one, or in its place if the connection dropped again.
type resumeStore struct {
	paho.Store

	mu    sync.Mutex
	ready chan struct{} // closed while publishing is safe
	log   *slog.Logger
	// resumed counts, by store key, the resumes in a row that found the
	// same outgoing packet; mu guards it.
	resumed map[string]resumedPacket
	// order numbers the stored keys in the order paho put them; mu
	// guards it and next.
	order map[string]uint64
	next  uint64
	// resending holds the keys of the publishes that the current resume
	// sends again and the broker has not acknowledged yet; mu guards it.
	resending map[string]bool
}

type resumedPacket struct {
	packet packets.ControlPacket
	count  int
}

func newResumeStore(log *slog.Logger) *resumeStore {
	return &resumeStore{Store: paho.NewMemoryStore(), ready: make(chan struct{}), log: log, resumed: map[string]resumedPacket{},
		order: map[string]uint64{}, resending: map[string]bool{}}
}

// Put stores a packet and numbers its key the first time. paho 1.5.1's
// MemoryStore.All returns the keys in Go map order, and paho's resume
// sends the stored messages in the order All returns them, so without
// these numbers a reconnect could send a printer's events out of order.
func (s *resumeStore) Put(key string, packet packets.ControlPacket) {
	s.mu.Lock()
	if _, ok := s.order[key]; !ok {
		s.next++
		s.order[key] = s.next
	}
	s.mu.Unlock()
	s.Store.Put(key, packet)
}

// Del deletes a packet and its number. paho deletes an outgoing publish
// when its PUBACK arrives, which opens the gate after the last resent one.
func (s *resumeStore) Del(key string) {
	s.mu.Lock()
	delete(s.order, key)
	last := s.resending[key] && len(s.resending) == 1
	delete(s.resending, key)
	s.mu.Unlock()
	s.Store.Del(key)
	if last {
		s.open()
	}
}

// All returns the stored keys for paho's resume. It first deletes an
// outgoing message that survived maxResumes resumes. The gate opens now
// when nothing is sent again, or else after the PUBACKs of the resent
// publishes.
func (s *resumeStore) All() []string {
	keys := s.dropStuck(s.sorted(s.Store.All()))
	s.mu.Lock()
	clear(s.resending)
	for _, key := range keys {
		if p, ok := s.Store.Get(key).(*packets.PublishPacket); ok && strings.HasPrefix(key, "o.") && p.Qos > 0 {
			s.resending[key] = true
		}
	}
	none := len(s.resending) == 0
	s.mu.Unlock()
	if none {
		s.open()
	}
	return keys
}

// sorted orders keys as paho put them; keys without a number come first.
func (s *resumeStore) sorted(keys []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	slices.SortStableFunc(keys, func(a, b string) int {
		return cmp.Compare(s.order[a], s.order[b])
	})
	return keys
}

func (s *resumeStore) dropStuck(keys []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]resumedPacket, len(keys))
	kept := keys[:0]
	for _, key := range keys {
		// paho's outgoing keys start with "o.", incoming ones with "i.".
		if !strings.HasPrefix(key, "o.") {
			kept = append(kept, key)
			continue
		}
		packet := s.Store.Get(key)
		entry := resumedPacket{packet: packet, count: 1}
		if prev, ok := s.resumed[key]; ok && prev.packet == packet {
			entry.count = prev.count + 1
		}
		if entry.count >= maxResumes {
			topic := ""
			if p, ok := packet.(*packets.PublishPacket); ok {
				topic = p.TopicName
			}
			s.log.Error("dropping an MQTT message that the broker has not acknowledged over several reconnects; the broker probably closes the connection because of it (check its log, and its message size and topic limits)",
				"topic", topic, "reconnects", entry.count, "store_key", key)
			s.Store.Del(key)
			delete(s.order, key)
			continue
		}
		seen[key] = entry
		kept = append(kept, key)
	}
	s.resumed = seen
	return kept
}

// Reset empties the store and opens the gate.
func (s *resumeStore) Reset() {
	s.mu.Lock()
	clear(s.order)
	clear(s.resending)
	s.mu.Unlock()
	s.Store.Reset()
	s.open()
}

// maxResumed returns the most resumes in a row that found one outgoing
// message still unacknowledged.
func (s *resumeStore) maxResumed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	most := 0
	for _, entry := range s.resumed {
		most = max(most, entry.count)
	}
	return most
}

// connecting closes the gate before a connection attempt.
func (s *resumeStore) connecting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.ready:
		s.ready = make(chan struct{})
	default:
	}
}

func (s *resumeStore) open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
}

// wait returns a channel that is closed once publishing is safe.
func (s *resumeStore) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}
