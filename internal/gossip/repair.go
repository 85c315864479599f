package gossip

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/memberlist"
)

// memberlist orders what it hears about a node by an incarnation number
// that restarts at 1 with the node's process, and ignores an alive message
// whose number is not above the one it holds. So when a node comes back
// (restart, crash, partition) while others still hold a higher number from
// its previous life — as left, dead or alive with old metadata — they keep
// ignoring it until it refutes that number, which it does only once it
// hears it: in a state exchange with one of them. The joins at start
// usually bring that about; this repairs the rest. Every alive message
// passes memberlist's alive delegate before memberlist judges it: when one
// carries a metadata version above what this node holds and, a moment
// later, memberlist still has not taken it, this node exchanges state with
// the member, which then refutes, and its refutation reaches everyone.

// A member that comes back (dead or left to alive, e.g. after a partition)
// missed the broadcasts of the time it was away, and so did this node:
// memberlist's broadcasts are sent a bounded number of times, and a
// register written on one side of a partition is sent only to that side.
// Push/pull would mend it within Timing.PushPullInterval (30 s); instead
// this node exchanges state with one of the members that came back at once,
// at most once every Timing.Reconnect, and what either side learns spreads
// from there as a broadcast (mergeState). A few exchanges anywhere are
// enough for that, so in a cluster of more than exchangeFanout members each
// node takes its turn with probability exchangeFanout/members: when one node
// comes back to 200, about five exchange state with it, not 199, and a
// loaded cluster whose members flap does not add a storm of exchanges.

// exchangeFanout is about how many members exchange state with one that
// came back.
const exchangeFanout = 5

// returnedLocked notes that member name came back at addr.
func (g *Gossip) returnedLocked(name, addr string) {
	g.returned[name] = addr
	select {
	case g.repairCh <- struct{}{}:
	default:
	}
}

// dueExchange returns the address of a member that came back, when an
// exchange is due, and how long until one may be.
func (g *Gossip) dueExchange(now time.Time) (string, time.Duration) {
	n := g.numNodes() // memberlist's lock, never taken under g.mu
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.returned) == 0 {
		return "", time.Hour
	}
	if wait := g.exchanged.Add(g.timing.Reconnect).Sub(now); wait > 0 {
		return "", wait
	}
	addrs := make([]string, 0, len(g.returned))
	for _, a := range g.returned {
		addrs = append(addrs, a)
	}
	clear(g.returned)
	if n > exchangeFanout && rand.Float64() >= float64(exchangeFanout)/float64(n) {
		return "", time.Hour // another member's turn
	}
	g.exchanged = now
	return addrs[rand.IntN(len(addrs))], time.Hour
}

// repairTask is a member whose newer alive message memberlist ignored.
type repairTask struct {
	addr    string
	version int64
	due     time.Time
}

// sawAlive is memberlist's alive delegate: it runs under memberlist's node
// lock, before memberlist decides, for every alive message and every alive
// entry of a state exchange.
func (g *Gossip) sawAlive(n *memberlist.Node) {
	if n.Name == g.cfg.Name {
		return
	}
	_, version, err := decodeMeta(n.Meta)
	if err != nil || version == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.members[n.Name]
	if !ok || r.version >= version || g.repairs[n.Name].version >= version {
		return // unknown to this node (memberlist will take it), or not newer
	}
	d := g.repairDelay()
	g.repairs[n.Name] = repairTask{addr: n.Address(), version: version, due: time.Now().Add(d + rand.N(d))}
	select {
	case g.repairCh <- struct{}{}:
	default:
	}
}

// repairDelay is how long memberlist gets to take a newer alive message
// (or to hear the member's refutation by gossip) before a repair: several
// gossip rounds.
func (g *Gossip) repairDelay() time.Duration { return 5 * g.timing.GossipInterval }

// runRepair exchanges state with the members whose newer alive messages
// memberlist still ignores once they are due, at most one exchange per
// member every Timing.Reconnect.
func (g *Gossip) runRepair(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.repairCh:
		case <-timer.C:
		}
		due, next := g.dueRepairs(time.Now())
		for name, t := range due {
			g.log.Info("gossip: member is back but memberlist holds its old state; exchanging state with it", "member", name, "addr", t.addr)
			if _, err := g.Join(t.addr); err != nil {
				g.log.Debug("gossip repair", "member", name, "err", err)
			}
		}
		addr, wait := g.dueExchange(time.Now())
		if addr != "" {
			if _, err := g.Join(addr); err != nil {
				g.log.Debug("gossip: state exchange with a member that came back", "addr", addr, "err", err)
			}
		}
		timer.Reset(min(next, wait))
	}
}

// dueRepairs drops the tasks memberlist caught up with and returns those
// due now, and how long until the next one is.
func (g *Gossip) dueRepairs(now time.Time) (map[string]repairTask, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	due := make(map[string]repairTask)
	next := time.Hour
	for name, t := range g.repairs {
		if r, ok := g.members[name]; !ok || r.version >= t.version {
			delete(g.repairs, name)
			continue
		}
		at := t.due
		if hold := g.repaired[name].Add(g.timing.Reconnect); hold.After(at) {
			at = hold
		}
		if !at.After(now) {
			due[name] = t
			delete(g.repairs, name)
			g.repaired[name] = now
			continue
		}
		next = min(next, at.Sub(now))
	}
	return due, next
}
