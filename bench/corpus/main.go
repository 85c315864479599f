// Command corpus builds the realistic benchmark tree (see
// bench/internal/corpus) and reports how well it compresses with zstd
// level 1, the way LIBRARIES.md measured a real Moodle tree:
//
//	go run ./bench/corpus -out DIR [-scale 1] [-seed 1] [-cache DIR]
//
// The php-* packages are downloaded once into the cache (default
// ~/.cache/nodeagent-corpus), never into the repository.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nodeagent/nodeagent/bench/internal/corpus"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "corpus:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("corpus", flag.ContinueOnError)
	fl.SetOutput(stderr)
	out := fl.String("out", "", "directory to write the tree into (must not exist)")
	tsv := fl.String("tsv", "../shared/corpus/moodle-3.5-tree.tsv", "tree description, one size<TAB>path a line")
	scale := fl.Int("scale", 1, "copies of the tree (under a/, b/, … when above 1)")
	seed := fl.Uint64("seed", 1, "seed of the file assignment")
	cacheDir := fl.String("cache", corpus.DefaultDir(), "download and pool cache, outside the repository")
	check := fl.Bool("check", true, "report the zstd -1 ratio of the tree")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("-out is required")
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("-out %s exists", *out)
	}
	c := &corpus.Cache{Dir: *cacheDir, Log: func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) }}
	if err := c.Prepare(ctx); err != nil {
		return err
	}
	pools, err := c.Load()
	if err != nil {
		return err
	}
	if err := corpus.Generate(*out, *tsv, *scale, *seed, pools); err != nil {
		return err
	}
	if !*check {
		return nil
	}
	r, err := Ratios(ctx, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tree %s: %d files, %.1f MB; zstd -1 of the tar stream %.3fx, file by file %.3fx\n",
		*out, r.Files, float64(r.Bytes)/1e6, r.Stream, r.PerFile)
	return nil
}

// Ratio is how a tree compresses with zstd level 1.
type Ratio struct {
	Files   int
	Bytes   int64
	Stream  float64 // tar of the tree through `zstd -1`
	PerFile float64 // each file through `zstd -1` on its own (as packs store them)
}

// Ratios measures a tree with the zstd command.
func Ratios(ctx context.Context, dir string) (Ratio, error) {
	var r Ratio
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			r.Files++
			r.Bytes += fi.Size()
		}
		return err
	})
	if err != nil {
		return r, err
	}
	stream, err := shellBytes(ctx, dir, "tar cf - . | zstd -1 -q -c | wc -c")
	if err != nil {
		return r, err
	}
	// zstd -r compresses each file to its own frame; the sum of the frames
	// is what per-object compression stores.
	tmp, err := os.MkdirTemp("", "corpus-zstd-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(tmp)
	perFile, err := shellBytes(ctx, dir, "find . -type f -print0 | xargs -0 cat -- >/dev/null; "+
		"tar cf - . | (cd "+tmp+" && tar xf -) && zstd -1 -q -r --rm "+tmp+" && find "+tmp+" -type f -printf '%s\\n' | awk '{s+=$1} END{print s}'")
	if err != nil {
		return r, err
	}
	r.Stream = float64(stream) / float64(r.Bytes)
	r.PerFile = float64(perFile) / float64(r.Bytes)
	return r, nil
}

func shellBytes(ctx context.Context, dir, script string) (int64, error) {
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", script, err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}
