package agent

import (
	"context"
	"fmt"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/procedure"
)

// deployData is what a deploy records besides its steps.
type deployData struct {
	Request  api.DeployRequest
	Revision *api.RevRef // once published
}

// deploySteps is the documented upgrade procedure: maintenance on, publish,
// wait for the web nodes, the command, maintenance off.
func (c *controller) deploySteps(req api.DeployRequest) []procedure.Step[deployData] {
	type step = procedure.Step[deployData]
	simple := procedure.Simple[deployData]
	var steps []step
	if req.Maintenance {
		msg := req.Message
		if msg == "" {
			msg = "This site is being upgraded and will be back shortly."
		}
		steps = append(steps, simple("maintenance on", func(ctx context.Context) (string, error) {
			return c.maintenanceOn(ctx, msg)
		}))
	}
	steps = append(steps,
		step{Name: "publish", Do: func(ctx context.Context, run *procedure.Run[deployData]) (string, error) {
			rev, created, err := c.publish(ctx, req.Message)
			if err != nil {
				return "", err
			}
			run.Update(func(d *deployData) { d.Revision = &api.RevRef{Seq: rev.Seq, ID: rev.ID} })
			return fmt.Sprintf("revision %d (%s), %d files changed, new: %v", rev.Seq, rev.ID[:12], rev.Changed, created), nil
		}},
		step{Name: "wait for web nodes", Do: func(ctx context.Context, run *procedure.Run[deployData]) (string, error) {
			rev := run.Data().Revision
			return c.waitRevision(ctx, rev.ID, fmt.Sprintf("serve revision %d", rev.Seq), req.AllowMissing)
		}},
	)
	if req.Run != "" {
		steps = append(steps, simple("run", func(ctx context.Context) (string, error) { return c.runCommand(ctx, req.Run) }))
	}
	if req.Maintenance {
		steps = append(steps, simple("maintenance off", c.maintenanceOff))
	}
	return steps
}

// StartDeploy implements api.Node: it starts the documented upgrade
// procedure in the background and returns its record.
func (a *Agent) StartDeploy(req api.DeployRequest) (api.Deploy, error) {
	c, err := a.controllerFor("deploy")
	if err != nil {
		return api.Deploy{}, err
	}
	rec, err := c.deploys.Start(a.ctx, deployData{Request: req}, c.deploySteps(req), func(procedure.Record[deployData]) string {
		if req.Maintenance {
			return " (maintenance stays on)"
		}
		return ""
	})
	if err != nil {
		return api.Deploy{}, err
	}
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
		return api.Deploy{}, err
	}
	return deployRecord(rec), nil
}

func deployRecord(rec procedure.Record[deployData]) api.Deploy {
	return api.Deploy{
		ID: rec.ID, Status: rec.Status, Request: rec.Data.Request, Started: rec.Started, Finished: rec.Finished,
		Seconds: rec.Seconds, Revision: rec.Data.Revision, Steps: rec.Steps, Error: rec.Error,
	}
}
