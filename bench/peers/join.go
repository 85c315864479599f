package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
)

// result is one run: n new web nodes started at once.
type result struct {
	nodes    int
	times    []time.Duration // each node's start → serving the target, sorted
	ctlTx    int64           // bytes the controller sent meanwhile (its link's counter)
	wall     time.Duration   // start → the last node serves
	agentCPU time.Duration   // CPU time of every agent meanwhile
	busy     float64         // the machine's busy share of its CPUs meanwhile
	bytes    map[string]int64
}

func (r result) last() time.Duration { return r.times[len(r.times)-1] }

// join starts n fresh web nodes at once and measures until every one of
// them serves the target, then checks their trees and stops them.
func (b *bench) join(ctx context.Context, n int) (result, error) {
	b.runs++
	res := result{nodes: n, bytes: map[string]int64{}}
	var nodes []string
	for i := range n {
		nodes = append(nodes, webName(i))
		if err := b.writeConfig(webName(i)); err != nil {
			return res, err
		}
	}
	defer func() {
		b.stopAll(nodes)
		if !b.opts.keep {
			benchenv.RemoveTree(filepath.Dir(b.dir(nodes[0]))) // the run's data: memory on the tmpfs
		}
	}()
	// The nodes of the last run must be gone from gossip: the new ones
	// would otherwise take them for peers at first.
	if err := b.awaitGone(ctx); err != nil {
		return res, err
	}
	tx0, err := b.txBytes(ctx, controller)
	if err != nil {
		return res, err
	}
	cpu0 := b.cpuTime()
	busy0, total0 := machineBusy()
	start := time.Now()
	for _, node := range nodes {
		if err := b.start(node); err != nil {
			return res, err
		}
	}
	if res.times, err = b.waitServing(ctx, nodes, start); err != nil {
		return res, err
	}
	res.wall = time.Since(start)
	res.agentCPU = b.cpuTime() - cpu0
	busy1, total1 := machineBusy()
	if total1 > total0 {
		res.busy = float64(busy1-busy0) / float64(total1-total0)
	}
	tx1, err := b.txBytes(ctx, controller)
	if err != nil {
		return res, err
	}
	res.ctlTx = tx1 - tx0
	for _, node := range nodes {
		if err := b.check(ctx, node, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// waitServing returns, sorted, how long after start each node's target
// appeared: a new node's mirror.target exists once it serves the target.
func (b *bench) waitServing(ctx context.Context, nodes []string, start time.Time) ([]time.Duration, error) {
	serving := map[string]time.Duration{}
	err := benchenv.Poll(ctx, b.opts.timeout, 20*time.Millisecond, func() error {
		for _, node := range nodes {
			if _, done := serving[node]; done {
				continue
			}
			if _, err := os.Lstat(b.target(node)); err == nil {
				serving[node] = time.Since(start)
			}
		}
		if len(serving) < len(nodes) {
			return fmt.Errorf("%d of %d nodes serve the target", len(serving), len(nodes))
		}
		return nil
	})
	var times []time.Duration
	for _, t := range serving {
		times = append(times, t)
	}
	slices.Sort(times)
	return times, err
}

// check verifies node's tree and adds where its content came from.
func (b *bench) check(ctx context.Context, node string, res *result) error {
	if d := mirrortest.DiffTrees(b.src, b.target(node)); d != nil {
		return fmt.Errorf("%s serves a wrong tree: %s", node, strings.Join(d[:min(len(d), 5)], "; "))
	}
	st, err := b.status(ctx, node)
	if err != nil {
		return err
	}
	if st.Sync == nil || len(st.Sync.Sources) == 0 {
		return fmt.Errorf("%s reports no sources for its sync", node)
	}
	for _, s := range st.Sync.Sources {
		res.bytes[s.Kind] += s.Bytes
	}
	return nil
}

// stopAll stops nodes at once.
func (b *bench) stopAll(nodes []string) {
	var wg sync.WaitGroup
	for _, node := range nodes {
		cmd := b.procs[node]
		delete(b.procs, node)
		wg.Go(func() { benchenv.Stop(cmd) })
	}
	wg.Wait()
}

// summary is a one-line account of a run.
func (r result) summary(tree int64) string {
	return fmt.Sprintf("%d node(s): last serves after %.2f s (first %.2f s); controller sent %.2fx the tree; %.1f%% from peers; agents %.1f CPU-s, machine %.0f%% busy",
		r.nodes, r.last().Seconds(), r.times[0].Seconds(), float64(r.ctlTx)/float64(tree),
		100*r.peerShare(), r.agentCPU.Seconds(), 100*r.busy)
}

// peerShare is the share of the content the nodes got from peers.
func (r result) peerShare() float64 {
	total := r.bytes[mirror.KindPeer] + r.bytes[mirror.KindController]
	if total == 0 {
		return 0
	}
	return float64(r.bytes[mirror.KindPeer]) / float64(total)
}
