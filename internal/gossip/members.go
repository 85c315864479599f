package gossip

import (
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// Member states.
const (
	StateAlive = "alive"
	// StateSuspect is part of the vocabulary, but memberlist v0.7.0 does not
	// report suspicion to delegates, so Members never returns it.
	StateSuspect = "suspect"
	StateDead    = "dead" // failed: stopped answering without leaving
	StateLeft    = "left" // left gracefully (Close)
)

// Member is one node as seen by this node.
type Member struct {
	Name  string
	Addr  string // gossip address host:port
	State string // alive | suspect | dead | left
	Meta  NodeMeta
	Since time.Time // last state change
}

type memberRec struct {
	Member
	leaving bool // a leave intent arrived: the coming NotifyLeave means "left"
}

// Members returns every known member, this node included, sorted by name.
// Dead and left members stay listed for Timing.Reap.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reapLocked(time.Now())
	out := make([]Member, 0, len(g.members))
	for _, r := range g.members {
		out = append(out, r.Member)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// nodeUp records a join or an update (memberlist NotifyJoin/NotifyUpdate).
func (g *Gossip) nodeUp(n *memberlist.Node) {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		g.log.Warn("gossip: bad node meta", "member", n.Name, "err", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.memberLocked(n.Name)
	if r.State != StateAlive {
		r.State, r.Since = StateAlive, time.Now()
		g.log.Info("gossip member alive", "member", n.Name, "addr", n.Address())
	}
	r.Addr, r.Meta, r.leaving = n.Address(), meta, false
	g.notifyLocked()
}

// nodeDown records a failure or a departure (memberlist NotifyLeave, which
// does not tell them apart: the leave intent does).
func (g *Gossip) nodeDown(n *memberlist.Node) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.memberLocked(n.Name)
	r.State, r.Since = StateDead, time.Now()
	if r.leaving {
		r.State = StateLeft
	}
	g.log.Info("gossip member "+r.State, "member", n.Name, "addr", r.Addr)
	g.notifyLocked()
}

// leaveIntent records that node announced its departure with clock c and
// reports whether the intent is new (and so must be re-broadcast).
func (g *Gossip) leaveIntent(node string, c uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leaveIntentLocked(node, c)
}

func (g *Gossip) leaveIntentLocked(node string, c uint64) bool {
	if c >= maxClock {
		return false
	}
	g.clock = max(g.clock, c)
	if c <= g.leaves[node] || node == g.cfg.Name {
		return false
	}
	g.leaves[node] = c
	r, ok := g.members[node]
	switch {
	case !ok:
	case r.State == StateDead: // the leave message overtook the intent
		r.State, r.Since = StateLeft, time.Now()
		g.log.Info("gossip member left", "member", node, "addr", r.Addr)
		g.notifyLocked()
	default:
		r.leaving = true
	}
	return true
}

// leftLocked returns the leave intents of the members seen as left, for
// push/pull: a node that missed an intent would otherwise show them dead.
func (g *Gossip) leftLocked() map[string]uint64 {
	var out map[string]uint64
	for name, r := range g.members {
		if c, ok := g.leaves[name]; ok && r.State == StateLeft {
			if out == nil {
				out = make(map[string]uint64)
			}
			out[name] = c
		}
	}
	return out
}

func (g *Gossip) memberLocked(name string) *memberRec {
	r, ok := g.members[name]
	if !ok {
		r = &memberRec{Member: Member{Name: name}}
		g.members[name] = r
	}
	return r
}

// reapLocked forgets members dead or left for longer than Timing.Reap.
func (g *Gossip) reapLocked(now time.Time) {
	for name, r := range g.members {
		if r.State != StateAlive && now.Sub(r.Since) > g.timing.Reap {
			delete(g.members, name)
			delete(g.leaves, name)
		}
	}
}

// deadAddrs returns the addresses of failed (not left) members, the
// candidates for a reconnect.
func (g *Gossip) deadAddrs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reapLocked(time.Now())
	var out []string
	for _, r := range g.members {
		if r.State == StateDead && r.Addr != "" {
			out = append(out, r.Addr)
		}
	}
	return out
}
