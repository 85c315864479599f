package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	sha256 "github.com/minio/sha256-simd"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// Checker watches, while faults run, the invariants that must hold at
// every moment:
//   - mirror.target of every web node names a complete release equal to
//     a published manifest (once it exists, it never goes away);
//   - /readyz never fails on every web node at once while one of them
//     serves (seen by the load balancer twice in a row, so that a probe
//     round is not read across two moments).
//
// Violations are collected for Stop.
type Checker struct {
	c      *Cluster
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	violations []string
	verified   map[string]string // node -> release id verified last
	allFailed  int               // consecutive probe rounds with every /readyz failing while one serves
}

// checkEvery is the pace of the continuous checks.
const checkEvery = 200 * time.Millisecond

// StartChecker starts the continuous checks.
func (c *Cluster) StartChecker() *Checker {
	ctx, cancel := context.WithCancel(context.Background())
	k := &Checker{c: c, cancel: cancel, done: make(chan struct{}), verified: map[string]string{}}
	go func() {
		defer close(k.done)
		t := time.NewTicker(checkEvery)
		defer t.Stop()
		for {
			k.round(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return k
}

// Stop ends the checks and returns the violations seen.
func (k *Checker) Stop() []string {
	k.cancel()
	<-k.done
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.violations...)
}

// Violations returns the violations seen so far.
func (k *Checker) Violations() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.violations...)
}

// Violate records a violation found outside the continuous checks.
func (k *Checker) Violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	k.c.opts.Logf("VIOLATION: %s", msg)
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, v := range k.violations {
		if v == msg {
			return
		}
	}
	k.violations = append(k.violations, msg)
}

func (k *Checker) round(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range k.c.webs {
		wg.Go(func() {
			if err := k.c.checkTarget(n, k); err != nil {
				k.Violate("%s", err)
			}
		})
	}
	wg.Go(func() { k.checkReadiness(ctx) })
	wg.Wait()
}

// checkTarget verifies the release node's target names, once per release.
func (c *Cluster) checkTarget(node string, k *Checker) error {
	target := c.Target(node)
	dest, err := os.Readlink(target)
	if errors.Is(err, fs.ErrNotExist) {
		k.mu.Lock()
		had := k.verified[node] != ""
		k.mu.Unlock()
		if had {
			return fmt.Errorf("%s: mirror.target %s vanished", node, target)
		}
		return nil // before the first sync
	}
	if err != nil {
		return fmt.Errorf("%s: mirror.target: %w", node, err)
	}
	id := filepath.Base(dest)
	if _, err := os.Stat(dest); err != nil {
		return fmt.Errorf("%s: mirror.target names %s, which is not there: %v", node, dest, err)
	}
	k.mu.Lock()
	done := k.verified[node] == id
	k.mu.Unlock()
	if done {
		return nil
	}
	m, err := c.Manifest(id)
	if err != nil {
		return fmt.Errorf("%s: mirror.target names %s: %w", node, id, err)
	}
	if err := compareRelease(dest, m); err != nil {
		if again, _ := os.Readlink(target); again != dest {
			return nil // switched meanwhile: the next round checks the new one
		}
		return fmt.Errorf("%s: mirror.target names release %.12s, which is not its manifest: %w", node, id, err)
	}
	k.mu.Lock()
	k.verified[node] = id
	k.mu.Unlock()
	return nil
}

// VerifyTarget checks that node's mirror.target names a release that is
// exactly its published manifest.
func (c *Cluster) VerifyTarget(node string) error {
	dest, err := os.Readlink(c.Target(node))
	if err != nil {
		return err
	}
	m, err := c.Manifest(filepath.Base(dest))
	if err != nil {
		return err
	}
	return compareRelease(dest, m)
}

// Manifest returns the published manifest of id, read from the
// controller's store (and kept: it is immutable).
func (c *Cluster) Manifest(id string) (*mirror.Manifest, error) {
	c.mu.Lock()
	if c.manifests == nil {
		c.manifests = map[string]*mirror.Manifest{}
	}
	m := c.manifests[id]
	c.mu.Unlock()
	if m != nil {
		return m, nil
	}
	data, err := os.ReadFile(filepath.Join(c.dataDir(Controller), "mirror", "manifests", id+".json"))
	if err != nil {
		return nil, fmt.Errorf("no published manifest %.12s: %w", id, err)
	}
	if m, err = mirror.DecodeManifest(data, id); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.manifests[id] = m
	c.mu.Unlock()
	return m, nil
}

