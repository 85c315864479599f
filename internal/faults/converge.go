package faults

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	sha256 "github.com/minio/sha256-simd"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// Serving returns nil when the whole cluster serves the cluster target:
// the controller names a target; every running web node has applied it,
// passes /readyz and serves the target's revFile through its edge to the
// load balancer; and the controller sees every running web node alive (so
// that the next publish reaches them).
func (c *Cluster) Serving(ctx context.Context) error {
	st, err := c.Status(ctx, Controller)
	if err != nil {
		return err
	}
	target := st.Revision.Target
	if target == nil {
		return errors.New("the controller has no target")
	}
	m, err := c.Manifest(target.ID)
	if err != nil {
		return err
	}
	want, ok := m.Lookup(revFile)
	if !ok {
		return fmt.Errorf("target %d has no %s", target.Seq, revFile)
	}
	members, err := c.Members(ctx, Controller)
	if err != nil {
		return err
	}
	var behind []string
	for _, n := range c.webs {
		if !c.Running(n) {
			continue
		}
		if err := c.nodeServes(ctx, n, target.ID, want); err != nil {
			behind = append(behind, fmt.Sprintf("%s: %v", n, err))
		}
		if s := members[n]; s != "alive" {
			behind = append(behind, fmt.Sprintf("the controller sees %s as %q", n, s))
		}
	}
	if len(behind) > 0 {
		return fmt.Errorf("target %d (%.12s): %s", target.Seq, target.ID, strings.Join(behind, "; "))
	}
	return nil
}

func (c *Cluster) nodeServes(ctx context.Context, node, id string, want mirror.Entry) error {
	st, err := c.Status(ctx, node)
	if err != nil {
		return err
	}
	if a := st.Revision.Applied; a == nil || a.ID != id {
		return fmt.Errorf("applied %v", a)
	}
	if ready, body := c.Ready(ctx, node); !ready {
		return fmt.Errorf("not ready: %.300s", strings.TrimSpace(body))
	}
	body, ok := c.Served(ctx, node)
	if !ok || mirror.Hash(sha256.Sum256([]byte(body))) != want.SHA256 {
		return fmt.Errorf("the edge serves %q", strings.TrimSpace(body))
	}
	return nil
}

// WaitServing polls Serving until it holds, and returns how long that
// took; after timeout it returns Serving's last error.
func (c *Cluster) WaitServing(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := c.Serving(pctx)
		cancel()
		if err == nil {
			return time.Since(start), nil
		}
		if ctx.Err() != nil {
			return time.Since(start), ctx.Err()
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("not every node serves the cluster target within %s: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Temps lists the temporary files of every node: names the agents give
// what they write before it is complete (".tmp-…", the partial release),
// outside the release trees.
func (c *Cluster) Temps() []string {
	var found []string
	for _, n := range c.Nodes() {
		root := c.dataDir(n)
		releases := filepath.Join(root, "mirror", "releases")
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			name := d.Name()
			if strings.HasPrefix(name, ".tmp-") || strings.HasPrefix(name, ".partial") || name == "partial.json" {
				found = append(found, p)
				if d.IsDir() {
					return filepath.SkipDir
				}
			}
			if d.IsDir() && filepath.Dir(p) == releases {
				return filepath.SkipDir // a release tree: the site's files
			}
			return nil
		})
		if n != Controller {
			links, _ := filepath.Glob(c.Target(n) + ".tmp-*")
			found = append(found, links...)
		}
	}
	return found
}

// WaitNoTemps polls Temps until it is empty, at most timeout.
func (c *Cluster) WaitNoTemps(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		t := c.Temps()
		if len(t) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("temporary files left after the next sync: %s", strings.Join(t, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
