package hooks

import (
	"encoding/hex"
	"hash/maphash"
	"slices"
	"sync"
)

// idSet stores the most recently added ids, up to max, and evicts the
// oldest one when full.
//
// An id in the form of bridge.NewEventID (a UUID in lowercase hex) is
// kept as its 16 bytes in a ring, found through an open-addressing table
// of ring positions. At 10,000 ids that is about 31 bytes per id (ring
// and table sizes), against about 150 for a string in a linked list and
// a map (heap profile of a worker). Other ids are kept as strings in a
// map.
type idSet struct {
	mu  sync.Mutex // guards every field below
	max int
	// queue holds the ids oldest first, as a ring of length count that
	// starts at head. A removed id leaves a hole until it reaches the
	// front or relayout drops it.
	queue []idSlot
	head  int
	count int
	holes int
	// table maps the UUIDs in queue to their position plus one, 0 being
	// an empty cell. It has at least twice as many cells as queue has
	// slots, and linear probing with a seeded hash finds an id.
	table []int32
	seed  maphash.Seed
	// others and otherAt map the other ids to their position and back.
	others  map[string]int
	otherAt map[int]string
}

// idSlot is one queue entry: uuid, or with other set an id kept in
// others.
type idSlot struct {
	uuid  [16]byte
	other bool
	hole  bool
}

func newIDSet(max int) *idSet {
	if max <= 0 {
		max = DefaultSeenEvents
	}
	return &idSet{max: max, seed: maphash.MakeSeed(), others: map[string]int{}, otherAt: map[int]string{}}
}

// add records id and reports whether it was new.
func (s *idSet) add(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	uuid, isUUID := parseLowerUUID(id)
	if isUUID {
		if _, found := s.find(uuid); found {
			return false
		}
	} else if _, found := s.others[id]; found {
		return false
	}
	if s.count == len(s.queue) {
		s.relayout(min(max(2*len(s.queue), 64), s.max+1))
	}
	pos := (s.head + s.count) % len(s.queue)
	s.queue[pos] = idSlot{uuid: uuid, other: !isUUID}
	s.count++
	if isUUID {
		s.table[s.freeCell(uuid)] = int32(pos + 1)
	} else {
		s.others[id] = pos
		s.otherAt[pos] = id
	}
	for s.count-s.holes > s.max {
		s.evictOldest()
	}
	return true
}

// remove deletes id, so that a redelivery of an event that could not be
// queued runs its hooks.
func (s *idSet) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pos int
	if uuid, isUUID := parseLowerUUID(id); isUUID {
		cell, found := s.find(uuid)
		if !found {
			return
		}
		pos = int(s.table[cell]) - 1
		s.deleteCell(cell)
	} else {
		var found bool
		if pos, found = s.others[id]; !found {
			return
		}
		delete(s.others, id)
		delete(s.otherAt, pos)
	}
	s.queue[pos].hole = true
	s.holes++
	// Holes leave the queue only at its front, which moves only while
	// the set is full, so a worker that removes every id it adds would
	// grow the queue without bound.
	if s.holes > s.count/2 {
		s.relayout(len(s.queue))
	}
}

// list returns the ids, oldest first.
func (s *idSet) list() []string {
	slots, others := s.snapshot()
	ids := make([]string, len(slots))
	for i, e := range slots {
		if e.other {
			ids[i] = others[i]
		} else {
			ids[i] = formatUUID(e.uuid)
		}
	}
	return ids
}

// snapshot copies the ids, oldest first and without holes. A UUID stays
// in its 16 bytes, and others holds each other id by its index in slots.
// A full set of 10,000 UUIDs takes 180 kB this way, against about 640 kB
// as strings, which matters because compaction copies the whole set.
func (s *idSet) snapshot() (slots []idSlot, others map[int]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	slots = make([]idSlot, 0, s.count-s.holes)
	for i := range s.count {
		pos := (s.head + i) % len(s.queue)
		e := s.queue[pos]
		if e.hole {
			continue
		}
		if e.other {
			if others == nil {
				others = map[int]string{}
			}
			others[len(slots)] = s.otherAt[pos]
		}
		slots = append(slots, e)
	}
	return slots, others
}

