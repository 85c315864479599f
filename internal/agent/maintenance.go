package agent

import (
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/cluster"
)

// maintApplied is the maintenance state a node applies, as it reports it
// in its gossip metadata.
type maintApplied struct {
	clock  uint64
	active bool
}

func (a *Agent) appliedMaintenance() maintApplied {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.maint
}

// maintenanceState is the cluster's maintenance state as the API shows it.
func (a *Agent) maintenanceState() api.Maintenance {
	m := a.state.Maintenance()
	am := api.Maintenance{Enabled: m.Enabled, Message: m.Message, Allow: m.Allow, Clock: m.Clock, SetBy: m.SetBy,
		Active: m.Active(time.Now())}
	if !m.Until.IsZero() {
		until := m.Until
		am.Until = &until
	}
	return am
}

// maintenanceStatus is maintenanceState and whether this node applies it.
func (a *Agent) maintenanceStatus() api.MaintenanceStatus {
	st := api.MaintenanceStatus{Maintenance: a.maintenanceState()}
	applied := a.appliedMaintenance()
	st.Applied = applied.clock == st.Clock && applied.active == st.Active
	return st
}

// Maintenance implements api.Node.
func (a *Agent) Maintenance() api.Maintenance { return a.maintenanceState() }

// SetMaintenance implements api.Node: it validates the request, then writes
// the register (last writer wins by the gossip clock) and applies it here.
func (a *Agent) SetMaintenance(req api.MaintenanceRequest) (api.Maintenance, error) {
	m := cluster.Maintenance{Enabled: req.Enabled, Message: req.Message, Allow: req.Allow}
	if req.Until != nil {
		m.Until = *req.Until
	}
	if err := m.Validate(time.Now()); err != nil {
		return api.Maintenance{}, err
	}
	if _, err := a.state.SetMaintenance(m); err != nil {
		return api.Maintenance{}, err
	}
	a.log.Info("maintenance set", "enabled", m.Enabled, "until", m.Until)
	a.applyMaintenance()
	return a.maintenanceState(), nil
}

// applyMaintenance makes this node follow the cluster's maintenance state
// (the role applies it: the controller to Moodle's dataroot, a web node
// to its edge) and records what it applies, for its gossip metadata. The
// API and the watch loop both call it: one at a time, so the last state
// read is the one applied.
func (a *Agent) applyMaintenance() {
	a.maintMu.Lock()
	defer a.maintMu.Unlock()
	m := a.state.Maintenance()
	now := maintApplied{clock: m.Clock, active: m.Active(time.Now())}
	if a.appliedMaintenance() == now {
		return
	}
	if err := a.role.applyMaintenance(m); err != nil {
		a.log.Error("apply maintenance", "clock", m.Clock, "err", err)
		return
	}
	a.mu.Lock()
	a.maint = now
	a.mu.Unlock()
	a.log.Info("maintenance applied", "active", now.active, "clock", now.clock)
	a.announce()
}
