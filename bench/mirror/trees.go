package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"

	"github.com/nodeagent/nodeagent/bench/internal/corpus"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
)

// The corpora a tree can be filled with.
const (
	corpusRandom = "random" // pseudo-random bytes: incompressible
	corpusReal   = "real"   // PHP, JS, CSS, images of Debian's php-* packages
)

// loadCorpus prepares the realistic corpus's cache (downloading the
// packages the first time) and loads its pools.
func loadCorpus(ctx context.Context, dir string, log *slog.Logger) (corpus.Pools, error) {
	c := &corpus.Cache{Dir: dir, Log: func(f string, a ...any) { log.Info(fmt.Sprintf(f, a...)) }}
	if err := c.Prepare(ctx); err != nil {
		return nil, fmt.Errorf("realistic corpus: %w", err)
	}
	return c.Load()
}

// generate writes the tree of one scale and corpus into src.
func (b *bench) generate(src string, scale int, corp string) error {
	if corp == corpusReal {
		return corpus.Generate(src, b.opts.tsv, scale, b.opts.seed, b.pools)
	}
	return mirrortest.GenerateTree(src, b.opts.tsv, scale)
}

// zstdBytes is the size of the tar stream of dir through `zstd -1`, as
// LIBRARIES.md measured a real Moodle tree (0 when zstd is missing).
func zstdBytes(ctx context.Context, dir string) int64 {
	cmd := exec.CommandContext(ctx, "sh", "-c", "tar cf - . | zstd -1 -q -c | wc -c")
	cmd.Dir = dir
	out, err := cmd.Output()
	n, perr := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || perr != nil {
		return 0
	}
	return n
}