// compareRelease checks the tree at dir against m: the same paths, types,
// symlink targets, file sizes and SHA-256, and read/execute bits (write
// bits are the agent's to drop).
func compareRelease(dir string, m *mirror.Manifest) error {
	seen := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		e, ok := m.Lookup(filepath.ToSlash(rel))
		if !ok {
			return fmt.Errorf("%s is not in the manifest", rel)
		}
		seen++
		return compareEntry(p, d, e)
	})
	if err != nil {
		return err
	}
	if seen != len(m.Entries) {
		return fmt.Errorf("%d of the manifest's %d entries are there", seen, len(m.Entries))
	}
	return nil
}

func compareEntry(p string, d fs.DirEntry, e mirror.Entry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	switch {
	case d.Type()&fs.ModeSymlink != 0:
		if t, err := os.Readlink(p); err != nil || e.Type != mirror.TypeSymlink || t != e.Target {
			return fmt.Errorf("%s: symlink to %q, manifest %s %q", e.Path, t, e.Type, e.Target)
		}
		return nil
	case d.IsDir():
		if e.Type != mirror.TypeDir {
			return fmt.Errorf("%s: a directory, manifest %s", e.Path, e.Type)
		}
	case e.Type != mirror.TypeFile:
		return fmt.Errorf("%s: a file, manifest %s", e.Path, e.Type)
	case info.Size() != e.Size:
		return fmt.Errorf("%s: %d bytes, manifest %d", e.Path, info.Size(), e.Size)
	default:
		if h, err := hashFile(p); err != nil || h != e.SHA256 {
			return fmt.Errorf("%s: content differs from the manifest (%v)", e.Path, err)
		}
	}
	if got, want := uint32(info.Mode().Perm())&0o555, e.Mode&0o555; got != want {
		return fmt.Errorf("%s: mode %o, manifest %o", e.Path, info.Mode().Perm(), e.Mode)
	}
	return nil
}

func hashFile(p string) (mirror.Hash, error) {
	f, err := os.Open(p)
	if err != nil {
		return mirror.Hash{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return mirror.Hash{}, err
	}
	return mirror.Hash(h.Sum(nil)), nil
}

// checkReadiness probes every web node's /readyz and edge at once from
// the load balancer.
func (k *Checker) checkReadiness(ctx context.Context) {
	type probe struct {
		ready  bool
		body   string
		serves bool
	}
	probes := make([]probe, len(k.c.webs))
	var wg sync.WaitGroup
	for i, n := range k.c.webs {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			probes[i].ready, probes[i].body = k.c.Ready(pctx, n)
			_, probes[i].serves = k.c.Served(pctx, n)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	allFail, anyServes := true, false
	var detail []string
	for i, p := range probes {
		allFail = allFail && !p.ready
		anyServes = anyServes || p.serves
		detail = append(detail, fmt.Sprintf("%s serves=%v readyz: %s", k.c.webs[i], p.serves, failedChecks(p.body)))
	}
	k.mu.Lock()
	if allFail && anyServes {
		k.allFailed++
	} else {
		k.allFailed = 0
	}
	twice := k.allFailed == 2
	k.mu.Unlock()
	if twice {
		k.Violate("/readyz fails on every web node while one serves: %s", strings.Join(detail, "; "))
	}
}

// failedChecks summarizes a /readyz answer: its failing checks, or the
// answer itself when it is not a health document (an error).
func failedChecks(body string) string {
	var h api.Health
	if err := json.Unmarshal([]byte(body), &h); err != nil || h.Status == "" {
		return fmt.Sprintf("%.200s", strings.TrimSpace(body))
	}
	var out []string
	for name, cs := range h.Checks {
		for _, c := range cs {
			if c.Status == api.StatusFail {
				out = append(out, fmt.Sprintf("%s (%s)", name, c.Output))
			}
		}
	}
	slices.Sort(out)
	return h.Status + " " + strings.Join(out, ", ")
}
