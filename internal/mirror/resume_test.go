package mirror_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sha256 "github.com/minio/sha256-simd"

	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// bigTree is n files of random content (seeded) in 10 directories, with a
// few sharing content.
func bigTree(n, size int, seed uint64) []tnode {
	r := rand.New(rand.NewPCG(seed, seed))
	nodes := []tnode{}
	for d := range 10 {
		nodes = append(nodes, tdir(fmt.Sprintf("d%d", d), 0o755))
	}
	for i := range n {
		b := make([]byte, size/2+r.IntN(size))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if i%50 == 1 {
			b = []byte("shared body") // several paths, one object
		}
		nodes = append(nodes, tfile(fmt.Sprintf("d%d/f%04d.php", i%10, i), 0o644, string(b)))
	}
	return nodes
}

// cutSource passes objects through from a real source and cancels the
// build once it has passed after objects: a kill in the middle of a fetch.
// It records every hash it was asked for.
type cutSource struct {
	mirror.Source
	after  int
	cancel context.CancelFunc

	mu     sync.Mutex
	passed int
	asked  map[mirror.Hash]int
	bytes  int64
}

func (c *cutSource) Objects(ctx context.Context, hashes []mirror.Hash, fn func(mirror.Hash, int64, io.Reader) error) error {
	return c.Source.Objects(ctx, hashes, func(h mirror.Hash, size int64, rd io.Reader) error {
		c.mu.Lock()
		if c.asked == nil {
			c.asked = map[mirror.Hash]int{}
		}
		c.asked[h]++
		c.bytes += size
		c.passed++
		cut := c.after > 0 && c.passed > c.after
		c.mu.Unlock()
		if cut {
			c.cancel()
			return context.Canceled
		}
		return fn(h, size, rd)
	})
}

func (c *cutSource) fetched() (map[mirror.Hash]int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.asked, c.bytes
}

// partialContent returns the hashes of the files in the partial tree whose
// content is what nodes say it is at their path.
func partialContent(t *testing.T, n *testNode, nodes []tnode) map[mirror.Hash]bool {
	t.Helper()
	have := map[mirror.Hash]bool{}
	for _, nd := range nodes {
		if nd.typ != mirror.TypeFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(n.dir, "releases", ".partial", nd.path))
		if err == nil && string(b) == nd.data {
			have[sha256.Sum256(b)] = true
		}
	}
	return have
}

// interruptedBuild publishes nodes and applies them until the source has
// passed after objects, then returns the revision.
func interruptedBuild(t *testing.T, ctl *fakeController, n *testNode, nodes []tnode, after int) mirror.Revision {
	t.Helper()
	rev := ctl.publish(nodes)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &cutSource{Source: ctl.client(), after: after, cancel: cancel}
	err := n.rels.Apply(ctx, rev, src)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted apply: %v", err)
	}
	if cur, ok := n.rels.Current(); ok && cur.ID == rev.ID {
		t.Fatal("the interrupted apply switched")
	}
	return rev
}

