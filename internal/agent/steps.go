package agent

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nodeagent/nodeagent/internal/cluster"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// The steps procedures share: each written once, used by deploys and the
// database move alike.

// Deploy barrier bounds: how long a procedure waits for live web nodes to
// apply maintenance or serve the new revision before it fails, and how
// long its command may run. Variables so tests can shorten them.
var (
	maintenanceBarrier = 2 * time.Minute
	revisionBarrier    = 10 * time.Minute
	runTimeout         = time.Hour
)

// siteMaintenance is the site maintenance of one procedure: on at its
// first step, off at its last, unless it was on already (then it is left
// as it was, on).
type siteMaintenance struct {
	c       *controller
	message string // shown on the page
	reason  string // why, for operators
	wasOn   string // who had it on already ("" when the procedure turned it on)
}

// on turns site maintenance on (keeping a Moodle hold as it is) and waits
// until every live web node applies it.
func (s *siteMaintenance) on(ctx context.Context) (string, error) {
	a, now := s.c.a, time.Now()
	m := a.state.Maintenance().InForce(now)
	prefix := ""
	if m.Active(now) {
		s.wasOn = m.SetBy
		prefix = fmt.Sprintf("already on (set by %s): left as it is; ", m.SetBy)
	} else {
		if !m.MoodleHeld(now) {
			m = cluster.Maintenance{}
		}
		m.Enabled, m.Message, m.Reason, m.Allow, m.Until = true, s.message, truncate(s.reason, cluster.MaxReason), nil, time.Time{}
		var err error
		if m, err = a.setMaintenance(m); err != nil {
			return "", err
		}
	}
	detail, err := a.waitWebNodes(ctx, maintenanceBarrier, "apply maintenance", func(n gossip.NodeMeta) bool {
		return n.Maint == m.Clock
	})
	return prefix + detail, err
}

// off turns site maintenance off, unless it was on before the procedure.
func (s *siteMaintenance) off(context.Context) (string, error) {
	if s.wasOn != "" {
		return fmt.Sprintf("left on: it was on before (set by %s)", s.wasOn), nil
	}
	m := s.c.a.state.Maintenance().InForce(time.Now())
	m.Enabled = false
	_, err := s.c.a.setMaintenance(m)
	return "", err
}

// holdMoodle holds Moodle (climaintenance.html, through the cluster
// state, so that it survives a restart of the controller and shows in
// `maintenance status`) and returns the func that releases it. A hold
// already in force is left to whoever set it.
func (c *controller) holdMoodle(reason string) (release func() error, note string, err error) {
	noop := func() error { return nil }
	if c.dataroot == nil {
		return noop, "Moodle not held (no maintenance.moodle_dataroot)", nil
	}
	a, now := c.a, time.Now()
	m := a.state.Maintenance().InForce(now)
	if m.MoodleHeld(now) {
		return noop, "Moodle already held (set by " + m.SetBy + ")", nil
	}
	if !m.Active(now) {
		m = cluster.Maintenance{}
	}
	prior := m.Reason
	m.Moodle = true
	if m.Reason == "" {
		m.Reason = truncate(reason, cluster.MaxReason)
	}
	if _, err := a.setMaintenance(m); err != nil {
		return nil, "", fmt.Errorf("hold Moodle: %w", err)
	}
	if !a.appliedMaintenance().held {
		return nil, "", fmt.Errorf("hold Moodle: %s was not written", c.dataroot.Page())
	}
	return func() error {
		m := a.state.Maintenance().InForce(time.Now())
		m.Moodle, m.Reason = false, prior
		if _, err := a.setMaintenance(m); err != nil {
			return fmt.Errorf("release Moodle: %w", err)
		}
		return nil
	}, "Moodle held (" + c.dataroot.Page() + ") while it ran", nil
}

// waitRevision waits until every live web node serves revision id, and
// fails when fewer do than the cluster had, unless allowMissing; what says
// which revision, in the step's detail.
func (c *controller) waitRevision(ctx context.Context, id, what string, allowMissing bool) (string, error) {
	return c.a.wait(ctx, barrier{
		limit: revisionBarrier, what: what, honest: true, allowMissing: allowMissing,
		ok: func(n gossip.NodeMeta) bool { return n.Rev == id },
	})
}

// runHeld runs command while Moodle is held, as an upgrade wants it: its
// web and cron stopped. On failure the hold stays: the upgrade did not
// finish, so Moodle must not serve.
func (c *controller) runHeld(ctx context.Context, command, reason string) (string, error) {
	release, note, err := c.holdMoodle(reason)
	if err != nil {
		return "", err
	}
	out, err := c.runCommand(ctx, command)
	if err != nil {
		if c.dataroot != nil {
			err = fmt.Errorf("%w (Moodle stays held: %s)", err, c.dataroot.Page())
		}
		return "", err
	}
	if err := release(); err != nil {
		return "", err
	}
	return strings.TrimSpace(note + "\n" + out), nil
}

// runCommand runs command with sh -c in the source tree, as deploy.run_as.
func (c *controller) runCommand(ctx context.Context, command string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	out, err := c.runAs.Run(ctx, c.a.cfg.Mirror.Source, "/bin/sh", "-c", command)
	c.a.log.Info("deploy command", "command", command, "user", c.runAs.Name, "err", err, "output", out)
	if err != nil {
		return "", fmt.Errorf("command %q as %s: %v; output: %s", command, c.runAs.Name, err, out)
	}
	return out, nil
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
