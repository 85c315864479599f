// Command bench/edge measures internal/edge against Caddy's reverse_proxy
// and nginx's TLS proxy, all in front of the same nginx backend serving a
// 1 KiB page, with wrk, on this machine, in one run:
//
//   - requests/s with keep-alive (wrk -t2 -c64), and p50/p99 under that load;
//   - p50/p99 of a single connection (wrk -t1 -c1, closed loop) and what
//     each proxy adds to the backend measured directly;
//   - the CPU time each server (all its processes) spends per request in
//     the keep-alive run, which other load on the machine disturbs less
//     than the rates;
//   - new TLS connections/s (wrk -H "Connection: close": one full handshake
//     per request; wrk does not resume sessions).
//
// Rounds are interleaved (each round runs every target, in a rotating
// order) and medians reported, because the cores are shared.
//
//	go run ./bench/edge [-rounds 3] [-d 10s] [-out docs/benchmarks.md]
//	go run ./bench/edge serve-edge -https ADDR -backend URL -cert F -key F
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench/edge:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "serve-edge" {
		return serveEdge(args[1:])
	}
	fs := flag.NewFlagSet("bench/edge", flag.ContinueOnError)
	rounds := fs.Int("rounds", 3, "rounds; medians are reported")
	d := fs.Duration("d", 10*time.Second, "duration of each keep-alive run (the others take half)")
	out := fs.String("out", "", "also append the markdown section to this file")
	command := fs.String("command", "go run ./bench/edge", "the command line to print in the report")
	profile := fs.String("cpuprofile", "", "write the edge's CPU profile (all rounds of the last edge process) here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, tool := range []string{"wrk", "nginx", "caddy"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (bench/edge/run.sh installs it): %w", tool, err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "bench-edge-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // nginx workers run as nobody
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b := &bench{dir: dir, self: self, cpuprofile: *profile}
	if b.backendAddr, err = freeAddr(); err != nil {
		return err
	}
	if err := b.writeCert(); err != nil {
		return err
	}
	m := describeMachine()
	results, err := b.measure(ctx, *rounds, *d)
	if err != nil {
		return err
	}
	m.loadEnd = benchenv.LoadAverage()
	section := report(m, *command, *rounds, *d, results)
	fmt.Print(section)
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteString("\n" + section)
		return err
	}
	return nil
}

// measurement is every wrk run of one target.
type measurement struct {
	keepAlive, single, handshakes []wrkRun
}

// measure runs the rounds and returns the runs per target.
func (b *bench) measure(ctx context.Context, rounds int, d time.Duration) ([]*target, error) {
	backend, err := b.startBackend(ctx)
	if err != nil {
		return nil, err
	}
	defer stop(backend)
	b.backendPID = backend.Process.Pid
	targets := []*target{
		{name: nameDirect},
		{name: nameEdge, start: b.proxyEdge},
		{name: nameCaddy, start: b.proxyCaddy},
		{name: nameNginx, start: b.proxyNginx},
	}
	for round := range rounds {
		for i := range targets {
			t := targets[(i+round)%len(targets)]
			fmt.Fprintf(os.Stderr, "round %d/%d: %s\n", round+1, rounds, t.name)
			if err := b.measureOne(ctx, t, d); err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
		}
	}
	return targets, nil
}

// measureOne starts the target's proxy (none for the backend itself),
// warms it up, and runs wrk three ways.
func (b *bench) measureOne(ctx context.Context, t *target, d time.Duration) error {
	url := "http://" + b.backendAddr + "/"
	pgid := b.backendPID
	if t.start != nil {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		cmd, err := t.start(ctx, addr)
		if err != nil {
			return err
		}
		defer stop(cmd)
		url, pgid = "https://"+addr+"/", cmd.Process.Pid
	}
	if _, err := runWrk(ctx, url, 2, 64, 2*time.Second, false); err != nil { // warm-up
		return err
	}
	cpu0 := groupCPU(pgid)
	ka, err := runWrk(ctx, url, 2, 64, d, false)
	if err != nil {
		return err
	}
	if ka.requests > 0 {
		ka.cpuPerRequest = (groupCPU(pgid) - cpu0) / time.Duration(ka.requests)
	}
	single, err := runWrk(ctx, url, 1, 1, d/2, false)
	if err != nil {
		return err
	}
	t.keepAlive, t.single = append(t.keepAlive, ka), append(t.single, single)
	if t.start != nil {
		hs, err := runWrk(ctx, url, 2, 64, d/2, true)
		if err != nil {
			return err
		}
		t.handshakes = append(t.handshakes, hs)
	}
	return nil
}
