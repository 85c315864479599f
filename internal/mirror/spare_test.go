package mirror_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// The warm spare made while idle becomes the next release: only the
// change is written, every other file keeps its inode, the tree is
// exact, and nothing of the spare remains besides the releases.
func TestSpareBecomesTheNextRelease(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
	tree := siteTree("v1")
	rev := ctl.publish(tree)
	mustApply(t, n, rev, ctl.client())
	for i, change := range []string{"one", "two", "three", "four"} {
		mustDo(t, n.rels.PrepareSpare(context.Background()))
		if got := mirror.SpareOf(n.rels); got != rev.ID {
			t.Fatalf("change %d: spare holds %q, want the current release %s", i, got, rev.ID)
		}
		prev := rev
		tree = withFile(tree, "app/index.php", "<?php // "+change+"\n")
		if i == 2 {
			tree = withFile(tree, "app/new"+change+".php", "<?php // new\n")
		}
		rev = ctl.publish(tree)
		ctl.counts()
		mustApply(t, n, rev, ctl.client())
		checkTree(t, n.target, tree)
		if got := mirror.SpareOf(n.rels); got != "" {
			t.Errorf("change %d: spare still claims %s after being used", i, got)
		}
		if c := ctl.counts(); c.objectsServed > 2 || c.manifestRequests != 0 {
			t.Errorf("change %d: %d objects and %d full manifests fetched", i, c.objectsServed, c.manifestRequests)
		}
		if !sameInode(t, filepath.Join(n.release(prev.ID), "app/lib/a.php"), filepath.Join(n.release(rev.ID), "app/lib/a.php")) {
			t.Errorf("change %d: an unchanged file was not linked", i)
		}
		if got := len(n.rels.List()); got > 2 {
			t.Errorf("change %d: kept %d releases, keep is 2", i, got)
		}
	}
	ents, err := os.ReadDir(filepath.Join(n.dir, "releases"))
	mustDo(t, err)
	if len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("releases directory holds %v, want the 2 kept releases", names)
	}
}

// A sync that fails before it changes the spare (here: a revision the
// controller does not have) puts it back: the next sync still goes
// through it.
func TestSpareKeptAcrossAFailedSync(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
	tree := siteTree("v1")
	rev := ctl.publish(tree)
	mustApply(t, n, rev, ctl.client())
	mustDo(t, n.rels.PrepareSpare(context.Background()))
	unknown := mirror.Revision{ID: strings.Repeat("ab", 32), Seq: rev.Seq + 1}
	if err := n.rels.Apply(context.Background(), unknown, ctl.client()); err == nil {
		t.Fatal("a revision the controller lacks was applied")
	}
	if got := mirror.SpareOf(n.rels); got != rev.ID {
		t.Fatalf("after the failed sync the spare holds %q, want %s", got, rev.ID)
	}
	prev := rev
	tree = withFile(tree, "app/index.php", "<?php // two\n")
	rev = ctl.publish(tree)
	mustApply(t, n, rev, ctl.client())
	checkTree(t, n.target, tree)
	if got := mirror.SpareOf(n.rels); got != "" {
		t.Errorf("spare still claims %s after being used", got)
	}
	if !sameInode(t, filepath.Join(n.release(prev.ID), "app/lib/a.php"), filepath.Join(n.release(rev.ID), "app/lib/a.php")) {
		t.Error("an unchanged file was not linked")
	}
}

// A file of the spare replaced after the spare was made (here: other
// content at the same path) is found by the spare's inspection, which runs
// beside the manifest phase, and never reaches the new release.
func TestSpareAlteredIsRepaired(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
	tree := siteTree("v1")
	mustApply(t, n, ctl.publish(tree), ctl.client())
	mustDo(t, n.rels.PrepareSpare(context.Background()))
	planted := filepath.Join(n.dir, "releases", ".spare", "app", "lib", "a.php")
	mustDo(t, os.Chmod(filepath.Dir(planted), 0o755))
	mustDo(t, os.Remove(planted))
	mustDo(t, os.WriteFile(planted, []byte("<?php // planted\n"), 0o444))
	tree = withFile(tree, "app/index.php", "<?php // two\n")
	mustApply(t, n, ctl.publish(tree), ctl.client())
	checkTree(t, n.target, tree)
}

// A spare whose making is cancelled (a new target arrived) leaves no
// spare, and the sync builds the release without one.
func TestSpareCancelled(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3})
	tree := siteTree("v1")
	mustApply(t, n, ctl.publish(tree), ctl.client())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.rels.PrepareSpare(ctx); err == nil {
		t.Fatal("a cancelled spare reported success")
	}
	if got := mirror.SpareOf(n.rels); got != "" {
		t.Fatalf("cancelled spare claims %s", got)
	}
	tree = withFile(tree, "app/index.php", "<?php // two\n")
	mustApply(t, n, ctl.publish(tree), ctl.client())
	checkTree(t, n.target, tree)
}

// An idle syncer keeps a warm spare of the current release, from the
// first sync on, and uses it for the next one.
func TestSyncerKeepsASpareWhileIdle(t *testing.T) {
	h := newSyncerHarness(t, mirror.ReleasesConfig{Keep: 3}, plainSource)
	tree := siteTree("v1")
	rev := h.ctl.publish(tree)
	h.syncer.SetTarget(rev)
	h.waitApplied(t, rev)
	for _, change := range []string{"a", "b", "c"} {
		waitFor(t, "a warm spare of "+rev.ID, func() bool { return mirror.SpareOf(h.node.rels) == rev.ID })
		tree = withFile(tree, "app/index.php", "<?php // "+change+"\n")
		rev = h.ctl.publish(tree)
		h.syncer.SetTarget(rev)
		h.waitApplied(t, rev)
		checkTree(t, h.node.target, tree)
	}
}

// A spare is never trusted across a restart: Open sets it aside, the
// background cleanup removes it, and the reopened store keeps exactly its
// releases.
func TestOpenRemovesTheSpare(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
	rev := ctl.publish(siteTree("v1"))
	mustApply(t, n, rev, ctl.client())
	mustDo(t, n.rels.PrepareSpare(context.Background()))
	spare := filepath.Join(n.dir, "releases", ".spare")
	if _, err := os.Stat(spare); err != nil {
		t.Fatalf("no spare made: %v", err)
	}
	reopened := mirror.NewReleases(mirror.ReleasesConfig{Dir: n.dir, Target: n.target, Keep: 2})
	mustDo(t, reopened.Open(context.Background()))
	if _, err := os.Stat(spare); !os.IsNotExist(err) {
		t.Errorf("spare still there after Open: %v", err)
	}
	if reopened.Pending() != 1 {
		t.Errorf("%d trees set aside for the cleanup, want the spare", reopened.Pending())
	}
	if cur, ok := reopened.Current(); !ok || cur.ID != rev.ID || len(reopened.List()) != 1 {
		t.Errorf("reopened: current %v %v, %d kept", cur.ID, ok, len(reopened.List()))
	}
	if got := reopened.Pending(); got != 1 {
		t.Fatalf("pending cleanups after Open = %d; want the spare", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { reopened.RunCleanup(ctx) })
	waitFor(t, "the cleanup", func() bool { return reopened.Pending() == 0 && len(tempsIn(n)) == 0 })
}
