package mirror_test

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
)

// watchPair is a store that learns changes from its watcher and one that
// scans the whole source at every publish, on the same source: their
// revision ids must always agree.
type watchPair struct {
	t            *testing.T
	src          string
	watched, ref *mirror.Store
}

func newWatchPair(t *testing.T, src string) *watchPair {
	t.Helper()
	p := &watchPair{t: t, src: src}
	p.watched = stOpen(t, mirror.StoreConfig{Dir: t.TempDir(), Source: src})
	p.ref = stOpen(t, mirror.StoreConfig{Dir: t.TempDir(), Source: src, FullScanEvery: -1})
	mirror.SetRacyMargin(p.ref, 0) // a scan that trusts identities, like the watcher's
	return p
}

// publish publishes both stores and fails unless they agree.
func (p *watchPair) publish(step string) mirror.Revision {
	p.t.Helper()
	got, _, err := p.watched.Publish(context.Background(), step)
	if err != nil {
		p.t.Fatalf("%s: watched publish: %v", step, err)
	}
	want, _, err := p.ref.Publish(context.Background(), step)
	if err != nil {
		p.t.Fatalf("%s: full-scan publish: %v", step, err)
	}
	if got.ID != want.ID {
		p.t.Fatalf("%s: watched publish %.12s (%s) differs from a full scan's %.12s\n%s",
			step, got.ID, mirror.LastScan(p.watched), want.ID, manifestDiff(p.t, p.watched, got.ID, p.ref, want.ID))
	}
	return got
}

// manifestDiff names the entries two revisions disagree on.
func manifestDiff(t *testing.T, a *mirror.Store, aid string, b *mirror.Store, bid string) string {
	ma := stManifest(t, stServe(t, a), aid)
	mb := stManifest(t, stServe(t, b), bid)
	d := mirror.Diff(aid, ma, mb)
	var lines []string
	for _, e := range d.Upsert {
		lines = append(lines, fmt.Sprintf("full scan has %+v", e))
	}
	for _, r := range d.Removed {
		lines = append(lines, "full scan lacks "+r)
	}
	return strings.Join(lines, "\n")
}

// TestWatcherMatchesFullScanOnRandomEdits applies random sequences of
// edits, renames, deletes, type changes (file, directory, symlink), mode
// changes and moves into and out of the tree, publishes after each, and
// checks that the revision equals a full scan's and that a web node built
// from it (from nothing, by recycling, or from its warm spare) holds the
// source byte for byte.
func TestWatcherMatchesFullScanOnRandomEdits(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 13))
	src := filepath.Join(t.TempDir(), "src")
	outside := t.TempDir()
	writeRandomSourceTree(t, src, r)
	p := newWatchPair(t, src)
	node := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
	client := mirror.NewClient(stServe(t, p.watched), nil)
	p.publish("initial")
	if got := mirror.LastScan(p.watched); !strings.HasPrefix(got, "full") {
		t.Fatalf("first publish: %s, want a full scan", got)
	}
	ed := &editor{t: t, r: r, src: src, outside: outside}
	for step := range 60 {
		var did []string
		for range 1 + r.IntN(4) {
			did = append(did, ed.randomEdit())
		}
		rev := p.publish(fmt.Sprintf("step %d: %s", step, strings.Join(did, ", ")))
		if got := mirror.LastScan(p.watched); !strings.HasPrefix(got, "changes") {
			t.Fatalf("step %d: %s, want the watcher's changes", step, got)
		}
		if step%3 == 2 {
			// Every other apply goes through the warm spare, so that both
			// ways of building a release see every kind of change.
			if step%2 == 0 {
				mustDo(t, node.rels.PrepareSpare(context.Background()))
			}
			mustApply(t, node, rev, client)
			if d := mirrortest.DiffTrees(src, node.target); d != nil {
				t.Fatalf("step %d: web node differs from the source: %v", step, d)
			}
		}
	}
}

func writeRandomSourceTree(t *testing.T, root string, r *rand.Rand) {
	t.Helper()
	for i := range 120 {
		rel := fmt.Sprintf("d%d/s%d/f%d.php", i%6, i%4, i)
		mustDo(t, mirrortest.WriteFile(root, rel, mirrortest.Content(nil, fmt.Sprint(r.Uint64()), r.IntN(3000))))
	}
	mustDo(t, os.Symlink("s0", filepath.Join(root, "d0", "link")))
}

