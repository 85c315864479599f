package main

import (
	"context"
	"fmt"
	"io"
	"math"
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
	if _, r.err = c.WaitServing(ctx, 30*time.Second); r.err == nil {
		r.total = time.Since(start)
	}
}

// failedRestart stands for a restart after which the cluster did not serve
// again within the bound: it sorts after every measured one.
const failedRestart = time.Duration(math.MaxInt64)

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
	met := false
	for i, g := range groups {
		var totals, floors []time.Duration
		failed := 0
		for _, r := range all {
			switch {
			case !g.keep(r):
			case r.err != nil:
				failed++
				totals = append(totals, failedRestart)
			default:
				totals = append(totals, r.total)
				floors = append(floors, r.floor)
			}
		}
		if len(totals) == 0 {
			continue
		}
		med, worst := quantile(totals, 0.5), slices.Max(totals)
		if i == 0 {
			met = med <= 5*time.Second && worst <= 10*time.Second
		}
		fl, ratio := "–", "–"
		if len(floors) > 0 {
			f := quantile(floors, 0.5)
			fl = fmt.Sprintf("%.2f s", f.Seconds())
			if med != failedRestart {
				ratio = fmt.Sprintf("%.1fx", med.Seconds()/max(f.Seconds(), 0.001))
			}
		}
		fmt.Fprintf(out, "| %s | %d | %d | %s | %s | %s | %s | %s |\n", g.name, len(totals), failed,
			seconds(med), seconds(quantile(totals, 0.9)), seconds(worst), fl, ratio)
	}
	fmt.Fprintf(out, "\nTarget: 5 s median, 10 s worst: met: %v (a failed restart did not serve again within 30 s,\n"+
		"and counts as longer than any other).\n", met)
}

func seconds(d time.Duration) string {
	if d == failedRestart {
		return "> 30 s"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// quantile returns the q-quantile of ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
