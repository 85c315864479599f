package agent

import (
	"fmt"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/cluster"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// maintApplied is the maintenance state a node applies: the register's
// clock, whether site maintenance is in force (reported in the gossip
// metadata), whether the Moodle hold is, and whether this node holds
// Moodle for it (the controller, with maintenance.moodle_dataroot).
type maintApplied struct {
	clock  uint64
	active bool
	moodle bool
	held   bool
}

func (a *Agent) appliedMaintenance() maintApplied {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.maint
}

// maintenanceState is the cluster's maintenance state as the API shows it.
func (a *Agent) maintenanceState() api.Maintenance {
	m, now := a.state.Maintenance(), time.Now()
	am := api.Maintenance{Enabled: m.Enabled, Moodle: m.Moodle, Message: m.Message, Reason: m.Reason, Allow: m.Allow,
		Clock: m.Clock, SetBy: m.SetBy, Active: m.Active(now), MoodleActive: m.MoodleHeld(now), ConfigAllow: a.configAllow()}
	if !m.Until.IsZero() {
		until := m.Until
		am.Until = &until
	}
	return am
}

// configAllow is the union of the maintenance.allow lists announced by
// this node and every node seen in the last hour: what maintenance.allow
// means, on every node, wherever it is set.
func (a *Agent) configAllow() []string {
	now := time.Now()
	var nodes []string
	for _, m := range a.gossip.Members() {
		if m.State == gossip.StateAlive || now.Sub(m.Since) <= seenWindow {
			nodes = append(nodes, m.Name)
		}
	}
	return a.state.Allow(append(nodes, a.cfg.Node))
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

// SetMaintenance implements api.Node.
func (a *Agent) SetMaintenance(req api.MaintenanceRequest) (api.Maintenance, error) {
	m := cluster.Maintenance{Enabled: req.Enabled, Moodle: req.Moodle, Message: req.Message, Allow: req.Allow}
	if req.Until != nil {
		m.Until = *req.Until
	}
	if _, err := a.setMaintenance(m); err != nil {
		return api.Maintenance{}, err
	}
	return a.maintenanceState(), nil
}

// setMaintenance validates m, writes the register (last writer wins by the
// gossip clock) and applies it here at once.
func (a *Agent) setMaintenance(m cluster.Maintenance) (cluster.Maintenance, error) {
	if err := m.Validate(time.Now()); err != nil {
		return cluster.Maintenance{}, err
	}
	m, err := a.state.SetMaintenance(m)
	if err != nil {
		return cluster.Maintenance{}, err
	}
	a.log.Info("maintenance set", "site", m.Enabled, "moodle", m.Moodle, "until", m.Until, "reason", m.Reason, "clock", m.Clock)
	if err := a.applyMaintenance(); err != nil {
		return m, fmt.Errorf("maintenance set (clock %d), but this node could not apply it: %w", m.Clock, err)
	}
	return m, nil
}

// applyMaintenance makes this node follow the cluster's maintenance state
// (the role applies it: the controller to Moodle's dataroot, a web node
// to its edge) and records what it applies, for its gossip metadata. The
// API and the watch loop both call it: one at a time, so the state read
// last is the one applied.
func (a *Agent) applyMaintenance() error {
	a.maintMu.Lock()
	defer a.maintMu.Unlock()
	m, now := a.state.Maintenance(), time.Now()
	want := maintApplied{clock: m.Clock, active: m.Active(now), moodle: m.MoodleHeld(now)}
	if cur := a.appliedMaintenance(); cur.clock == want.clock && cur.active == want.active && cur.moodle == want.moodle {
		return nil
	}
	held, err := a.role.applyMaintenance(m)
	if err != nil {
		a.log.Error("apply maintenance", "clock", m.Clock, "err", err)
		return err
	}
	want.held = held
	a.mu.Lock()
	a.maint = want
	a.mu.Unlock()
	a.log.Info("maintenance applied", "site", want.active, "moodle_held", held, "clock", want.clock)
	a.announce()
	return nil
}