// reopen opens the store of n again, as an agent does after a restart,
// logging into the returned buffer.
func reopen(t *testing.T, n *testNode) *testutil.LogBuffer {
	t.Helper()
	var log testutil.LogBuffer
	n.rels = mirror.NewReleases(mirror.ReleasesConfig{Dir: n.dir, Target: n.target, Keep: 3,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err := n.rels.Open(context.Background()); err != nil {
		t.Fatalf("reopen: %v", err)
	}
	return &log
}

// checkFetchedOnlyMissing fails unless src was asked for every object of
// nodes that have lacks, once, and for none that it has.
func checkFetchedOnlyMissing(t *testing.T, src *cutSource, nodes []tnode, have map[mirror.Hash]bool) {
	t.Helper()
	asked, _ := src.fetched()
	want := map[mirror.Hash]bool{}
	for _, nd := range nodes {
		if h := sha256.Sum256([]byte(nd.data)); nd.typ == mirror.TypeFile && !have[h] {
			want[h] = true
		}
	}
	for h, k := range asked {
		switch {
		case have[h]:
			t.Errorf("object %s fetched again although the partial release held it", h)
		case k > 1:
			t.Errorf("object %s fetched %d times", h, k)
		}
	}
	for h := range want {
		if asked[h] == 0 {
			t.Errorf("object %s missing from the partial release was not fetched", h)
		}
	}
}

// TestApplyResumesAnInterruptedBuild: a build stopped in the middle of the
// fetch leaves its verified files; after a restart the next build fetches
// only the content the partial release lacks, reads none of the files it
// recorded as durable again, and the release is exactly the manifest.
func TestApplyResumesAnInterruptedBuild(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	v1 := bigTree(300, 8000, 1)
	mustApply(t, n, ctl.publish(v1), ctl.client())
	v2 := bigTree(300, 8000, 2) // every file changes
	rev := interruptedBuild(t, ctl, n, v2, 120)
	have := partialContent(t, n, v2)
	if len(have) < 20 {
		t.Fatalf("the interrupted build left %d objects: too few to test a resume", len(have))
	}
	if cur, _ := n.rels.Current(); cur.Seq != 1 {
		t.Fatalf("current after the interruption = %+v; want seq 1", cur)
	}

	log := reopen(t, n)
	src := &cutSource{Source: ctl.client()}
	mustApply(t, n, rev, src)
	checkTree(t, n.target, v2)
	checkFetchedOnlyMissing(t, src, v2, have)
	if !strings.Contains(log.String(), "resuming partial release") || !strings.Contains(log.String(), "files_read_back=0 ") {
		t.Errorf("resume log: want a resume that read nothing back:\n%s", log)
	}
	checkNoTemps(t, n)
}

// TestResumeRereadsFilesNotKnownDurable: after a power loss, files written
// after the last checkpoint may hold anything. With no checkpoint recorded,
// every file of the partial release is read back: the ones that lost their
// content are fetched again, the others are kept.
func TestResumeRereadsFilesNotKnownDurable(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	v1 := bigTree(200, 6000, 3)
	rev := interruptedBuild(t, ctl, n, v1, 100)

	// The power loss: no checkpoint survived; one file came back empty,
	// one with the right size and wrong bytes.
	state := filepath.Join(n.dir, "partial.json")
	if err := os.WriteFile(state, []byte(`{"id":"`+rev.ID+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	have := partialContent(t, n, v1)
	var spoiled []string
	for _, nd := range v1 {
		if h := sha256.Sum256([]byte(nd.data)); nd.typ == mirror.TypeFile && have[h] && len(nd.data) > 100 && len(spoiled) < 2 {
			spoiled = append(spoiled, nd.path)
			delete(have, h)
		}
	}
	if len(spoiled) < 2 {
		t.Fatal("not enough files in the partial release")
	}
	spoil(t, filepath.Join(n.dir, "releases", ".partial", spoiled[0]), func(b []byte) []byte { return nil })
	spoil(t, filepath.Join(n.dir, "releases", ".partial", spoiled[1]), func(b []byte) []byte {
		return bytes.Repeat([]byte{0}, len(b))
	})

	log := reopen(t, n)
	src := &cutSource{Source: ctl.client()}
	mustApply(t, n, rev, src)
	checkTree(t, n.target, v1)
	checkFetchedOnlyMissing(t, src, v1, have)
	if strings.Contains(log.String(), "files_read_back=0 ") {
		t.Errorf("no file read back although none was known durable:\n%s", log)
	}
}

// spoil rewrites a read-only release file with change(its content).
func spoil(t *testing.T, p string, change func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, change(b), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, fi.Mode()); err != nil {
		t.Fatal(err)
	}
}

// TestResumeTowardsANewerRevision: the target moved on while a build was
// interrupted. The partial release is the base of the new build: what the
// new revision shares with it is not fetched, entries it lacks are removed.
func TestResumeTowardsANewerRevision(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	v1 := bigTree(200, 6000, 4)
	interruptedBuild(t, ctl, n, v1, 90)
	have := partialContent(t, n, v1)

	// v2 keeps the first half of v1 and replaces the rest.
	v2 := append([]tnode(nil), v1[:110]...)
	for _, nd := range bigTree(100, 6000, 5)[10:] {
		if nd.data == "shared body" {
			continue // content of the tree under a new path: fetched (only kept paths are reused)
		}
		nd.path = strings.Replace(nd.path, "/f", "/g", 1)
		v2 = append(v2, nd)
	}
	kept := map[mirror.Hash]bool{}
	for _, nd := range v2 {
		if h := sha256.Sum256([]byte(nd.data)); have[h] {
			kept[h] = true
		}
	}
	rev2 := ctl.publish(v2)
	reopen(t, n)
	src := &cutSource{Source: ctl.client()}
	mustApply(t, n, rev2, src)
	checkTree(t, n.target, v2)
	checkFetchedOnlyMissing(t, src, v2, kept)
	checkNoTemps(t, n)
	if _, err := os.Stat(filepath.Join(n.dir, "manifests", ctl.revs[0].ID+".json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("manifest of the abandoned partial release: %v", err)
	}
}

// TestOpenLeavesLeftoversToTheBackground: the leftovers of crashes (a
// large interrupted build of an older agent, an incomplete release) do not
// delay Open: they are set aside under temporary names, the current
// release is served, and RunCleanup removes them later, logging what each
// was, its files and bytes, and how long it took.
func TestOpenLeavesLeftoversToTheBackground(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	nodes := siteTree("v1")
	rev := ctl.publish(nodes)
	mustApply(t, n, rev, ctl.client())

	old := filepath.Join(n.dir, "releases", ".tmp-"+strings.Repeat("ab", 32))
	for i := range 2000 {
		mustWrite2(t, filepath.Join(old, fmt.Sprintf("d%02d", i%20), fmt.Sprintf("f%d", i)), "0123456789")
	}
	incomplete := filepath.Join(n.dir, "releases", strings.Repeat("cd", 32))
	mustWrite2(t, filepath.Join(incomplete, "app", "x.php"), "<?php")

	log := reopen(t, n)
	if cur, ok := n.rels.Current(); !ok || cur.ID != rev.ID {
		t.Fatalf("current after reopen = %+v, %v", cur, ok)
	}
	checkTree(t, n.target, nodes)
	if got := n.rels.Pending(); got != 2 {
		t.Fatalf("pending cleanups after Open = %d; want 2", got)
	}
	for _, p := range []string{old, incomplete} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still under its name: %v", p, err)
		}
	}
	trash, _ := filepath.Glob(filepath.Join(n.dir, "releases", ".tmp-trash-*"))
	if len(trash) != 2 {
		t.Fatalf("set aside: %v; want 2 trees", trash)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	rels := n.rels
	wg.Go(func() { rels.RunCleanup(ctx) })
	waitFor(t, "the cleanup", func() bool {
		m, _ := filepath.Glob(filepath.Join(n.dir, "releases", ".tmp-*"))
		return len(m) == 0 && n.rels.Pending() == 0
	})
	waitFor(t, "the cleanup log lines", func() bool { return strings.Count(log.String(), "cleanup done") == 2 })
	for _, want := range []string{"files=2000 bytes=20000 ", "what=\"incomplete release " + strings.Repeat("cd", 32), "duration="} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("cleanup log lacks %q:\n%s", want, log)
		}
	}
	checkNoTemps(t, n)

	// Later removals go the same way while RunCleanup runs.
	v2 := bigTree(50, 2000, 6)
	rev2 := interruptedBuild(t, ctl, n, v2, 10)
	if err := os.WriteFile(filepath.Join(n.dir, "partial.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	reopen(t, n)
	rels = n.rels
	wg.Go(func() { rels.RunCleanup(ctx) })
	waitFor(t, "the unusable partial release removed", func() bool {
		m, _ := filepath.Glob(filepath.Join(n.dir, "releases", ".*"))
		return len(m) == 0
	})
	mustApply(t, n, rev2, ctl.client())
	checkTree(t, n.target, v2)
}

func mustWrite2(t *testing.T, p, data string) {
	t.Helper()
	mustMkdir(t, filepath.Dir(p))
	mustWrite(t, p, data)
}

// TestPartialStateNamesTheRevision: partial.json is the documented record
// of an interrupted build: its revision, a bitmap of durable files, and
// their identities.
func TestPartialStateNamesTheRevision(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	rev := interruptedBuild(t, ctl, n, bigTree(100, 4000, 7), 40)
	data, err := os.ReadFile(filepath.Join(n.dir, "partial.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		ID         string `json:"id"`
		Durable    []byte `json:"durable"`
		Identities []byte `json:"identities"`
	}
	if err := json.Unmarshal(data, &st); err != nil || st.ID != rev.ID {
		t.Fatalf("partial.json = %s (%v); want id %s", data, err, rev.ID)
	}
	ones := 0
	for _, b := range st.Durable {
		for ; b != 0; b &= b - 1 {
			ones++
		}
	}
	if ones < 20 {
		t.Errorf("partial.json records %d durable files after a stop; want the files written", ones)
	}
	if len(st.Identities) < 20*3 {
		t.Errorf("partial.json records %d bytes of identities; want one per durable file", len(st.Identities))
	}
}

// TestResumeTrustsOnlyWhatTheAgentPlaced: between a crash and the resume,
// anything may have written into the partial release (a stray process, an
// attacker who got write access there). The resume keeps a recorded file
// without reading it only while it is the inode the agent recorded,
// unchanged; it reads back one that changed, and quarantines it if its
// content is wrong; it quarantines what the agent does not own, whatever
// its content; it removes the agent's own debris. Nothing planted reaches
// the release, every file the resume kept has its identity recorded, and
// the audit of the served release never looks into the partial one.
func TestResumeTrustsOnlyWhatTheAgentPlaced(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: files of another owner are planted with chown")
		}
		t.Skip("needs root to plant files of another owner")
	}
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	v0 := siteTree("v0")
	mustApply(t, n, ctl.publish(v0), ctl.client())
	// With a directory Moodle makes 02777: no entry of the release may be
	// writable by group or others, resumed or not.
	v1 := append(bigTree(200, 6000, 8), tdir("loose", 0o2777), tfile("loose/x.php", 0o666, "x"))
	rev := interruptedBuild(t, ctl, n, v1, 100)
	have := partialContent(t, n, v1)
	partial := filepath.Join(n.dir, "releases", ".partial")

	// Two recorded files: one rewritten in place with other bytes of the
	// same size, one only touched. One file the build had not placed yet,
	// planted with the right content by another user; a directory of
	// another user; a stray file of the agent's.
	var rewritten, touched, planted tnode
	for _, nd := range v1 {
		if nd.typ != mirror.TypeFile || len(nd.data) < 100 {
			continue
		}
		h := sha256.Sum256([]byte(nd.data))
		switch {
		case have[h] && rewritten.path == "":
			rewritten = nd
		case have[h] && touched.path == "":
			touched = nd
		case !have[h] && planted.path == "":
			planted = nd
		}
	}
	if touched.path == "" || planted.path == "" {
		t.Fatal("the interrupted build left too few or too many files")
	}
	spoil(t, filepath.Join(partial, rewritten.path), func(b []byte) []byte { return bytes.Repeat([]byte{'!'}, len(b)) })
	delete(have, sha256.Sum256([]byte(rewritten.data)))
	old := time.Now().Add(-time.Hour)
	mustDo(t, os.Chtimes(filepath.Join(partial, touched.path), old, old))
	plant := func(p, data string) {
		mustWrite2(t, p, data)
		mustDo(t, os.Chown(p, 65534, 65534))
		mustDo(t, os.Chmod(p, 0o444))
	}
	plant(filepath.Join(partial, planted.path), planted.data)
	plant(filepath.Join(partial, "d3", "cache", "shell.php"), "<?php system($_GET['c']);")
	mustDo(t, os.Chown(filepath.Join(partial, "d3", "cache"), 65534, 65534))
	mustWrite(t, filepath.Join(partial, "d4", "stray.tmp"), "the agent's own debris")

	// The audit looks at the served release only.
	rep, err := n.rels.Inspect(context.Background())
	if err != nil || len(rep.Differences) != 0 {
		t.Fatalf("inspection of the served release: %+v, %v", rep, err)
	}

	log := reopen(t, n)
	src := &cutSource{Source: ctl.client()}
	mustApply(t, n, rev, src)
	checkTree(t, n.target, v1)
	checkFetchedOnlyMissing(t, src, v1, have)
	checkQuarantined(t, n, rewritten.path, planted.path, "d3/cache/shell.php")
	for _, p := range []string{touched.path, "d4/stray.tmp"} {
		if m, _ := filepath.Glob(filepath.Join(n.dir, "quarantine", "*", p)); len(m) > 0 {
			t.Errorf("%s quarantined: %v", p, m)
		}
	}
	for _, want := range []string{"changed=2 ", "quarantined=3 ", "files_read_back=2 "} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("resume log lacks %q:\n%s", want, log)
		}
	}
	err = filepath.WalkDir(n.release(rev.ID), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, err := d.Info(); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("%s: not the agent's (%v)", p, err)
		}
		return nil
	})
	mustDo(t, err)
	if bad := writableEntries(t, n.target); len(bad) > 0 {
		t.Errorf("writable by group or others: %v", bad)
	}
	// Identities recorded for every file, those the resume kept included:
	// the identity check finds nothing, without reading content.
	rep, err = n.rels.Inspect(context.Background())
	if err != nil || rep.Release.ID != rev.ID || rep.Content || len(rep.Differences) != 0 {
		t.Fatalf("inspection of the resumed release: %+v, %v", rep, err)
	}
	checkNoTemps(t, n)
}

