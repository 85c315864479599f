package mirror

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"
)

// A web node keeps a warm spare: a complete copy of the current release
// (hard links, directories with their modes) under a temporary name,
// made while the node is idle. The next sync turns the spare into the new
// release by applying only the delta, makes it durable and renames it: the
// cost of a small change no longer includes linking every file of the
// tree, from the first sync after boot on.
//
// The spare is made from a kept release that the next sync's garbage
// collection would remove (updated by the delta since it was current), or
// else by linking the current release whole. It is flushed to disk before
// it is ready, so that the build that takes it (renamed to the partial
// release, partial.go) records its files as durable at once. Open sets it
// aside for the background cleanup, and the idle node makes it again: a
// spare is never trusted across a restart.
const spareName = ".spare"

// spareGCPercent is the GOGC the making of a spare runs with.
const spareGCPercent = 20

// spare is what the release store knows of its spare; applyMu guards it.
type spare struct {
	id  string     // the release whose tree the spare holds; "" when none
	ids identities // the identities of its files, by entry of that release
}

func (r *Releases) spareDir() string { return filepath.Join(r.relDir, spareName) }

// IsKept reports whether the release id is kept (a switch to it builds
// nothing).
func (r *Releases) IsKept(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.kept[id]
	return ok
}

// SpareWanted reports whether the current release has no warm spare yet.
func (r *Releases) SpareWanted() bool {
	cur, ok := r.Current()
	if !ok {
		return false
	}
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	return r.spare.id != cur.ID
}

// PrepareSpare makes the warm spare of the current release. It stops,
// leaving no spare, when ctx is cancelled (a new target arrived).
func (r *Releases) PrepareSpare(ctx context.Context) error {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	cur, ok := r.Current()
	if !ok || r.spare.id == cur.ID {
		return nil
	}
	start := time.Now()
	// Not idle while it runs: a sync arriving now waits for it.
	r.setPhase(PhaseSpare)
	defer r.setPhase(PhaseIdle)
	r.spare.id = ""
	dir := r.spareDir()
	if err := removeTree(dir); err != nil {
		return fmt.Errorf("spare: %w", err)
	}
	m, _ := r.baseManifest()
	if m == nil {
		return fmt.Errorf("spare: manifest of %s unreadable", cur.ID)
	}
	// Like a sync, leave no manifest in memory behind for the idle node.
	defer r.dropBase()
	// Background work of an idle node: collect its garbage (paths of every
	// file) eagerly rather than let the heap double, as a sync may.
	defer debug.SetGCPercent(debug.SetGCPercent(spareGCPercent))
	// The spare is no sync: keep the progress of the last one as it was.
	files, bytes := r.filesDone.Load(), r.bytesDone.Load()
	defer func() { r.filesDone.Store(files); r.bytesDone.Store(bytes) }()
	// Placed files record their identities, as in a build: the sync that
	// takes the spare checks every file against them.
	r.building = make(identities, len(m.Entries))
	defer func() { r.building = nil }()
	how := "linked"
	var err error
	if old, oldIDs, oldID := r.recycleForSpare(cur, dir); old != nil {
		how = "recycled " + oldID
		err = r.updateTree(ctx, dir, old, oldIDs, m, noSource{errSpareFetches})
	} else {
		err = r.buildTree(ctx, dir, m, noSource{errSpareFetches})
	}
	if err == nil {
		err = recordIdentities(dir, m, r.building)
	}
	if err == nil {
		err = syncFS(r.relDir)
	}
	if err != nil {
		// What was made stays until the next spare replaces it or Open
		// removes it: removing it now would delay the sync that stopped it.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("spare of %s: %w", cur.ID, err)
	}
	r.spare.ids = r.building
	r.spare.id = cur.ID
	r.log.Debug("warm spare ready", "id", cur.ID, "how", how, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// recycleForSpare moves to dir the oldest kept release that the next
// sync's garbage collection would remove, and returns its manifest and
// identities; nil when every kept release stays.
func (r *Releases) recycleForSpare(cur Revision, dir string) (*Manifest, identities, string) {
	list := r.List()
	if len(list) < r.cfg.Keep {
		return nil, nil, ""
	}
	for _, k := range list {
		if k.ID == cur.ID {
			continue
		}
		old, err := r.loadManifest(k.ID)
		var ids identities
		if err == nil {
			ids, err = r.loadIdentities(k.ID, old)
		}
		if err == nil {
			err = r.unkeep(k.ID, dir)
		}
		if err != nil {
			r.log.Warn("release not recycled into the spare; linking it anew", "id", k.ID, "err", err)
			return nil, nil, ""
		}
		return old, ids, k.ID
	}
	return nil, nil, ""
}

// spareCheck is the inspection of the spare against its identities,
// running in place while the sync fetches and verifies the new manifest:
// at 50k files it stats every one, which would otherwise come after.
type spareCheck struct {
	id     string     // the release whose tree the spare holds
	base   *Manifest  // its manifest: the delta's base
	ids    identities // the spare's identities, by entry of base
	used   bool       // moved into the partial directory
	cancel context.CancelFunc
	done   chan struct{}
	plan   *recycledPlan
	err    error
}

// checkSpare claims the spare when it holds the tree of the current
// release and no partial build is to be resumed (the partial holds what
// was fetched already), and starts its inspection; nil when there is none.
// stop must be called.
func (r *Releases) checkSpare(ctx context.Context) *spareCheck {
	cur, ok := r.Current()
	if !ok || r.spare.id == "" || r.spare.id != cur.ID || r.partialID != "" {
		return nil
	}
	ids := r.spare.ids
	r.spare.id, r.spare.ids = "", nil
	base, baseID := r.baseManifest()
	if base == nil || baseID != cur.ID {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &spareCheck{id: cur.ID, base: base, ids: ids, cancel: cancel, done: make(chan struct{})}
	dir := r.spareDir()
	go func() {
		defer close(c.done)
		start := time.Now()
		c.plan, c.err = r.inspectRecycled(ctx, dir, base, ids)
		r.log.Debug("spare inspected", "files", len(base.Entries), "duration", time.Since(start).Round(time.Microsecond))
	}()
	return c
}

// stop ends the inspection if it still runs, and waits for it.
func (c *spareCheck) stop() {
	if c != nil {
		c.cancel()
		<-c.done
	}
}

// takeSpare waits for the inspection of the spare c claimed and moves the
// spare to dir; it returns its base, identities and the inspection's plan,
// or a nil manifest when it is not usable (logged).
func (r *Releases) takeSpare(c *spareCheck, dir string) (*Manifest, identities, *recycledPlan) {
	if c == nil {
		return nil, nil, nil
	}
	<-c.done
	err := c.err
	if err == nil {
		err = os.Rename(r.spareDir(), dir)
	}
	if err != nil {
		r.log.Warn("spare not usable", "err", err)
		return nil, nil, nil
	}
	c.used = true
	r.log.Debug("building from the warm spare", "of", c.id)
	return c.base, c.ids, c.plan
}

// returnSpare gives back a spare a failed build claimed but did not use:
// the next sync takes (and inspects) it again.
func (r *Releases) returnSpare(c *spareCheck) {
	if c != nil && !c.used {
		r.spare.id, r.spare.ids = c.id, c.ids
	}
}

// errSpareFetches reports a spare that needed content the releases lost:
// a spare fetches nothing.
var errSpareFetches = errors.New("a spare fetches nothing")
