package mqtt

import (
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// resumeStore is paho's memory store with a gate that opens when
// publishing is safe again after a connect.
//
// After a reconnect, paho 1.5.1 marks the connection usable before its
// resume step reads the store's keys and sends the stored messages again.
// A message published in between is sent live and also taken up by
// resume, which sets its DUP flag while the sender goroutine writes it (a
// data race inside paho) and replaces its token. paho calls All at the
// start of resume and Reset instead when a clean session connects for the
// first time, so either call opens the gate, and every connection attempt
// closes it. Bus.send waits for the gate.
type resumeStore struct {
	paho.Store

	mu    sync.Mutex
	ready chan struct{} // closed while publishing is safe
}

func newResumeStore() *resumeStore {
	return &resumeStore{Store: paho.NewMemoryStore(), ready: make(chan struct{})}
}

// All returns the stored keys and opens the gate, because messages
// stored from now on are not part of this resume.
func (s *resumeStore) All() []string {
	keys := s.Store.All()
	s.open()
	return keys
}

// Reset empties the store and opens the gate.
func (s *resumeStore) Reset() {
	s.Store.Reset()
	s.open()
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
