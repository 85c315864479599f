package mirror

import (
	"io"
	"testing"
	"time"
)

// An object can stand in several lists of a run at once (the retry list, a
// peer's queue, a share): a request must never carry it twice, or the peer
// that sends it once per asking would be banned for a "second" copy.
func TestRunTakesAnObjectOnce(t *testing.T) {
	s := NewSources(SourcesConfig{Self: "web-1"})
	hashes := []Hash{{1}, {2}, {3}}
	r := newFetchRun(s, hashes, func(Hash, int64, io.Reader) error { return nil })
	for _, o := range r.objs {
		o.holders = []string{"web-2"}
	}
	r.cursors["web-2"] = &peerCursor{queue: r.objs, ok: true}
	r.retry = []*runObj{r.objs[0], r.objs[2]}
	r.own = r.objs

	batch := r.takeFromPeer("web-2")
	seen := map[Hash]int{}
	for _, o := range batch {
		seen[o.hash]++
		if o.state != objInFlight {
			t.Errorf("object %x taken but not in flight", o.hash[:1])
		}
	}
	for _, h := range hashes {
		if seen[h] != 1 {
			t.Errorf("object %x taken %d times; want once", h[:1], seen[h])
		}
	}
	if up, _ := r.takeUpstream(time.Now()); len(up) != 0 {
		t.Errorf("upstream took %d objects already in flight", len(up))
	}
}

// What only a syncing peer holds goes back upstream once that peer is no
// longer listed (it died, or left gossip), even if it never failed a
// request of this run.
func TestRunFetchesUpstreamWhatAVanishedPeerHeld(t *testing.T) {
	s := NewSources(SourcesConfig{Self: "web-1", Controller: &Client{}})
	hashes := []Hash{{1}, {2}}
	r := newFetchRun(s, hashes, func(Hash, int64, io.Reader) error { return nil })
	r.plan() // web-1 alone: it owns everything
	for _, o := range r.objs {
		o.holders = []string{"web-2"}
	}
	r.cursors["web-2"] = &peerCursor{queue: r.objs, ok: true}
	if up, _ := r.takeUpstream(time.Now()); len(up) != 0 {
		t.Fatalf("upstream took %d objects a listed peer holds", len(up))
	}

	r.plan() // web-2 is not among the listed peers
	up, _ := r.takeUpstream(time.Now())
	if len(up) != len(hashes) {
		t.Errorf("upstream took %d of the %d objects only a vanished peer held", len(up), len(hashes))
	}
}
