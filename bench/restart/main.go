// Command restart benchmarks zero-downtime restarts and upgrades of a web
// agent under real systemd, and prints a markdown section with machine,
// load, command and numbers:
//
//	go run ./bench/restart [-restarts 20] [-upgrades 5] [-workers 8] [-slow 1500ms] [-out docs/benchmarks.md]
//
// It boots Debian 12 in systemd-nspawn (internal/nspawn; the debootstrap
// root is cached), installs the package as a web node in front of a
// backend with a controller beside it (internal/systemdtest), and runs the
// loadtest client inside the machine: -workers keep-alive clients sending
// GET and 4 KiB POST requests through the edge (HTTPS) as fast as they
// are answered, one slow request (-slow) always in flight, and a load
// balancer probe polling /readyz every 50 ms. Phases, each with a fresh
// client:
//
//  1. steady: no restart, as long as the restarts phase lasts (the anchor
//     for latency);
//  2. restarts: `systemctl restart nodeagent`, -restarts times;
//  3. upgrades: `dpkg -i` of a package with a higher version, -upgrades
//     times (the postinst restarts the unit);
//  4. without the fd store: a drop-in sets FileDescriptorStoreMax=0 (the
//     unit before this work) and the agent restarts 5 times — what the
//     phases above are compared with.
//
// Must run as root (debootstrap, systemd-nspawn); everything it starts
// runs in the machine, which is powered off and removed at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
	"github.com/nodeagent/nodeagent/internal/loadtest"
	"github.com/nodeagent/nodeagent/internal/nspawn"
	"github.com/nodeagent/nodeagent/internal/systemdtest"
)

func main() {
	benchenv.Main("bench/restart", run)
}

type options struct {
	restarts, upgrades, workers int
	slow                        time.Duration
	out, work                   string
}

// phase is what the clients saw during one phase.
type phase struct {
	name     string
	sum      loadtest.Summary
	took     time.Duration
	restarts []time.Duration // wall time of each systemctl restart / dpkg -i
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restart", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.restarts, "restarts", 20, "systemctl restarts")
	fs.IntVar(&o.upgrades, "upgrades", 5, "package upgrades")
	fs.IntVar(&o.workers, "workers", 8, "keep-alive clients")
	fs.DurationVar(&o.slow, "slow", 1500*time.Millisecond, "length of the slow request kept in flight")
	fs.StringVar(&o.out, "out", "", "also append the section to this file")
	fs.StringVar(&o.work, "work", os.TempDir(), "work directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if why := nspawn.Available(); why != "" {
		return fmt.Errorf("cannot boot a machine: %s", why)
	}
	dir, err := os.MkdirTemp(o.work, "bench-restart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	site, debs, closeSite, err := boot(ctx, dir, o.upgrades+1, stderr)
	if err != nil {
		return err
	}
	defer closeSite()
	phases, err := measure(ctx, site, debs, o, stderr)
	if err != nil {
		return err
	}
	section := report(ctx, o, phases, strings.TrimSpace("go run ./bench/restart "+strings.Join(args, " ")))
	fmt.Fprint(stdout, section)
	if o.out != "" {
		f, err := os.OpenFile(o.out, os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.WriteString(f, "\n"+section)
		return err
	}
	return nil
}

// boot builds n packages of ascending versions and the load helper, boots
// the machine and installs the first package.
func boot(ctx context.Context, dir string, n int, log io.Writer) (*systemdtest.Site, []string, func(), error) {
	repo, err := systemdtest.Repo()
	if err != nil {
		return nil, nil, nil, err
	}
	var debs []string
	for i := range n {
		deb, err := systemdtest.BuildDeb(ctx, repo, dir, fmt.Sprintf("0.0.0+bench%d", i+1))
		if err != nil {
			return nil, nil, nil, err
		}
		debs = append(debs, deb)
	}
	helper := filepath.Join(dir, "loadhelper")
	if err := systemdtest.BuildHelper(ctx, repo, helper); err != nil {
		return nil, nil, nil, err
	}
	root, err := nspawn.EnsureRoot(ctx, nspawn.DefaultCache(), log)
	if err != nil {
		return nil, nil, nil, err
	}
	fmt.Fprintln(log, "booting the machine")
	m, err := nspawn.Boot(ctx, root, filepath.Join(dir, "machine"), io.Discard)
	if err != nil {
		return nil, nil, nil, err
	}
	closeSite := func() { m.Close() }
	site, err := systemdtest.Setup(ctx, m, helper)
	if err == nil {
		err = site.Install(ctx, debs[0])
	}
	if err == nil {
		_, err = site.WaitActive(ctx, 0)
	}
	if err == nil {
		err = site.StartController(ctx)
	}
	if err != nil {
		closeSite()
		return nil, nil, nil, err
	}
	return site, debs[1:], closeSite, nil
}

// measure runs the phases.
func measure(ctx context.Context, site *systemdtest.Site, debs []string, o options, log io.Writer) ([]phase, error) {
	restart := func(int) error {
		_, err := site.M.Output(ctx, "systemctl", "restart", "nodeagent")
		return err
	}
	restarts, err := underLoad(ctx, site, o, "restarts (systemctl restart)", o.restarts, 0, restart, log)
	if err != nil {
		return nil, err
	}
	steady, err := underLoad(ctx, site, o, "steady, no restart (anchor)", 0, restarts.took, nil, log)
	if err != nil {
		return nil, err
	}
	upgrades, err := underLoad(ctx, site, o, "package upgrades (dpkg -i)", len(debs), 0,
		func(i int) error { return site.Install(ctx, debs[i]) }, log)
	if err != nil {
		return nil, err
	}
	if err := withoutFDStore(ctx, site); err != nil {
		return nil, err
	}
	before, err := underLoad(ctx, site, o, "restarts without the fd store (FileDescriptorStoreMax=0)", 5, 0, restart, log)
	if err != nil {
		return nil, err
	}
	return []phase{steady, restarts, upgrades, before}, nil
}

// withoutFDStore sets FileDescriptorStoreMax=0 in a drop-in (the unit as
// it was before) and restarts the unit from stopped, so the store is empty.
func withoutFDStore(ctx context.Context, site *systemdtest.Site) error {
	dropin := "[Service]\nFileDescriptorStoreMax=0\n"
	path := filepath.Join(site.M.Dir, "etc/systemd/system/nodeagent.service.d/bench.conf")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(dropin), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "stop", "nodeagent"}, {"systemctl", "start", "nodeagent"}} {
		if _, err := site.M.Output(ctx, args...); err != nil {
			return err
		}
	}
	_, err := site.WaitActive(ctx, 0)
	return err
}

