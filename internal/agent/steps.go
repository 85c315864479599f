package agent

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
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

// maintenanceOn turns maintenance on with message and waits until every
// live web node applies it.
func (c *controller) maintenanceOn(ctx context.Context, message string) (string, error) {
	m, err := c.a.SetMaintenance(api.MaintenanceRequest{Enabled: true, Message: message})
	if err != nil {
		return "", err
	}
	return c.a.waitWebNodes(ctx, maintenanceBarrier, "apply maintenance", func(n gossip.NodeMeta) bool {
		return n.Maint == m.Clock
	})
}

// maintenanceOff turns maintenance off.
func (c *controller) maintenanceOff(context.Context) (string, error) {
	_, err := c.a.SetMaintenance(api.MaintenanceRequest{Enabled: false})
	return "", err
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

// runCommand runs command with sh -c in the source tree.
func (c *controller) runCommand(ctx context.Context, command string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Dir = c.a.cfg.Mirror.Source
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	tail := lastBytes(out.String(), 2000)
	c.a.log.Info("deploy command", "command", command, "err", err, "output", tail)
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
