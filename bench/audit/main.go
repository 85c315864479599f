// Command audit benchmarks the integrity audit of a web node's served
// release (internal/mirror: Releases.Inspect, Releases.Verify, Auditor) on
// the Moodle 3.5 tree times -scale (3: 52,275 files), against the commands
// an operator would run by hand, and prints a markdown section:
//
//		go run ./bench/audit [-scale 3] [-runs 3] [-throttle 5m] [-window 60s] [-out FILE]
//
//	  - identity check (every entry stat'ed and compared, directories
//	    listed; no content read) against `find RELEASE -printf` of the same
//	    fields;
//	  - full content check (SHA-256 of every file, one goroutine) against
//	    `sha256sum --quiet -c` of a list of every file;
//	  - the background audit throttled by hash_period: the cores it uses
//	    over -window, and the share of a full content pass it got through.
//
// The release is built by the mirror package itself (a store publishes the
// tree, a release store syncs it through the store's HTTP handler), in the
// benchmark's own process: CPU is this process's (getrusage), which does
// nothing else while a check runs. The page cache is warm (the tree is
// read once before the first timing). Everything lives in a temporary
// directory removed at the end, also on SIGINT/SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nodeagent/nodeagent/bench/internal/benchenv"
	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
)

const defaultTSV = "../shared/corpus/moodle-3.5-tree.tsv" // relative to the repository root

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench audit:", err)
		os.Exit(1)
	}
}

