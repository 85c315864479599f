// Package faults is the fault-injection harness of nodeagent: one
// controller and several web agents as real processes (the built binary),
// each in its own network namespace on a bridge (internal/testutil/netlab),
// with a web server behind each web node's edge and a load balancer's
// namespace probing them. It injects faults — kills and graceful restarts,
// partitions, one-way partitions, packet loss and delay, the controller
// down during a publish, a full disk during a sync — while a Checker
// watches the invariants of DESIGN.md's Lifecycle and Durability sections.
//
// The tests of this package run a short fixed set; bench/faults runs
// randomized rounds from a seed and the restart benchmark. It owns only its
// work directory, namespaces, mounts and processes, all removed by Close.
package faults

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/testutil/netlab"
)

// Node names.
const (
	Controller = "controller"
	lbNode     = "lb" // the load balancer's namespace: probes /readyz and the edges
)

// Options describe a cluster.
type Options struct {
	Binary string // the nodeagent binary
	Dir    string // work directory (the caller removes it)
	Webs   int    // web nodes; default 4
	// SmallDisk is the web node whose data_dir is a small tmpfs (for the
	// full-disk fault); "" for none. DiskSize is its size (default 96m).
	SmallDisk, DiskSize string
	Files               int // files in the source tree; default 400
	Logf                func(format string, args ...any)
}

// Cluster is the running lab.
type Cluster struct {
	opts   Options
	lab    *netlab.Lab
	source string
	key    string
	token  string
	webs   []string
	agents map[string]*agent
	mounts []string

	local map[string]*http.Client // node's local API, from inside its namespace
	lb    *http.Client            // from the load balancer's namespace

	mu        sync.Mutex
	backends  []*backend
	publishes int
	manifests map[string]*mirror.Manifest // published, by id (immutable)
}