// TestResumeOfARecycledRelease: a build that made its tree from a kept
// release (recycled) is interrupted. The resume trusts the recycled files
// the new revision keeps by the identities the release was kept with, and
// the files fetched by those recorded at the checkpoint: it reads nothing
// back and fetches only what the partial release lacks.
func TestResumeOfARecycledRelease(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
	v1 := bigTree(200, 6000, 9)
	rev1 := ctl.publish(v1)
	mustApply(t, n, rev1, ctl.client())
	mustApply(t, n, ctl.publish(siteTree("v2")), ctl.client())
	recycled := mustStat(t, n.release(rev1.ID))
	// v3 keeps half of v1's files and changes the others.
	v3 := append([]tnode(nil), v1...)
	for i, nd := range bigTree(200, 6000, 10) {
		if nd.typ == mirror.TypeFile && i%2 == 0 && nd.data != "shared body" {
			v3[i].data = nd.data
		}
	}
	rev3 := interruptedBuild(t, ctl, n, v3, 30)
	if !os.SameFile(recycled, mustStat(t, filepath.Join(n.dir, "releases", ".partial"))) {
		t.Fatal("v1 was not recycled into the partial release: the test proves nothing")
	}
	have := partialContent(t, n, v3)

	log := reopen(t, n)
	src := &cutSource{Source: ctl.client()}
	mustApply(t, n, rev3, src)
	checkTree(t, n.target, v3)
	checkFetchedOnlyMissing(t, src, v3, have)
	if !strings.Contains(log.String(), "files_read_back=0 ") || strings.Contains(log.String(), "level=WARN") {
		t.Errorf("resume log: want a resume that read nothing back and found nothing wrong:\n%s", log)
	}
	rep, err := n.rels.Inspect(context.Background())
	if err != nil || rep.Release.ID != rev3.ID || rep.Content || len(rep.Differences) != 0 {
		t.Fatalf("inspection of the resumed release: %+v, %v", rep, err)
	}
	checkNoTemps(t, n)
}

