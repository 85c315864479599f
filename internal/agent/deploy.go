package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// Deploy barrier bounds: how long a deploy waits for live web nodes to apply
// maintenance or serve the new revision before it fails. Variables so tests
// can shorten them.
var (
	maintenanceBarrier = 2 * time.Minute
	revisionBarrier    = 10 * time.Minute
	runTimeout         = time.Hour
)

const keepDeploys = 20

// deployRuns holds the recent deploys of a controller, in memory.
type deployRuns struct {
	mu      sync.Mutex
	runs    map[string]*api.Deploy
	order   []string
	running bool
}

// StartDeploy implements api.Node: it starts the documented upgrade
// procedure in the background and returns its record.
func (a *Agent) StartDeploy(req api.DeployRequest) (api.Deploy, error) {
	if a.store == nil {
		return api.Deploy{}, errs.Conflict("deploy runs on the controller; this node is a web node")
	}
	d := &api.Deploy{ID: newDeployID(), Status: api.DeployRunning, Request: req, Started: time.Now().UTC()}
	if req.Maintenance {
		d.Steps = append(d.Steps, api.DeployStep{Name: "maintenance on"})
	}
	d.Steps = append(d.Steps, api.DeployStep{Name: "publish"}, api.DeployStep{Name: "wait for web nodes"})
	if req.Run != "" {
		d.Steps = append(d.Steps, api.DeployStep{Name: "run"})
	}
	if req.Maintenance {
		d.Steps = append(d.Steps, api.DeployStep{Name: "maintenance off"})
	}
	for i := range d.Steps {
		d.Steps[i].Status = api.DeployPending
	}
	r := &a.deploys
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return api.Deploy{}, errs.Conflict("a deploy is already running")
	}
	r.running = true
	if r.runs == nil {
		r.runs = map[string]*api.Deploy{}
	}
	r.runs[d.ID] = d
	r.order = append(r.order, d.ID)
	if len(r.order) > keepDeploys {
		delete(r.runs, r.order[0])
		r.order = r.order[1:]
	}
	snapshot := copyDeploy(d)
	r.mu.Unlock()

	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.runDeploy(d)
	}()
	return snapshot, nil
}

// Deploy implements api.Node.
func (a *Agent) Deploy(id string) (api.Deploy, error) {
	r := &a.deploys
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.runs[id]
	if !ok {
		return api.Deploy{}, errs.NotFound("no deploy %q", id)
	}
	return copyDeploy(d), nil
}

func copyDeploy(d *api.Deploy) api.Deploy {
	c := *d
	c.Steps = append([]api.DeployStep(nil), d.Steps...)
	return c
}

func newDeployID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return time.Now().UTC().Format("20060102-150405-") + hex.EncodeToString(b)
}

// runDeploy runs the steps in order; at the first failure it stops, leaving
// maintenance on.
func (a *Agent) runDeploy(d *api.Deploy) {
	ctx := a.ctx
	var err error
	for i := range d.Steps {
		a.deployStep(d, i, api.DeployRunning, "")
		var detail string
		detail, err = a.deployAction(ctx, d, d.Steps[i].Name)
		if err != nil {
			a.deployStep(d, i, api.DeployFailed, err.Error())
			break
		}
		a.deployStep(d, i, api.DeployOK, detail)
	}
	r := &a.deploys
	r.mu.Lock()
	now := time.Now().UTC()
	d.Finished = &now
	d.Seconds = now.Sub(d.Started).Seconds()
	d.Status = api.DeploySucceeded
	if err != nil {
		d.Status = api.DeployFailed
		d.Error = err.Error()
		if d.Request.Maintenance {
			d.Error += " (maintenance stays on)"
		}
	}
	r.running = false
	r.mu.Unlock()
	a.log.Info("deploy finished", "id", d.ID, "status", d.Status, "seconds", d.Seconds, "err", err)
}

func (a *Agent) deployStep(d *api.Deploy, i int, status, detail string) {
	r := &a.deploys
	r.mu.Lock()
	defer r.mu.Unlock()
	markStep(&d.Steps[i], status, detail)
}

