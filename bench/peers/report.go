package main

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// report gathers the runs of both scenarios.
type report struct {
	opts               options
	agent              string
	loadStart, loadEnd string
	files              int
	treeBytes          int64
	anchor, swarm      []result // one node alone; opts.web nodes at once
}

func (r *report) add(res result) {
	if res.nodes == 1 {
		r.anchor = append(r.anchor, res)
	} else {
		r.swarm = append(r.swarm, res)
	}
}

// median of f over results.
func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func lastSeconds(r result) float64 { return r.last().Seconds() }

func (r *report) egress(res result) float64 { return float64(res.ctlTx) / float64(r.treeBytes) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// markdown is the section for docs/benchmarks.md.
func (r *report) markdown() string {
	var b strings.Builder
	o := r.opts
	fmt.Fprintf(&b, "\n## Peer-assisted distribution: %d new web nodes at once (bench/peers)\n\n", o.web)
	fmt.Fprintf(&b, "%s, %d CPUs (%s), %s; load average %s at the start, %s at the end. Agent: %s.\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), benchenv.CPUModel(), runtime.Version(),
		r.loadStart, r.loadEnd, r.agent)
	fmt.Fprintf(&b, "Command: `%s`.\n\n", o.command)
	fmt.Fprintf(&b, "One controller and web agents as processes, each in its own network namespace on one bridge; "+
		"every node's link, the controller's included, limited to %s each way (tc tbf on both ends of its veth). "+
		"Tree: %d files, %.1f MB (the Moodle 3.5 shape of `%s` x%d, random content). "+
		"Each run starts fresh web nodes (empty data directories) at once and times each from its start to serving "+
		"the target; the anchor is one node alone on the same links. %d runs of each, alternated; medians. %s\n\n",
		o.rate, r.files, float64(r.treeBytes)/1e6, filepath.Base(o.tsv), o.scale, o.runs, r.storage())
	a := median(r.anchor, lastSeconds)
	s := median(r.swarm, lastSeconds)
	eA := median(r.anchor, r.egress)
	eS := median(r.swarm, r.egress)
	fmt.Fprintf(&b, "| | one node alone | %d nodes at once | target |\n|---|---|---|---|\n", o.web)
	fmt.Fprintf(&b, "| start → serving, last node | %.2f s | %.2f s (%.2fx the anchor) | ≤ 2x: %s |\n", a, s, s/a, verdict(s <= 2*a))
	fmt.Fprintf(&b, "| start → serving, first node | %.2f s | %.2f s | |\n", a,
		median(r.swarm, func(x result) float64 { return x.times[0].Seconds() }))
	fmt.Fprintf(&b, "| controller egress | %.2fx the tree | %.2fx the tree | ≤ 2x: %s |\n", eA, eS, verdict(eS <= 2))
	fmt.Fprintf(&b, "| content from peers | %.0f%% | %.0f%% | |\n",
		100*median(r.anchor, result.peerShare), 100*median(r.swarm, result.peerShare))
	fmt.Fprintf(&b, "| agents' CPU time | %.1f s | %.1f s | |\n",
		median(r.anchor, func(x result) float64 { return x.agentCPU.Seconds() }),
		median(r.swarm, func(x result) float64 { return x.agentCPU.Seconds() }))
	fmt.Fprintf(&b, "| machine CPU busy (all its load) | %.0f%% | %.0f%% | |\n\n",
		100*median(r.anchor, func(x result) float64 { return x.busy }),
		100*median(r.swarm, func(x result) float64 { return x.busy }))
	b.WriteString(r.cpuNote())
	b.WriteString("Runs (seconds from start to serving, each node, sorted; controller egress in trees):\n\n")
	for _, res := range append(slices.Clone(r.anchor), r.swarm...) {
		var ts []string
		for _, t := range res.times {
			ts = append(ts, fmt.Sprintf("%.1f", t.Seconds()))
		}
		fmt.Fprintf(&b, "- %d node(s): %s; egress %.2fx; %.0f%% from peers (%.1f MB), %.1f MB from the controller\n",
			res.nodes, strings.Join(ts, " "), r.egress(res), 100*res.peerShare(),
			float64(res.bytes[mirror.KindPeer])/1e6, float64(res.bytes[mirror.KindController])/1e6)
	}
	return b.String()
}

// cpuNote says whether the CPU rather than the links may have bounded the
// runs of many nodes: building a tree of small files costs the kernel
// about as much as it takes to download on a fast link.
func (r *report) cpuNote() string {
	share := median(r.swarm, func(x result) float64 {
		return x.agentCPU.Seconds() / (x.wall.Seconds() * float64(runtime.NumCPU()))
	})
	busy := median(r.swarm, func(x result) float64 { return x.busy })
	note := fmt.Sprintf("CPU: in the %d-node runs the agents used %.0f%% of the machine's %d CPUs, and the machine "+
		"(its other load included) was %.0f%% busy: ", r.opts.web, 100*share, runtime.NumCPU(), 100*busy)
	if busy >= 0.9 {
		return note + "the CPU, not the links, may have bounded them; rerun on a quiet machine, or with a lower -rate.\n\n"
	}
	return note + "the links, not the CPU, bounded them.\n\n"
}

// storage says where the tree and the agents' data lived.
func (r *report) storage() string {
	if r.opts.disk {
		return "The tree and the agents' data on the work directory's filesystem (one disk for every node)."
	}
	return "The tree and the agents' data on a tmpfs (each VM of a cluster has its own disk; -disk puts them on one)."
}