// TestQuarantinePrunedInTheBackground: the quarantine keeps its newest 20
// directories; older ones are set aside at once, like crash leftovers, and
// removed by RunCleanup with a log line each, never by the repair that
// filled the quarantine.
func TestQuarantinePrunedInTheBackground(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 5})
	v1 := ctl.publish(looseTree("1"))
	mustApply(t, n, v1, ctl.client())
	mustApply(t, n, ctl.publish(looseTree("2")), ctl.client())
	var old []string
	for i := range 25 {
		name := fmt.Sprintf("20200101T0000%02d.000000000Z-0123456789ab", i)
		mustWrite2(t, filepath.Join(n.dir, "quarantine", name, "x.php"), "evidence")
		old = append(old, name)
	}
	tamper(t, n.release(v1.ID))
	log := reopen(t, n)
	mustApply(t, n, v1, ctl.client()) // the rollback repairs v1 and quarantines
	checkQuarantined(t, n, "shell.php")
	for i, name := range old {
		_, err := os.Stat(filepath.Join(n.dir, "quarantine", name))
		if gone := errors.Is(err, fs.ErrNotExist); gone != (i < 6) {
			t.Errorf("quarantine %s: %v; want the 6 oldest set aside", name, err)
		}
	}
	if got := n.rels.Pending(); got != 6 {
		t.Fatalf("pending cleanups = %d; want 6", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { n.rels.RunCleanup(ctx) })
	waitFor(t, "the cleanup", func() bool { return n.rels.Pending() == 0 && len(tempsIn(n)) == 0 })
	waitFor(t, "the cleanup log lines", func() bool { return strings.Count(log.String(), "cleanup done") == 6 })
	if !strings.Contains(log.String(), `what="quarantine `+old[0]) {
		t.Errorf("cleanup log does not name the quarantine directory:\n%s", log)
	}
}

