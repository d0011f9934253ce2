package hooks

import (
	"container/list"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

// listIDSet is the reference model of idSet: a linked list and a map of
// strings, as the worker kept its seen ids before.
type listIDSet struct {
	max   int
	order *list.List // front is the newest id
	index map[string]*list.Element
}

func (s *listIDSet) add(id string) bool {
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

func (s *listIDSet) remove(id string) {
	if e, ok := s.index[id]; ok {
		s.order.Remove(e)
		delete(s.index, id)
	}
}

func (s *listIDSet) list() []string {
	var ids []string
	for e := s.order.Back(); e != nil; e = e.Prev() {
		ids = append(ids, e.Value.(string))
	}
	return ids
}

func TestIDSetMatchesListModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Event ids as the edge makes them, the same ids in uppercase (other
	// strings for the set), and ids of other publishers.
	var pool []string
	for i := range 80 {
		id := bridge.NewEventID(time.UnixMilli(int64(i)))
		pool = append(pool, id, strings.ToUpper(id), fmt.Sprintf("other-%d", i))
	}
	for _, max := range []int{1, 3, 50, 100} {
		got := newIDSet(max)
		want := &listIDSet{max: max, order: list.New(), index: map[string]*list.Element{}}
		for step := range 20000 {
			id := pool[rng.IntN(len(pool))]
			if rng.IntN(3) == 0 {
				got.remove(id)
				want.remove(id)
			} else if g, w := got.add(id), want.add(id); g != w {
				t.Fatalf("max %d, step %d: add(%q) = %v, want %v", max, step, id, g, w)
			}
			if g, w := got.list(), want.list(); !slices.Equal(g, w) {
				t.Fatalf("max %d, step %d: ids %q, want %q", max, step, g, w)
			}
		}
	}
}

func TestIDSetRemovalsKeepQueueBounded(t *testing.T) {
	set := newIDSet(100)
	for i := range 10000 {
		id := bridge.NewEventID(time.UnixMilli(int64(i)))
		set.add(id)
		set.remove(id)
	}
	if n := len(set.queue); n > 101 {
		t.Errorf("queue has %d slots after adding and removing every id, want at most 101", n)
	}
	if got := set.list(); len(got) != 0 {
		t.Errorf("set holds %d ids after removing every one, want 0", len(got))
	}
}

func TestParseLowerUUIDRoundTrip(t *testing.T) {
	id := bridge.NewEventID(time.Now())
	uuid, ok := parseLowerUUID(id)
	if !ok {
		t.Fatalf("parseLowerUUID(%q) rejected an event id", id)
	}
	if got := formatUUID(uuid); got != id {
		t.Errorf("formatUUID(parseLowerUUID(%q)) = %q", id, got)
	}
	for _, bad := range []string{"", strings.ToUpper(id), id[:35], id + "0", strings.Replace(id, "-", "0", 1),
		"0123456789abcdef0123456789abcdef0123", "g" + id[1:]} {
		if _, ok := parseLowerUUID(bad); ok {
			t.Errorf("parseLowerUUID(%q) accepted it", bad)
		}
	}
}
