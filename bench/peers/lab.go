package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/testutil/netlab"
)

// bench is the lab of one benchmark: the namespaces with their shaped
// links, the controller running, and the web nodes started per run.
type bench struct {
	opts       options
	root, src  string
	log        *slog.Logger
	lab        *netlab.Lab
	key, token string // files
	procs      map[string]*exec.Cmd
	runs       int // runs so far: each has fresh data directories
}

const (
	controller = "controller"
	tokenValue = "bench-peers-token"
	// Every agent listens on the same ports inside its own namespace.
	gossipPort, clusterPort, localAPI = 7946, 7947, "127.0.0.1:7948"
)

func webName(i int) string { return fmt.Sprintf("web-%d", i+1) }

// newBench builds the lab, shapes every link and starts the controller.
func newBench(ctx context.Context, o options, root, src string, log *slog.Logger) (_ *bench, err error) {
	b := &bench{opts: o, root: root, src: src, log: log, procs: map[string]*exec.Cmd{}}
	names := []string{controller}
	for i := range o.web {
		names = append(names, webName(i))
	}
	if b.lab, err = netlab.New(names...); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	for _, n := range names {
		if err := b.shape(ctx, n); err != nil {
			return nil, err
		}
	}
	if b.key, b.token, err = benchenv.WriteSecrets(root, 9, tokenValue); err != nil {
		return nil, err
	}
	if err := b.writeConfig(controller); err != nil {
		return nil, err
	}
	return b, b.start(controller)
}

// shape limits node's link both ways to the rate: what it sends (its
// eth0) and what it receives (its port on the hub's bridge).
func (b *bench) shape(ctx context.Context, node string) error {
	if err := b.lab.LimitRate(node, b.opts.rate); err != nil {
		return err
	}
	port, err := b.hubPort(ctx, node)
	if err != nil {
		return err
	}
	return runCmd(ctx, "ip", "netns", "exec", b.lab.Hub, "tc", "qdisc", "replace", "dev", port, "root",
		"tbf", "rate", b.opts.rate, "burst", "256kb", "latency", "200ms")
}

// hubPort names node's port on the hub's bridge: the peer of its eth0.
func (b *bench) hubPort(ctx context.Context, node string) (string, error) {
	out, err := b.lab.Command(node, "cat", "/sys/class/net/eth0/iflink").Output()
	if err != nil {
		return "", fmt.Errorf("peer of %s's eth0: %w", node, err)
	}
	index := strings.TrimSpace(string(out))
	links, err := exec.CommandContext(ctx, "ip", "-n", b.lab.Hub, "-o", "link", "show").Output()
	if err != nil {
		return "", fmt.Errorf("hub links: %w", err)
	}
	for line := range strings.Lines(string(links)) {
		num, rest, _ := strings.Cut(line, ": ")
		if num == index {
			name, _, _ := strings.Cut(rest, "@")
			return strings.TrimSuffix(name, ":"), nil
		}
	}
	return "", fmt.Errorf("no hub port with index %s for %s", index, node)
}

// dir is where node keeps its data in the current run (the controller
// keeps its own throughout).
func (b *bench) dir(node string) string {
	if node == controller {
		return filepath.Join(b.root, controller)
	}
	return filepath.Join(b.root, fmt.Sprintf("run%d", b.runs), node)
}

func (b *bench) target(node string) string { return filepath.Join(b.dir(node), "www", "moodle") }

func (b *bench) configFile(node string) string { return filepath.Join(b.dir(node), "nodeagent.yaml") }

// writeConfig writes node's config: gossip and the cluster API on its lab
// address, the local API on its namespace's loopback, the defaults for the
// rest (mirror.peer_upload included).
func (b *bench) writeConfig(node string) error {
	addr := b.lab.Addr(node)
	var c strings.Builder
	fmt.Fprintf(&c, "node: %s\ndata_dir: %s\n", node, filepath.Join(b.dir(node), "data"))
	if b.opts.debug {
		c.WriteString("log: {level: debug}\n")
	}
	fmt.Fprintf(&c, "gossip: {bind: \"%s:%d\", key_file: %s", addr, gossipPort, b.key)
	if node == controller {
		fmt.Fprintf(&c, "}\nrole: controller\nmirror: {source: %s}\ndeploy: {run_as: %s}\n", b.src, benchenv.RunAs())
	} else {
		fmt.Fprintf(&c, ", join: [\"%s:%d\"]}\nrole: web\nmirror: {target: %s}\n", b.lab.Addr(controller), gossipPort, b.target(node))
	}
	fmt.Fprintf(&c, "cluster: {listen: \"%s:%d\"}\napi: {listen: \"%s\", token_file: %s}\n", addr, clusterPort, localAPI, b.token)
	if err := os.MkdirAll(b.dir(node), 0o755); err != nil {
		return err
	}
	return os.WriteFile(b.configFile(node), []byte(c.String()), 0o644)
}

