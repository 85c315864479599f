// Command peers benchmarks peer-assisted distribution (issue 14): one
// controller and N new web nodes joining at once, as agent processes in
// their own network namespaces, every node's link (the controller's
// included) shaped to the same rate both ways with tc, against the anchor
// of one node alone on the same links, and prints a markdown section:
//
//	go run ./bench/peers [-web 10] [-rate 200mbit] [-runs 3] [-out FILE]
//
// The targets: the last of the N nodes serves the target within 2x the
// time one node alone takes; the controller sends at most 2x the tree.
// Needs root, ip and tc (iproute2). The command owns only its temporary
// directory, its namespaces and the processes it starts: all are removed
// when it returns, on error and on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
	"github.com/nodeagent/nodeagent/internal/testutil/netlab"
)

const defaultTSV = "../shared/corpus/moodle-3.5-tree.tsv" // relative to the repository root

func main() {
	benchenv.Main("bench", run)
}

// options are the command-line flags.
type options struct {
	web     int
	rate    string
	runs    int
	scale   int
	tsv     string
	work    string
	bin     string
	out     string
	timeout time.Duration
	keep    bool
	disk    bool
	debug   bool
	command string
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.web, "web", 10, "new web nodes joining at once")
	fs.StringVar(&o.rate, "rate", "200mbit", "rate of every link, each way (tc's syntax)")
	fs.IntVar(&o.runs, "runs", 3, "runs of each scenario (the anchor and the N nodes), alternated")
	fs.IntVar(&o.scale, "scale", 1, "copies of the tree described by -tsv")
	fs.StringVar(&o.tsv, "tsv", defaultTSV, "tree description, one size<TAB>path a line")
	fs.StringVar(&o.work, "work", os.TempDir(), "directory for the tree and the agents' data")
	fs.StringVar(&o.bin, "bin", "", "nodeagent binary (default: go build ./cmd/nodeagent)")
	fs.StringVar(&o.out, "out", "", "append the markdown section to this file")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "longest wait for the nodes of one run")
	fs.BoolVar(&o.keep, "keep", false, "leave the work directory (agents' logs and data) behind, its tmpfs mounted")
	fs.BoolVar(&o.disk, "disk", false, "keep the tree and the agents' data on the work directory's filesystem, not on a tmpfs")
	fs.BoolVar(&o.debug, "debug", false, "agents log at debug level (each content request)")
	fs.StringVar(&o.command, "command", "", "the command shown in the report (default: go run ./bench/peers ARGS)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.web < 2 || o.web > 50:
		return o, errors.New("-web must be in 2..50")
	case o.runs < 1 || o.scale < 1:
		return o, errors.New("-runs and -scale must be at least 1")
	}
	if o.command == "" {
		o.command = strings.TrimSpace("go run ./bench/peers " + strings.Join(args, " "))
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	if err := netlab.Available("tc"); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	root, bin, remove, err := benchenv.Workspace(ctx, o.work, "nodeagent-bench-peers-", o.bin, log)
	if err != nil {
		return err
	}
	if o.keep {
		defer log.Info("work directory left behind", "dir", root)
	} else {
		defer remove()
	}
	o.bin = bin
	if !o.disk {
		var unmount func() error
		if root, unmount, err = mountData(root); err != nil {
			return err
		}
		defer func() {
			if o.keep {
				log.Info("tmpfs left mounted: umount it when done", "dir", root)
			} else if err := unmount(); err != nil {
				log.Warn("tmpfs", "err", err)
			}
		}()
	}
	rep := report{opts: o, loadStart: benchenv.LoadAverage(), agent: benchenv.FirstLine(benchenv.CommandOutput(ctx, o.bin, "version"))}
	src := filepath.Join(root, "src")
	log.Info("generating the tree", "scale", o.scale)
	if err := mirrortest.GenerateTree(src, o.tsv, o.scale); err != nil {
		return fmt.Errorf("generate tree: %w", err)
	}
	if rep.files, rep.treeBytes, err = treeSize(src); err != nil {
		return err
	}
	b, err := newBench(ctx, o, root, src, log)
	if err != nil {
		return err
	}
	defer b.close()
	if err := b.publish(ctx); err != nil {
		return err
	}
	for i := range o.runs {
		for _, n := range []int{1, o.web} {
			log.Info("run", "round", i+1, "of", o.runs, "nodes", n)
			res, err := b.join(ctx, n)
			if err != nil {
				return fmt.Errorf("round %d, %d nodes: %w", i+1, n, err)
			}
			rep.add(res)
			fmt.Fprintln(stderr, res.summary(rep.treeBytes))
		}
	}
	rep.loadEnd = benchenv.LoadAverage()
	return benchenv.WriteReport(stdout, o.out, rep.markdown())
}

// treeSize counts the files and bytes under dir.
func treeSize(dir string) (files int, bytes int64, err error) {
	err = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files++
		bytes += fi.Size()
		return nil
	})
	return files, bytes, err
}