// snapshotSource passes everything to a cutSource and, when the fetch
// starts, copies partial.json: the record a kill at that moment leaves
// (the files the spare brought, nothing fetched yet), where a stop records
// the files fetched since.
type snapshotSource struct {
	*cutSource
	state string // path of partial.json
	once  sync.Once
	snap  []byte
	err   error
}

func (s *snapshotSource) Objects(ctx context.Context, hashes []mirror.Hash, fn func(mirror.Hash, int64, io.Reader) error) error {
	s.once.Do(func() { s.snap, s.err = os.ReadFile(s.state) })
	return s.cutSource.Objects(ctx, hashes, fn)
}

// TestResumeOfABuildFromTheSpare: a build that started from the warm
// spare (renamed to the partial release) is stopped, killed or fails in
// the middle of its fetch. The next build resumes it: the files the spare
// brought are trusted by the identities the spare recorded, without being
// read; after a stop the files fetched are trusted by the last record,
// after a kill they are read back; only what is missing is fetched, the
// unchanged files keep their inodes, and the release is exactly the new
// tree, whether the spare was linked from the current release or made
// from a recycled one.
func TestResumeOfABuildFromTheSpare(t *testing.T) {
	for _, tc := range []struct {
		name     string
		recycled bool // the spare made from a release gc would remove
		kill     bool // no record after the spare's: the files fetched are read back
		restart  bool // the store is opened again before the resume
	}{
		{name: "stop and restart", restart: true},
		{name: "kill", recycled: true, kill: true, restart: true},
		{name: "failure and retry", recycled: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctl := newFakeController(t)
			n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
			if tc.recycled {
				mustApply(t, n, ctl.publish(siteTree("v0")), ctl.client())
			}
			v1 := bigTree(200, 6000, 12)
			rev1 := ctl.publish(v1)
			mustApply(t, n, rev1, ctl.client())
			mustDo(t, n.rels.PrepareSpare(context.Background()))
			if got := mirror.SpareOf(n.rels); got != rev1.ID {
				t.Fatalf("spare holds %q, want %s", got, rev1.ID)
			}
			spareDir := mustStat(t, filepath.Join(n.dir, "releases", ".spare"))

			// v2 changes every other file of v1.
			v2 := append([]tnode(nil), v1...)
			for i, nd := range bigTree(200, 6000, 13) {
				if nd.typ == mirror.TypeFile && i%2 == 0 && nd.data != "shared body" {
					v2[i].data = nd.data
				}
			}
			rev2 := ctl.publish(v2)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cut := &snapshotSource{cutSource: &cutSource{Source: ctl.client(), after: 40, cancel: cancel},
				state: filepath.Join(n.dir, "partial.json")}
			if err := n.rels.Apply(ctx, rev2, cut); !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted apply: %v", err)
			}
			partial := filepath.Join(n.dir, "releases", ".partial")
			if !os.SameFile(spareDir, mustStat(t, partial)) {
				t.Fatal("the build did not start from the spare: the test proves nothing")
			}
			if _, err := os.Lstat(filepath.Join(n.dir, "releases", ".spare")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the spare is still there beside the partial release: %v", err)
			}
			if cut.err != nil || len(cut.snap) == 0 {
				t.Fatalf("no partial.json when the fetch started: %v", cut.err)
			}
			have := partialContent(t, n, v2)
			_, fetchedBefore := cut.fetched()
			if fetchedBefore == 0 {
				t.Fatal("nothing fetched before the interruption")
			}
			if tc.kill {
				mustDo(t, os.WriteFile(filepath.Join(n.dir, "partial.json"), cut.snap, 0o644))
				// After a power loss, a file fetched after the last record
				// may hold anything.
				spoiled := false
				for i := 0; i < len(v2) && !spoiled; i += 2 {
					if h := sha256.Sum256([]byte(v2[i].data)); v2[i].typ == mirror.TypeFile && v2[i].data != v1[i].data && have[h] {
						spoil(t, filepath.Join(partial, v2[i].path), func(b []byte) []byte { return bytes.Repeat([]byte{0}, len(b)) })
						delete(have, h)
						spoiled = true
					}
				}
				if !spoiled {
					t.Fatal("no fetched file in the partial release to spoil")
				}
			}
			var log *testutil.LogBuffer
			if tc.restart {
				log = reopen(t, n)
			}

			src := &cutSource{Source: ctl.client()}
			mustApply(t, n, rev2, src)
			checkTree(t, n.target, v2)
			checkFetchedOnlyMissing(t, src, v2, have)
			for i := 1; i < len(v1); i += 2 {
				if v1[i].typ == mirror.TypeFile && v1[i].data == v2[i].data && !sameInode(t,
					filepath.Join(n.release(rev1.ID), v1[i].path), filepath.Join(n.release(rev2.ID), v2[i].path)) {
					t.Errorf("%s: unchanged, but not the inode of the release before", v1[i].path)
				}
			}
			if log != nil {
				readBack := !strings.Contains(log.String(), "files_read_back=0 ")
				if !strings.Contains(log.String(), "resuming partial release") || readBack != tc.kill ||
					strings.Contains(log.String(), "level=WARN") {
					t.Errorf("resume log: want a resume that read back only the files fetched after the last record (%v), and nothing wrong:\n%s", tc.kill, log)
				}
			}
			rep, err := n.rels.Inspect(context.Background())
			if err != nil || rep.Release.ID != rev2.ID || rep.Content || len(rep.Differences) != 0 {
				t.Fatalf("inspection of the resumed release: %+v, %v", rep, err)
			}
			checkNoTemps(t, n)
		})
	}
}
