package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"syscall"
	"time"

	"github.com/nodeagent/nodeagent/internal/faults"
)

// restart is one timed restart.
type restart struct {
	node     string
	graceful bool
	total    time.Duration // from the signal until the cluster serves the target
	floor    time.Duration // from the new process's start until its API answers
	err      error
}

func (h *harness) restartBench(ctx context.Context, out io.Writer) error {
	var all []restart
	for i := range h.o.restarts {
		c, err := h.settled(ctx)
		if err != nil {
			return err
		}
		nodes := c.Nodes()
		r := restart{node: nodes[i%len(nodes)], graceful: (i/len(nodes))%2 == 0}
		h.timeRestart(ctx, c, &r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		kind := "kill -9"
		if r.graceful {
			kind = "SIGINT"
		}
		if r.err != nil {
			fmt.Fprintf(out, "restart %d: %s of %s: FAILED: %v\n", i+1, kind, r.node, r.err)
			h.close()
		} else {
			fmt.Fprintf(out, "restart %d: %s of %s: the cluster serves again after %.2fs (process floor %.2fs)\n",
				i+1, kind, r.node, r.total.Seconds(), r.floor.Seconds())
		}
		all = append(all, r)
	}
	printRestarts(out, all)
	return nil
}

// timeRestart stops r.node and starts it at once, as systemctl restart,
// and times the recovery.
func (h *harness) timeRestart(ctx context.Context, c *faults.Cluster, r *restart) {
	sig := syscall.SIGKILL
	if r.graceful {
		sig = syscall.SIGINT
	}
	start := time.Now()
	if r.err = c.Stop(r.node, sig); r.err != nil {
		return
	}
	begun := time.Now()
	if r.err = c.StartAgent(r.node); r.err != nil {
		return
	}
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Status(pctx, r.node)
		cancel()
		if err == nil {
			r.floor = time.Since(begun)
			break
		}
		if time.Since(begun) > time.Minute {
			r.err = fmt.Errorf("its API never answered: %w", err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, r.err = c.WaitServing(ctx, time.Minute); r.err == nil {
		r.total = time.Since(start)
	}
}

func printRestarts(out io.Writer, all []restart) {
	fmt.Fprintf(out, "\n| restarts | n | failed | median | p90 | worst | process floor (median) | median / floor |\n")
	fmt.Fprintf(out, "|---|---:|---:|---:|---:|---:|---:|---:|\n")
	groups := []struct {
		name string
		keep func(restart) bool
	}{
		{"all", func(restart) bool { return true }},
		{"graceful (SIGINT)", func(r restart) bool { return r.graceful }},
		{"kill -9", func(r restart) bool { return !r.graceful }},
		{"controller", func(r restart) bool { return r.node == faults.Controller }},
		{"web nodes", func(r restart) bool { return r.node != faults.Controller }},
	}
	for _, g := range groups {
		var totals, floors []time.Duration
		failed, n := 0, 0
		for _, r := range all {
			if !g.keep(r) {
				continue
			}
			n++
			if r.err != nil {
				failed++
				continue
			}
			totals = append(totals, r.total)
			floors = append(floors, r.floor)
		}
		if len(totals) == 0 {
			fmt.Fprintf(out, "| %s | %d | %d | – | – | – | – | – |\n", g.name, n, failed)
			continue
		}
		med, fl := quantile(totals, 0.5), quantile(floors, 0.5)
		fmt.Fprintf(out, "| %s | %d | %d | %.2f s | %.2f s | %.2f s | %.2f s | %.1fx |\n", g.name, n, failed,
			med.Seconds(), quantile(totals, 0.9).Seconds(), slices.Max(totals).Seconds(), fl.Seconds(),
			med.Seconds()/max(fl.Seconds(), 0.001))
	}
	fmt.Fprintln(out, "\nTarget: 5 s median, 10 s worst (a failed restart did not serve again within 60 s).")
}

// quantile returns the q-quantile of ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
