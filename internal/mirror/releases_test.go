package mirror_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	sha256 "github.com/minio/sha256-simd"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// siteTree is a small tree with every kind of entry: modes, an empty
// directory, a setgid directory, symlinks to a file and a directory, an
// empty file, and the same content under several paths and modes.
func siteTree(version string) []tnode {
	return []tnode{
		tdir("app", 0o755),
		tfile("app/index.php", 0o644, "<?php require 'lib/a.php';\n"),
		tfile("app/run.sh", 0o755, "#!/bin/sh\necho run\n"),
		tfile("app/suid", 0o4755, "#!/bin/sh\nid\n"),
		tdir("app/empty", 0o750),
		tdir("app/lib", 0o755),
		tfile("app/lib/a.php", 0o644, "<?php // shared body\n"),
		tfile("app/lib/b.php", 0o644, "<?php // shared body\n"),
		tfile("app/lib/private.php", 0o600, "<?php // shared body\n"),
		tfile("app/lib/zero", 0o644, ""),
		tlink("app/current", "lib/a.php"),
		tlink("app/libdir", "lib"),
		tdir("shared", 0o2775),
		tfile("shared/config.php", 0o640, "<?php $CFG->dbpass = 'secret';\n"),
		tfile("version.txt", 0o644, version+" "+strings.Repeat("v", 100)),
		tfile("version2.txt", 0o644, version+" "+strings.Repeat("w", 100)),
	}
}

// withFile returns nodes with the file at p replaced by data.
func withFile(nodes []tnode, p, data string) []tnode {
	out := append([]tnode(nil), nodes...)
	for i := range out {
		if out[i].path == p {
			out[i].data = data
			return out
		}
	}
	return append(out, tfile(p, 0o644, data))
}

type testNode struct {
	dir, target string
	rels        *mirror.Releases
}

func (n *testNode) release(id string) string { return filepath.Join(n.dir, "releases", id) }

// mustOpenReleases opens a release store in a new temporary directory.
func mustOpenReleases(t *testing.T, cfg mirror.ReleasesConfig) *testNode {
	t.Helper()
	base := t.TempDir()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(base, "data", "mirror")
	}
	if cfg.Target == "" {
		cfg.Target = filepath.Join(base, "www", "moodle")
	}
	n := &testNode{dir: cfg.Dir, target: cfg.Target}
	n.rels = mirror.NewReleases(cfg)
	if err := n.rels.Open(context.Background()); err != nil {
		t.Fatalf("open: %v", err)
	}
	return n
}

func mustApply(t *testing.T, n *testNode, rev mirror.Revision, src mirror.Source) {
	t.Helper()
	if err := n.rels.Apply(context.Background(), rev, src); err != nil {
		t.Fatalf("apply %d: %v", rev.Seq, err)
	}
	if cur, ok := n.rels.Current(); !ok || cur.ID != rev.ID {
		t.Fatalf("current = %+v, %v; want %s", cur, ok, rev.ID)
	}
}

// checkTree fails unless the tree Target resolves to is nodes exactly:
// paths, types, bytes, symlink targets, and modes (files without write,
// setuid and setgid bits; directories without write for group and others).
func checkTree(t *testing.T, target string, nodes []tnode) {
	t.Helper()
	want, _ := buildManifest(nodes)
	for i := range want.Entries {
		switch e := &want.Entries[i]; e.Type {
		case mirror.TypeFile:
			e.Mode &^= 0o6222
		case mirror.TypeDir:
			e.Mode &^= 0o022
		}
	}
	got := readTree(t, target)
	if g, w := string(got.Encode()), string(want.Encode()); g != w {
		t.Fatalf("tree at %s:\n%s\nwant:\n%s", target, g, w)
	}
}