// editor makes random changes to a source tree.
type editor struct {
	t            *testing.T
	r            *rand.Rand
	src, outside string
	n            int
}

// pick returns a random existing path of the tree (relative) whose type
// matches want ("" for any), or "".
func (ed *editor) pick(want fs.FileMode) string {
	var all []string
	filepath.WalkDir(ed.src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == ed.src {
			return nil
		}
		if want == 0 || d.Type()&fs.ModeType == want || (want == fs.ModePerm && d.Type().IsRegular()) {
			rel, _ := filepath.Rel(ed.src, p)
			all = append(all, rel)
		}
		return nil
	})
	if len(all) == 0 {
		return ""
	}
	return all[ed.r.IntN(len(all))]
}

func (ed *editor) newName(dir string) string {
	ed.n++
	return filepath.Join(dir, fmt.Sprintf("n%d", ed.n))
}

// randomEdit makes one change and says what it did.
func (ed *editor) randomEdit() string {
	t, r := ed.t, ed.r
	abs := func(rel string) string { return filepath.Join(ed.src, rel) }
	file, dir := ed.pick(fs.ModePerm), ed.pick(fs.ModeDir)
	switch op := r.IntN(11); {
	case op == 0 && file != "": // edit in place
		mustDo(t, os.WriteFile(abs(file), mirrortest.Content(nil, fmt.Sprint(r.Uint64()), r.IntN(4000)), 0o644))
		return "edit " + file
	case op == 1 && dir != "": // new file
		p := ed.newName(dir) + ".php"
		mustDo(t, os.WriteFile(abs(p), []byte("<?php "+p), 0o644))
		return "add " + p
	case op == 2 && file != "": // delete
		mustDo(t, os.Remove(abs(file)))
		return "rm " + file
	case op == 3 && file != "" && dir != "": // rename a file
		p := ed.newName(dir)
		mustDo(t, os.Rename(abs(file), abs(p)))
		return "mv " + file + " " + p
	case op == 4 && dir != "" && dir != ".": // rename a directory within the tree
		p := ed.newName(filepath.Dir(dir))
		if strings.HasPrefix(p+"/", dir+"/") {
			return "nothing"
		}
		mustDo(t, os.Rename(abs(dir), abs(p)))
		return "mv dir " + dir + " " + p
	case op == 5 && dir != "": // move a directory out of the tree
		p := ed.newName(ed.outside)
		mustDo(t, os.Rename(abs(dir), p))
		return "mv out " + dir
	case op == 6: // move a directory (with a subdirectory) into the tree
		out := ed.newName(ed.outside)
		mustDo(t, mirrortest.WriteFile(out, "x/y/z.php", []byte("<?php // moved in")))
		mustDo(t, mirrortest.WriteFile(out, "top.js", []byte("var moved = 1;")))
		in := ed.newName(cmpOr(dir, "."))
		mustDo(t, os.Rename(out, abs(in)))
		return "mv in " + in
	case op == 7 && file != "": // file -> directory
		mustDo(t, os.Remove(abs(file)))
		mustDo(t, mirrortest.WriteFile(ed.src, file+"/inner.php", []byte("<?php // was a file")))
		return "file->dir " + file
	case op == 8 && dir != "": // directory -> file or symlink
		mustDo(t, os.RemoveAll(abs(dir)))
		if r.IntN(2) == 0 {
			mustDo(t, os.WriteFile(abs(dir), []byte("was a directory"), 0o644))
			return "dir->file " + dir
		}
		mustDo(t, os.Symlink(".", abs(dir)))
		return "dir->symlink " + dir
	case op == 9 && file != "": // file <-> symlink
		mustDo(t, os.Remove(abs(file)))
		mustDo(t, os.Symlink(".", abs(file)))
		return "file->symlink " + file
	case op == 10 && (file != "" || dir != ""): // mode
		p, mode := file, fs.FileMode(0o644|r.IntN(2)*0o111)
		if p == "" || r.IntN(2) == 0 && dir != "" {
			p, mode = dir, fs.FileMode(0o755&^(r.IntN(2)*0o005))
		}
		mustDo(t, os.Chmod(abs(p), mode))
		return fmt.Sprintf("chmod %o %s", mode, p)
	}
	if link := ed.pick(fs.ModeSymlink); link != "" { // symlink -> file
		mustDo(t, os.Remove(abs(link)))
		mustDo(t, os.WriteFile(abs(link), []byte("was a link"), 0o600))
		return "symlink->file " + link
	}
	return "nothing"
}

