package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// cluster is a set of `nodeagent run` processes configured by files under
// dir, with the default (LAN) gossip timing of a real deployment.
type cluster struct {
	bin, dir, src string
	key, token    string // files
	tokenValue    string
	ctl           *node
	webs          []*node
	hc            *http.Client
}

// node is one agent process.
type node struct {
	name, role string
	target     string // web: the mirror.target symlink
	localAPI   string // host:port, plain HTTP
	clusterAPI string // host:port, TLS
	gossip     string
	logFile    string
	cmd        *exec.Cmd
}

func newCluster(bin, dir string) (*cluster, error) {
	c := &cluster{bin: bin, dir: dir, src: filepath.Join(dir, "source"), tokenValue: "ops-bench-token",
		hc: &http.Client{Timeout: 10 * time.Second}}
	if err := os.MkdirAll(c.src, 0o755); err != nil {
		return nil, fmt.Errorf("cluster dir: %w", err)
	}
	var err error
	if c.key, c.token, err = benchenv.WriteSecrets(dir, 9, c.tokenValue); err != nil {
		return nil, err
	}
	return c, nil
}

// start writes the config of a node and starts it; the first node must be
// the controller.
func (c *cluster) start(name, role string) (*node, error) {
	ports, err := benchenv.FreePorts(3)
	if err != nil {
		return nil, err
	}
	n := &node{name: name, role: role, logFile: filepath.Join(c.dir, name+".log"),
		gossip:     fmt.Sprintf("127.0.0.1:%d", ports[0]),
		localAPI:   fmt.Sprintf("127.0.0.1:%d", ports[1]),
		clusterAPI: fmt.Sprintf("127.0.0.1:%d", ports[2])}
	var b strings.Builder
	fmt.Fprintf(&b, "node: %s\nrole: %s\ndata_dir: %s\nlog: {level: info}\n", name, role, filepath.Join(c.dir, name, "data"))
	fmt.Fprintf(&b, "gossip:\n  bind: %s\n  key_file: %s\n", n.gossip, c.key)
	if role == "controller" {
		c.ctl = n
		fmt.Fprintf(&b, "mirror:\n  source: %s\n  keep: 3\ndeploy: {run_as: %s}\n", c.src, benchenv.RunAs())
	} else {
		n.target = filepath.Join(c.dir, name, "www", "moodle")
		fmt.Fprintf(&b, "  join: [%s]\nmirror:\n  target: %s\n  keep: 3\n", c.ctl.gossip, n.target)
		c.webs = append(c.webs, n)
	}
	fmt.Fprintf(&b, "cluster: {listen: %s}\napi: {listen: %s, token_file: %s}\n", n.clusterAPI, n.localAPI, c.token)
	cfg := filepath.Join(c.dir, name+".yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		return nil, fmt.Errorf("config of %s: %w", name, err)
	}
	logf, err := os.Create(n.logFile)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", name, err)
	}
	defer logf.Close()
	n.cmd = exec.Command(c.bin, "run", "-config", cfg)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return n, nil
}

// stop ends every process: SIGTERM (a graceful leave), SIGKILL after 10s.
func (c *cluster) stop() {
	for _, n := range append(append([]*node{}, c.webs...), c.ctl) {
		if n == nil || n.cmd == nil || n.cmd.Process == nil {
			continue
		}
		n.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { n.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			n.cmd.Process.Kill()
			<-done
		}
	}
}

// cli runs a nodeagent command against the controller's local API.
func (c *cluster) cli(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{args[0], "-addr", "http://" + c.ctl.localAPI, "-token-file", c.token, "-config", "/nonexistent"}, args[1:]...)
	out, err := exec.CommandContext(ctx, c.bin, full...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("nodeagent %s: %w: %s", args[0], err, bytes.TrimSpace(out))
	}
	return out, nil
}

// get decodes a GET of the controller's local API.
func (c *cluster) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.ctl.localAPI+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.tokenValue)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// quiet reports what is missing for a quiet cluster: every web node alive
// and serving the target, and applying the current maintenance state.
func (c *cluster) quiet(ctx context.Context) error {
	var st api.Status
	if err := c.get(ctx, "/v1/status", &st); err != nil {
		return err
	}
	var ms api.MemberList
	if err := c.get(ctx, "/v1/members", &ms); err != nil {
		return err
	}
	if st.Revision.Target == nil {
		return errors.New("no target yet")
	}
	webs := 0
	for _, m := range ms.Members {
		if m.Role != "web" {
			continue
		}
		webs++
		switch {
		case m.State != gossip.StateAlive:
			return fmt.Errorf("%s is %s", m.Name, m.State)
		case m.Revision == nil || m.Revision.ID != st.Revision.Target.ID:
			return fmt.Errorf("%s serves %v, target %d", m.Name, m.Revision, st.Revision.Target.Seq)
		case m.Maintenance.Clock != st.Maintenance.Clock || m.Maintenance.Active != st.Maintenance.Active:
			return fmt.Errorf("%s applies maintenance clock %d, cluster %d", m.Name, m.Maintenance.Clock, st.Maintenance.Clock)
		}
	}
	if webs != len(c.webs) {
		return fmt.Errorf("%d of %d web nodes seen", webs, len(c.webs))
	}
	return nil
}

// poll calls f every interval until it returns nil, ctx ends or timeout;
// its error names what was awaited.
func poll(ctx context.Context, timeout, interval time.Duration, what string, f func() error) error {
	if err := benchenv.Poll(ctx, timeout, interval, f); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// writeTree writes n small PHP-like files under root.
func writeTree(root string, n int) error {
	for i := 0; i < n; i++ {
		name := filepath.Join(root, fmt.Sprintf("mod%02d/sub%d/file%04d.php", i%40, i%7, i))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		body := fmt.Sprintf("<?php\n// file %d\n%s", i, strings.Repeat("echo 'x';\n", i%300))
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}
