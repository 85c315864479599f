package gossip

import "time"

// Every node remembers the members it has seen, in the state file, and
// rejoins them when it starts (join.go), like serf's snapshot with
// rejoin_after_leave: a node that restarts, left or crashed, finds its
// cluster again without a join list, and its peers learn at once that it
// is back.

// snapshotMember is one member as the state file keeps it.
type snapshotMember struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"` // as last seen: alive, dead or left
	// LastSeen is when the file was written for a member alive then, else
	// when it stopped being alive.
	LastSeen time.Time `json:"last_seen"`
	Meta     NodeMeta  `json:"meta"` // role, API address, … as last seen
	Version  int64     `json:"version,omitempty"`
}

// snapshotLocked returns the members to write to the state file: every
// listed member but this node.
func (g *Gossip) snapshotLocked(now time.Time) []snapshotMember {
	var out []snapshotMember
	for _, r := range g.members {
		if r.Name == g.cfg.Name || r.Addr == "" {
			continue
		}
		seen := r.Since
		if r.State == StateAlive {
			seen = now
		}
		out = append(out, snapshotMember{
			Name: r.Name, Addr: r.Addr, State: r.State, LastSeen: seen, Meta: r.Meta, Version: r.version,
		})
	}
	return out
}

// restoreLocked lists the members of the state file seen within
// Timing.Reap. None is alive until gossip says so: those alive when the file
// was written are dead since then, the others keep their state.
func (g *Gossip) restoreLocked(ms []snapshotMember, now time.Time) {
	for _, m := range ms {
		if m.Name == g.cfg.Name || now.Sub(m.LastSeen) > g.timing.Reap {
			continue
		}
		if f, ok := g.forgets[m.Name]; ok && f.covers(m.Version, m.LastSeen) {
			continue // forgotten (forget.go)
		}
		state := m.State
		if state != StateLeft {
			state = StateDead
		}
		g.members[m.Name] = &memberRec{
			Member:  Member{Name: m.Name, Addr: m.Addr, State: state, Meta: m.Meta, Since: m.LastSeen},
			version: m.Version,
		}
	}
}
