package agent

import (
	"context"
	"fmt"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/procedure"
)

// deployData is what a deploy (or the follow-up of a publish or a
// rollback) records besides its steps.
type deployData struct {
	Kind     string // deploy, publish, rollback
	Request  api.DeployRequest
	Revision *api.RevRef // once published
}

// defaultUpgradeMessage is the maintenance pages' text during a deploy
// that names none.
const defaultUpgradeMessage = "This site is being upgraded and will be back shortly."

// deploySteps is the documented upgrade procedure: site maintenance on,
// publish, wait for the web nodes, the command with Moodle held,
// maintenance off. The revision's message never reaches the public page.
func (c *controller) deploySteps(req api.DeployRequest) []procedure.Step[deployData] {
	type step = procedure.Step[deployData]
	type run = procedure.Run[deployData]
	message := req.MaintenanceMessage
	if message == "" {
		message = defaultUpgradeMessage
	}
	site := &siteMaintenance{c: c, kind: "deploy", message: message}
	var steps []step
	if req.Maintenance {
		steps = append(steps, step{Name: "maintenance on", Do: func(ctx context.Context, r *run) (string, error) {
			site.reason = deployReason(r.ID(), req.Message)
			return site.on(ctx)
		}})
	}
	steps = append(steps,
		step{Name: "publish", Do: func(ctx context.Context, r *run) (string, error) {
			rev, created, err := c.publish(ctx, req.Message)
			if err != nil {
				return "", err
			}
			r.Update(func(d *deployData) { d.Revision = &api.RevRef{Seq: rev.Seq, ID: rev.ID} })
			return publishDetail(rev, created), nil
		}},
		step{Name: "wait for web nodes", Do: func(ctx context.Context, r *run) (string, error) {
			rev := r.Data().Revision
			return c.waitRevision(ctx, rev.ID, fmt.Sprintf("serve revision %d", rev.Seq), req.AllowMissing)
		}},
	)
	if req.Run != "" {
		steps = append(steps, step{Name: "run", Do: func(ctx context.Context, r *run) (string, error) {
			site.reason = deployReason(r.ID(), req.Message)
			return c.runHeld(ctx, req.Run, site)
		}})
	}
	if c.hasAfterAll() {
		steps = append(steps, procedure.Simple[deployData]("after all", c.afterAll))
	}
	if req.Maintenance {
		steps = append(steps, procedure.Simple[deployData]("maintenance off", site.off))
	}
	return steps
}

// deployReason says why maintenance is on during a deploy, for operators.
func deployReason(id, message string) string {
	if message == "" {
		return "deploy " + id
	}
	return "deploy " + id + ": " + message
}

// publishDetail is the detail line of a publish step.
func publishDetail(rev mirror.Revision, created bool) string {
	if !created {
		return fmt.Sprintf("revision %d (%s) unchanged: the source tree is what it holds", rev.Seq, rev.ID[:12])
	}
	return fmt.Sprintf("revision %d (%s), %d files changed", rev.Seq, rev.ID[:12], rev.Changed)
}

// StartDeploy implements api.Node: it starts the documented upgrade
// procedure in the background and returns its record.
func (a *Agent) StartDeploy(req api.DeployRequest) (api.Deploy, error) {
	c, err := a.controllerFor("deploy")
	if err != nil {
		return api.Deploy{}, err
	}
	rec, err := c.deploys.Start(a.ctx, deployData{Kind: "deploy", Request: req}, c.deploySteps(req), func(procedure.Record[deployData]) string {
		if req.Maintenance {
			return " (maintenance stays on)"
		}
		return ""
	})
	if err != nil {
		return api.Deploy{}, err
	}
	c.supersedeFollowUp(fmt.Errorf("superseded by deploy %s", rec.ID), nil)
	return deployRecord(rec), nil
}

// Deploy implements api.Node.
func (a *Agent) Deploy(id string) (api.Deploy, error) {
	c, ok := a.role.(*controller)
	if !ok {
		return api.Deploy{}, errs.NotFound("no deploy %q: deploys run on the controller", id)
	}
	rec, err := c.deploys.Get(id)
	if err != nil {
		if rec, err = c.followUps.Get(id); err != nil {
			return api.Deploy{}, errs.NotFound("no deploy %q", id)
		}
	}
	return deployRecord(rec), nil
}

func deployRecord(rec procedure.Record[deployData]) api.Deploy {
	return api.Deploy{
		ID: rec.ID, Kind: rec.Data.Kind, Status: rec.Status, Request: rec.Data.Request, Started: rec.Started, Finished: rec.Finished,
		Seconds: rec.Seconds, Revision: rec.Data.Revision, Steps: rec.Steps, Error: rec.Error,
	}
}
