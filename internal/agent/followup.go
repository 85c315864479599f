package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/durable"
	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/procedure"
)

// deploy.after_all runs once per cluster, on the controller, after every
// web node serves a new revision: as a step of a deploy and a database
// move, and as the follow-up of a plain publish or rollback.

// afterAll runs deploy.after_all in the source tree as deploy.run_as.
func (c *controller) afterAll(ctx context.Context) (string, error) {
	argv := c.a.cfg.Deploy.AfterAll
	return c.runInSource(ctx, fmt.Sprintf("deploy.after_all %q", strings.Join(argv, " ")), argv...)
}

// hasAfterAll reports whether deploy.after_all is set.
func (c *controller) hasAfterAll() bool { return len(c.a.cfg.Deploy.AfterAll) > 0 }

// followUp starts, when deploy.after_all is set, the run that waits until
// every web node serves rev and then runs it, and returns its path for the
// API ("" without after_all). A newer follow-up, deploy or database move
// supersedes it: one after_all for the newest revision.
func (c *controller) followUp(kind string, rev api.RevRef, allowMissing bool) (string, error) {
	if !c.hasAfterAll() {
		return "", nil
	}
	ctx, cancel := context.WithCancelCause(c.a.ctx)
	c.supersedeFollowUp(fmt.Errorf("superseded by the %s of revision %d", kind, rev.Seq), cancel)
	pending := pendingFollowUp{Kind: kind, Revision: rev, AllowMissing: allowMissing}
	if err := c.savePending(&pending); err != nil {
		c.a.log.Warn("remember the follow-up across a restart", "err", err)
	}
	simple := procedure.Simple[deployData]
	steps := []procedure.Step[deployData]{
		simple("wait for web nodes", func(ctx context.Context) (string, error) {
			return c.waitRevision(ctx, rev.ID, fmt.Sprintf("serve revision %d", rev.Seq), allowMissing)
		}),
		simple("after all", func(ctx context.Context) (string, error) {
			out, err := c.afterAll(ctx)
			if err == nil {
				c.donePending(rev.ID)
			}
			return out, err
		}),
	}
	rec, err := c.followUps.Start(ctx, deployData{Kind: kind, Revision: &rev}, steps, func(procedure.Record[deployData]) string {
		if c.a.ctx.Err() == nil { // failed or superseded; one the agent's stop cut is resumed at the next start
			c.donePending(rev.ID)
		}
		return ""
	})
	if err != nil {
		cancel(err)
		return "", err
	}
	return "/v1/deploys/" + rec.ID, nil
}

// pendingFollowUp is the follow-up in progress, kept in data_dir so that
// one the agent's stop (a restart, an upgrade, a crash) cut short runs at
// the next start: otherwise nothing would ever run deploy.after_all for
// that revision (a publish of the unchanged tree follows nothing up).
type pendingFollowUp struct {
	Kind         string     `json:"kind"`
	Revision     api.RevRef `json:"revision"`
	AllowMissing bool       `json:"allow_missing,omitempty"`
}

func (c *controller) pendingFile() string {
	return filepath.Join(c.a.cfg.DataDir, "follow-up.json")
}

// savePending records p as the follow-up in progress.
func (c *controller) savePending(p *pendingFollowUp) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	return durable.WriteFile(c.pendingFile(), append(b, '\n'), 0o600)
}

// donePending forgets the follow-up of revision id, unless a newer one
// replaced it.
func (c *controller) donePending(id string) {
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	if p, ok := c.loadPendingLocked(); ok && p.Revision.ID != id {
		return
	}
	if err := os.Remove(c.pendingFile()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.a.log.Warn("forget the follow-up", "err", err)
	}
}

func (c *controller) loadPendingLocked() (pendingFollowUp, bool) {
	var p pendingFollowUp
	b, err := os.ReadFile(c.pendingFile())
	if err != nil || json.Unmarshal(b, &p) != nil || p.Revision.ID == "" {
		return p, false
	}
	return p, true
}

// resumeFollowUp starts again, at start, a follow-up the agent's last stop
// cut short, if its revision is still the cluster target.
func (c *controller) resumeFollowUp() {
	c.pendingMu.Lock()
	p, ok := c.loadPendingLocked()
	c.pendingMu.Unlock()
	if !ok {
		return
	}
	if t := c.a.currentTarget(); !c.hasAfterAll() || t == nil || t.ID != p.Revision.ID {
		c.donePending(p.Revision.ID) // a newer target: its own follow-up, if any, is the one that counts
		return
	}
	path, err := c.followUp(p.Kind, p.Revision, p.AllowMissing)
	if err != nil {
		c.a.log.Warn("resume the follow-up cut short by the last stop", "revision", p.Revision.Seq, "err", err)
		return
	}
	c.a.log.Info("deploy.after_all had not run for the target when the agent stopped: following it up again",
		"revision", p.Revision.Seq, "follow_up", path)
}

// supersedeFollowUp cancels the follow-up in progress, if any, with
// cause; next, when set, cancels the one starting now.
func (c *controller) supersedeFollowUp(cause error, next context.CancelCauseFunc) {
	c.mu.Lock()
	prev := c.followCancel
	c.followCancel = next
	c.mu.Unlock()
	if prev != nil {
		prev(cause)
	}
}

// PublishRevision implements api.Node: publish, and follow up with
// deploy.after_all once every web node serves a new target.
func (a *Agent) PublishRevision(ctx context.Context, req api.PublishRequest) (api.PublishResponse, error) {
	c, err := a.controllerFor("publish")
	if err != nil {
		return api.PublishResponse{}, err
	}
	before := c.targetID()
	rev, created, err := c.publish(ctx, req.Message)
	if err != nil {
		return api.PublishResponse{}, err
	}
	res := api.PublishResponse{Revision: rev, Unchanged: !created}
	if rev.ID != before {
		res.FollowUp, err = c.followUp("publish", api.RevRef{Seq: rev.Seq, ID: rev.ID}, req.AllowMissing)
	}
	return res, err
}

// Publish publishes the source tree on the controller, as the API does.
func (a *Agent) Publish(ctx context.Context, message string) (rev mirror.Revision, created bool, err error) {
	res, err := a.PublishRevision(ctx, api.PublishRequest{Message: message})
	return res.Revision, !res.Unchanged, err
}
