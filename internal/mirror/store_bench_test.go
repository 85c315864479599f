package mirror_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
)

// The publish benchmarks run on the Moodle 3.5 tree described by
// MIRROR_BENCH_TSV (default: the shared corpus), MIRROR_BENCH_SCALE copies
// of it (default 1), or on the existing tree MIRROR_BENCH_SRC. The baselines run the commands publish is compared
// with on the same tree:
//
//	go test -run '^$' -bench . -benchtime 5x ./internal/mirror/
const defaultBenchTSV = "../../../shared/corpus/moodle-3.5-tree.tsv" // from this package directory

// benchTree generates the tree in a temporary directory, or skips.
func benchTree(b *testing.B) string {
	b.Helper()
	if src := os.Getenv("MIRROR_BENCH_SRC"); src != "" {
		return src // an existing tree, e.g. one made by go run ./bench/corpus
	}
	tsv := os.Getenv("MIRROR_BENCH_TSV")
	if tsv == "" {
		tsv = defaultBenchTSV
	}
	if _, err := os.Stat(tsv); err != nil {
		b.Skipf("no tree description: %v", err)
	}
	scale := 1
	if v := os.Getenv("MIRROR_BENCH_SCALE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("MIRROR_BENCH_SCALE: %v", err)
		}
		scale = n
	}
	src := filepath.Join(b.TempDir(), "src")
	if err := mirrortest.GenerateTree(src, tsv, scale); err != nil {
		b.Fatal(err)
	}
	// Files changed within the store's racy margin (2 s) of a publish are
	// re-read by the next one; a real tree is older than that.
	time.Sleep(2500 * time.Millisecond)
	return src
}

func openBenchStore(b *testing.B, dir, src string) *mirror.Store {
	b.Helper()
	cfg := mirror.StoreConfig{Dir: dir, Source: src}
	if os.Getenv("MIRROR_BENCH_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	st := mirror.NewStore(cfg)
	if err := st.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	return st
}

// BenchmarkPublishCold publishes the whole tree into an empty store: read,
// hash and capture every file, fsync the packs.
func BenchmarkPublishCold(b *testing.B) {
	src := benchTree(b)
	root := b.TempDir()
	ctx := context.Background()
	var rev mirror.Revision
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		dir := filepath.Join(root, strconv.Itoa(i))
		st := openBenchStore(b, dir, src)
		b.StartTimer()
		r, _, err := st.Publish(ctx, "cold")
		if err != nil {
			b.Fatal(err)
		}
		rev = r
		b.StopTimer()
		st.Close()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(rev.Files), "files")
	b.ReportMetric(float64(rev.Bytes)/1e6, "MB")
}

// BenchmarkPublishOneChange re-publishes after one file was edited, with the
// identity cache as a restarted controller loads it.
func BenchmarkPublishOneChange(b *testing.B) {
	src := benchTree(b)
	dir := b.TempDir()
	ctx := context.Background()
	st := openBenchStore(b, dir, src)
	if _, _, err := st.Publish(ctx, "base"); err != nil {
		b.Fatal(err)
	}
	st.Close()
	st = openBenchStore(b, dir, src)
	defer st.Close()
	target := filepath.Join(src, firstFile(b, src))
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		if err := os.WriteFile(target, editContent(i), 0o644); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		rev, created, err := st.Publish(ctx, "one change")
		if err != nil || !created || rev.Changed != 1 {
			b.Fatalf("publish: created %v changed %d err %v", created, rev.Changed, err)
		}
	}
}

// BenchmarkPublishUnchanged re-publishes an unchanged tree.
func BenchmarkPublishUnchanged(b *testing.B) {
	src := benchTree(b)
	ctx := context.Background()
	st := openBenchStore(b, b.TempDir(), src)
	defer st.Close()
	if _, _, err := st.Publish(ctx, "base"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, created, err := st.Publish(ctx, "same"); err != nil || created {
			b.Fatalf("publish: created %v err %v", created, err)
		}
	}
}

