package agent

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/config"
)

// maintenanceKey is the gossip register holding cluster-wide maintenance.
const maintenanceKey = "maintenance"

// maxMaintenanceMessage keeps the register within a gossip packet.
const maxMaintenanceMessage = 500

// maintenanceState reads the cluster maintenance register.
func (a *Agent) maintenanceState() api.Maintenance {
	reg, ok := a.gossip.Get(maintenanceKey)
	if !ok {
		return api.Maintenance{}
	}
	m, err := decodeMaintenance(reg, time.Now())
	if err != nil {
		a.log.Warn("ignoring malformed maintenance state", "err", err)
	}
	return m
}

// Maintenance implements api.Node.
func (a *Agent) Maintenance() api.Maintenance { return a.maintenanceState() }

// SetMaintenance implements api.Node: it validates the request, then writes
// the register (last writer wins by the gossip clock).
func (a *Agent) SetMaintenance(req api.MaintenanceRequest) (api.Maintenance, error) {
	if len(req.Message) > maxMaintenanceMessage {
		return api.Maintenance{}, api.BadRequest(fmt.Sprintf("message: at most %d bytes", maxMaintenanceMessage))
	}
	for i, c := range req.Allow {
		if _, err := netip.ParsePrefix(c); err != nil {
			return api.Maintenance{}, api.BadRequest(fmt.Sprintf("allow[%d]: invalid CIDR %q", i, c))
		}
	}
	if req.Until != nil && !req.Until.After(time.Now()) {
		return api.Maintenance{}, api.BadRequest(fmt.Sprintf("until %s is in the past", req.Until.Format(time.RFC3339)))
	}
	if len(req.Allow) > 32 {
		return api.Maintenance{}, api.BadRequest("allow: at most 32 ranges")
	}
	m := api.Maintenance{Enabled: req.Enabled, Message: req.Message, Allow: req.Allow, Until: req.Until}
	if !m.Enabled {
		m = api.Maintenance{}
	}
	if _, err := a.gossip.Set(maintenanceKey, m); err != nil {
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
		if err := writeFileSync(page, body, 0o644); err != nil {
			return err
		}
		return writeFileSync(mark, []byte(fmt.Sprintf("%x\n", sum)), 0o600)
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

// writeFileSync writes a small file durably through a temporary name.
func writeFileSync(name string, data []byte, perm os.FileMode) error {
	tmp := name + ".nodeagent-tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, name)
}