// Start builds the lab, writes the configs and the source tree, starts
// every agent and backend, and returns once every agent's API answers. On
// error everything started is stopped.
func Start(opts Options) (_ *Cluster, err error) {
	if opts.Webs == 0 {
		opts.Webs = 4
	}
	if opts.Files == 0 {
		opts.Files = 400
	}
	if opts.DiskSize == "" {
		opts.DiskSize = "96m"
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	c := &Cluster{opts: opts, agents: map[string]*agent{}, local: map[string]*http.Client{},
		source: filepath.Join(opts.Dir, "source")}
	for i := 1; i <= opts.Webs; i++ {
		c.webs = append(c.webs, fmt.Sprintf("web-%d", i))
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	if c.lab, err = netlab.New(append([]string{Controller, lbNode}, c.webs...)...); err != nil {
		return nil, err
	}
	if err := c.writeSecrets(); err != nil {
		return nil, err
	}
	if err := writeTree(c.source, opts.Files); err != nil {
		return nil, err
	}
	c.lb = c.client(lbNode, 3*time.Second)
	for _, n := range c.Nodes() {
		c.local[n] = c.client(n, 3*time.Second)
		if err := c.prepareNode(n); err != nil {
			return nil, err
		}
	}
	for _, n := range c.Nodes() {
		if err := c.StartAgent(n); err != nil {
			return nil, err
		}
	}
	return c, c.waitAPIs(time.Minute)
}

// waitAPIs waits until every agent's local API answers.
func (c *Cluster) waitAPIs(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range c.Nodes() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := c.Status(ctx, n)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not answer: %w\n%s", n, err, c.LogTail(n, 2000))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// Nodes returns the agents' names: the controller, then the web nodes.
func (c *Cluster) Nodes() []string { return append([]string{Controller}, c.webs...) }

// Webs returns the web nodes' names.
func (c *Cluster) Webs() []string { return append([]string(nil), c.webs...) }

// Lab is the network of the cluster.
func (c *Cluster) Lab() *netlab.Lab { return c.lab }

func (c *Cluster) writeSecrets() error {
	c.key = filepath.Join(c.opts.Dir, "gossip.key")
	c.token = filepath.Join(c.opts.Dir, "api.token")
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)) + "\n"
	if err := os.WriteFile(c.key, []byte(key), 0o600); err != nil {
		return err
	}
	return os.WriteFile(c.token, []byte("faults-token\n"), 0o600)
}

func (c *Cluster) dataDir(node string) string { return filepath.Join(c.opts.Dir, node, "data") }

// DataDir is node's data_dir.
func (c *Cluster) DataDir(node string) string { return c.dataDir(node) }

// Target is mirror.target of a web node.
func (c *Cluster) Target(node string) string {
	return filepath.Join(c.opts.Dir, node, "www", "moodle")
}

// prepareNode makes node's directories (a tmpfs data_dir for SmallDisk),
// config and, on web nodes, the backend.
func (c *Cluster) prepareNode(node string) error {
	if err := os.MkdirAll(c.dataDir(node), 0o755); err != nil {
		return err
	}
	if node == c.opts.SmallDisk {
		if err := run("mount", "-t", "tmpfs", "-o", "size="+c.opts.DiskSize, "tmpfs", c.dataDir(node)); err != nil {
			return err
		}
		c.mounts = append(c.mounts, c.dataDir(node))
	}
	if err := os.WriteFile(c.configPath(node), []byte(c.config(node)), 0o644); err != nil {
		return err
	}
	if node == Controller {
		return nil
	}
	b, err := startBackend(c.lab, node, c.Target(node))
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.backends = append(c.backends, b)
	c.mu.Unlock()
	return nil
}

func (c *Cluster) configPath(node string) string { return filepath.Join(c.opts.Dir, node+".yaml") }

// config is node's configuration: default LAN gossip timing, as an
// operator runs it; gossip and cluster API on the lab address, the local
// API on the namespace's loopback.
func (c *Cluster) config(node string) string {
	addr := c.lab.Addr(node)
	var b strings.Builder
	role := "web"
	if node == Controller {
		role = "controller"
	}
	// Paths quoted: a test's directory may hold YAML's flow characters.
	fmt.Fprintf(&b, "node: %s\nrole: %s\ndata_dir: %q\n", node, role, c.dataDir(node))
	fmt.Fprintf(&b, "gossip:\n  bind: %s:7946\n  key_file: %q\n", addr, c.key)
	if node != Controller {
		fmt.Fprintf(&b, "  join: [%s:7946]\n", c.lab.Addr(Controller))
	}
	fmt.Fprintf(&b, "cluster: {listen: %s:7947}\napi: {listen: 127.0.0.1:7948, token_file: %q}\n", addr, c.token)
	if node == Controller {
		fmt.Fprintf(&b, "mirror: {source: %q, keep: 10}\n", c.source)
	} else {
		fmt.Fprintf(&b, "mirror: {target: %q, keep: 3}\n", c.Target(node))
		b.WriteString("edge: {https: \":443\", http: \"\", backend: \"http://127.0.0.1:8080\", domains: [moodle.test]}\n")
	}
	return b.String()
}

// Close stops the agents and backends, unmounts and removes the lab.
func (c *Cluster) Close() error {
	var errs []error
	for _, a := range c.agents {
		errs = append(errs, a.stop(10*time.Second))
	}
	c.mu.Lock()
	backends := c.backends
	c.backends = nil
	c.mu.Unlock()
	for _, b := range backends {
		b.close()
	}
	for _, m := range c.mounts {
		errs = append(errs, run("umount", m))
	}
	if c.lab != nil {
		errs = append(errs, c.lab.Close())
	}
	return errors.Join(errs...)
}

// LogTail returns the last n bytes of node's log.
func (c *Cluster) LogTail(node string, n int) string {
	data, _ := os.ReadFile(filepath.Join(c.opts.Dir, node+".log"))
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sleep waits d or until ctx is done: the length of a fault, never a wait
// for state.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
