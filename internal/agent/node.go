package agent

import (
	"fmt"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

var _ api.Node = (*Agent)(nil)

// Status implements api.Node.
func (a *Agent) Status() api.Status {
	st := api.Status{Node: a.cfg.Node, Role: a.cfg.Role, Version: a.opts.Version, Drained: a.isDrained()}
	st.Maintenance.Maintenance = a.maintenanceState()
	a.mu.Lock()
	st.Maintenance.Applied = a.maintApplied == st.Maintenance.Clock && a.maintActive == st.Maintenance.Active
	a.mu.Unlock()
	st.Revision = a.revisionStatus()
	st.Transfer = api.Transfer{RxBytes: a.wire.rx.Load(), TxBytes: a.wire.tx.Load()}
	if a.store != nil {
		if p := a.store.Progress(); p.Phase != "" {
			st.Publish = &p
		}
	}
	st.Certificate = a.certificateState()
	st.Gossip = a.gossipStatus()
	if a.rels != nil {
		p := a.rels.Progress()
		if p.Phase != "" {
			st.Sync = &p
		}
		if err, _ := a.syncer.LastError(); err != nil {
			st.SyncError = err.Error()
		}
	}
	return st
}

func (a *Agent) revisionStatus() api.RevisionStatus {
	var rs api.RevisionStatus
	if rev, ok := a.appliedRevision(); ok {
		rs.Applied = &api.RevRef{Seq: rev.Seq, ID: rev.ID}
	}
	a.mu.Lock()
	rs.Target = a.target
	since := a.behindSince
	a.mu.Unlock()
	if rs.Target == nil {
		rs.Target = a.currentTarget()
	}
	rs.InSync = rs.Target != nil && rs.Applied != nil && rs.Applied.ID == rs.Target.ID
	if !since.IsZero() && !rs.InSync {
		rs.LagSeconds = time.Since(since).Seconds()
	}
	return rs
}

// Members implements api.Node.
func (a *Agent) Members() []gossip.Member { return a.gossip.Members() }

// Revisions implements api.Node.
func (a *Agent) Revisions() api.RevisionList {
	var revs []mirror.Revision
	if a.store != nil {
		revs = a.store.Revisions()
	} else {
		revs = a.rels.List()
	}
	target := a.currentTarget()
	applied, _ := a.appliedRevision()
	list := api.RevisionList{Revisions: make([]api.RevisionItem, 0, len(revs)), Target: target}
	for _, r := range revs {
		list.Revisions = append(list.Revisions, api.RevisionItem{
			Revision: r,
			Target:   target != nil && target.ID == r.ID,
			Applied:  a.rels != nil && applied.ID == r.ID,
		})
	}
	return list
}

// Health implements api.Node: the readiness checks of DESIGN.md.
func (a *Agent) Health() api.Health {
	checks := map[string][]api.Check{
		"mirror:revision": {a.checkRevision()},
		"node:drain":      {a.checkDrain()},
	}
	a.edgeChecks(checks)
	a.splitChecks(checks)
	return api.Health{Status: api.Worst(checks), Checks: checks}
}

// checkRevision fails when a web node never synced, or has been behind the
// target for longer than mirror.max_lag while another live web node already
// serves the target (so that a controller outage or a bad publish never takes
// every node out of the load balancer at once).
func (a *Agent) checkRevision() api.Check {
	now := time.Now()
	rs := a.revisionStatus()
	c := api.Check{Status: api.StatusPass, Time: now}
	if rs.Applied != nil {
		c.ObservedValue = rs.Applied.Seq
	}
	if a.rels == nil {
		return c
	}
	switch {
	case rs.Applied == nil:
		c.Status, c.Output = api.StatusFail, "no release applied yet"
	case rs.InSync || rs.Target == nil:
	case rs.LagSeconds > time.Duration(a.cfg.Mirror.MaxLag).Seconds():
		if peer := a.peerServing(rs.Target.ID); peer != "" {
			c.Status = api.StatusFail
			c.Output = fmt.Sprintf("behind target %d for %.0fs while %s serves it", rs.Target.Seq, rs.LagSeconds, peer)
		} else {
			c.Status = api.StatusWarn
			c.Output = fmt.Sprintf("behind target %d for %.0fs; no web node serves it yet", rs.Target.Seq, rs.LagSeconds)
		}
	default:
		c.Status = api.StatusWarn
		c.Output = fmt.Sprintf("syncing to target %d", rs.Target.Seq)
	}
	return c
}

// peerServing returns the name of another live web node serving id that is
// in the load balancer (ready, not drained): a peer that takes no traffic
// cannot stand in for this node.
func (a *Agent) peerServing(id string) string {
	if a.gossip == nil {
		return ""
	}
	for _, m := range a.gossip.Members() {
		if m.Name != a.cfg.Node && m.State == gossip.StateAlive && m.Meta.Role == roleWeb &&
			m.Meta.Rev == id && m.Meta.Ready && !m.Meta.Drained {
			return m.Name
		}
	}
	return ""
}

// checkDrain fails while the node is drained.
func (a *Agent) checkDrain() api.Check {
	c := api.Check{Status: api.StatusPass, Time: time.Now(), ObservedValue: a.isDrained()}
	if a.isDrained() {
		c.Status, c.Output = api.StatusFail, "drained by an operator"
	}
	return c
}