// markStep records a step's new status and detail: its start when it
// begins running, its end and duration when it ends.
func markStep(s *api.DeployStep, status, detail string) {
	now := time.Now().UTC()
	s.Status, s.Detail = status, detail
	if status == api.DeployRunning {
		s.Started = &now
		return
	}
	s.Finished = &now
	s.Seconds = now.Sub(*s.Started).Seconds()
}

func (a *Agent) deployAction(ctx context.Context, d *api.Deploy, step string) (string, error) {
	switch step {
	case "maintenance on":
		msg := d.Request.Message
		if msg == "" {
			msg = "This site is being upgraded and will be back shortly."
		}
		m, err := a.SetMaintenance(api.MaintenanceRequest{Enabled: true, Message: msg})
		if err != nil {
			return "", err
		}
		return a.waitWebNodes(ctx, maintenanceBarrier, "apply maintenance", func(n gossip.NodeMeta) bool {
			return n.Maint == m.Clock
		})
	case "publish":
		rev, created, err := a.Publish(ctx, d.Request.Message)
		if err != nil {
			return "", err
		}
		a.deploys.mu.Lock()
		d.Revision = &api.RevRef{Seq: rev.Seq, ID: rev.ID}
		a.deploys.mu.Unlock()
		return fmt.Sprintf("revision %d (%s), %d files changed, new: %v", rev.Seq, rev.ID[:12], rev.Changed, created), nil
	case "wait for web nodes":
		id := d.Revision.ID
		return a.waitWebNodes(ctx, revisionBarrier, "serve revision "+fmt.Sprint(d.Revision.Seq), func(n gossip.NodeMeta) bool {
			return n.Rev == id
		})
	case "run":
		return a.runCommand(ctx, d.Request.Run)
	case "maintenance off":
		_, err := a.SetMaintenance(api.MaintenanceRequest{Enabled: false})
		return "", err
	}
	return "", fmt.Errorf("unknown step %q", step)
}

// waitWebNodes waits until every live web node's metadata satisfies ok.
// Nodes that are dead or left are not waited for and are named in the
// result; a live node that does not get there within limit fails the step.
// Metadata comes by gossip; a node still waiting after
// directAfter is also asked directly over the cluster API, every
// directEvery, because gossip can be slow to carry metadata while many
// nodes change theirs at once.
func (a *Agent) waitWebNodes(ctx context.Context, limit time.Duration, what string, ok func(gossip.NodeMeta) bool) (string, error) {
	ch, cancel := a.gossip.Changes()
	defer cancel()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	direct := newMetaProbes(a)
	defer direct.close()
	start := time.Now()
	for {
		var waiting []gossip.Member
		var gone, done []string
		for _, m := range a.gossip.Members() {
			if m.Meta.Role != roleWeb {
				continue
			}
			switch {
			case m.State != gossip.StateAlive:
				gone = append(gone, m.Name+" ("+m.State+")")
			case ok(m.Meta) || direct.satisfies(m.Name, ok):
				done = append(done, m.Name)
			default:
				waiting = append(waiting, m)
			}
		}
		if len(waiting) == 0 {
			detail := fmt.Sprintf("%d web nodes %s", len(done), what)
			if len(gone) > 0 {
				sort.Strings(gone)
				detail += "; not waited for: " + strings.Join(gone, ", ")
			}
			return detail, nil
		}
		if time.Since(start) >= directAfter {
			direct.ask(waiting)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-deadline.C:
			names := make([]string, len(waiting))
			for i, m := range waiting {
				names[i] = m.Name
			}
			sort.Strings(names)
			return "", fmt.Errorf("after %s, web nodes still did not %s: %s", limit, what, strings.Join(names, ", "))
		case <-ch:
		case <-tick.C:
		case ans := <-direct.answers:
			direct.record(ans)
		}
	}
}

// runCommand runs the deploy's command with sh -c in the source tree.
func (a *Agent) runCommand(ctx context.Context, command string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Dir = a.cfg.Mirror.Source
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	tail := lastBytes(out.String(), 2000)
	a.log.Info("deploy command", "command", command, "err", err, "output", tail)
	if err != nil {
		return "", fmt.Errorf("command %q: %v; output: %s", command, err, tail)
	}
	return tail, nil
}

func lastBytes(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