// start runs `nodeagent run` for node inside its namespace.
func (b *bench) start(node string) error {
	logf, err := os.OpenFile(filepath.Join(b.dir(node), "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := b.lab.Command(node, b.opts.bin, "run", "-config", b.configFile(node))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", node, err)
	}
	b.procs[node] = cmd
	return nil
}

// close stops every agent and removes the lab.
func (b *bench) close() {
	var nodes []string
	for node := range b.procs {
		nodes = append(nodes, node)
	}
	b.stopAll(nodes)
	if err := b.lab.Close(); err != nil {
		b.log.Warn("remove the lab", "err", err)
	}
}

// cli runs a CLI command against node's local API inside its namespace.
func (b *bench) cli(ctx context.Context, node string, args ...string) ([]byte, error) {
	full := append([]string{args[0], "-addr", "http://" + localAPI, "-token-file", b.token, "-config", "/nonexistent"}, args[1:]...)
	cmd := b.lab.Command(node, b.opts.bin, full...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s on %s: %w: %s", args[0], node, err, strings.TrimSpace(stderr.String()))
	}
	return out, ctx.Err()
}

// publish publishes the tree on the controller, retrying while it starts.
func (b *bench) publish(ctx context.Context) error {
	return benchenv.Poll(ctx, time.Minute, 250*time.Millisecond, func() error {
		_, err := b.cli(ctx, controller, "publish", "-m", "bench")
		return err
	})
}

// status reads node's /v1/status with the CLI inside its namespace (not
// with netlab's DialContext: its thread ends, and with it, as
// Pdeathsig says, the agents that thread started).
func (b *bench) status(ctx context.Context, node string) (api.Status, error) {
	var st struct {
		Node api.Status `json:"node"`
	}
	out, err := b.cli(ctx, node, "status", "-json")
	if err != nil {
		return st.Node, err
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st.Node, fmt.Errorf("status of %s: %w", node, err)
	}
	return st.Node, nil
}

// awaitGone waits until the controller sees no web node alive.
func (b *bench) awaitGone(ctx context.Context) error {
	return benchenv.Poll(ctx, time.Minute, 250*time.Millisecond, func() error {
		out, err := b.cli(ctx, controller, "status", "-json")
		if err != nil {
			return err
		}
		var st struct {
			Members []api.Member `json:"members"`
		}
		if err := json.Unmarshal(out, &st); err != nil {
			return fmt.Errorf("status of %s: %w", controller, err)
		}
		for _, m := range st.Members {
			if m.Name != controller && m.State == "alive" {
				return fmt.Errorf("%s still alive in gossip after its run", m.Name)
			}
		}
		return nil
	})
}

// txBytes is what node has sent on its link so far.
func (b *bench) txBytes(ctx context.Context, node string) (int64, error) {
	out, err := exec.CommandContext(ctx, "ip", "-n", b.lab.Node(node).NS, "-s", "-j", "link", "show", "eth0").Output()
	if err != nil {
		return 0, fmt.Errorf("link stats of %s: %w", node, err)
	}
	var links []struct {
		Stats struct {
			TX struct {
				Bytes int64 `json:"bytes"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("link stats of %s: %v: %s", node, err, out)
	}
	return links[0].Stats.TX.Bytes, nil
}

func runCmd(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// cpuTime is the CPU time the running agents used so far.
func (b *bench) cpuTime() time.Duration {
	var total time.Duration
	for _, cmd := range b.procs {
		if t, err := benchenv.CPUTime(cmd.Process.Pid); err == nil {
			total += t
		}
	}
	return total
}

// machineBusy returns the machine's busy and total CPU ticks so far
// (/proc/stat), to tell whether the CPU was the bottleneck.
func machineBusy() (busy, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}