// relayout moves the ids, without holes and oldest first, to the start
// of a queue of size slots (more when they do not fit) and rebuilds the
// indexes. It reuses the queue and table when their sizes stay, because
// a burst of dropped events makes many holes and so many relayouts.
func (s *idSet) relayout(size int) {
	size = max(size, s.count-s.holes+1)
	queue := s.queue
	if size != len(s.queue) {
		queue = make([]idSlot, size)
	}
	cells := 1
	for cells < 2*size {
		cells *= 2
	}
	if cells == len(s.table) {
		clear(s.table)
	} else {
		s.table = make([]int32, cells)
	}
	others := s.otherAt
	if len(others) > 0 {
		s.others, s.otherAt = make(map[string]int, len(others)), make(map[int]string, len(others))
	}
	// Positions of other ids before the move, for their maps.
	oldHead, oldLen := s.head, len(s.queue)
	if size == len(s.queue) {
		rotateLeft(queue, s.head)
	} else {
		for i := range s.count {
			queue[i] = s.queue[(s.head+i)%len(s.queue)]
		}
	}
	// The ids are now at 0 to count-1, oldest first. Dropping the holes
	// moves each id to a lower position, over one already read.
	kept := 0
	for i := range s.count {
		e := queue[i]
		if e.hole {
			continue
		}
		queue[kept] = e
		if e.other {
			id := others[(oldHead+i)%oldLen]
			s.others[id] = kept
			s.otherAt[kept] = id
		} else {
			s.table[s.freeCell(e.uuid)] = int32(kept + 1)
		}
		kept++
	}
	clear(queue[kept:])
	s.queue, s.head, s.count, s.holes = queue, 0, kept, 0
}

// rotateLeft rotates q left by n slots in place.
func rotateLeft(q []idSlot, n int) {
	slices.Reverse(q[:n])
	slices.Reverse(q[n:])
	slices.Reverse(q)
}

// evictOldest drops the front slot, and the id in it unless it is a hole.
func (s *idSet) evictOldest() {
	e := &s.queue[s.head]
	switch {
	case e.hole:
		s.holes--
	case e.other:
		delete(s.others, s.otherAt[s.head])
		delete(s.otherAt, s.head)
	default:
		cell, _ := s.find(e.uuid)
		s.deleteCell(cell)
	}
	*e = idSlot{}
	s.head = (s.head + 1) % len(s.queue)
	s.count--
}

func (s *idSet) home(uuid [16]byte) int {
	return int(maphash.Bytes(s.seed, uuid[:]) & uint64(len(s.table)-1))
}

// find returns the table cell of uuid.
func (s *idSet) find(uuid [16]byte) (cell int, found bool) {
	if len(s.table) == 0 {
		return 0, false
	}
	mask := len(s.table) - 1
	for cell = s.home(uuid); s.table[cell] != 0; cell = (cell + 1) & mask {
		if s.queue[s.table[cell]-1].uuid == uuid {
			return cell, true
		}
	}
	return cell, false
}

// freeCell returns the empty cell where uuid, which is not in the
// table, goes.
func (s *idSet) freeCell(uuid [16]byte) int {
	mask := len(s.table) - 1
	cell := s.home(uuid)
	for s.table[cell] != 0 {
		cell = (cell + 1) & mask
	}
	return cell
}

// deleteCell empties cell and moves later cells of its probe run back,
// so that every id stays reachable from its home cell without
// tombstones.
func (s *idSet) deleteCell(cell int) {
	mask := len(s.table) - 1
	for next := (cell + 1) & mask; s.table[next] != 0; next = (next + 1) & mask {
		home := s.home(s.queue[s.table[next]-1].uuid)
		// The entry at next may fill cell unless its home lies
		// cyclically in (cell, next].
		if (next-home)&mask >= (next-cell)&mask {
			s.table[cell] = s.table[next]
			cell = next
		}
	}
	s.table[cell] = 0
}

// parseLowerUUID returns the 16 bytes of a UUID written as
// bridge.NewEventID writes it: lowercase hex with dashes at 8, 13, 18 and
// 23. Uppercase hex is not taken, because formatUUID must give back the
// same string.
func parseLowerUUID(id string) (uuid [16]byte, ok bool) {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return uuid, false
	}
	for j, i := range uuidHexOffsets {
		hi, ok1 := lowerHexValue(id[i])
		lo, ok2 := lowerHexValue(id[i+1])
		if !ok1 || !ok2 {
			return uuid, false
		}
		uuid[j] = hi<<4 | lo
	}
	return uuid, true
}

// uuidHexOffsets are the offsets of the 16 hex pairs in a UUID string.
var uuidHexOffsets = [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

func lowerHexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// formatUUID is the inverse of parseLowerUUID.
func formatUUID(uuid [16]byte) string {
	var s [36]byte
	encodeUUID(&s, uuid)
	return string(s[:])
}

// encodeUUID writes uuid into s as formatUUID formats it.
func encodeUUID(s *[36]byte, uuid [16]byte) {
	hex.Encode(s[0:8], uuid[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], uuid[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], uuid[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], uuid[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], uuid[10:16])
}
