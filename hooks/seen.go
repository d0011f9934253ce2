package hooks

import (
	"container/list"
	"sync"
)

// DefaultSeenEvents is how many recent event ids the worker remembers to
// drop redelivered events.
const DefaultSeenEvents = 10000

// idSet stores the most recently added ids, up to max, and evicts the
// oldest one when full.
type idSet struct {
	mu    sync.Mutex // guards order and index
	max   int
	order *list.List // front is the newest id
	index map[string]*list.Element
}

func newIDSet(max int) *idSet {
	if max <= 0 {
		max = DefaultSeenEvents
	}
	return &idSet{max: max, order: list.New(), index: make(map[string]*list.Element, max)}
}

// add records id and reports whether it was new.
func (s *idSet) add(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.index[id]; ok {
		return false
	}
	s.index[id] = s.order.PushFront(id)
	if s.order.Len() > s.max {
		oldest := s.order.Back()
		s.order.Remove(oldest)
		delete(s.index, oldest.Value.(string))
	}
	return true
}

// remove deletes id, so that a redelivery of an event that could not be
// queued runs its hooks.
func (s *idSet) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.index[id]; ok {
		s.order.Remove(e)
		delete(s.index, id)
	}
}
