// Command faults runs the fault-injection harness (internal/faults) on 1
// controller and 4 web agents, each in its own network namespace, and
// prints a markdown section with machine, load, command and results:
//
//	bench/faults/run.sh rounds [-rounds 20] [-seed S]   randomized rounds
//	bench/faults/run.sh rounds -replay S                one round, again
//	bench/faults/run.sh restarts [-n 50]                 the restart benchmark
//
// rounds: each round draws a fault from its own seed (derived from -seed
// and the round's number) and runs it with the invariants checked
// throughout; a failing round prints its seed and the command that replays
// it on a fresh cluster. A round that leaves the cluster broken is
// followed by a fresh one, so each failure stands for itself.
//
// restarts: n restarts, taking the nodes in turn (controller, web-1, …),
// graceful (SIGINT, as systemctl restart) and SIGKILL alternately for each
// node; each is timed from the signal until the whole cluster serves the
// target again (every web node applied it, passes /readyz and serves it
// through its edge; the controller sees every web node alive). Target: 5 s
// median, 10 s worst. The anchor is the process floor of the same
// restarts: from the start of the new process until its API answers.
//
// It needs root, ip, tc, iptables and mount; it owns only its work
// directory, namespaces, mounts and processes, removed on exit and on
// SIGINT/SIGTERM.
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
	"github.com/nodeagent/nodeagent/internal/testutil/netlab"
)

func main() {
	benchenv.Main("bench/faults", run)
}

const usage = "usage: bench/faults/run.sh rounds [-rounds 20] [-seed S | -replay S] | restarts [-n 50]"

type options struct {
	bin      string
	work     string
	command  string
	verbose  bool
	rounds   int
	seed     uint64
	replay   uint64
	restarts int
}

func parseOptions(args []string, stderr io.Writer) (string, options, error) {
	var o options
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", o, errors.New(usage)
	}
	sub := args[0]
	fs := flag.NewFlagSet(sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "", "nodeagent binary (default: go build ./cmd/nodeagent)")
	fs.StringVar(&o.work, "work", os.TempDir(), "directory for the temporary clusters")
	fs.StringVar(&o.command, "command", "", "the command line to print in the report")
	fs.BoolVar(&o.verbose, "v", false, "log every step of the harness")
	switch sub {
	case "rounds":
		fs.IntVar(&o.rounds, "rounds", 20, "randomized rounds")
		fs.Uint64Var(&o.seed, "seed", 0, "seed of the whole run (default: from the clock)")
		fs.Uint64Var(&o.replay, "replay", 0, "run the one round of this seed on a fresh cluster")
	case "restarts":
		fs.IntVar(&o.restarts, "n", 50, "restarts")
	default:
		return "", o, errors.New(usage)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return "", o, err
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	if o.command == "" {
		o.command = "bench/faults/run.sh " + strings.Join(args, " ")
	}
	return sub, o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	if err := netlab.Available("iptables", "tc", "mount"); err != nil {
		return err
	}
	work, err := os.MkdirTemp(o.work, "bench-faults-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if o.bin == "" {
		if o.bin, err = benchenv.BuildAgent(ctx, work); err != nil {
			return err
		}
	}
	h := &harness{o: o, work: work, stderr: stderr}
	defer h.close()
	fmt.Fprintf(stdout, "machine: %s, %s\n", benchenv.CPUModel(), benchenv.FirstLine(benchenv.CommandOutput(ctx, "uname", "-sr")))
	fmt.Fprintf(stdout, "load average at start: %s\ncommand: %s\n\n", benchenv.LoadAverage(), o.command)
	switch sub {
	case "rounds":
		return h.rounds(ctx, stdout)
	default:
		return h.restartBench(ctx, stdout)
	}
}
