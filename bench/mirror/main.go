// Command mirror benchmarks nodeagent's publish and sync, run as real agent
// processes on 127.0.0.1, against the commands they replace (sha256sum,
// rsync) on the Moodle 3.5 tree and on a synthetic 3x tree, and prints a
// markdown section with the targets of issue 2:
//
//	go run ./bench/mirror [-scale 1,3] [-runs 5] [-changes 10] [-out FILE]
//
// Every number is the median of several runs, with the anchors run in the
// same loop. The page cache stays warm (the tree is read once before the
// first timing; caches are never dropped). The command owns only its
// temporary directory and the processes it starts: both are removed and
// stopped when it returns, on error and on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
	"github.com/nodeagent/nodeagent/bench/internal/corpus"
)

const defaultTSV = "../shared/corpus/moodle-3.5-tree.tsv" // relative to the repository root

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal stops the benchmark and lets it clean up; a second
	// one, a second or more later, kills it at once (its agents die with
	// it, the trees stay). Ctrl-C under bench/run.sh delivers two signals
	// together: the terminal's and the one run.sh forwards.
	go func() {
		<-ctx.Done()
		time.Sleep(time.Second)
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	scales  []int
	runs    int
	changes int
	out     string
	bin     string
	tsv     string
	work    string
	file    string
	idle    time.Duration
	command string
	corpora []string // "random", "real"
	seed    uint64
	cache   string
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mirror", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scales := fs.String("scale", "1,3", "comma-separated tree scales (copies of the Moodle tree)")
	fs.IntVar(&o.runs, "runs", 5, "runs of each cold measurement (publish, initial sync)")
	fs.IntVar(&o.changes, "changes", 10, "1-file changes published to two web nodes")
	fs.StringVar(&o.out, "out", "", "append the markdown section to this file")
	fs.StringVar(&o.bin, "bin", "", "nodeagent binary (default: go build ./cmd/nodeagent)")
	fs.StringVar(&o.tsv, "tsv", defaultTSV, "tree description, one size<TAB>path a line")
	fs.StringVar(&o.work, "work", os.TempDir(), "directory for the temporary trees and agents")
	fs.StringVar(&o.file, "file", "version.php", "the file changed by the 1-file changes (under a/ when scale > 1)")
	fs.DurationVar(&o.idle, "idle", 5*time.Second, "wait after a sync before reading the idle RSS")
	fs.StringVar(&o.command, "command", "", "the command shown in the report (default: go run ./bench/mirror ARGS)")
	corpora := fs.String("corpus", "random,real", "comma-separated corpora: random (pseudo-random bytes), real (content of Debian's php-* packages)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the realistic corpus's file assignment")
	fs.StringVar(&o.cache, "cache", corpus.DefaultDir(), "download cache of the realistic corpus (outside the repository)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(*scales, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 26 {
			return o, fmt.Errorf("-scale: %q is not a number in 1..26", s)
		}
		o.scales = append(o.scales, n)
	}
	for _, c := range strings.Split(*corpora, ",") {
		if c = strings.TrimSpace(c); c != corpusRandom && c != corpusReal {
			return o, fmt.Errorf("-corpus: %q is neither %s nor %s", c, corpusRandom, corpusReal)
		}
		o.corpora = append(o.corpora, strings.TrimSpace(c))
	}
	if o.runs < 1 || o.changes < 1 {
		return o, errors.New("-runs and -changes must be at least 1")
	}
	if o.command == "" {
		o.command = strings.TrimSpace("go run ./bench/mirror " + strings.Join(args, " "))
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		return fmt.Errorf("rsync is needed for the anchors (bench/run.sh installs it): %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	root, bin, remove, err := benchenv.Workspace(ctx, o.work, "nodeagent-bench-", o.bin, log)
	if err != nil {
		return err
	}
	defer remove()
	o.bin = bin
	b := &bench{opts: o, root: root, log: log}
	rep := report{machine: describeMachine(ctx, o.work), command: o.command, opts: o,
		agent: benchenv.FirstLine(benchenv.CommandOutput(ctx, o.bin, "version")) + ", " + checkout(ctx)}
	if slices.Contains(o.corpora, corpusReal) {
		if b.pools, err = loadCorpus(ctx, o.cache, log); err != nil {
			return err
		}
	}
	for _, scale := range o.scales {
		for _, corp := range o.corpora {
			res, err := b.scale(ctx, scale, corp)
			if err != nil {
				return fmt.Errorf("scale %d, %s corpus: %w", scale, corp, err)
			}
			rep.scales = append(rep.scales, res)
			var part strings.Builder
			res.markdown(&part, o)
			fmt.Fprint(stderr, part.String())
		}
	}
	rep.loadEnd = benchenv.LoadAverage()
	return benchenv.WriteReport(stdout, o.out, rep.markdown())
}