// underLoad runs a fresh load until it answers, then act n times (each
// until the unit is active with a new PID and the load answered again),
// or, with n == 0, for hold; then stops the load.
func underLoad(ctx context.Context, site *systemdtest.Site, o options, name string, n int, hold time.Duration,
	act func(int) error, log io.Writer) (phase, error) {
	p := phase{name: name}
	load, err := site.StartLoad(ctx, o.workers, o.slow)
	if err != nil {
		return p, err
	}
	defer load.Stop()
	sum, err := load.WaitProgress(loadtest.Summary{})
	if err != nil {
		return p, err
	}
	start := time.Now()
	if n == 0 {
		select {
		case <-time.After(hold): // the measurement window of the anchor
		case <-ctx.Done():
			return p, ctx.Err()
		}
	}
	for i := range n {
		pid, err := site.MainPID(ctx)
		if err != nil {
			return p, err
		}
		t := time.Now()
		if err := act(i); err != nil {
			return p, err
		}
		if _, err := site.WaitActive(ctx, pid); err != nil {
			return p, err
		}
		p.restarts = append(p.restarts, time.Since(t))
		if sum, err = load.WaitProgress(sum); err != nil {
			return p, err
		}
		fmt.Fprintf(log, "%s %d/%d: %s, failed %d so far\n", name, i+1, n, p.restarts[i].Round(time.Millisecond), sum.Failed)
	}
	p.took = time.Since(start)
	p.sum, err = load.Stop()
	return p, err
}

// report is the markdown section for docs/benchmarks.md.
func report(ctx context.Context, o options, phases []phase, command string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Restarts and upgrades under load (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- Machine: %s, %s; load average %s at the end of the run (shared machine).\n",
		benchenv.CPUModel(), benchenv.FirstLine(benchenv.CommandOutput(ctx, "uname", "-sr")), benchenv.LoadAverage())
	fmt.Fprintf(&b, "- Command: `%s`\n", command)
	fmt.Fprintf(&b, "- Debian 12 under systemd 252 in systemd-nspawn; the web agent from the package (its unit), a controller beside it; "+
		"inside the machine %d keep-alive HTTPS clients (GET / and POST 4 KiB, alternating, as fast as answered, HTTP/1.1), one %s request always in flight, "+
		"a /readyz probe on the cluster API every 50 ms; a fresh client per phase.\n\n", o.workers, o.slow)
	b.WriteString("| phase | restarts | answered | failed | refused (any client) | p50 | p99 | max | slow ok / failed | /readyz ok / failed | restart wall time median (max) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range phases {
		s := p.sum
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %s | %s | %d / %d | %d / %d | %s |\n",
			p.name, len(p.restarts), s.OK, s.Failed, s.Refused, ms(s.P50), ms(s.P99), ms(s.Max),
			s.SlowOK, s.SlowFailed, s.ProbeOK, s.ProbeFailed, wall(p.restarts))
	}
	steady, restarts := phases[0].sum, phases[1].sum
	fmt.Fprintf(&b, "\nRatios to the steady anchor (same run): p99 %.2fx, max %.2fx during restarts.\n",
		ratio(restarts.P99, steady.P99), ratio(restarts.Max, steady.Max))
	for _, p := range phases {
		if len(p.sum.Errors) > 0 {
			fmt.Fprintf(&b, "\nFirst failures, %s:\n", p.name)
			for _, e := range p.sum.Errors[:min(3, len(p.sum.Errors))] {
				fmt.Fprintf(&b, "- `%s`\n", e)
			}
		}
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func wall(ds []time.Duration) string {
	if len(ds) == 0 {
		return "—"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("%s (%s)", s[len(s)/2].Round(10*time.Millisecond), s[len(s)-1].Round(10*time.Millisecond))
}
