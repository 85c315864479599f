package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Inject runs the fault of s and ends it; checks made in the middle of it
// (a deploy's success) report to k. An error is a failure of the harness,
// not of the cluster.
func (c *Cluster) Inject(ctx context.Context, s Scenario, k *Checker) error {
	r := s.rand()
	switch s.Kind {
	case Restart:
		return c.restart(ctx, s, r, k)
	case Partition:
		return c.partition(ctx, s)
	case OneWay:
		return c.oneWay(ctx, s)
	case LossDelay:
		return c.lossDelay(ctx, s, k)
	case PublishKill:
		return c.publishKill(ctx, r)
	case DiskFull:
		return c.diskFull(ctx, s)
	case DeployPartition:
		return c.deployPartition(ctx, s, k)
	}
	return fmt.Errorf("unknown fault %q", s.Kind)
}

// pause is a random pause of up to max, from the scenario's generator.
func pause(ctx context.Context, r *rand.Rand, max time.Duration) error {
	return sleep(ctx, time.Duration(r.Int64N(int64(max)+1)))
}

// restart stops s.Nodes with s.Signal and starts them again: alone or
// together (all stopped, then all started), or rolling (one at a time,
// each back in service within 10 s before the next). A publish may happen
// while web nodes are down.
func (c *Cluster) restart(ctx context.Context, s Scenario, r *rand.Rand, k *Checker) error {
	if s.Mode == Rolling {
		for _, n := range s.Nodes {
			if err := c.restartOne(ctx, n, s.Signal, r); err != nil {
				return err
			}
			if _, err := c.WaitServing(ctx, 10*time.Second); err != nil {
				k.Violate("rolling restart, after %s: %v", n, err)
			}
		}
		return nil
	}
	for _, n := range s.Nodes {
		if err := c.Signal(n, s.Signal); err != nil {
			return err
		}
	}
	for _, n := range s.Nodes {
		if err := c.WaitExit(n, 20*time.Second); err != nil {
			k.Violate("graceful stop: %v", err)
			c.Stop(n, syscall.SIGKILL)
		}
	}
	if !slices.Contains(s.Nodes, Controller) && r.IntN(2) == 0 {
		if _, err := c.Publish(ctx); err != nil {
			return err
		}
	}
	if err := pause(ctx, r, 2*time.Second); err != nil {
		return err
	}
	for _, n := range s.Nodes {
		if err := c.StartAgent(n); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) restartOne(ctx context.Context, n string, sig syscall.Signal, r *rand.Rand) error {
	if err := c.Stop(n, sig); err != nil {
		return err
	}
	if err := pause(ctx, r, time.Second); err != nil {
		return err
	}
	return c.StartAgent(n)
}

// partition cuts s.Nodes[0] off, publishes, and heals after s.For.
func (c *Cluster) partition(ctx context.Context, s Scenario) error {
	n := s.Nodes[0]
	if err := c.lab.Cut(n); err != nil {
		return err
	}
	defer c.lab.Heal(n)
	if err := c.publishDuring(ctx); err != nil {
		return err
	}
	if err := sleep(ctx, s.For); err != nil {
		return err
	}
	return c.lab.Heal(n)
}

// publishDuring publishes in the middle of a fault; the controller may be
// the node cut off (the publish then reaches no one until the end).
func (c *Cluster) publishDuring(ctx context.Context) error {
	_, err := c.Publish(ctx)
	return err
}

// oneWay makes s.Nodes[0] drop what s.Nodes[1] sends, publishes, and ends
// after s.For.
func (c *Cluster) oneWay(ctx context.Context, s Scenario) error {
	if err := c.lab.Block(s.Nodes[0], s.Nodes[1]); err != nil {
		return err
	}
	defer c.lab.Unblock(s.Nodes[0], s.Nodes[1])
	if err := c.publishDuring(ctx); err != nil {
		return err
	}
	if err := sleep(ctx, s.For); err != nil {
		return err
	}
	return c.lab.Unblock(s.Nodes[0], s.Nodes[1])
}

// lossDelay loses 10% of what s.Nodes send and delays the rest by 100 ms,
// for s.For, with a deploy in the middle.
func (c *Cluster) lossDelay(ctx context.Context, s Scenario, k *Checker) error {
	for _, n := range s.Nodes {
		if err := c.lab.Impair(n, 0.10, 100*time.Millisecond); err != nil {
			return err
		}
		defer c.lab.Unimpair(n)
	}
	end := time.Now().Add(s.For)
	dctx, cancel := context.WithDeadline(ctx, end.Add(time.Minute))
	defer cancel()
	if _, err := c.Deploy(dctx, k); err != nil {
		return err
	}
	if err := sleep(ctx, time.Until(end)); err != nil {
		return err
	}
	for _, n := range s.Nodes {
		if err := c.lab.Unimpair(n); err != nil {
			return err
		}
	}
	return nil
}

// publishKill kills the controller with SIGKILL at a random moment of a
// publish of a large change (before, during or just after), and starts it
// again.
func (c *Cluster) publishKill(ctx context.Context, r *rand.Rand) error {
	n := c.change(c.opts.Files / 2)
	done := make(chan error, 1)
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	go func() {
		_, err := c.publish(pctx, fmt.Sprintf("faults publish %d (killed)", n))
		done <- err
	}()
	if err := pause(ctx, r, 150*time.Millisecond); err != nil {
		return err
	}
	if err := c.Stop(Controller, syscall.SIGKILL); err != nil {
		return err
	}
	c.opts.Logf("controller killed during a publish; the publish: %v", <-done)
	if err := pause(ctx, r, 2*time.Second); err != nil {
		return err
	}
	return c.StartAgent(Controller)
}

// diskFull fills s.Nodes[0]'s data_dir (a small tmpfs) but for 512 KiB,
// publishes 8 MiB of new content, lets the node fail its sync for s.For
// while the others converge, then frees the space.
func (c *Cluster) diskFull(ctx context.Context, s Scenario) error {
	n := s.Nodes[0]
	if n != c.opts.SmallDisk || n == "" {
		return fmt.Errorf("disk full: %s has no small disk", n)
	}
	filler := filepath.Join(c.dataDir(n), "filler")
	if err := fill(filler, 512<<10); err != nil {
		return err
	}
	defer os.Remove(filler)
	if err := c.SetBlobs(4, 2<<20, s.Seed); err != nil {
		return err
	}
	if _, err := c.Publish(ctx); err != nil {
		return err
	}
	if err := c.waitSyncError(ctx, n, "no space", 30*time.Second); err != nil {
		return err
	}
	if err := sleep(ctx, s.For); err != nil {
		return err
	}
	if err := os.Remove(filler); err != nil {
		return err
	}
	return c.SetBlobs(0, 0, 0) // the round's next publish drops them
}

// fill makes a file that leaves only spare bytes free on its filesystem.
func fill(p string, spare int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(p), &st); err != nil {
		return err
	}
	size := int64(st.Bavail)*st.Bsize - spare
	if size <= 0 {
		return nil
	}
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		return fmt.Errorf("fill %s: %w", p, err)
	}
	return nil
}

// waitSyncError waits until node reports a sync error containing want.
func (c *Cluster) waitSyncError(ctx context.Context, node, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := c.Status(ctx, node)
		if err == nil && strings.Contains(st.SyncError, want) {
			c.opts.Logf("%s: %s", node, st.SyncError)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s reported no sync error %q within %s (last: %+v %v)", node, want, timeout, st.SyncError, err)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// deployPartition cuts s.Nodes[0] off, runs a deploy, and heals after
// s.For (or when the deploy ends, if later).
func (c *Cluster) deployPartition(ctx context.Context, s Scenario, k *Checker) error {
	n := s.Nodes[0]
	if err := c.lab.Cut(n); err != nil {
		return err
	}
	defer c.lab.Heal(n)
	end := time.Now().Add(s.For)
	dctx, cancel := context.WithTimeout(ctx, s.For+2*time.Minute)
	defer cancel()
	if _, err := c.Deploy(dctx, k); err != nil {
		return err
	}
	if err := sleep(ctx, time.Until(end)); err != nil {
		return err
	}
	return c.lab.Heal(n)
}
