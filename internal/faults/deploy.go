package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Deploy changes the tree and runs `nodeagent deploy` on the controller
// (the CLI, as an operator does). When it reports success, every running
// web node must serve the new revision: its mirror.target must name it at
// that moment; k records a violation otherwise. It returns whether the
// deploy succeeded; a deploy cut short by ctx did not.
func (c *Cluster) Deploy(ctx context.Context, k *Checker) (bool, error) {
	n := c.change(5)
	cmd := c.lab.Command(Controller, c.opts.Binary, "deploy", "-addr", "http://127.0.0.1:7948",
		"-token-file", c.token, "-config", "/nonexistent", "-m", fmt.Sprintf("faults deploy %d", n))
	out, err := runContext(ctx, cmd)
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		c.opts.Logf("deploy %d: still running when the fault ended; stopped:\n%s", n, out)
		return false, nil
	case errors.As(err, &exit):
		c.opts.Logf("deploy %d failed (exit %d):\n%s", n, exit.ExitCode(), out)
		return false, nil
	case err != nil:
		return false, fmt.Errorf("deploy: %w", err)
	}
	c.opts.Logf("deploy %d succeeded:\n%s", n, out)
	c.checkDeployed(ctx, k, n, out)
	return true, nil
}

// checkDeployed checks, right after a deploy reported success, that every
// running web node's target names the cluster target.
func (c *Cluster) checkDeployed(ctx context.Context, k *Checker, n int, out string) {
	var served []string
	for _, w := range c.webs {
		if c.Running(w) {
			dest, _ := os.Readlink(c.Target(w))
			served = append(served, w+"="+filepath.Base(dest))
		}
	}
	st, err := c.Status(ctx, Controller)
	if err != nil || st.Revision.Target == nil {
		k.Violate("deploy %d reported success; the controller then has no target (%v)", n, err)
		return
	}
	var older []string
	for _, s := range served {
		if !strings.HasSuffix(s, "="+st.Revision.Target.ID) {
			older = append(older, s[:min(len(s), len("web-99=")+12)])
		}
	}
	if len(older) > 0 {
		k.Violate("deploy %d reported success while live web nodes serve another revision than %d (%.12s): %s\n%s",
			n, st.Revision.Target.Seq, st.Revision.Target.ID, strings.Join(older, ", "), out)
	}
}

// runContext runs cmd until it ends or ctx is done, and returns its
// combined output.
func runContext(ctx context.Context, cmd *exec.Cmd) (string, error) {
	var b strings.Builder
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return b.String(), err
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return b.String(), ctx.Err()
	}
}