// readTree reads the tree under root (through a symlink) into a manifest.
func readTree(t *testing.T, root string) *mirror.Manifest {
	t.Helper()
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	m := &mirror.Manifest{}
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == real {
			return err
		}
		rel, _ := filepath.Rel(real, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := mirror.Entry{Path: filepath.ToSlash(rel), Mode: mirror.ModeBits(fi.Mode())}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type, e.Mode = mirror.TypeSymlink, 0o777
			e.Target, err = os.Readlink(p)
		case fi.IsDir():
			e.Type = mirror.TypeDir
		default:
			e.Type = mirror.TypeFile
			var b []byte
			b, err = os.ReadFile(p)
			e.Size, e.SHA256 = int64(len(b)), sha256.Sum256(b)
		}
		m.Entries = append(m.Entries, e)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkNoTemps fails if a temporary name is left in the store or next to
// Target.
func checkNoTemps(t *testing.T, n *testNode) {
	t.Helper()
	for _, d := range []string{"releases", "manifests", "revisions"} {
		ents, _ := os.ReadDir(filepath.Join(n.dir, d))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				t.Errorf("leftover %s/%s", d, e.Name())
			}
		}
	}
	for _, p := range []string{filepath.Join(n.dir, "releases", ".partial"), filepath.Join(n.dir, "partial.json")} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("leftover %s (%v)", p, err)
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(n.target))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), filepath.Base(n.target)+".tmp-") {
			t.Errorf("leftover %s", e.Name())
		}
	}
}

// tempsIn lists the temporary names in the releases directory.
func tempsIn(n *testNode) []string {
	m, _ := filepath.Glob(filepath.Join(n.dir, "releases", ".tmp-*"))
	return m
}

func sameInode(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Lstat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Lstat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(fa, fb)
}

func TestApplyBuildsTheTree(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	nodes := siteTree("v1")
	rev := ctl.publish(nodes)

	mustApply(t, n, rev, ctl.client())

	checkTree(t, n.target, nodes)
	if dest, err := os.Readlink(n.target); err != nil || dest != n.release(rev.ID) {
		t.Errorf("target -> %q, %v; want %s", dest, err, n.release(rev.ID))
	}
	c := ctl.counts()
	// 10 files, 8 distinct contents, all in one request.
	if c.objectRequests != 1 || c.objectsServed != 8 {
		t.Errorf("objects: %d requests, %d served; want 1, 8", c.objectRequests, c.objectsServed)
	}
	rel := n.release(rev.ID)
	if !sameInode(t, filepath.Join(rel, "app/lib/a.php"), filepath.Join(rel, "app/lib/b.php")) {
		t.Error("same content and mode: not one inode")
	}
	if sameInode(t, filepath.Join(rel, "app/lib/a.php"), filepath.Join(rel, "app/lib/private.php")) {
		t.Error("same content, other mode: shares an inode")
	}
	cur, _ := n.rels.Current()
	if cur.Seq != 1 || cur.Files != 10 || cur.Message != "test" || cur.Created.IsZero() {
		t.Errorf("current = %+v; want seq 1, 10 files, the controller's metadata", cur)
	}
	if p := n.rels.Progress(); p.Phase != mirror.PhaseIdle || p.FilesDone != 10 || p.Files != 10 {
		t.Errorf("progress = %+v; want idle, 10 of 10 files", p)
	}
	for _, kind := range []string{"manifests", "revisions"} {
		if _, err := os.Stat(filepath.Join(n.dir, kind, rev.ID+".json")); err != nil {
			t.Error(err)
		}
	}
	checkNoTemps(t, n)
}

func TestApplyOneChangeLinksTheRest(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	v1 := siteTree("v1")
	rev1 := ctl.publish(v1)
	mustApply(t, n, rev1, ctl.client())
	ctl.counts()

	v2 := withFile(v1, "app/index.php", "<?php // changed\n")
	rev2 := ctl.publish(v2)
	mustApply(t, n, rev2, ctl.client())

	checkTree(t, n.target, v2)
	c := ctl.counts()
	if c.objectRequests != 1 || c.objectsServed != 1 {
		t.Errorf("objects: %d requests, %d served; want 1, 1", c.objectRequests, c.objectsServed)
	}
	if c.deltaRequests != 1 || c.manifestRequests != 0 {
		t.Errorf("manifest: %d deltas, %d full; want the delta only", c.deltaRequests, c.manifestRequests)
	}
	for _, e := range readTree(t, n.target).Entries {
		if e.Type != mirror.TypeFile {
			continue
		}
		same := sameInode(t, filepath.Join(n.release(rev1.ID), e.Path), filepath.Join(n.release(rev2.ID), e.Path))
		if same != (e.Path != "app/index.php") {
			t.Errorf("%s: shares its inode with release 1: %v", e.Path, same)
		}
	}
	if got := len(n.rels.List()); got != 2 {
		t.Errorf("kept %d releases; want 2", got)
	}
}

