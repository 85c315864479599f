package agent

import (
	"context"
	"errors"
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

// siteMaintenance is the maintenance of one procedure: site maintenance
// on at its first step and off at its last, unless it was on already (then
// it is left as it was, on), and the Moodle hold around a command.
//
// Maintenance a failed procedure of the same kind left on (its reason names
// it: "deploy <id>…") is not an operator's: the next run, the retry after
// the fix, takes it over and ends it when it succeeds. Otherwise a retry
// that succeeds would leave the site in maintenance and Moodle held.
type siteMaintenance struct {
	c       *controller
	kind    string // "deploy", "database move": starts every reason it writes
	message string // shown on the page
	reason  string // why, for operators
	wasOn   string // who had it on already ("" when the procedure turned it on)
	// tookHold: a Moodle hold a failed run left is this run's to end.
	tookHold bool
	// hold is a Moodle hold someone else set: on replaces its reason and
	// end while site maintenance is on, off puts them back.
	hold *heldBefore
}

// heldBefore is what a procedure keeps of a Moodle hold it found.
type heldBefore struct {
	reason string
	until  time.Time
}

// leftOver reports whether reason was written by another run of this
// procedure's kind: one that failed, as one runs at a time.
func (s *siteMaintenance) leftOver(reason string) bool {
	return strings.HasPrefix(reason, s.kind+" ") && reason != truncate(s.reason, cluster.MaxReason)
}

// on turns site maintenance on (keeping a Moodle hold as it is) and waits
// until every live web node applies it.
func (s *siteMaintenance) on(ctx context.Context) (string, error) {
	a, now := s.c.a, time.Now()
	m := a.state.Maintenance().InForce(now)
	prefix := ""
	switch left := s.leftOver(m.Reason); {
	case m.Active(now) && !left:
		s.wasOn = m.SetBy
		prefix = fmt.Sprintf("already on (set by %s): left as it is; ", m.SetBy)
	default:
		if left {
			s.tookHold = m.MoodleHeld(now)
			prefix = fmt.Sprintf("taken over from %q, which did not finish; ", m.Reason)
		} else if m.MoodleHeld(now) {
			s.hold = &heldBefore{reason: m.Reason, until: m.Until}
		}
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

// off turns site maintenance off, unless it was on before the procedure,
// and ends a Moodle hold it took over from a failed run.
func (s *siteMaintenance) off(context.Context) (string, error) {
	if s.wasOn != "" {
		return fmt.Sprintf("left on: it was on before (set by %s)", s.wasOn), nil
	}
	now := time.Now()
	m := s.c.a.state.Maintenance().InForce(now)
	m.Enabled = false
	switch {
	case s.tookHold:
		m.Moodle = false
	case m.Moodle && s.hold != nil:
		m.Reason, m.Until = s.hold.reason, s.hold.until
		if !m.Until.IsZero() && !m.Until.After(now) { // its end passed meanwhile
			m = cluster.Maintenance{}
		}
	}
	_, err := s.c.a.setMaintenance(m)
	return "", err
}

// holdMoodle holds Moodle (climaintenance.html, through the cluster
// state, so that it survives a restart of the controller and shows in
// `maintenance status`) and returns the func that releases it. A hold
// already in force is left to whoever set it, but for one a failed run
// left: that one is ended by the release.
//
// The hold has no end of its own: the until of a site maintenance already
// on (maintenance on -for) would end both levels, and Moodle would serve
// and run its cron in the middle of the command. The until is set again
// at the release (unless the state changed meanwhile), or maintenance ends
// then if it is past.
func (s *siteMaintenance) holdMoodle() (release func() error, note string, err error) {
	c := s.c
	noop := func() error { return nil }
	if c.dataroot == nil {
		return noop, "Moodle not held (no maintenance.moodle_dataroot)", nil
	}
	a, now := c.a, time.Now()
	m := a.state.Maintenance().InForce(now)
	took := s.tookHold || m.MoodleHeld(now) && s.leftOver(m.Reason)
	if m.MoodleHeld(now) && m.Until.IsZero() && !took {
		return noop, "Moodle already held (set by " + m.SetBy + ")", nil
	}
	if !m.Active(now) && !m.MoodleHeld(now) {
		m = cluster.Maintenance{}
	}
	prior, priorMoodle, until := m.Reason, m.Moodle && !took, m.Until
	if took && s.leftOver(prior) {
		prior = ""
		if m.Enabled {
			prior = m.Reason // its site maintenance is not this run's to end
		}
	}
	m.Moodle, m.Until = true, time.Time{}
	setMessage := m.Message == ""
	if setMessage {
		m.Message = s.message // the deploy's page text, without site maintenance too
	}
	if m.Reason == "" || took {
		m.Reason = truncate(s.reason, cluster.MaxReason)
	}
	held, err := a.setMaintenance(m)
	if err != nil {
		return nil, "", fmt.Errorf("hold Moodle: %w", err)
	}
	if !a.appliedMaintenance().held {
		return nil, "", fmt.Errorf("hold Moodle: %s was not written", c.dataroot.Page())
	}
	s.tookHold = false // released below
	return func() error {
		now := time.Now()
		m := a.state.Maintenance().InForce(now)
		m.Moodle, m.Reason = priorMoodle, prior
		if setMessage && m.Message == s.message {
			m.Message = ""
		}
		if m.Clock == held.Clock && !until.IsZero() { // nobody changed it meanwhile
			if until.After(now) {
				m.Until = until
			} else {
				m = cluster.Maintenance{} // its end passed while the command ran
			}
		}
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
func (c *controller) runHeld(ctx context.Context, command string, site *siteMaintenance) (string, error) {
	release, note, err := site.holdMoodle()
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
	return c.runInSource(ctx, fmt.Sprintf("command %q", command), "/bin/sh", "-c", command)
}

// runInSource runs argv in the source tree as deploy.run_as, for at most
// runTimeout; what names it in the log and the error, which says why a
// command killed before its end was killed.
func (c *controller) runInSource(ctx context.Context, what string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	out, err := c.runAs.Run(ctx, c.a.cfg.Mirror.Source, argv...)
	c.a.log.Info("run in the source tree", "what", what, "user", c.runAs.Name, "err", err, "output", out)
	if err != nil {
		if why := stopped(ctx); why != "" {
			return "", fmt.Errorf("%s as %s: %s; output: %s", what, c.runAs.Name, why, out)
		}
		return "", fmt.Errorf("%s as %s: %v; output: %s", what, c.runAs.Name, err, out)
	}
	return out, nil
}

// stopped says why a command run with ctx was killed before its end: ""
// when ctx did not end.
func stopped(ctx context.Context) string {
	switch cause := context.Cause(ctx); {
	case ctx.Err() == nil:
		return ""
	case errors.Is(cause, context.DeadlineExceeded):
		return fmt.Sprintf("killed after %s", runTimeout)
	case errors.Is(cause, context.Canceled):
		return "killed: the agent is stopping (a restart, an upgrade or a shutdown)"
	default:
		return "killed: " + cause.Error()
	}
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