// A file changed while a publish runs (after it took the watcher's
// changes) is published by the next one, never lost.
func TestWatcherEditDuringPublish(t *testing.T) {
	src := t.TempDir()
	stWrite(t, src, map[string]string{"a.php": "a", "b/c.php": "c", "d.php": "d"})
	p := newWatchPair(t, src)
	p.publish("initial")
	stWrite(t, src, map[string]string{"a.php": "a2"})
	edited := false
	mirror.SetReadHook(p.watched, func(path string) {
		if !edited && strings.HasSuffix(path, "a.php") {
			edited = true
			stWrite(t, src, map[string]string{"b/c.php": "c2", "b/new.php": "new", "d.php": "d2"})
			mustDo(t, os.Chmod(filepath.Join(src, "b"), 0o750))
		}
	})
	// The watched publish saw a.php only; the full scan after it sees all.
	first, _, err := p.watched.Publish(context.Background(), "during")
	mustDo(t, err)
	mirror.SetReadHook(p.watched, nil)
	if !edited {
		t.Fatal("the edit hook did not run")
	}
	rev := p.publish("after") // fails unless the watched store now has it all
	if rev.ID == first.ID {
		t.Fatal("the edits made during the first publish were not published by the second")
	}
}

// A burst of events past the kernel's queue overflows it; the publish
// after it scans the whole tree, and so still sees a change whose event
// the kernel dropped.
func TestWatcherQueueOverflowForcesFullScan(t *testing.T) {
	limit := 16384
	if data, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		fmt.Sscan(string(data), &limit)
	}
	if limit > 1<<20 {
		t.Skipf("max_queued_events is %d: too many events to make", limit)
	}
	src := t.TempDir()
	stWrite(t, src, map[string]string{"a": "a", "b": "b", "late.php": "before"})
	p := newWatchPair(t, src)
	p.publish("initial")
	resume := mirror.PauseWatcher(p.watched)
	for i := range limit + 100 {
		mustDo(t, os.Chmod(filepath.Join(src, []string{"a", "b"}[i%2]), fs.FileMode(0o600|i%2*0o40)))
	}
	stWrite(t, src, map[string]string{"late.php": "after the overflow"}) // its event is dropped
	resume()
	p.publish("after the burst")
	if got := mirror.LastScan(p.watched); !strings.Contains(got, "overflow") {
		t.Errorf("publish after the burst: %s, want a full scan for the overflow", got)
	}
	stWrite(t, src, map[string]string{"late.php": "watched again"})
	p.publish("watched again")
	if got := mirror.LastScan(p.watched); !strings.HasPrefix(got, "changes") {
		t.Errorf("publish after the full scan: %s, want the watcher's changes", got)
	}
}

// A directory tree moved in from outside the source is published whole,
// and changes made inside it afterwards are seen.
func TestWatcherDirectoryMovedIn(t *testing.T) {
	src, outside := t.TempDir(), t.TempDir()
	stWrite(t, src, map[string]string{"index.php": "i"})
	p := newWatchPair(t, src)
	p.publish("initial")
	stWrite(t, outside, map[string]string{"plugin/version.php": "v1", "plugin/lib/deep/x.php": "x", "plugin/pix/a.png": "png"})
	mustDo(t, os.Rename(filepath.Join(outside, "plugin"), filepath.Join(src, "plugin")))
	rev := p.publish("moved in")
	m := stManifest(t, stServe(t, p.watched), rev.ID)
	if _, ok := m.Lookup("plugin/lib/deep/x.php"); !ok {
		t.Fatal("the moved-in tree is not published whole")
	}
	stWrite(t, src, map[string]string{"plugin/lib/deep/x.php": "x2", "plugin/lib/deep/new.php": "n"})
	p.publish("edited inside")
	mustDo(t, os.Rename(filepath.Join(src, "plugin"), filepath.Join(outside, "gone")))
	stWrite(t, filepath.Join(outside, "gone"), map[string]string{"lib/deep/x.php": "changed outside"})
	p.publish("moved out")
}
