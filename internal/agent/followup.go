package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/procedure"
)

// deploy.after_all runs once per cluster, on the controller, after every
// web node serves a new revision: as a step of a deploy and a database
// move, and as the follow-up of a plain publish or rollback.

// afterAll runs deploy.after_all in the source tree as deploy.run_as.
func (c *controller) afterAll(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	argv := c.a.cfg.Deploy.AfterAll
	out, err := c.runAs.Run(ctx, c.a.cfg.Mirror.Source, argv...)
	c.a.log.Info("deploy.after_all", "argv", argv, "user", c.runAs.Name, "err", err, "output", out)
	if err != nil {
		return "", fmt.Errorf("deploy.after_all %q as %s: %v; output: %s", strings.Join(argv, " "), c.runAs.Name, err, out)
	}
	return out, nil
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
	simple := procedure.Simple[deployData]
	steps := []procedure.Step[deployData]{
		simple("wait for web nodes", func(ctx context.Context) (string, error) {
			return c.waitRevision(ctx, rev.ID, fmt.Sprintf("serve revision %d", rev.Seq), allowMissing)
		}),
		simple("after all", c.afterAll),
	}
	rec, err := c.followUps.Start(ctx, deployData{Kind: kind, Revision: &rev}, steps, nil)
	if err != nil {
		cancel(err)
		return "", err
	}
	return "/v1/deploys/" + rec.ID, nil
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
