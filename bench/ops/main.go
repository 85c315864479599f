// Command ops benchmarks two operational targets of nodeagent with real
// agent processes on 127.0.0.1 (default LAN gossip timing), and prints a
// markdown section with machine, command and numbers:
//
//	go run ./bench/ops readyz [-rate 500] [-duration 20s]
//	go run ./bench/ops deploy [-runs 5] [-files 2000]
//
// readyz: a constant-rate, open-loop load generator against a web agent's
// /readyz, on the local API (plain HTTP) and on the cluster API (TLS), over
// keep-alive connections. Requests are scheduled by time and every latency
// is measured from the request's scheduled start, so a slow answer cannot
// hide the ones that would have queued behind it (no coordinated omission).
// The same generator also loads two anchors (the agent's /healthz and a
// minimal net/http server, this program re-executed as `serve-anchor`), in
// 2s slices rotating over all targets so outside load hits them alike; wrk,
// when installed, cross-checks closed-loop. Target: p99 <= 1ms at 500/s.
//
// deploy: on 1 controller + 2 web processes, `nodeagent deploy -maintenance`
// of a 1-file change end to end, against `nodeagent publish` of a 1-file
// change followed by polling until both web targets serve it; runs of the
// two alternate, each from a quiet cluster (checked, never a fixed pause).
// Target: the deploy's median within 1s of the publish path's median.
//
// The 50-agent maintenance and announce benchmarks are Go benchmarks in
// internal/agent (ops_bench_test.go). The command owns only its temporary
// directory and the processes it starts: both are removed and stopped when
// it returns, on error and on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
)

func main() {
	benchenv.Main("bench/ops", run)
}

// options are the flags shared by the subcommands.
type options struct {
	bin      string
	work     string
	rate     int
	duration time.Duration
	runs     int
	files    int
	command  string
}

const usage = "usage: go run ./bench/ops readyz [-rate 500] [-duration 20s] | deploy [-runs 5] [-files 2000]"

func parseOptions(args []string, stderr io.Writer) (string, options, error) {
	var o options
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", o, errors.New(usage)
	}
	sub := args[0]
	fs := flag.NewFlagSet(sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "", "nodeagent binary (default: go build ./cmd/nodeagent)")
	fs.StringVar(&o.work, "work", os.TempDir(), "directory for the temporary cluster")
	switch sub {
	case "readyz":
		fs.IntVar(&o.rate, "rate", 500, "requests per second")
		fs.DurationVar(&o.duration, "duration", 20*time.Second, "measured time per API (after a 2s warm-up)")
	case "deploy":
		fs.IntVar(&o.runs, "runs", 5, "runs of each path (deploy and publish), alternating")
		fs.IntVar(&o.files, "files", 2000, "files in the synthetic source tree")
	default:
		return "", o, fmt.Errorf("unknown benchmark %q\n%s", sub, usage)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return "", o, err
	}
	if fs.NArg() > 0 {
		return "", o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if sub == "readyz" && (o.rate < 1 || o.duration <= 0) {
		return "", o, errors.New("-rate and -duration must be positive")
	}
	if sub == "deploy" && (o.runs < 1 || o.files < 1) {
		return "", o, errors.New("-runs and -files must be at least 1")
	}
	o.command = strings.TrimSpace("go run ./bench/ops " + strings.Join(args, " "))
	return sub, o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && args[0] == anchorCommand {
		return serveAnchor(ctx, stdout)
	}
	sub, o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp(o.work, "nodeagent-ops-")
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	defer os.RemoveAll(root)
	if o.bin == "" {
		if o.bin, err = benchenv.BuildAgent(ctx, root); err != nil {
			return err
		}
	}
	m := describeMachine(ctx, o.bin)
	var section string
	switch sub {
	case "readyz":
		section, err = benchReadyz(ctx, o, root, stderr)
	case "deploy":
		section, err = benchDeploy(ctx, o, root, stderr)
	}
	if err != nil {
		return err
	}
	m.loadEnd = benchenv.LoadAverage()
	fmt.Fprint(stdout, m.markdown(o.command)+section)
	return nil
}
