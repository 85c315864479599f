package agent

import (
	"net"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// clusterAPIAddr is the address other agents use for this node's cluster
// API: the listen address, or the gossip host when listening on all
// interfaces.
func (a *Agent) clusterAPIAddr() string {
	host, port, err := net.SplitHostPort(a.ClusterAddr())
	if err != nil {
		return a.ClusterAddr()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() && a.gossip != nil {
		if ghost, _, err := net.SplitHostPort(a.gossip.Addr()); err == nil {
			host = ghost
		}
	}
	return net.JoinHostPort(host, port)
}

// localMeta is what this node tells the cluster about itself.
func (a *Agent) localMeta() gossip.NodeMeta {
	m := gossip.NodeMeta{Role: a.cfg.Role, API: a.clusterAPIAddr(), Version: a.opts.Version}
	if rev, ok := a.role.serving(); ok {
		m.Seq, m.Rev = rev.Seq, rev.ID
	}
	m.Ready = a.Health().Status != api.StatusFail
	m.Drained = a.isDrained()
	applied := a.appliedMaintenance()
	m.Maint, m.MaintOn = applied.clock, applied.active
	if since := a.role.behindSince(); !since.IsZero() {
		m.Behind = since.Unix()
	}
	a.role.meta(&m)
	return m
}

// watch follows gossip: it applies the cluster state on every change (and
// every second, for timed ends), then advertises this node's metadata.
func (a *Agent) watch() {
	defer a.wg.Done()
	ch, cancel := a.gossip.Changes()
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		a.applyMaintenance()
		a.role.observe()
		a.publishMeta()
		a.observeHistory()
		select {
		case <-a.ctx.Done():
			return
		case <-ch:
		case <-a.poke:
		case <-tick.C:
		}
	}
}

// announce asks the watch loop to re-advertise this node's metadata. It never
// blocks: gossip's metadata update waits for a broadcast round, which must
// not delay an API answer.
func (a *Agent) announce() {
	select {
	case a.poke <- struct{}{}:
	default:
	}
}

// publishMeta advertises the metadata when it changed since the last time.
func (a *Agent) publishMeta() {
	m := a.localMeta()
	if m == a.lastMeta || a.metaFrozen.Load() {
		return
	}
	if err := a.gossip.SetMeta(m); err != nil {
		a.log.Warn("advertise node metadata", "err", err)
		return
	}
	a.lastMeta = m
}
