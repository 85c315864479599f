package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
)

// machine describes where and when the benchmark ran.
type machine struct {
	date, cpu, goVersion string
	nproc                int
	loadStart, loadEnd   string
	versions             string
}

func describeMachine() machine {
	return machine{
		date:      time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		cpu:       benchenv.CPUModel(),
		goVersion: runtime.Version(),
		nproc:     runtime.NumCPU(),
		loadStart: benchenv.LoadAverage(),
		versions:  toolVersions(),
	}
}

// report is the markdown section for docs/benchmarks.md.
func report(m machine, command string, rounds int, d time.Duration, targets []*target) string {
	byName := make(map[string]*target)
	for _, t := range targets {
		byName[t.name] = t
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### Edge benchmark, %s\n\n", m.date)
	fmt.Fprintf(&b, "- machine: %d CPUs (%s), %s, load average %s at start, %s at the end; the cores are shared with other engineers' builds and tests, so every number moves with their load\n",
		m.nproc, m.cpu, m.goVersion, m.loadStart, m.loadEnd)
	fmt.Fprintf(&b, "- %s; wrk, edge, proxies and backend all on these cores\n", m.versions)
	fmt.Fprintf(&b, "- command: `%s`; %d rounds, each target in every round (rotating order), medians shown; keep-alive runs %s\n\n", command, rounds, d)

	b.WriteString("| target | req/s keep-alive (-t2 -c64) | server CPU per request | p50 / p99 at that load | 1 connection (-t1 -c1) p50 / p99 | added p50 / p99 vs backend | new TLS conns/s (Connection: close) |\n|---|---|---|---|---|---|---|\n")
	direct := byName[nameDirect]
	for _, t := range targets {
		added, hs := "—", "—"
		if t != direct {
			added = fmt.Sprintf("%+.2f / %+.2f ms", msf(medianDur(t.single, p50)-medianDur(direct.single, p50)),
				msf(medianDur(t.single, p99)-medianDur(direct.single, p99)))
			hs = fmt.Sprintf("%.0f", median(t.handshakes, rate))
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f µs | %s / %s | %s / %s | %s | %s |\n", t.name,
			median(t.keepAlive, rate), float64(medianDur(t.keepAlive, cpu))/1e3, ms(medianDur(t.keepAlive, p50)), ms(medianDur(t.keepAlive, p99)),
			ms(medianDur(t.single, p50)), ms(medianDur(t.single, p99)), added, hs)
	}
	edge, caddy, nginx := byName[nameEdge], byName[nameCaddy], byName[nameNginx]
	ratio := func(a, b *target, f func([]wrkRun) float64) float64 { return f(a.keepAlive) / f(b.keepAlive) }
	medRate := func(r []wrkRun) float64 { return median(r, rate) }
	fmt.Fprintf(&b, "\nRatios (keep-alive req/s): edge / Caddy = **%.2fx** (target ≥ 1.0x), edge / nginx = **%.2fx** (target ≥ 0.7x). New TLS connections/s: edge / nginx = %.2fx.\n",
		ratio(edge, caddy, medRate), ratio(edge, nginx, medRate), median(edge.handshakes, rate)/median(nginx.handshakes, rate))
	cpuRatio := func(a, b *target) float64 {
		return float64(medianDur(a.keepAlive, cpu)) / float64(medianDur(b.keepAlive, cpu))
	}
	fmt.Fprintf(&b, "CPU per request: edge / Caddy = %.2fx, edge / nginx = %.2fx (lower is better; the backend's own CPU is not included in the proxies' rows).\n",
		cpuRatio(edge, caddy), cpuRatio(edge, nginx))
	if errs := wrkErrors(targets); errs != "" {
		fmt.Fprintf(&b, "\nwrk reported: %s\n", errs)
	}
	fmt.Fprintf(&b, "\nPer-round keep-alive req/s: %s\n", perRound(targets))
	return b.String()
}

func rate(r wrkRun) float64      { return r.rate }
func p50(r wrkRun) time.Duration { return r.p50 }
func p99(r wrkRun) time.Duration { return r.p99 }
func cpu(r wrkRun) time.Duration { return r.cpuPerRequest }

func median(runs []wrkRun, f func(wrkRun) float64) float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func medianDur(runs []wrkRun, f func(wrkRun) time.Duration) time.Duration {
	return time.Duration(median(runs, func(r wrkRun) float64 { return float64(f(r)) }))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", msf(d)) }

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func wrkErrors(targets []*target) string {
	var out []string
	for _, t := range targets {
		for _, runs := range [][]wrkRun{t.keepAlive, t.single, t.handshakes} {
			for _, r := range runs {
				if r.errors != "" {
					out = append(out, t.name+": "+r.errors)
				}
			}
		}
	}
	return strings.Join(out, "; ")
}

func perRound(targets []*target) string {
	var parts []string
	for _, t := range targets {
		var rates []string
		for _, r := range t.keepAlive {
			rates = append(rates, fmt.Sprintf("%.0f", r.rate))
		}
		parts = append(parts, t.name+" "+strings.Join(rates, ", "))
	}
	return strings.Join(parts, "; ")
}