type options struct {
	scale    int
	runs     int
	throttle time.Duration
	window   time.Duration
	tsv      string
	work     string
	out      string
	command  string
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.IntVar(&o.scale, "scale", 3, "copies of the Moodle tree (3: 52,275 files)")
	fs.IntVar(&o.runs, "runs", 3, "runs of each check (medians reported)")
	fs.DurationVar(&o.throttle, "throttle", 5*time.Minute, "hash_period of the throttled background audit")
	fs.DurationVar(&o.window, "window", time.Minute, "how long the throttled audit is measured")
	fs.StringVar(&o.tsv, "tsv", defaultTSV, "tree description, one size<TAB>path a line")
	fs.StringVar(&o.work, "work", os.TempDir(), "directory for the temporary tree")
	fs.StringVar(&o.out, "out", "", "append the markdown section to this file")
	fs.StringVar(&o.command, "command", "go run ./bench/audit", "the command line shown in the report")
	err := fs.Parse(args)
	return o, err
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(o.work, "bench-audit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	loadStart := benchenv.LoadAverage()
	env, err := setup(ctx, dir, o)
	if err != nil {
		return err
	}
	defer env.close()
	res, err := measure(ctx, env, o)
	if err != nil {
		return err
	}
	section := report(o, env, res, loadStart, benchenv.LoadAverage())
	fmt.Fprint(stdout, section)
	if o.out != "" {
		f, err := os.OpenFile(o.out, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.WriteString(f, "\n"+section)
		return err
	}
	return nil
}

// env is a published tree synced into a release.
type env struct {
	store   *mirror.Store
	rels    *mirror.Releases
	srv     *httptest.Server
	release string // the release directory
	list    string // "sha256  path" of every file, for sha256sum -c
	rev     mirror.Revision
}

func setup(ctx context.Context, dir string, o options) (*env, error) {
	src := filepath.Join(dir, "src")
	fmt.Fprintf(os.Stderr, "generating the tree (scale %d)…\n", o.scale)
	if err := mirrortest.GenerateTree(src, o.tsv, o.scale); err != nil {
		return nil, err
	}
	e := &env{store: mirror.NewStore(mirror.StoreConfig{Dir: filepath.Join(dir, "controller"), Source: src})}
	if err := e.store.Open(ctx); err != nil {
		return nil, err
	}
	rev, _, err := e.store.Publish(ctx, "bench")
	if err != nil {
		e.close()
		return nil, err
	}
	e.rev = rev
	e.srv = httptest.NewServer(e.store.Handler())
	e.rels = mirror.NewReleases(mirror.ReleasesConfig{Dir: filepath.Join(dir, "web"), Target: filepath.Join(dir, "www")})
	if err := e.rels.Open(ctx); err != nil {
		e.close()
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "syncing the release…")
	if err := e.rels.Apply(ctx, rev, mirror.NewClient(e.srv.URL, e.srv.Client())); err != nil {
		e.close()
		return nil, err
	}
	e.release = filepath.Join(dir, "web", "releases", rev.ID)
	e.list = filepath.Join(dir, "sums")
	if err := writeSums(e.list, filepath.Join(dir, "web", "manifests", rev.ID+".json")); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if e.srv != nil {
		e.srv.Close()
	}
	e.store.Close()
}

// writeSums writes the "sha256  path" list of the files of a manifest.
func writeSums(list, manifest string) error {
	data, err := os.ReadFile(manifest)
	if err != nil {
		return err
	}
	m, err := mirror.DecodeManifest(data, "")
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, e := range m.Entries {
		if e.Type == mirror.TypeFile {
			fmt.Fprintf(&b, "%s  %s\n", e.SHA256, e.Path)
		}
	}
	return os.WriteFile(list, []byte(b.String()), 0o600)
}

// timing is one measured run: wall and CPU time.
type timing struct{ wall, cpu time.Duration }

func (t timing) cores() float64 { return t.cpu.Seconds() / t.wall.Seconds() }

type results struct {
	inspect, find, content, sha256sum []timing
	throttled                         timing
	throttledShare                    float64 // of a full content pass
}

func measure(ctx context.Context, e *env, o options) (*results, error) {
	r := &results{}
	// Warm the page cache.
	if rep, err := e.rels.Verify(ctx, false, nil); err != nil || len(rep.Differences) > 0 {
		return nil, fmt.Errorf("warm-up verify: %v %v", err, rep.Differences)
	}
	for i := range o.runs {
		fmt.Fprintf(os.Stderr, "run %d/%d\n", i+1, o.runs)
		t, err := self(func() error { return clean(e.rels.Inspect(ctx)) })
		if err != nil {
			return nil, fmt.Errorf("inspect: %w", err)
		}
		r.inspect = append(r.inspect, t)
		if t, err = child(ctx, "", "find", e.release, "-printf", "%i %s %T@ %m %U %y %l %p\n"); err != nil {
			return nil, err
		}
		r.find = append(r.find, t)
		if t, err = self(func() error { return clean(e.rels.Verify(ctx, false, nil)) }); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		r.content = append(r.content, t)
		if t, err = child(ctx, e.release, "sha256sum", "--quiet", "-c", e.list); err != nil {
			return nil, err
		}
		r.sha256sum = append(r.sha256sum, t)
	}
	return r, throttled(ctx, e, o, r)
}

// throttled runs the background audit with hash_period o.throttle and a
// check every tenth of the window, and measures it over o.window.
func throttled(ctx context.Context, e *env, o options, r *results) error {
	fmt.Fprintf(os.Stderr, "throttled audit for %s…\n", o.window)
	a := mirror.NewAuditor(mirror.AuditConfig{Releases: e.rels, CheckInterval: o.window / 10, HashPeriod: o.throttle,
		Logger: slog.New(slog.DiscardHandler)})
	t, err := self(func() error {
		if err := a.Open(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(o.window):
		}
		return a.Close()
	})
	if err != nil {
		return err
	}
	st := a.Status()
	r.throttled = t
	r.throttledShare = st.HashProgress
	if !st.HashedAt.IsZero() {
		r.throttledShare = 1 + st.HashProgress
	}
	return ctx.Err()
}

func clean(rep mirror.VerifyReport, err error) error {
	if err == nil && len(rep.Differences) > 0 {
		err = fmt.Errorf("%d differences: %v", len(rep.Differences), rep.Differences[0])
	}
	return err
}

// self times f in this process (CPU from getrusage).
func self(f func() error) (timing, error) {
	c0 := rusage(syscall.RUSAGE_SELF)
	start := time.Now()
	err := f()
	return timing{time.Since(start), rusage(syscall.RUSAGE_SELF) - c0}, err
}

// child times a command (CPU of the child).
func child(ctx context.Context, dir, name string, args ...string) (timing, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout = io.Discard
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return timing{}, fmt.Errorf("%s: %v %s", name, err, stderr.String())
	}
	ps := cmd.ProcessState
	return timing{time.Since(start), ps.UserTime() + ps.SystemTime()}, nil
}

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(ts []timing) timing {
	s := slices.Clone(ts)
	slices.SortFunc(s, func(a, b timing) int { return int(a.wall - b.wall) })
	return s[len(s)/2]
}

func report(o options, e *env, r *results, loadStart, loadEnd string) string {
	var b strings.Builder
	ctx := context.Background()
	fmt.Fprintf(&b, "### Integrity audit benchmark, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- Machine: %s, %s; %s\n", benchenv.CPUModel(), benchenv.FirstLine(benchenv.CommandOutput(ctx, "uname", "-sr")),
		benchenv.FirstLine(benchenv.CommandOutput(ctx, "go", "version")))
	fmt.Fprintf(&b, "- Load average (1 min): %s at the start, %s at the end\n", loadStart, loadEnd)
	fmt.Fprintf(&b, "- Command: `%s` (medians of %d runs; page cache warm)\n", o.command, o.runs)
	fmt.Fprintf(&b, "- Tree: the Moodle 3.5 tree ×%d: %d files, %.1f MB, as a release built by the agent\n\n",
		o.scale, e.rev.Files, float64(e.rev.Bytes)/1e6)
	b.WriteString("| check | nodeagent | anchor | ratio | nodeagent cores while running |\n|---|---|---|---|---|\n")
	row := func(name string, ours []timing, anchorName string, anchor []timing) {
		m, a := median(ours), median(anchor)
		fmt.Fprintf(&b, "| %s | %s (CPU %s) | %s: %s (CPU %s) | %.2f | %.2f |\n", name,
			round(m.wall), round(m.cpu), anchorName, round(a.wall), round(a.cpu), m.wall.Seconds()/a.wall.Seconds(), m.cores())
	}
	row("identity check (every entry, no content)", r.inspect, "`find -printf '%i %s %T@ %m %U %y %l %p'`", r.find)
	row("content check (SHA-256 of every file)", r.content, "`sha256sum --quiet -c`", r.sha256sum)
	t := r.throttled
	fmt.Fprintf(&b, "\nThrottled background audit (hash_period %s, check_interval %s) over %s: CPU %s, %.3f cores on average; "+
		"it got through %.0f%% of a content pass (%.0f%% due).\n",
		o.throttle, o.window/10, round(t.wall), round(t.cpu), t.cores(), 100*r.throttledShare,
		100*o.window.Seconds()/o.throttle.Seconds())
	return b.String()
}

func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.String()
}
