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
	// Since is the last state change: for a member that is not alive, when
	// it stopped being alive (its last-seen time).
	Since time.Time
}

type memberRec struct {
	Member
	version int64 // of the metadata memberlist holds (wireMeta); 0 if unknown
	// direct is the version of Meta when the member sent it directly and
	// memberlist has not caught up (metasend.go); 0 otherwise.
	direct  int64
	leaving bool // a leave intent arrived: the coming NotifyLeave means "left"
}

// Members returns every known member, this node included, sorted by name.
// Dead and left members stay listed for Timing.Reap after they were last
// seen alive, also across restarts: the members of the state file are
// listed from Open on (as dead, or left, since their last-seen time) until
// gossip finds them alive again.
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
	meta, version, err := decodeMeta(n.Meta)
	if err != nil {
		g.log.Warn("gossip: bad node meta", "member", n.Name, "err", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.memberLocked(n.Name)
	if r.State != StateAlive || r.Addr != n.Address() {
		g.memberGen++
		g.signalPersist()
	}
	if r.State != StateAlive {
		r.direct = 0 // a new life: memberlist's metadata is the news
		if r.State != "" && n.Name != g.cfg.Name {
			g.returnedLocked(n.Name, n.Address())
		}
		r.State, r.Since = StateAlive, time.Now()
		g.log.Info("gossip member alive", "member", n.Name, "addr", n.Address())
		if f, ok := g.forgets[n.Name]; ok && f.coversLife(version) {
			g.log.Warn("gossip: a forgotten member is alive: listed while it is", "member", n.Name, "addr", n.Address(), "forgotten_by", f.By)
		}
	}
	if version >= r.direct {
		r.Meta, r.direct = meta, 0
	} // else the member sent newer metadata directly: memberlist will catch up
	r.Addr, r.version, r.leaving = n.Address(), version, false
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
	if g.forgottenLocked(r) {
		return
	}
	g.memberGen++
	g.signalPersist()
	g.log.Info("gossip member "+r.State, "member", n.Name, "addr", r.Addr)
	g.notifyLocked()
}

// leaveIntent records a node's announced departure and reports whether the
// intent is new (and so must be re-broadcast).
func (g *Gossip) leaveIntent(m leaveMsg) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leaveIntentLocked(m)
}

func (g *Gossip) leaveIntentLocked(m leaveMsg) bool {
	if m.Clock >= maxClock {
		return false
	}
	g.clock = max(g.clock, m.Clock)
	if m.Clock <= g.leaves[m.Node] || m.Node == g.cfg.Name {
		return false
	}
	g.leaves[m.Node] = m.Clock
	r, ok := g.members[m.Node]
	switch {
	case !ok:
	case m.Version != 0 && r.version > m.Version:
		// It came back since it left: the intent is old news (a node
		// that still shows it left passed it on in push/pull).
	case r.State == StateDead: // the leave message overtook the intent
		r.State = StateLeft // Since stays when it stopped being alive
		g.memberGen++
		g.signalPersist()
		g.log.Info("gossip member left", "member", m.Node, "addr", r.Addr)
		g.notifyLocked()
	case r.State == StateAlive:
		r.leaving = true
	}
	return true
}

// leftLocked returns the leave intents of the members seen as left, with
// their versions, for push/pull: a node that missed an intent would
// otherwise show them dead.
func (g *Gossip) leftLocked() (map[string]uint64, map[string]int64) {
	var clocks map[string]uint64
	var versions map[string]int64
	for name, r := range g.members {
		if c, ok := g.leaves[name]; ok && r.State == StateLeft {
			if clocks == nil {
				clocks, versions = make(map[string]uint64), make(map[string]int64)
			}
			clocks[name], versions[name] = c, r.version
		}
	}
	return clocks, versions
}

func (g *Gossip) memberLocked(name string) *memberRec {
	r, ok := g.members[name]
	if !ok {
		r = &memberRec{Member: Member{Name: name}}
		g.members[name] = r
	}
	return r
}

// reapLocked forgets members dead or left for longer than Timing.Reap,
// and forget intents as old.
func (g *Gossip) reapLocked(now time.Time) {
	g.reapForgetsLocked(now)
	for name, r := range g.members {
		if r.State != StateAlive && now.Sub(r.Since) > g.timing.Reap {
			delete(g.members, name)
			delete(g.leaves, name)
			g.memberGen++
		}
	}
}

// missing returns the members to reconnect to — dead ones (as long as they
// are listed) and ones that left within Timing.ReconnectLeft — and how many
// members are alive, this node included.
func (g *Gossip) missing(now time.Time) (out []Member, alive int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reapLocked(now)
	for _, r := range g.members {
		switch {
		case r.State == StateAlive:
			alive++
		case r.Name == g.cfg.Name || r.Addr == "":
		case r.State == StateLeft && now.Sub(r.Since) > g.timing.ReconnectLeft:
		default:
			out = append(out, r.Member)
		}
	}
	return out, alive
}

// aliveAddrs returns the gossip addresses of the live members.
func (g *Gossip) aliveAddrs() map[string]bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]bool)
	for _, r := range g.members {
		if r.State == StateAlive {
			out[r.Addr] = true
		}
	}
	return out
}
