package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
)

type report struct {
	opts               options
	machine            string
	loadStart, loadEnd string
	started            time.Time
	results, anchors   []*scaleResult
	incomplete         string // why the run stopped before its last size
}

func machine(ctx context.Context) string {
	return fmt.Sprintf("%d CPUs (%s), %s, %s, Linux %s", runtime.NumCPU(), benchenv.CPUModel(), memTotal(),
		runtime.Version(), benchenv.FirstLine(benchenv.CommandOutput(ctx, "uname", "-r")))
}

func memTotal() string {
	out := benchenv.CommandOutput(context.Background(), "awk", "/MemTotal/ {printf \"%.1f GiB RAM\", $2/1048576}", "/proc/meminfo")
	return strings.TrimSpace(out)
}

// targets of the issues, by measure: p99 bound, or for restarts the median
// and maximum bounds.
var targets = map[string]time.Duration{
	mTargetKnown: 2 * time.Second,
	mMaintDone:   2 * time.Second,
	mMetaSpread:  2 * time.Second,
}

const (
	restartMedian = 5 * time.Second
	restartMax    = 10 * time.Second
)

func (r report) write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "### Gossip benchmark, %s UTC\n\n", r.started.UTC().Format("2006-01-02 15:04"))
	fmt.Fprintf(&b, "- Machine: %s\n", r.machine)
	fmt.Fprintf(&b, "- Load average (1 min): %s at the start, %s at the end\n", r.loadStart, r.loadEnd)
	fmt.Fprintf(&b, "- Command: `%s` (checkout %s)\n", r.opts.command, benchenv.FirstLine(benchenv.CommandOutput(context.Background(), "git", "describe", "--always", "--dirty")))
	if r.opts.gossipInterval != 0 || r.opts.gossipNodes != 0 {
		fmt.Fprintf(&b, "- Tuning experiment: gossip interval %s, nodes per round %d (0: the agent's)\n", r.opts.gossipInterval, r.opts.gossipNodes)
	}
	fmt.Fprintf(&b, "- Per size: %d rounds of operations %s apart (the anchor: %d), %d restarts per node and signal; times are until the last agent got there, nearest-rank quantiles over the rounds (p99 of 20 is the maximum); an operation not complete after %s counts as %s. Anchor: the same cluster with memberlist's broadcast queues as they come (not pinned), RetransmitMult 4 and metadata by gossip alone (not also sent directly).\n",
		r.opts.ops, r.opts.gap, min(r.opts.ops, r.opts.anchorOps), r.opts.restarts, opTimeout, opTimeout)
	if r.incomplete != "" {
		fmt.Fprintf(&b, "- **Incomplete**: the run stopped at %s; the sizes below were measured before.\n", r.incomplete)
	}
	for i, res := range r.results {
		var anchor *scaleResult
		if i < len(r.anchors) {
			anchor = r.anchors[i]
		}
		writeScale(&b, res, anchor)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeScale(b *strings.Builder, res, anchor *scaleResult) {
	fmt.Fprintf(b, "\n#### %d agents (%d worker processes; formed in %.1fs; idle traffic measured after %s)\n\n", res.nodes, res.procs+2, res.formed.Seconds(), res.settle)
	fmt.Fprintln(b, "| measure | p50 | p99 | max | anchor p99 | p99 / anchor | target | met? |")
	fmt.Fprintln(b, "|---|---|---|---|---|---|---|---|")
	for _, m := range measureOrder {
		d := sorted(res.spread[m])
		if len(d) == 0 {
			continue
		}
		p99 := quantile(d, 0.99)
		anc, ratio := "—", "—"
		if anchor != nil {
			if a := sorted(anchor.spread[m]); len(a) > 0 {
				anc = fmtDur(quantile(a, 0.99))
				ratio = fmt.Sprintf("%.2f", float64(p99)/float64(max(quantile(a, 0.99), time.Millisecond)))
			}
		}
		if anchor != nil && anchor.timedOut[m] > 0 {
			anc = fmt.Sprintf("%s (%d of %d timed out)", anc, anchor.timedOut[m], len(anchor.spread[m]))
		}
		tgt, ok := "—", "—"
		if t, has := targets[m]; has {
			tgt, ok = "p99 ≤ "+fmtDur(t), yesNo(p99 <= t)
		}
		top := fmtDur(d[len(d)-1])
		if res.timedOut[m] > 0 {
			top = fmt.Sprintf("%s (%d of %d timed out)", top, res.timedOut[m], len(d))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", m, fmtDur(quantile(d, 0.5)), fmtDur(p99), top, anc, ratio, tgt, ok)
	}
	writeRestarts(b, res)
	writeTraffic(b, res, anchor)
	for _, s := range [][]string{res.failures, failuresOf(anchor)} {
		for _, f := range s {
			fmt.Fprintf(b, "- **not completed**: %s\n", f)
		}
	}
}

func failuresOf(r *scaleResult) []string {
	if r == nil {
		return nil
	}
	out := make([]string, len(r.failures))
	for i, f := range r.failures {
		out[i] = "anchor: " + f
	}
	return out
}

func writeRestarts(b *strings.Builder, res *scaleResult) {
	var names []string
	for m := range res.spread {
		if strings.HasPrefix(m, "restart of") {
			names = append(names, m)
		}
	}
	if len(names) == 0 {
		return
	}
	slices.Sort(names)
	fmt.Fprintln(b, "\n| restart, then | median | max | target | met? |")
	fmt.Fprintln(b, "|---|---|---|---|---|")
	for _, m := range names {
		d := sorted(res.spread[m])
		med, top := quantile(d, 0.5), d[len(d)-1]
		fmt.Fprintf(b, "| %s | %s | %s | median ≤ %s, max ≤ %s | %s |\n", m, fmtDur(med), fmtDur(top),
			fmtDur(restartMedian), fmtDur(restartMax), yesNo(med <= restartMedian && top <= restartMax))
	}
}

func writeTraffic(b *strings.Builder, res, anchor *scaleResult) {
	fmt.Fprintln(b, "\n| gossip traffic per node | UDP packets/s out / in | UDP bytes/s out / in | TCP bytes/s out | TCP connections/s | CPU of the processes (cores) |")
	fmt.Fprintln(b, "|---|---|---|---|---|---|")
	row := func(name string, r rates) {
		fmt.Fprintf(b, "| %s | %.1f / %.1f | %s / %s | %s | %.2f | %.2f |\n", name, r.udpOut, r.udpIn,
			fmtBytes(r.udpOutB), fmtBytes(r.udpInB), fmtBytes(r.tcpOutB), r.tcpConns, r.cpu)
	}
	row("web node, idle", res.idle)
	row("web node, during the operations", res.ops)
	row("controller, idle", res.idleCtl)
	row("controller, during the operations", res.opsCtl)
	if anchor != nil {
		row("anchor: web node, during the operations", anchor.ops)
	}
}

func sorted(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// quantile is the nearest-rank q-quantile of sorted values.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func fmtDur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func fmtBytes(v float64) string {
	if v >= 1024 {
		return fmt.Sprintf("%.1f KiB", v/1024)
	}
	return fmt.Sprintf("%.0f B", v)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