func TestApplyFullManifestWhenDeltaBaseUnknown(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	rev1 := ctl.publish(siteTree("v1"))
	mustApply(t, n, rev1, ctl.client())
	ctl.noDelta = true
	ctl.counts()

	v2 := siteTree("v2")
	rev2 := ctl.publish(v2)
	mustApply(t, n, rev2, ctl.client())

	checkTree(t, n.target, v2)
	if c := ctl.counts(); c.deltaRequests != 1 || c.manifestRequests != 1 || c.objectsServed != 2 {
		t.Errorf("%+v; want 1 delta refused, 1 full manifest, 2 objects", c)
	}
}

func TestRollbackToAKeptReleaseFetchesNothing(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	v1, v2 := siteTree("v1"), siteTree("v2")
	rev1, rev2 := ctl.publish(v1), ctl.publish(v2)
	mustApply(t, n, rev1, ctl.client())
	mustApply(t, n, rev2, ctl.client())
	ctl.counts()

	// Seq and ID only, as a rollback target arrives by gossip.
	mustApply(t, n, mirror.Revision{Seq: rev1.Seq, ID: rev1.ID}, ctl.client())

	checkTree(t, n.target, v1)
	if c := ctl.counts(); c != (fakeCounts{}) {
		t.Errorf("rollback asked the controller: %+v", c)
	}
	if cur, _ := n.rels.Current(); cur.Files != 10 || cur.Message != "test" {
		t.Errorf("current = %+v; want the kept metadata", cur)
	}
}

