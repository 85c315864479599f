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
)

// cluster is a set of nodeagent processes, configured by files under dir,
// with one gossip key and one API token.
type cluster struct {
	bin, dir, src string
	key, token    string // files
	tokenValue    string
	ctl           *agentProc
	nodes         []*agentProc
	hc            *http.Client
}

// agentProc is one `nodeagent run` process.
type agentProc struct {
	name, role string
	dataDir    string
	target     string // web: the mirror.target symlink
	localAPI   string // host:port
	gossip     string // host:port
	logFile    string
	cmd        *exec.Cmd
}

func newCluster(bin, dir, src string) (*cluster, error) {
	c := &cluster{bin: bin, dir: dir, src: src, tokenValue: "bench-token",
		hc: &http.Client{Timeout: 10 * time.Second}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster dir: %w", err)
	}
	var err error
	if c.key, c.token, err = benchenv.WriteSecrets(dir, 7, c.tokenValue); err != nil {
		return nil, err
	}
	return c, nil
}

// add writes the config of a node; the first node added must be the
// controller. Every node logs at debug level: the controller's request log
// counts the requests of a sync, the web nodes' log times its phases.
func (c *cluster) add(name, role string) (*agentProc, error) {
	p := &agentProc{name: name, role: role, dataDir: filepath.Join(c.dir, name, "data"),
		logFile: filepath.Join(c.dir, name+".log")}
	ports, err := benchenv.FreePorts(3)
	if err != nil {
		return nil, err
	}
	p.gossip = fmt.Sprintf("127.0.0.1:%d", ports[0])
	p.localAPI = fmt.Sprintf("127.0.0.1:%d", ports[1])
	var b strings.Builder
	level := "debug"
	fmt.Fprintf(&b, "node: %s\nrole: %s\ndata_dir: %s\nlog: {level: %s}\n", name, role, p.dataDir, level)
	fmt.Fprintf(&b, "gossip:\n  bind: %s\n  key_file: %s\n", p.gossip, c.key)
	if role == "controller" {
		c.ctl = p
		fmt.Fprintf(&b, "mirror:\n  source: %s\n  keep: 3\ndeploy: {run_as: %s}\n", c.src, benchenv.RunAs())
	} else {
		if c.ctl == nil {
			return nil, errors.New("add the controller first")
		}
		p.target = filepath.Join(c.dir, name, "www", "moodle")
		fmt.Fprintf(&b, "  join: [%s]\nmirror:\n  target: %s\n  keep: 3\n", c.ctl.gossip, p.target)
	}
	fmt.Fprintf(&b, "cluster: {listen: 127.0.0.1:%d}\napi: {listen: %s, token_file: %s}\n", ports[2], p.localAPI, c.token)
	if err := os.WriteFile(c.configFile(p), []byte(b.String()), 0o644); err != nil {
		return nil, fmt.Errorf("config of %s: %w", name, err)
	}
	c.nodes = append(c.nodes, p)
	return p, nil
}

func (c *cluster) configFile(p *agentProc) string { return filepath.Join(c.dir, p.name+".yaml") }

// start runs the agent and waits until its local API answers.
func (c *cluster) start(ctx context.Context, p *agentProc) error {
	logf, err := os.OpenFile(p.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log of %s: %w", p.name, err)
	}
	defer logf.Close()
	cmd := exec.Command(c.bin, "run", "-config", c.configFile(p))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd = cmd
	return benchenv.Poll(ctx, 30*time.Second, 5*time.Millisecond, func() error {
		resp, err := c.hc.Get("http://" + p.localAPI + "/healthz")
		if err != nil {
			return fmt.Errorf("%s not answering: %w", p.name, err)
		}
		resp.Body.Close()
		return nil
	})
}

// stop ends every process: SIGTERM (a graceful leave), SIGKILL after 10 s.
func (c *cluster) stop() {
	for _, p := range c.nodes {
		benchenv.Stop(p.cmd)
		p.cmd = nil
	}
}

// joined waits until web node p sees the controller alive with its cluster
// API address.
func (c *cluster) joined(ctx context.Context, p *agentProc) error {
	return benchenv.Poll(ctx, 30*time.Second, 10*time.Millisecond, func() error {
		var body api.MemberList
		if err := c.getJSON(p, "/v1/members", &body); err != nil {
			return err
		}
		for _, m := range body.Members {
			if m.Name == c.ctl.name && m.State == "alive" && m.API != "" {
				return nil
			}
		}
		return fmt.Errorf("%s does not see %s yet", p.name, c.ctl.name)
	})
}

func (c *cluster) status(p *agentProc) (api.Status, error) {
	var st api.Status
	err := c.getJSON(p, "/v1/status", &st)
	return st, err
}

// synced waits until web node p has applied revision seq and is in sync.
func (c *cluster) synced(ctx context.Context, p *agentProc, seq uint64, timeout time.Duration) (api.Status, error) {
	var st api.Status
	err := benchenv.Poll(ctx, timeout, 5*time.Millisecond, func() error {
		var err error
		if st, err = c.status(p); err != nil {
			return err
		}
		if a := st.Revision.Applied; a == nil || a.Seq != seq || !st.Revision.InSync {
			return fmt.Errorf("%s not in sync at %d: %+v %s", p.name, seq, st.Revision, st.SyncError)
		}
		return nil
	})
	return st, err
}

// idle waits until web node p has no sync in progress, nor its warm spare
// being made.
func (c *cluster) idle(ctx context.Context, p *agentProc) error {
	return benchenv.Poll(ctx, 10*time.Minute, 10*time.Millisecond, func() error {
		st, err := c.status(p)
		if err != nil {
			return err
		}
		if st.Sync != nil && st.Sync.Phase != "idle" {
			return fmt.Errorf("%s still in sync phase %s", p.name, st.Sync.Phase)
		}
		return nil
	})
}

func (c *cluster) getJSON(p *agentProc, path string, v any) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+p.localAPI+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.tokenValue)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s of %s: %w", path, p.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s of %s: %s", path, p.name, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// publish runs `nodeagent publish -json` against the controller and returns
// its answer and the command's wall time.
func (c *cluster) publish(ctx context.Context, msg string) (api.PublishResponse, time.Duration, error) {
	var res api.PublishResponse
	cmd := exec.CommandContext(ctx, c.bin, "publish", "-addr", "http://"+c.ctl.localAPI,
		"-token-file", c.token, "-config", "/nonexistent", "-json", "-m", msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	wall := time.Since(start)
	if err != nil {
		return res, wall, fmt.Errorf("publish: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return res, wall, fmt.Errorf("publish output %q: %w", out, err)
	}
	if res.Unchanged {
		return res, wall, errors.New("publish: the tree did not change")
	}
	return res, wall, nil
}

// logSize returns the current size of p's log, to count lines written later.
func logSize(p *agentProc) int64 {
	fi, err := os.Stat(p.logFile)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// mirrorRequests counts the agent-to-agent mirror requests the controller
// logged after offset (its request log is at debug level).
func mirrorRequests(ctl *agentProc, offset int64) (int, error) {
	data, err := os.ReadFile(ctl.logFile)
	if err != nil {
		return 0, fmt.Errorf("controller log: %w", err)
	}
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	n := 0
	for _, line := range strings.Split(string(data[offset:]), "\n") {
		if strings.Contains(line, `msg="http request"`) && strings.Contains(line, "uri=/cluster/v1/mirror/") {
			n++
		}
	}
	return n, nil
}
