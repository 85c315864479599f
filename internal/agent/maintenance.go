package agent

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/cluster"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/moodle"
)

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

// Maintenance implements api.Node.
func (a *Agent) Maintenance() api.Maintenance { return a.maintenanceState() }

// SetMaintenance implements api.Node: it validates the request, then writes
// the register (last writer wins by the gossip clock).
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

// applyMaintenance makes this node follow the cluster state: the controller
// mirrors it into climaintenance.html; every node reports the clock it
// applies in its gossip metadata.
func (a *Agent) applyMaintenance() {
	m := a.maintenanceState()
	a.mu.Lock()
	done := a.maintApplied == m.Clock && a.maintActive == m.Active
	a.mu.Unlock()
	if done {
		return
	}
	if a.dataroot != nil {
		if err := a.climaintenance(m); err != nil {
			a.log.Error("climaintenance.html", "err", err)
			return
		}
	}
	a.mu.Lock()
	a.maintApplied, a.maintActive = m.Clock, m.Active
	a.mu.Unlock()
	a.log.Info("maintenance applied", "active", m.Active, "clock", m.Clock)
	a.announce()
}

// checkDataroot fails the start of a controller that cannot write into
// maintenance.moodle_dataroot.
func (a *Agent) checkDataroot() error {
	dir := a.cfg.Maintenance.MoodleDataroot
	if a.cfg.Role != config.RoleController || dir == "" {
		return nil
	}
	a.dataroot = moodle.NewDataroot(dir, filepath.Join(a.cfg.DataDir, "climaintenance.sha256"), a.log)
	if err := a.dataroot.Check(); err != nil {
		return fmt.Errorf("maintenance.moodle_dataroot: %w", err)
	}
	return nil
}

// climaintenance makes <dataroot>/climaintenance.html follow m.
func (a *Agent) climaintenance(m api.Maintenance) error {
	if m.Active {
		return a.dataroot.Hold(m.Message)
	}
	return a.dataroot.Release()
}
