package agent

import (
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

var _ api.Node = (*Agent)(nil)

// Status implements api.Node.
func (a *Agent) Status() api.Status {
	st := api.Status{Node: a.cfg.Node, Role: a.cfg.Role, Version: a.opts.Version, Drained: a.isDrained()}
	st.Maintenance = a.maintenanceStatus()
	st.Revision = a.revisionStatus()
	st.Transfer = api.Transfer{RxBytes: a.wire.rx.Load(), TxBytes: a.wire.tx.Load()}
	a.role.status(&st)
	st.Gossip = a.gossipStatus()
	return st
}

func (a *Agent) revisionStatus() api.RevisionStatus {
	var rs api.RevisionStatus
	if rev, ok := a.role.serving(); ok {
		rs.Applied = &api.RevRef{Seq: rev.Seq, ID: rev.ID}
	}
	rs.Target = a.currentTarget()
	rs.InSync = rs.Target != nil && rs.Applied != nil && rs.Applied.ID == rs.Target.ID
	if since := a.role.behindSince(); !since.IsZero() && !rs.InSync {
		rs.LagSeconds = time.Since(since).Seconds()
	}
	return rs
}

// currentTarget is the cluster target (nil before gossip opens or while
// none was ever set).
func (a *Agent) currentTarget() *api.RevRef {
	if a.state == nil {
		return nil
	}
	t, ok := a.state.Target()
	if !ok {
		return nil
	}
	return &api.RevRef{Seq: t.Seq, ID: t.ID}
}

// Members implements api.Node.
func (a *Agent) Members() []gossip.Member { return a.gossip.Members() }

// Revisions implements api.Node.
func (a *Agent) Revisions() api.RevisionList {
	list := api.RevisionList{Revisions: a.role.revisions(), Target: a.currentTarget()}
	for i, r := range list.Revisions {
		list.Revisions[i].Target = list.Target != nil && list.Target.ID == r.ID
	}
	return list
}

// Health implements api.Node: the readiness checks of DESIGN.md, all in
// this one map.
func (a *Agent) Health() api.Health {
	checks := map[string][]api.Check{
		"mirror:revision": {a.role.checkRevision()},
		"node:drain":      {a.checkDrain()},
	}
	a.role.checks(checks) // web with an edge: edge:backend, edge:certificate
	a.splitChecks(checks) // web: gossip:controller
	return api.Health{Status: api.Worst(checks), Checks: checks}
}

// checkDrain fails while the node is drained.
func (a *Agent) checkDrain() api.Check {
	c := api.Check{Status: api.StatusPass, Time: time.Now(), ObservedValue: a.isDrained()}
	if a.isDrained() {
		c.Status, c.Output = api.StatusFail, "drained by an operator"
	}
	return c
}
