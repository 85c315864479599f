package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/internal/faults"
)

// roundSeed is the seed of round i of a run: splitmix64 of the run's seed
// and i, so that every round has its own and can be replayed alone.
func roundSeed(seed uint64, i int) uint64 {
	z := seed + uint64(i+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// kindStats sums the rounds of one kind of fault.
type kindStats struct {
	rounds, failed int
	recovered      time.Duration
}

func (h *harness) rounds(ctx context.Context, out io.Writer) error {
	seeds := []uint64{h.o.replay}
	if h.o.replay == 0 {
		fmt.Fprintf(out, "run seed %#x (the same rounds again: -seed %#x)\n\n", h.o.seed, h.o.seed)
		seeds = seeds[:0]
		for i := range h.o.rounds {
			seeds = append(seeds, roundSeed(h.o.seed, i))
		}
	}
	stats := map[faults.Kind]*kindStats{}
	var failed []string
	start := time.Now()
	for i, seed := range seeds {
		if h.o.replay != 0 {
			h.close() // a replay starts from a fresh cluster
		}
		c, err := h.settled(ctx)
		if err != nil {
			return err
		}
		s := faults.RandomScenario(seed, c.Webs(), "web-4")
		res := c.Run(ctx, s)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		st := stats[s.Kind]
		if st == nil {
			st = &kindStats{}
			stats[s.Kind] = st
		}
		st.rounds++
		st.recovered += res.Recovered
		status := fmt.Sprintf("ok in %.1fs, serving again %.1fs after the fault", res.Took.Seconds(), res.Recovered.Seconds())
		if res.Failed() {
			st.failed++
			status = "FAILED"
			failed = append(failed, fmt.Sprintf("%#x", seed))
		}
		fmt.Fprintf(out, "round %d/%d seed %#x: %s: %s\n", i+1, len(seeds), seed, s, status)
		if res.Failed() {
			printFailure(out, res, seed)
			h.close() // the next round starts from a fresh cluster
		}
	}
	printSummary(out, stats, len(seeds), failed, time.Since(start))
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d rounds failed: seeds %s", len(failed), len(seeds), strings.Join(failed, " "))
	}
	return nil
}

func printFailure(out io.Writer, res faults.Result, seed uint64) {
	if res.Err != nil {
		fmt.Fprintf(out, "    harness: %v\n", res.Err)
	}
	for _, v := range res.Violations {
		fmt.Fprintf(out, "    violation: %s\n", strings.ReplaceAll(v, "\n", "\n      "))
	}
	fmt.Fprintf(out, "    replay: bench/faults/run.sh rounds -replay %#x\n", seed)
}

func printSummary(out io.Writer, stats map[faults.Kind]*kindStats, rounds int, failed []string, took time.Duration) {
	fmt.Fprintf(out, "\n| fault | rounds | failed | mean time to serve again after it |\n|---|---:|---:|---:|\n")
	for _, k := range []faults.Kind{faults.Restart, faults.Partition, faults.OneWay, faults.LossDelay,
		faults.PublishKill, faults.DiskFull, faults.DeployPartition} {
		if st := stats[k]; st != nil {
			fmt.Fprintf(out, "| %s | %d | %d | %.1f s |\n", k, st.rounds, st.failed,
				st.recovered.Seconds()/float64(st.rounds))
		}
	}
	fmt.Fprintf(out, "\n%d rounds in %s, %d failed", rounds, took.Round(time.Second), len(failed))
	if len(failed) > 0 {
		fmt.Fprintf(out, ": seeds %s", strings.Join(failed, " "))
	}
	fmt.Fprintln(out)
}
