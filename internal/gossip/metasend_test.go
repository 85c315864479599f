package gossip

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestDirectMetaOrder: metadata a member sent directly is shown until
// memberlist holds the same or a newer version, whatever order the direct
// message and memberlist's updates arrive in.
func TestDirectMetaOrder(t *testing.T) {
	g := New(Config{Name: "self", Key: make([]byte, KeySize)})
	meta := func(seq uint64, version int64) []byte {
		b, err := encodeMeta(NodeMeta{Role: "web", Seq: seq}, version)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	up := func(seq uint64, version int64) {
		g.nodeUp(&memberlist.Node{Name: "web-1", Addr: []byte{127, 0, 0, 1}, Port: 7946, Meta: meta(seq, version)})
	}
	direct := func(seq uint64, version int64) {
		g.directMeta(metaMsg{Node: "web-1", Meta: json.RawMessage(meta(seq, version))})
	}
	seq := func() uint64 {
		t.Helper()
		for _, m := range g.Members() {
			if m.Name == "web-1" {
				return m.Meta.Seq
			}
		}
		t.Fatal("web-1 not listed")
		return 0
	}
	steps := []struct {
		what string
		do   func()
		want uint64
	}{
		{"memberlist: seq 1 (v10)", func() { up(1, 10) }, 1},
		{"direct: seq 2 (v20)", func() { direct(2, 20) }, 2},
		{"memberlist, late: seq 1 (v10) again", func() { up(1, 10) }, 2},
		{"direct, stale: seq 1 (v10)", func() { direct(1, 10) }, 2},
		{"memberlist catches up: seq 2 (v20)", func() { up(2, 20) }, 2},
		{"memberlist: seq 3 (v30)", func() { up(3, 30) }, 3},
		{"direct, stale: seq 2 (v20)", func() { direct(2, 20) }, 3},
		{"direct about this node itself", func() { g.directMeta(metaMsg{Node: "self", Meta: meta(9, 99)}) }, 3},
	}
	for _, s := range steps {
		s.do()
		if got := seq(); got != s.want {
			t.Fatalf("after %s: shows seq %d, want %d", s.what, got, s.want)
		}
	}
	// A member that is not alive is not brought back, nor changed, by a
	// direct message: memberlist decides who is alive.
	g.nodeDown(&memberlist.Node{Name: "web-1"})
	direct(4, 40)
	if got := seq(); got != 3 {
		t.Fatalf("a direct message changed a dead member: seq %d, want 3", got)
	}
	// Its next life, as memberlist announces it, is shown as it comes.
	up(1, 50)
	if got := seq(); got != 1 {
		t.Fatalf("after the member came back: seq %d, want 1", got)
	}
}

// TestDirectBurst: a node that heard directBurst direct metadata messages
// within directBurstWindow leaves its own change to gossip, and sends
// directly again once the window has passed without such a burst.
func TestDirectBurst(t *testing.T) {
	var w directWindow
	t0 := time.Unix(1000, 0)
	for i := range directBurst - 1 {
		w.addLocked(t0.Add(time.Duration(i) * time.Millisecond))
	}
	if w.burstLocked(t0.Add(100 * time.Millisecond)) {
		t.Fatalf("a burst after %d messages, want one only from %d", directBurst-1, directBurst)
	}
	w.addLocked(t0.Add(200 * time.Millisecond))
	if !w.burstLocked(t0.Add(300 * time.Millisecond)) {
		t.Fatalf("no burst after %d messages within %s", directBurst, directBurstWindow)
	}
	if w.burstLocked(t0.Add(directBurstWindow + time.Millisecond)) {
		t.Fatal("still a burst after the window passed")
	}
	// The same number of messages spread over several windows is no burst.
	var slow directWindow
	for i := range 3 * directBurst {
		at := t0.Add(time.Duration(i) * directBurstWindow / 3)
		slow.addLocked(at)
		if slow.burstLocked(at) {
			t.Fatalf("a burst at message %d, 3 a window", i+1)
		}
	}
}
