package agent

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/cluster"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/durable"
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
	if a.store != nil && a.cfg.Maintenance.MoodleDataroot != "" {
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
// maintenance.moodle_dataroot (a wrong path, or one the systemd unit keeps
// read-only): found only at the next maintenance, Moodle would keep
// running its cron through an upgrade.
func (a *Agent) checkDataroot() error {
	dir := a.cfg.Maintenance.MoodleDataroot
	if a.cfg.Role != config.RoleController || dir == "" {
		return nil
	}
	f, err := os.CreateTemp(dir, ".nodeagent-check-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("maintenance.moodle_dataroot: cannot write into %s: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// climaintenance writes or removes <dataroot>/climaintenance.html the way
// Moodle's admin/cli/maintenance.php does. It removes only a file whose
// content is what it wrote itself (recorded by hash in data_dir).
func (a *Agent) climaintenance(m api.Maintenance) error {
	page := filepath.Join(a.cfg.Maintenance.MoodleDataroot, "climaintenance.html")
	mark := filepath.Join(a.cfg.DataDir, "climaintenance.sha256")
	if m.Active {
		body := climaintenancePage(m.Message)
		sum := sha256.Sum256(body)
		if err := durable.WriteFile(page, body, 0o644); err != nil {
			return err
		}
		return durable.WriteFile(mark, []byte(fmt.Sprintf("%x\n", sum)), 0o600)
	}
	want, err := os.ReadFile(mark)
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing of ours to remove
	}
	if err != nil {
		return err
	}
	cur, err := os.ReadFile(page)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case bytes.Equal(bytes.TrimSpace(want), []byte(fmt.Sprintf("%x", sha256.Sum256(cur)))):
		if err := os.Remove(page); err != nil {
			return err
		}
	default:
		a.log.Warn("climaintenance.html was changed by someone else: left in place", "path", page)
	}
	return os.Remove(mark)
}

func climaintenancePage(message string) []byte {
	if message == "" {
		message = "This site is undergoing maintenance and is currently not available"
	}
	return []byte("<!DOCTYPE html>\n<html dir=\"ltr\" lang=\"en\" xml:lang=\"en\"><head>\n" +
		"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\" />\n" +
		"<title>Site maintenance</title></head>\n<body><div style=\"margin-top: 6em; margin-left:auto; margin-right:auto; color:#990000; text-align:center; font-size:large; border-width:1px; border-color:black; background-color:#ffffee; border-style:solid; border-radius: 20px; border-collapse: collapse; width: 80%; -moz-border-radius: 20px; padding: 15px\">\n" +
		html.EscapeString(message) + "\n</div></body></html>\n")
}
