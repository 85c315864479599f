package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
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
// else by linking the current release whole. Open removes it, and the idle
// node makes it again: a spare is never trusted across a crash.
const spareName = ".spare"

// spareGCPercent is the GOGC the making of a spare runs with.
const spareGCPercent = 20

// spare is what the release store knows of its spare; applyMu guards it.
type spare struct {
	id string // the release whose tree the spare holds; "" when none
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
	defer func() { r.base.id, r.base.m = "", nil }()
	// Background work of an idle node: collect its garbage (paths of every
	// file) eagerly rather than let the heap double, as a sync may.
	defer debug.SetGCPercent(debug.SetGCPercent(spareGCPercent))
	// The spare is no sync: keep the progress of the last one as it was.
	files, bytes := r.filesDone.Load(), r.bytesDone.Load()
	defer func() { r.filesDone.Store(files); r.bytesDone.Store(bytes) }()
	how := "linked"
	var err error
	if old, oldID := r.recycleForSpare(cur, dir); old != nil {
		how = "recycled " + oldID
		err = r.updateTree(ctx, dir, old, m, noSource{})
	} else {
		err = linkRelease(ctx, dir, m, filepath.Join(r.relDir, cur.ID))
	}
	if err != nil {
		// What was made stays until the next spare replaces it or Open
		// removes it: removing it now would delay the sync that stopped it.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("spare of %s: %w", cur.ID, err)
	}
	r.spare.id = cur.ID
	r.log.Debug("warm spare ready", "id", cur.ID, "how", how, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// recycleForSpare moves to dir the oldest kept release that the next
// sync's garbage collection would remove, and returns its manifest; nil
// when every kept release stays.
func (r *Releases) recycleForSpare(cur Revision, dir string) (*Manifest, string) {
	list := r.List()
	if len(list) < r.cfg.Keep {
		return nil, ""
	}
	for _, k := range list {
		if k.ID == cur.ID {
			continue
		}
		old, err := r.loadManifest(k.ID)
		if err == nil {
			err = r.unkeep(k.ID, dir)
		}
		if err != nil {
			r.log.Warn("release not recycled into the spare; linking it anew", "id", k.ID, "err", err)
			return nil, ""
		}
		return old, k.ID
	}
	return nil, ""
}

// takeSpare moves the spare to tmp when it holds the tree of the release
// base (the current one), and reports whether it did.
func (r *Releases) takeSpare(baseID, tmp string) bool {
	if r.spare.id == "" || r.spare.id != baseID {
		return false
	}
	r.spare.id = ""
	if err := os.Rename(r.spareDir(), tmp); err != nil {
		r.log.Warn("spare not usable", "err", err)
		return false
	}
	return true
}

// noSource is the Source of a spare: everything it needs is in the
// releases already; a file lost from them fails the spare, not a sync.
type noSource struct{}

var errNoSource = errors.New("a spare fetches nothing")

func (noSource) Revision(context.Context, string) (Revision, error) { return Revision{}, errNoSource }
func (noSource) Manifest(context.Context, string) ([]byte, error)   { return nil, errNoSource }
func (noSource) Delta(context.Context, string, string) (*Delta, error) {
	return nil, errNoSource
}
func (noSource) Objects(context.Context, []Hash, func(Hash, int64, io.Reader) error) error {
	return errNoSource
}

// removeSpare removes a spare left by an earlier run.
func (r *Releases) removeSpare() error {
	if err := removeTree(r.spareDir()); err != nil {
		return fmt.Errorf("remove the spare of an earlier run: %w", err)
	}
	return nil
}

// linkRelease makes under dir the tree of m by linking every file from the
// release at from, which holds m: no search for content, so it needs no
// memory beyond m. Symlinks are made anew; directory modes are set last.
func linkRelease(ctx context.Context, dir string, m *Manifest, from string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	var dirs []int
	for i := range m.Entries {
		if m.Entries[i].Type == TypeDir {
			dirs = append(dirs, i)
		}
	}
	if err := makeDirs(ctx, dir, m, dirs); err != nil {
		return err
	}
	err := parallel(ctx, len(m.Entries), func(i int) error {
		e := &m.Entries[i]
		switch e.Type {
		case TypeFile:
			return linkOrCopy(entryPath(from, e), entryPath(dir, e), e.Mode)
		case TypeSymlink:
			return os.Symlink(e.Target, entryPath(dir, e))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return setDirModes(dir, m, dirs)
}
