package gossip

import (
	"context"
	"math/rand/v2"
	"time"
)

// runJoin joins Config.Join, retrying with backoff until one address
// answers, then keeps reconnecting: every Timing.Reconnect it retries one
// failed member and, when this node is alone, the join list again. This
// heals a cluster whose nodes all declared each other dead (a restarted
// controller with no join list, a long partition). It also re-advertises
// metadata that memberlist dropped.
func (g *Gossip) runJoin(ctx context.Context) {
	if len(g.cfg.Join) > 0 && !g.joinWithBackoff(ctx) {
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

// joinWithBackoff returns false if ctx ended first.
func (g *Gossip) joinWithBackoff(ctx context.Context) bool {
	delay := g.cfg.JoinBackoff
	for attempt := 1; ; attempt++ {
		n, err := g.Join(g.cfg.Join...)
		if err == nil {
			g.log.Info("gossip joined", "addrs", g.cfg.Join, "answered", n, "attempt", attempt)
			return true
		}
		// Warn on the first failure and then at most every maxJoinBackoff;
		// the attempts in between are debug.
		lvl := g.log.Debug
		if attempt == 1 || delay == maxJoinBackoff {
			lvl = g.log.Warn
		}
		lvl("gossip join failed, retrying", "addrs", g.cfg.Join, "attempt", attempt, "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
		delay = min(delay*2, maxJoinBackoff)
	}
}

func (g *Gossip) reconnect() {
	var addrs []string
	if dead := g.deadAddrs(); len(dead) > 0 {
		addrs = append(addrs, dead[rand.IntN(len(dead))])
	}
	if g.numNodes() <= 1 {
		addrs = append(addrs, g.cfg.Join...)
	}
	if len(addrs) == 0 {
		return
	}
	if _, err := g.Join(addrs...); err != nil {
		g.log.Debug("gossip reconnect failed", "addrs", addrs, "err", err)
		return
	}
	g.log.Info("gossip reconnected", "addrs", addrs)
}
