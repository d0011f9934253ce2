package hooks

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/printbridge/printbridge/bridge"
)

// renderGcode renders the lines of a gcode hook without escaping, as
// OctoPrint does. A line break that a value puts into a line fails the
// run, so a payload value cannot inject a line of its own. Blank lines are
// dropped, as OctoPrint's send path drops them. A line that would fire
// event again fails the run with ErrLoopGuard.
func renderGcode(sub *Subscription, event string, params placeholderLookup) ([]string, error) {
	var lines []string
	for i, c := range sub.Commands {
		line, err := formatLookup(c.Template, params)
		if err != nil {
			return nil, fmt.Errorf("command #%d: %w", i+1, err)
		}
		if strings.ContainsAny(line, "\r\n") {
			return nil, fmt.Errorf("command #%d: a placeholder value contains a line break, which would add a G-code line; nothing was sent", i+1)
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if lineFiresEvent(line, event) {
			return nil, fmt.Errorf("command #%d %q: %w (%s); nothing was sent", i+1, line, ErrLoopGuard, event)
		}
		lines = append(lines, line)
	}
	return lines, nil
}

// toASCII replaces each character above ASCII in line with '?' and
// reports whether it changed anything. Control characters stay, so the
// edge's policy rejects them as it does for any other source.
func toASCII(line string) (string, bool) {
	changed := false
	out := []rune(line)
	for i, r := range out {
		if r > 0x7e {
			out[i] = '?'
			changed = true
		}
	}
	if !changed {
		return line, false
	}
	return string(out), true
}

// replyWaiter hands final command replies to the hook runs waiting for
// them. The bus delivers every reply of the served printers; replies to
// commands this worker did not send are ignored.
type replyWaiter struct {
	mu      sync.Mutex // guards pending
	pending map[string]*pendingReply
	// onInvalid counts a reply that is not JSON.
	onInvalid func()
}

// pendingReply is a command waiting for its replies: firstReply closes at the
// first reply of any status, and final gets the final one.
type pendingReply struct {
	firstReply     chan struct{}
	firstReplyOnce sync.Once
	final          chan bridge.Reply
}

func newReplyWaiter(onInvalid func()) *replyWaiter {
	return &replyWaiter{pending: map[string]*pendingReply{}, onInvalid: onInvalid}
}

// register must be called before the command is published, so that a fast
// reply cannot arrive before anyone waits for it. firstReply closes at the
// command's first reply, final gets its final reply.
func (r *replyWaiter) register(id string) (firstReply <-chan struct{}, final <-chan bridge.Reply) {
	p := &pendingReply{firstReply: make(chan struct{}), final: make(chan bridge.Reply, 1)}
	r.mu.Lock()
	r.pending[id] = p
	r.mu.Unlock()
	return p.firstReply, p.final
}

func (r *replyWaiter) forget(id string) {
	r.mu.Lock()
	delete(r.pending, id)
	r.mu.Unlock()
}

// deliver runs on the bus's delivery goroutine. It does not block,
// because each waiting channel has room for its one final reply.
func (r *replyWaiter) deliver(data []byte) {
	var reply bridge.Reply
	if err := json.Unmarshal(data, &reply); err != nil {
		if r.onInvalid != nil {
			r.onInvalid()
		}
		return
	}
	if reply.ID == "" {
		return
	}
	r.mu.Lock()
	p, ok := r.pending[reply.ID]
	if ok && reply.Final() {
		delete(r.pending, reply.ID)
	}
	r.mu.Unlock()
	if !ok {
		return
	}
	p.firstReplyOnce.Do(func() { close(p.firstReply) })
	if reply.Final() {
		p.final <- reply
	}
}

// gcodeCommandID returns the command id of the gcode hook at position
// index of the event's matching subscriptions, sent by a worker of group
// ("" for none), with the hook's configured G-code lines. A worker of the group that sends the command
// again after a crash or a takeover sends the same id, and the edge, which
// remembers its last 1024 command ids, repeats its reply instead of
// executing the lines twice. Each group runs every event, so the group is
// part of the id, or the edge would skip the second group's lines as a
// repeat. The configured lines are part of the id too, so two workers
// without a group that run the same hook of one config send it once,
// while two configs with different hooks of one name both reach the
// printer. The lines are taken before placeholders are filled in, because
// a value such as {__now} differs between a first send and a resend.
func gcodeCommandID(eventID, group string, index int, hook string, lines []string) string {
	input := eventID + "\x00" + strconv.Itoa(index) + "\x00" + hook
	if group != "" {
		input += "\x00group\x00" + group
	}
	// Each line goes in with its length, so no split of the lines gives
	// the same input as another.
	for _, line := range lines {
		input += "\x00gcode\x00" + strconv.Itoa(len(line)) + ":" + line
	}
	sum := sha256.Sum256([]byte(input))
	return "hook-" + hex.EncodeToString(sum[:16])
}
