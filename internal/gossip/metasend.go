package gossip

import (
	"encoding/json"
	"time"
)

// A metadata change goes out twice. memberlist gossips it as the node's
// alive message: a few nodes per GossipInterval, each passing it on, so the
// last of 200 nodes took up to 3 s to hear it (bench/gossip), and longer
// while many nodes changed at once. So the node also sends the new metadata
// straight to every live member, one encrypted UDP datagram each (N-1
// datagrams: fewer than gossip itself takes to reach everyone). A receiver
// shows it at once if it is newer than what memberlist holds; the alive
// message, which follows, then changes nothing. A lost datagram costs
// nothing but the gossip's time. memberlist's own view stays its own:
// member states, refutations and the repair of repair.go go by what
// memberlist took, never by a direct message.

// When many nodes change their metadata at once (every web node applies a
// new target or a maintenance toggle), sending to everyone directly would
// cost N·(N−1) datagrams, where gossip packs several alive messages into
// each packet: measured with 200 agents on 2 cores, the direct sends slowed
// the register fan-out from 0.9 s to 7 s (p99). So a node listens before
// it talks: when it has received directBurst direct metadata messages in
// the last directBurstWindow, the cluster is in such a burst, and it leaves
// its own change to gossip. A burst costs about directBurst·N datagrams;
// a change alone (a drain, a readiness flip, a renewed certificate, a sync
// that ends) still goes to everyone at once. Likewise, a change made within
// directAfterRegister of a register from another node is most likely every
// node's answer to it (a maintenance toggle applied): that too is left to
// gossip, from the first node on, before any burst can be heard.
const (
	directBurst         = 8
	directBurstWindow   = time.Second
	directAfterRegister = 500 * time.Millisecond
)

// directWindow counts the direct metadata messages received in the current
// window.
type directWindow struct {
	start time.Time
	n     int
}

// addLocked counts one received message at now.
func (w *directWindow) addLocked(now time.Time) {
	if now.Sub(w.start) > directBurstWindow {
		w.start, w.n = now, 0
	}
	w.n++
}

// burstLocked reports whether a burst is going on at now.
func (w *directWindow) burstLocked(now time.Time) bool {
	return now.Sub(w.start) <= directBurstWindow && w.n >= directBurst
}

// msgMeta is a node's new metadata, sent directly by the node.
const msgMeta byte = 'm'

type metaMsg struct {
	Node string          `json:"n"`
	Meta json.RawMessage `json:"m"` // the wire metadata (wireMeta), as memberlist carries it
}

// sendMeta sends this node's metadata b to every live member, in the
// background.
func (g *Gossip) sendMeta(b []byte) {
	ml := g.ml.Load()
	if ml == nil || g.noFanOut.Load() || g.cfg.StockQueues {
		return
	}
	msg, err := encodeMsg(msgMeta, metaMsg{Node: g.cfg.Name, Meta: b})
	if err != nil { // a node name too long for a packet: gossip carries it
		g.log.Debug("gossip: direct metadata", "err", err)
		return
	}
	g.mu.Lock()
	now := time.Now()
	if g.closed || g.heard.burstLocked(now) || now.Sub(g.registerHeard) < directAfterRegister {
		g.mu.Unlock()
		return
	}
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		for _, n := range g.peers() {
			if err := ml.SendBestEffort(n, msg); err != nil {
				g.log.Debug("gossip: direct metadata", "node", n.Name, "err", oneLine(err.Error()))
			}
		}
	}()
}

// directMeta applies metadata a member sent directly: to a live member
// this node knows, when it is newer than what this node shows.
func (g *Gossip) directMeta(m metaMsg) {
	meta, version, err := decodeMeta(m.Meta)
	if err != nil || version == 0 || m.Node == g.cfg.Name {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.heard.addLocked(time.Now())
	r, ok := g.members[m.Node]
	if !ok || r.State != StateAlive || version <= max(r.version, r.direct) {
		return
	}
	r.Meta, r.direct = meta, version
	g.notifyLocked()
}