func firstFile(b *testing.B, src string) string {
	b.Helper()
	var found string
	filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err == nil && found == "" && d.Type().IsRegular() {
			found, _ = filepath.Rel(src, p)
		}
		return nil
	})
	if found == "" {
		b.Fatal("no file in the tree")
	}
	return found
}

// BenchmarkBaselineSha256sum: find . -type f -print0 | xargs -0 sha256sum.
func BenchmarkBaselineSha256sum(b *testing.B) {
	src := benchTree(b)
	for b.Loop() {
		runShell(b, src, "find . -type f -print0 | xargs -0 sha256sum >/dev/null")
	}
}

// BenchmarkBaselineRsync: rsync -a src/ dst/ over an already synced dst.
func BenchmarkBaselineRsync(b *testing.B) {
	if _, err := exec.LookPath("rsync"); err != nil {
		b.Skip("no rsync")
	}
	src := benchTree(b)
	dst := b.TempDir()
	runShell(b, src, "rsync -a ./ "+dst+"/")
	for b.Loop() {
		runShell(b, src, "rsync -a ./ "+dst+"/")
	}
}

func runShell(b *testing.B, dir, script string) {
	b.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// The ratio benchmarks interleave a publish with its baseline command on
// the same tree, so that a machine busy with other work slows both alike;
// they report each one's mean time and the ratio of the means.

// BenchmarkRatioColdVsSha256sum: a cold publish against sha256sum of the
// whole tree (target ratio ≤ 0.4).
func BenchmarkRatioColdVsSha256sum(b *testing.B) {
	src := benchTree(b)
	root := b.TempDir()
	ctx := context.Background()
	var pub, base time.Duration
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(root, strconv.Itoa(i))
		st := openBenchStore(b, dir, src)
		t0 := time.Now()
		if _, _, err := st.Publish(ctx, "cold"); err != nil {
			b.Fatal(err)
		}
		pub += time.Since(t0)
		st.Close()
		os.RemoveAll(dir)
		t0 = time.Now()
		runShell(b, src, "find . -type f -print0 | xargs -0 sha256sum >/dev/null")
		base += time.Since(t0)
	}
	reportRatio(b, pub, base)
}

// BenchmarkRatioOneChangeVsRsync: a publish after a one-file change against
// rsync -a over an already synced copy (target ratio ≤ 0.6).
func BenchmarkRatioOneChangeVsRsync(b *testing.B) {
	if _, err := exec.LookPath("rsync"); err != nil {
		b.Skip("no rsync")
	}
	src := benchTree(b)
	dst := b.TempDir()
	runShell(b, src, "rsync -a ./ "+dst+"/")
	ctx := context.Background()
	st := openBenchStore(b, b.TempDir(), src)
	defer st.Close()
	if _, _, err := st.Publish(ctx, "base"); err != nil {
		b.Fatal(err)
	}
	target := filepath.Join(src, firstFile(b, src))
	var pub, base time.Duration
	for i := 0; b.Loop(); i++ {
		if err := os.WriteFile(target, editContent(i), 0o644); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, _, err := st.Publish(ctx, "one change"); err != nil {
			b.Fatal(err)
		}
		pub += time.Since(t0)
		t0 = time.Now()
		runShell(b, src, "rsync -a ./ "+dst+"/")
		base += time.Since(t0)
	}
	reportRatio(b, pub, base)
}

func reportRatio(b *testing.B, pub, base time.Duration) {
	n := float64(b.N)
	b.ReportMetric(pub.Seconds()*1e3/n, "publish-ms")
	b.ReportMetric(base.Seconds()*1e3/n, "baseline-ms")
	b.ReportMetric(pub.Seconds()/base.Seconds(), "ratio")
}

// editContent is the content of the benchmarks' i-th edit, unique across
// runs: a tree given by MIRROR_BENCH_SRC keeps the last run's edit, which a
// repeated content would not change.
func editContent(i int) []byte {
	return []byte("edit " + strconv.Itoa(i) + " at " + strconv.FormatInt(time.Now().UnixNano(), 10))
}
