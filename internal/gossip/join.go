package gossip

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The rules that keep membership whole without an operator (README,
// "Membership heals itself"):
//
//   - At start a node joins its join list and the members it remembers
//     (snapshot.go), retrying with backoff until one answers, and stops
//     after rejoinWant of them answered.
//   - Then every Timing.Reconnect it may retry one missing member — dead,
//     or left within Timing.ReconnectLeft — together with every join-list
//     address no live member holds (the whole join list when it is alone).
//     Like serf, it tries with probability missing/alive, missing counting
//     those addresses too, so the cluster as a whole makes about one
//     attempt per missing member and interval, whatever its size.
//   - A node that left and comes back under the same name is welcomed back
//     at once: memberlist takes it from any address; an incarnation number
//     others hold from its previous life is beaten as soon as it exchanges
//     state with one of them (its refutation spreads), which the joins above
//     and repair.go make happen.

// rejoinWant is how many members a starting node exchanges state with: more
// than one, so that its old incarnation is found and refuted even when some
// members have already forgotten it.
const rejoinWant = 3

// rejoinParallel bounds the join attempts in flight at start.
const rejoinParallel = 4

// runJoin joins at start, then keeps reconnecting until ctx ends. It also
// re-advertises metadata that memberlist dropped.
func (g *Gossip) runJoin(ctx context.Context) {
	if !g.joinWithBackoff(ctx) {
		return
	}
	t := time.NewTicker(g.timing.Reconnect)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.reconnect()
			g.advertiseMeta()
		}
	}
}

// joinWithBackoff joins the join list and the remembered members, retrying
// with backoff until one answers, another node joined this one, or there is
// nothing to join; false if ctx ended first.
func (g *Gossip) joinWithBackoff(ctx context.Context) bool {
	delay := g.cfg.JoinBackoff
	for attempt := 1; ; attempt++ {
		addrs := g.joinCandidates()
		if len(addrs) == 0 || g.numNodes() > 1 {
			return true
		}
		if n := g.joinSome(addrs); n > 0 {
			g.log.Info("gossip joined", "answered", n, "candidates", len(addrs), "attempt", attempt)
			return true
		}
		// Warn on the first failure and then at most every maxJoinBackoff;
		// the attempts in between are debug.
		lvl := g.log.Debug
		if attempt == 1 || delay == maxJoinBackoff {
			lvl = g.log.Warn
		}
		lvl("gossip join failed, retrying", "addrs", shortList(addrs), "attempt", attempt, "retry_in", delay)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
		delay = min(delay*2, maxJoinBackoff)
	}
}

// joinCandidates returns the join list, then the addresses of the
// remembered members that are not alive, in random order, without this
// node's own address.
func (g *Gossip) joinCandidates() []string {
	missing, _ := g.missing(time.Now())
	addrs := make([]string, 0, len(g.cfg.Join)+len(missing))
	addrs = append(addrs, g.cfg.Join...)
	rand.Shuffle(len(missing), func(i, j int) { missing[i], missing[j] = missing[j], missing[i] })
	for _, m := range missing {
		addrs = append(addrs, m.Addr)
	}
	self := g.Addr()
	out := addrs[:0]
	for i, a := range addrs {
		if a != self && !slices.Contains(addrs[:i], a) {
			out = append(out, a)
		}
	}
	return out
}

// joinSome exchanges state with addrs, rejoinParallel at a time, until
// rejoinWant answered or none is left; it returns how many answered.
func (g *Gossip) joinSome(addrs []string) int {
	var answered atomic.Int32
	sem := make(chan struct{}, rejoinParallel)
	var wg sync.WaitGroup
	for _, addr := range addrs {
		if answered.Load() >= rejoinWant {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := g.Join(addr); err != nil {
				g.log.Debug("gossip join", "addr", addr, "err", err)
				return
			}
			answered.Add(1)
		})
	}
	wg.Wait()
	return int(answered.Load())
}

// reconnect retries, with probability (missing members + unreached
// join-list addresses) / live members, one random missing member and the
// join-list addresses no live member holds (all of them when alone).
func (g *Gossip) reconnect() {
	missing, alive := g.missing(time.Now())
	unreached := g.unreachedJoins()
	want := len(missing) + len(unreached)
	if want == 0 || alive > 1 && rand.Float64() >= float64(want)/float64(alive) {
		return
	}
	addrs := unreached
	if len(missing) > 0 {
		if a := missing[rand.IntN(len(missing))].Addr; !slices.Contains(addrs, a) {
			addrs = append([]string{a}, addrs...)
		}
	}
	if _, err := g.Join(addrs...); err != nil {
		g.log.Debug("gossip reconnect failed", "addrs", addrs, "err", err)
		return
	}
	g.log.Info("gossip reconnected", "addrs", addrs)
}

// unreachedJoins returns the join-list addresses that no live member holds
// (this node's own excepted).
func (g *Gossip) unreachedJoins() []string {
	live := g.aliveAddrs()
	var out []string
	for _, a := range g.cfg.Join {
		if !live[a] && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// shortList is addrs for a log line: the first few and a count.
func shortList(addrs []string) []string {
	const n = 5
	if len(addrs) <= n {
		return addrs
	}
	return append(slices.Clone(addrs[:n]), "…")
}
