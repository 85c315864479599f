// Command gossip benchmarks nodeagent's gossip at scale (issue 14's large
// clusters, issue 10's spread and healing targets): a controller and up to
// hundreds of web nodes as gossip.Gossip nodes with the real memberlist
// transport (UDP and TCP on 127.0.0.1, encrypted, the agent's LAN timing),
// hosted by worker processes (this program re-executed as `worker`): the
// controller alone in one, a web node that gets restarted alone in another,
// the other web nodes spread over -procs more. Each node behaves like its
// agent in gossip: a web node advertises in its metadata the maintenance and
// target registers it applied. It prints a markdown section:
//
//	go run ./bench/gossip [-nodes 50,100,200] [-procs 4] [-ops 20] [-restarts 5]
//
// Per cluster size, after the cluster formed and an idle window:
//   - ops rounds of a maintenance toggle, a new target and one web node's
//     metadata change, -gap apart: for each, the time until the last agent
//     knows (applied) it, and until the controller sees every web node's
//     advertised state in gossip alone (the deploy barrier also asks nodes
//     directly, which this leaves out);
//   - the traffic per node, idle and during the operations, from
//     memberlist's own counters (UDP packets and bytes, TCP bytes and
//     connections), and the CPU of the processes;
//   - restarts of the controller and of a web node, with SIGINT (graceful
//     leave) and SIGKILL, each restarted at once on the same address and
//     state file: the time from the signal until every agent sees every
//     member alive, the restarted one in its new life.
//
// The anchor (-anchor, default on) is the same operations on a cluster run
// with memberlist as it comes: its broadcast queues unpinned (the bug of
// internal/gossip/queuepin.go), RetransmitMult 4 and metadata by gossip
// alone (internal/gossip/metasend.go sends it directly too). The command
// owns only its temporary directory and the processes it starts; both are
// removed and stopped when it returns, on error and on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := runWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench/gossip worker:", err)
			os.Exit(1)
		}
		return
	}
	benchenv.Main("bench/gossip", run)
}

type options struct {
	nodes     []int
	procs     int
	ops       int
	anchorOps int
	restarts  int
	gap       time.Duration
	idle      time.Duration
	anchor    bool
	work      string
	keep      bool
	command   string
	settle    time.Duration
	// Tuning experiments (0: the agent's LAN timing).
	gossipInterval time.Duration
	gossipNodes    int
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	o := options{}
	fs := flag.NewFlagSet("gossip", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodes := fs.String("nodes", "50,100,200", "cluster sizes (controller included)")
	fs.IntVar(&o.procs, "procs", 4, "worker processes for the web nodes (besides the controller's and the restarted node's)")
	fs.IntVar(&o.ops, "ops", 20, "rounds of operations per size")
	fs.IntVar(&o.restarts, "restarts", 5, "restarts per node and signal")
	fs.DurationVar(&o.gap, "gap", time.Second, "pause between two operations")
	fs.DurationVar(&o.idle, "idle", 30*time.Second, "idle window for the idle traffic")
	fs.DurationVar(&o.settle, "settle", time.Minute, "pause after the cluster formed, before the idle window (the joins' broadcasts drain)")
	fs.DurationVar(&o.gossipInterval, "gossip-interval", 0, "tuning experiment: gossip interval (0: the agent's)")
	fs.IntVar(&o.gossipNodes, "gossip-nodes", 0, "tuning experiment: nodes per gossip round (0: the agent's)")
	fs.BoolVar(&o.anchor, "anchor", true, "also run the operations with stock memberlist queues (the anchor)")
	fs.IntVar(&o.anchorOps, "anchor-ops", 10, "rounds of operations of the anchor (its lost updates wait for a timeout)")
	fs.DurationVar(&opTimeout, "timeout", opTimeout, "bound of one operation; longer ones count as this long")
	fs.StringVar(&o.work, "work", os.TempDir(), "directory for state files and worker logs")
	fs.BoolVar(&o.keep, "keep", false, "keep the state files and worker logs (BENCH_GOSSIP_LOG=debug|info fills the logs)")
	fs.StringVar(&o.command, "command", "", "the command line to print in the report")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for f := range strings.SplitSeq(*nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 3 {
			return o, fmt.Errorf("-nodes: %q is not a size of 3 or more", f)
		}
		o.nodes = append(o.nodes, n)
	}
	if o.procs < 1 || o.ops < 1 || o.restarts < 0 {
		return o, errors.New("-procs and -ops must be at least 1, -restarts at least 0")
	}
	if o.command == "" {
		o.command = "go run ./bench/gossip " + strings.Join(args, " ")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(o.work, "bench-gossip-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(stderr, "work dir kept:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	rep := report{opts: o, machine: machine(ctx), loadStart: benchenv.LoadAverage(), started: time.Now()}
	// A failed size (e.g. a cluster that did not form) does not lose the
	// sizes measured before it: the report shows them, and what failed.
	fail := func(err error) error {
		rep.loadEnd, rep.incomplete = benchenv.LoadAverage(), err.Error()
		if len(rep.results) > 0 {
			_ = rep.write(stdout)
		}
		return err
	}
	for _, n := range o.nodes {
		fmt.Fprintf(stderr, "%d nodes…\n", n)
		res, err := measureScale(ctx, bin, dir, n, o, false)
		if err != nil {
			return fail(fmt.Errorf("%d nodes: %w", n, err))
		}
		rep.results = append(rep.results, res)
		if o.anchor {
			fmt.Fprintf(stderr, "%d nodes, stock memberlist queues…\n", n)
			anchor, err := measureScale(ctx, bin, dir, n, o, true)
			if err != nil {
				return fail(fmt.Errorf("%d nodes, anchor: %w", n, err))
			}
			rep.anchors = append(rep.anchors, anchor)
		}
	}
	rep.loadEnd = benchenv.LoadAverage()
	return rep.write(stdout)
}

// measureScale forms one cluster of n nodes and measures it.
func measureScale(ctx context.Context, bin, work string, n int, o options, stock bool) (*scaleResult, error) {
	dir, err := os.MkdirTemp(work, fmt.Sprintf("n%d-", n))
	if err != nil {
		return nil, err
	}
	start := time.Now()
	c, err := newCluster(ctx, bin, dir, n, o, stock)
	if err != nil {
		return nil, err
	}
	defer c.close()
	res := &scaleResult{nodes: n, procs: o.procs, stock: stock, formed: time.Since(start), settle: o.settle,
		spread: map[string][]time.Duration{}, timedOut: map[string]int{}}
	sleep(ctx, o.settle)
	t0, err := sample(ctx, c)
	if err != nil {
		return nil, err
	}
	sleep(ctx, o.idle)
	t1, err := sample(ctx, c)
	if err != nil {
		return nil, err
	}
	res.idle, res.idleCtl = t1.rates(t0)
	ops := o.ops
	if stock {
		ops = min(ops, o.anchorOps)
	}
	if err := measureOps(ctx, c, res, ops, o.gap); err != nil {
		return nil, err
	}
	if !stock {
		if err := measureRestarts(ctx, c, res, o.restarts, 2*o.gap); err != nil {
			return nil, err
		}
	}
	return res, ctx.Err()
}
