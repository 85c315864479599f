package gossip

import (
	"errors"
	"reflect"
	"unsafe"

	"github.com/hashicorp/memberlist"
)

// memberlist v0.7.0's TransmitLimitedQueue loses broadcasts. It orders
// queued messages by (transmits, length, id) in a btree that holds one item
// per key, and resets its id counter to 0 whenever the queue is empty —
// including for a moment inside GetBroadcasts, which takes out every message
// it sends before putting back those still to be retransmitted. Messages put
// back keep their ids, new ones are numbered from 1 again, and as soon as a
// new message reaches the tier of an old one with the same length and id,
// the btree replaces the old one: it is never sent again, as if its
// retransmissions were done. Alive messages of nodes whose names and
// metadata have the same length (web-01 … web-49) collide all the time, so
// at 50 nodes a burst of metadata updates (every web node applying a
// maintenance toggle) lost some nodes' updates entirely until push/pull,
// 60 s at that size, repaired them: the "metadata not spread for 50 s"
// stall. Upstream: hashicorp/memberlist pull request 263 (open).
//
// pinQueue works around it without a fork: it keeps one message in the
// queue that never fits in a packet, so the queue is never empty and the
// counter never resets.

// pin is the message that holds a queue open: longer than any packet, so
// GetBroadcasts never takes it, and never finished.
type pin struct{}

var _ memberlist.NamedBroadcast = pin{}

// pinMsg is larger than any UDP packet memberlist builds (UDPBufferSize is
// at most 64 KiB). It is never written, so it costs no memory.
var pinMsg [1 << 17]byte

func (pin) Invalidates(memberlist.Broadcast) bool { return false }
func (pin) Name() string                          { return "nodeagent/queue-pin" }
func (pin) Message() []byte                       { return pinMsg[:] }
func (pin) Finished()                             {}

// pinQueue keeps q from ever being empty.
func pinQueue(q *memberlist.TransmitLimitedQueue) { q.QueueBroadcast(pin{}) }

// errNoQueue means memberlist no longer has the queue field pinMemberlist
// reaches: check whether the upgrade fixed the bug before removing the pin.
var errNoQueue = errors.New("gossip: memberlist has no broadcasts queue field to pin")

// pinMemberlist pins memberlist's own broadcast queue (alive, suspect and
// dead messages), an unexported field of the pinned memberlist version, and
// returns it.
func pinMemberlist(ml *memberlist.Memberlist) (*memberlist.TransmitLimitedQueue, error) {
	f := reflect.ValueOf(ml).Elem().FieldByName("broadcasts")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*memberlist.TransmitLimitedQueue]() {
		return nil, errNoQueue
	}
	q := *(**memberlist.TransmitLimitedQueue)(unsafe.Pointer(f.UnsafeAddr()))
	if q == nil {
		return nil, errNoQueue
	}
	pinQueue(q)
	return q, nil
}
