package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// revFile is the file of the source tree that names each publish; web
// nodes serve it through their edge, so the load balancer sees which
// revision a node serves.
const revFile = "rev.txt"

// writeTree writes the source tree: n files of random sizes (up to 8 KiB)
// in nested directories, a symlink, an executable, and revFile.
func writeTree(root string, n int) error {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		p := filepath.Join(root, fmt.Sprintf("mod%02d/sub%d/file%04d.php", i%25, i%4, i))
		if err := writeFile(p, randomBytes(r, r.IntN(8<<10)), 0o644); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(root, "admin/cli/upgrade.php"), []byte("<?php // upgrade\n"), 0o755); err != nil {
		return err
	}
	if err := os.Symlink("../mod00", filepath.Join(root, "admin/mod")); err != nil {
		return err
	}
	return writeFile(filepath.Join(root, revFile), []byte("publish 0\n"), 0o644)
}

func writeFile(p string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".new"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, p) // a publish never reads a half-written file
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// change edits the source tree for the next publish: revFile and changed
// other files, chosen by a generator seeded with the publish's number.
func (c *Cluster) change(changed int) int {
	c.mu.Lock()
	c.publishes++
	n := c.publishes
	c.mu.Unlock()
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for range changed {
		i := r.IntN(c.opts.Files)
		p := filepath.Join(c.source, fmt.Sprintf("mod%02d/sub%d/file%04d.php", i%25, i%4, i))
		if err := writeFile(p, randomBytes(r, r.IntN(8<<10)), 0o644); err != nil {
			c.opts.Logf("change %s: %v", p, err)
		}
	}
	if err := writeFile(filepath.Join(c.source, revFile), fmt.Appendf(nil, "publish %d\n", n), 0o644); err != nil {
		c.opts.Logf("change %s: %v", revFile, err)
	}
	return n
}

// Publish changes a few files and publishes the tree.
func (c *Cluster) Publish(ctx context.Context) (mirror.Revision, error) {
	n := c.change(5)
	rev, err := c.publish(ctx, fmt.Sprintf("faults publish %d", n))
	if err == nil {
		c.opts.Logf("published seq %d (%.12s)", rev.Seq, rev.ID)
	}
	return rev, err
}

// blobDir holds the large files some faults add.
const blobDir = "blobs"

// SetBlobs replaces the large files of the source tree: n files of size bytes of
// fresh content (none when n is 0).
func (c *Cluster) SetBlobs(n, size int, seed uint64) error {
	dir := filepath.Join(c.source, blobDir)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(seed, 11))
	for i := range n {
		if err := writeFile(filepath.Join(dir, fmt.Sprintf("blob%02d.bin", i)), randomBytes(r, size), 0o644); err != nil {
			return err
		}
	}
	return nil
}