func TestApplyRefusesBadManifests(t *testing.T) {
	good := siteTree("v1")
	goodM, _ := buildManifest(good)
	tests := []struct {
		name  string
		nodes []tnode
		id    string // served under this id instead of its own
	}{
		{name: "dotdot path", nodes: append(siteTree("x"), tfile("../x", 0o644, "evil"))},
		{name: "dotdot inside", nodes: append(siteTree("x"), tfile("app/../../x", 0o644, "evil"))},
		{name: "absolute path", nodes: append(siteTree("x"), tfile("/etc/evil", 0o644, "evil"))},
		{name: "symlink out of the tree", nodes: append(siteTree("x"), tlink("app/a", "../../etc"))},
		{name: "absolute symlink", nodes: append(siteTree("x"), tlink("app/a", "/etc/passwd"))},
		{name: "symlink out through a symlink", nodes: append(siteTree("x"), tlink("app/up", ".."), tlink("app/b", "up/.."))},
		{name: "wrong id", nodes: siteTree("x"), id: goodM.ID()[:60] + "0000"},
		{name: "file under a symlink", nodes: append(siteTree("x"), tfile("app/libdir/evil", 0o644, "evil"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctl := newFakeController(t)
			n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
			rev1 := ctl.publish(good)
			mustApply(t, n, rev1, ctl.client())

			m, objects := buildManifest(tt.nodes)
			id := cmpOr(tt.id, m.ID())
			bad := ctl.publishRaw(id, m.Encode(), objects)
			err := n.rels.Apply(context.Background(), bad, ctl.client())
			if !errors.Is(err, mirror.ErrBadManifest) {
				t.Fatalf("apply: %v; want ErrBadManifest", err)
			}
			t.Logf("refused: %v", err)
			if cur, _ := n.rels.Current(); cur.ID != rev1.ID {
				t.Errorf("current = %s; want %s", cur.ID, rev1.ID)
			}
			checkTree(t, n.target, good)
			if _, err := os.Lstat(filepath.Join(filepath.Dir(n.dir), "x")); err == nil {
				t.Error("a file was written outside the tree")
			}
			checkNoTemps(t, n)

			next := siteTree("v3")
			mustApply(t, n, ctl.publish(next), ctl.client())
			checkTree(t, n.target, next)
			checkNoTemps(t, n)
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestApplyRecoversFromBadObjectStreams(t *testing.T) {
	// A file above 1 MB is streamed to disk rather than held in memory.
	big := []tnode{tdir("data", 0o755), tfile("data/big.bin", 0o644, strings.Repeat("0123456789abcdef", 100_000))}
	tests := []struct {
		name     string
		nodes    []tnode
		fault    objectFault
		requests int // objects requests of the sync
	}{
		{name: "wrong bytes", fault: faultCorrupt, requests: 2},
		{name: "truncated stream", fault: faultTruncate, requests: 2},
		{name: "frames out of order", fault: faultReorder, requests: 2},
		{name: "missing frame", fault: faultShort, requests: 2},
		{name: "wrong bytes in a large file", nodes: big, fault: faultCorrupt, requests: 2},
		{name: "large file cut short", nodes: big, fault: faultTruncate, requests: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctl := newFakeController(t)
			n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
			nodes := tt.nodes
			if nodes == nil {
				nodes = siteTree("v1")
			}
			rev := ctl.publish(nodes)
			ctl.setFaults(faultNone, tt.fault)

			mustApply(t, n, rev, ctl.client())

			checkTree(t, n.target, nodes)
			if c := ctl.counts(); c.objectRequests != tt.requests {
				t.Errorf("%d objects requests; want %d", c.objectRequests, tt.requests)
			}
			checkNoTemps(t, n)
		})
	}
}

func TestApplyFailsOnPersistentlyBadObjects(t *testing.T) {
	for _, fault := range []objectFault{faultCorrupt, faultTruncate, faultReorder, faultShort} {
		t.Run("", func(t *testing.T) {
			ctl := newFakeController(t)
			n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
			v1 := siteTree("v1")
			mustApply(t, n, ctl.publish(v1), ctl.client())
			v2 := withFile(siteTree("v2"), "app/new.php", strings.Repeat("n", 1000))
			rev2 := ctl.publish(v2)
			ctl.counts()
			ctl.setFaults(fault)

			if err := n.rels.Apply(context.Background(), rev2, ctl.client()); err == nil {
				t.Fatal("apply succeeded with a controller that always sends bad objects")
			} else {
				t.Logf("failed: %v", err)
			}
			checkTree(t, n.target, v1)
			if m := tempsIn(n); len(m) > 0 {
				t.Errorf("temporary names after the failure: %v", m)
			}
			if c := ctl.counts(); c.objectRequests < 2 || c.objectRequests > 8 {
				t.Errorf("%d objects requests; want a few bounded retries", c.objectRequests)
			}
			if _, err := os.Stat(n.release(rev2.ID)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("failed release exists: %v", err)
			}

			ctl.setFaults(faultNone)
			mustApply(t, n, rev2, ctl.client())
			checkTree(t, n.target, v2)
			checkNoTemps(t, n)
		})
	}
}

func TestOpenAdoptsARealDirectory(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "www", "moodle")
	if err := os.MkdirAll(filepath.Join(target, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "sub", "old.php"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Target: target})
	if _, ok := n.rels.Current(); ok {
		t.Error("a real directory counts as a release")
	}
	nodes := siteTree("v1")
	mustApply(t, n, ctl.publish(nodes), ctl.client())

	checkTree(t, target, nodes)
	if fi, err := os.Lstat(target); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("target is not a symlink: %v %v", fi, err)
	}
	b, err := os.ReadFile(filepath.Join(target+".pre-nodeagent", "sub", "old.php"))
	if err != nil || string(b) != "old" {
		t.Errorf("moved-aside directory: %q, %v", b, err)
	}
	checkNoTemps(t, n)
}

func TestOpenRefusesToAdoptWhenTheAsideNameIsTaken(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "moodle")
	for _, d := range []string{target, target + ".pre-nodeagent"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "keep"), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rels := mirror.NewReleases(mirror.ReleasesConfig{Dir: filepath.Join(base, "data"), Target: target})
	if err := rels.Open(context.Background()); err == nil {
		t.Fatal("open succeeded")
	}
	for _, d := range []string{target, target + ".pre-nodeagent"} {
		if b, err := os.ReadFile(filepath.Join(d, "keep")); err != nil || string(b) != d {
			t.Errorf("%s touched: %q %v", d, b, err)
		}
	}
}

func TestOpenRemovesCrashLeftovers(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	nodes := siteTree("v1")
	rev := ctl.publish(nodes)
	mustApply(t, n, rev, ctl.client())

	// A half-built release (with a read-only directory), half-written
	// metadata, a release renamed without metadata, orphan metadata, a
	// switch link never renamed, and a link of an interrupted adoption.
	orphan := strings.Repeat("ab", 32)
	incomplete := strings.Repeat("cd", 32)
	mustMkdir(t, filepath.Join(n.dir, "releases", ".tmp-"+orphan, "ro", "deep"))
	mustWrite(t, filepath.Join(n.dir, "releases", ".tmp-"+orphan, "ro", "deep", "f"), "x")
	if err := os.Chmod(filepath.Join(n.dir, "releases", ".tmp-"+orphan, "ro"), 0o555); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(n.dir, "manifests", ".tmp-x.json-123"), "x")
	mustWrite(t, filepath.Join(n.dir, "revisions", ".tmp-y.json-456"), "x")
	mustMkdir(t, filepath.Join(n.release(incomplete), "app"))
	mustWrite(t, filepath.Join(n.dir, "manifests", orphan+".json"), "x")
	mustWrite(t, filepath.Join(n.dir, "revisions", orphan+".json"), "{}")
	if err := os.Symlink(n.release(rev.ID), n.target+".tmp-crash"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(n.release(rev.ID), n.target+".pre-nodeagent"); err != nil {
		t.Fatal(err)
	}
	// Not ours: a regular file with a similar name stays.
	mustWrite(t, n.target+".tmp-users-file", "mine")

	reopened := mirror.NewReleases(mirror.ReleasesConfig{Dir: n.dir, Target: n.target, Keep: 3})
	if err := reopened.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.rels = reopened
	if cur, ok := reopened.Current(); !ok || cur.ID != rev.ID || cur.Seq != 1 {
		t.Errorf("current after reopen = %+v, %v; want %s", cur, ok, rev.ID)
	}
	if l := reopened.List(); len(l) != 1 || l[0].ID != rev.ID {
		t.Errorf("kept = %+v; want the one release", l)
	}
	for _, p := range []string{
		n.release(".tmp-" + orphan), n.release(incomplete),
		filepath.Join(n.dir, "manifests", orphan+".json"), filepath.Join(n.dir, "revisions", orphan+".json"),
		n.target + ".pre-nodeagent",
	} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: still there (%v)", p, err)
		}
	}
	if err := os.Remove(n.target + ".tmp-users-file"); err != nil {
		t.Errorf("user's file: %v", err)
	}
	// The trees are removed in the background.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { reopened.RunCleanup(ctx) })
	waitFor(t, "the cleanup", func() bool { return reopened.Pending() == 0 && len(tempsIn(n)) == 0 })
	cancel()
	wg.Wait()
	checkNoTemps(t, n)
	checkTree(t, n.target, nodes)

	// The reopened store builds the next release from the delta.
	ctl.counts()
	v2 := withFile(nodes, "version.txt", "v2")
	mustApply(t, n, ctl.publish(v2), ctl.client())
	checkTree(t, n.target, v2)
	if c := ctl.counts(); c.deltaRequests != 1 || c.objectsServed != 1 {
		t.Errorf("%+v; want a delta and 1 object", c)
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGCKeepsNewestAndCurrent(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
	var revs []mirror.Revision
	for _, v := range []string{"v1", "v2", "v3"} {
		rev := ctl.publish(siteTree(v))
		revs = append(revs, rev)
		mustApply(t, n, rev, ctl.client())
	}
	checkKept(t, n, revs[1], revs[2])

	// Back to seq 1, which was removed: built again, kept as current
	// besides the newest two.
	mustApply(t, n, revs[0], ctl.client())
	checkKept(t, n, revs[0], revs[1], revs[2])

	rev4 := ctl.publish(siteTree("v4"))
	mustApply(t, n, rev4, ctl.client())
	checkKept(t, n, revs[2], rev4)
}

// checkKept fails unless exactly want are kept, in the list and on disk.
func checkKept(t *testing.T, n *testNode, want ...mirror.Revision) {
	t.Helper()
	list := n.rels.List()
	var got, wantIDs []string
	for _, r := range list {
		got = append(got, r.ID)
	}
	for _, r := range want {
		wantIDs = append(wantIDs, r.ID)
	}
	if strings.Join(got, ",") != strings.Join(wantIDs, ",") {
		t.Errorf("kept %v; want %v", got, wantIDs)
	}
	for _, d := range []string{"releases", "manifests", "revisions"} {
		ents, err := os.ReadDir(filepath.Join(n.dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != len(want) {
			t.Errorf("%s has %d entries; want %d", d, len(ents), len(want))
		}
	}
}

func TestSwitchIsAtomicForReaders(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	var revs []mirror.Revision
	for _, v := range []string{"one", "two", "three"} {
		nodes := siteTree(v)
		nodes = withFile(nodes, "a.txt", v)
		nodes = withFile(nodes, "b.txt", v)
		revs = append(revs, ctl.publish(nodes))
	}
	mustApply(t, n, revs[0], ctl.client())

	// The reader resolves Target once per round, as a web server resolving
	// a request's path does, then reads both files of that tree.
	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan string, 1)
	wg.Go(func() {
		for !stop.Load() {
			root, err := os.OpenRoot(n.target)
			if err != nil {
				errs <- "open target: " + err.Error()
				return
			}
			a, errA := root.ReadFile("a.txt")
			b, errB := root.ReadFile("b.txt")
			root.Close()
			if errA != nil || errB != nil || string(a) != string(b) {
				errs <- "a.txt=" + string(a) + " b.txt=" + string(b)
				return
			}
			reads.Add(1)
		}
	})
	for i := range 60 {
		if err := n.rels.Apply(context.Background(), revs[(i+1)%3], ctl.client()); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	select {
	case e := <-errs:
		t.Fatalf("reader saw a mixed or missing tree: %s", e)
	default:
	}
	if reads.Load() == 0 {
		t.Fatal("the reader never read")
	}
}

func TestAfterSwitch(t *testing.T) {
	ctl := newFakeController(t)
	marker := filepath.Join(t.TempDir(), "reloaded")
	n := mustOpenReleases(t, mirror.ReleasesConfig{
		AfterSwitch: []string{"sh", "-c", `echo "$NODEAGENT_REVISION" > "$0"`, marker},
	})
	rev := ctl.publish(siteTree("v1"))
	mustApply(t, n, rev, ctl.client())
	if b, err := os.ReadFile(marker); err != nil || strings.TrimSpace(string(b)) != rev.ID {
		t.Errorf("after_switch output %q, %v; want the revision id", b, err)
	}
}

func TestAfterSwitchFailureKeepsTheSwitch(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{AfterSwitch: []string{"false"}})
	nodes := siteTree("v1")
	rev := ctl.publish(nodes)
	err := n.rels.Apply(context.Background(), rev, ctl.client())
	if !errors.Is(err, mirror.ErrAfterSwitch) {
		t.Fatalf("apply: %v; want ErrAfterSwitch", err)
	}
	if cur, _ := n.rels.Current(); cur.ID != rev.ID {
		t.Errorf("current = %s; want %s", cur.ID, rev.ID)
	}
	checkTree(t, n.target, nodes)
}

func TestOpenRefusesARegularFileAtTarget(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "moodle")
	mustWrite(t, target, "not a tree")
	rels := mirror.NewReleases(mirror.ReleasesConfig{Dir: filepath.Join(base, "data"), Target: target})
	if err := rels.Open(context.Background()); err == nil {
		t.Fatal("open succeeded")
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "not a tree" {
		t.Errorf("target touched: %q %v", b, err)
	}
}

func TestApplyFetchesWhatAKeptReleaseLost(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	v1 := siteTree("v1")
	rev1 := ctl.publish(v1)
	mustApply(t, n, rev1, ctl.client())
	if err := os.Remove(filepath.Join(n.release(rev1.ID), "app", "run.sh")); err != nil {
		t.Fatal(err)
	}
	ctl.counts()

	v2 := withFile(v1, "version.txt", "v2")
	mustApply(t, n, ctl.publish(v2), ctl.client())

	checkTree(t, n.target, v2)
	if c := ctl.counts(); c.objectsServed != 2 || c.objectRequests != 1 {
		t.Errorf("%+v; want the changed and the lost file in 1 request", c)
	}
}

func TestApplyRecyclesTheReleaseGCWouldRemove(t *testing.T) {
	v1 := []tnode{
		tdir("a", 0o755),
		tfile("a/keep.php", 0o644, "keep"),
		tfile("a/change.php", 0o644, "c1"),
		tfile("a/mode.sh", 0o644, "mode"),
		tdir("a/tofile", 0o755),
		tfile("a/tofile/x", 0o644, "x"),
		tfile("a/todir", 0o644, "f"),
		tlink("a/link", "keep.php"),
		tlink("a/linktofile", "keep.php"),
		tdir("gone", 0o755),
		tdir("gone/deep", 0o755),
		tfile("gone/deep/f", 0o644, "g"),
		tdir("modes", 0o755),
		tdir("ro", 0o555),
		tfile("ro/f", 0o644, "r1"),
		tfile("version.txt", 0o644, "1"),
	}
	v3 := []tnode{
		tdir("a", 0o755),
		tfile("a/keep.php", 0o644, "keep"),
		tfile("a/change.php", 0o644, "c3"),
		tfile("a/mode.sh", 0o755, "mode"),
		tfile("a/tofile", 0o644, "now a file"),
		tdir("a/todir", 0o750),
		tfile("a/todir/y", 0o644, "y"),
		tlink("a/link", "change.php"),
		tfile("a/linktofile", 0o644, "was a link"),
		tdir("modes", 0o700),
		tdir("newempty", 0o750),
		tdir("ro", 0o555),
		tfile("ro/f", 0o644, "r3"),
		tfile("ro/new", 0o644, "n"),
		tfile("version.txt", 0o644, "3"),
	}
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
	// Each release from the third on is made from the one before the
	// current: v3 from v1, then v1 from v3.
	steps := [][]tnode{v1, v3, withFile(v3, "version.txt", "3b"), withFile(v1, "version.txt", "1b")}
	var revs []mirror.Revision
	for i, nodes := range steps {
		rev := ctl.publish(nodes)
		var recycled os.FileInfo
		if i >= 2 {
			recycled = mustStat(t, n.release(revs[i-2].ID))
		}
		ctl.counts()
		mustApply(t, n, rev, ctl.client())
		revs = append(revs, rev)
		checkTree(t, n.target, nodes)
		checkNoTemps(t, n)
		if recycled != nil && !os.SameFile(recycled, mustStat(t, n.release(rev.ID))) {
			t.Errorf("step %d: release %d was not recycled", i+1, i-1)
		}
		if i == 0 {
			continue
		}
		prev := n.release(revs[i-1].ID)
		for _, e := range readTree(t, n.target).Entries {
			if e.Type != mirror.TypeFile {
				continue
			}
			before, err := os.Lstat(filepath.Join(prev, e.Path))
			same := err == nil && os.SameFile(before, mustStat(t, filepath.Join(n.release(rev.ID), e.Path)))
			if unchanged := sameEntry(t, prev, n.release(rev.ID), e.Path); unchanged != same {
				t.Errorf("step %d: %s: unchanged %v, shares the inode %v", i+1, e.Path, unchanged, same)
			}
		}
	}
	checkKept(t, n, revs[2], revs[3])
}

func mustStat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// sameEntry reports whether the file at p has the same bytes and mode in
// the trees a and b.
func sameEntry(t *testing.T, a, b, p string) bool {
	t.Helper()
	fa, errA := os.Lstat(filepath.Join(a, p))
	fb, errB := os.Lstat(filepath.Join(b, p))
	if errA != nil || errB != nil || !fa.Mode().IsRegular() || fa.Mode() != fb.Mode() {
		return false
	}
	x, _ := os.ReadFile(filepath.Join(a, p))
	y, _ := os.ReadFile(filepath.Join(b, p))
	return string(x) == string(y)
}
