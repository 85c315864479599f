package mirror

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// buildPartial makes the tree of m, the manifest of meta, in the partial
// directory: from the partial tree an earlier attempt left when there is
// one and it can be trusted (a crash, a failure, a stop; it holds what was
// fetched already), else from the warm spare of the current release (the
// delta's base), else from a kept release gc would remove, else from
// nothing. Files are checkpointed as they become durable, and a failure
// leaves the tree for the next attempt, whatever it started from.
// r.building gets the identities of the files as they are placed or kept.
func (r *Releases) buildPartial(ctx context.Context, meta Revision, m *Manifest, src Source, spare *spareCheck) (err error) {
	base, baseIDs, rec, plan, err := r.partialBase(ctx, meta, m, spare)
	if err != nil {
		return err
	}
	c := r.startCheckpoints(meta.ID, len(m.Entries), rec)
	r.ckpt = c
	defer func() {
		r.ckpt = nil
		c.close(err != nil)
	}()
	if plan != nil { // the spare, inspected already
		return r.updateTreePlanned(ctx, r.partialDir(), base, baseIDs, plan, m, src)
	}
	if base != nil {
		// Inspected against base and baseIDs like a recycled release.
		return r.updateTree(ctx, r.partialDir(), base, baseIDs, m, src)
	}
	return r.buildTree(ctx, r.partialDir(), m, src)
}

// partialBase prepares the partial directory for meta and returns the
// manifest and identities of what it holds (nil: nothing yet) and what is
// recorded of the files of m there. partial.json names meta before the
// tree changes.
// A spare taken comes with the plan of its inspection.
func (r *Releases) partialBase(ctx context.Context, meta Revision, m *Manifest, spare *spareCheck) (*Manifest, identities, recorded, *recycledPlan, error) {
	dir := r.partialDir()
	_, statErr := os.Lstat(dir)
	if was := r.partialID; was != "" && statErr == nil {
		base, baseIDs, rec, err := r.resumePartial(ctx, meta, m)
		if err == nil || ctx.Err() != nil {
			return base, baseIDs, rec, nil, err
		}
		r.log.Warn("partial release unusable; building anew", "id", was, "err", err)
		if was != meta.ID {
			_ = removeIfExists(r.metaFile(manifestsDir, was))
		}
	}
	r.partialID = ""
	if statErr == nil {
		if err := r.trash(dir, "partial release"); err != nil {
			return nil, nil, recorded{}, nil, err
		}
	}
	if err := r.writePartialState(partialState{ID: meta.ID}); err != nil {
		return nil, nil, recorded{}, nil, err
	}
	r.partialID = meta.ID
	old, oldIDs, plan := r.takeSpare(spare, dir)
	if old == nil {
		old, oldIDs = r.recycle(meta, dir)
	}
	if old == nil {
		return nil, nil, recorded{}, nil, nil
	}
	// A recycled release was durable, and so is a spare once made (it is
	// flushed before it is ready): record what of it m keeps, with the
	// identities it was made or kept with, so that a crash from here on
	// does not read it all again.
	rec := recordedIn(old, oldIDs, m)
	if err := r.writePartialState(rec.state(meta.ID)); err != nil {
		return nil, nil, recorded{}, nil, err
	}
	return old, oldIDs, rec, plan, nil
}

// resumePartial checks the partial tree against the manifest it was
// becoming, keeps what is right and takes out the rest, then makes it the
// partial build of meta. It returns the manifest and identities of what
// the tree holds.
func (r *Releases) resumePartial(ctx context.Context, meta Revision, m *Manifest) (*Manifest, identities, recorded, error) {
	start := time.Now()
	was := r.partialID
	mp := m
	if was != meta.ID {
		var err error
		if mp, err = r.loadManifest(was); err != nil {
			return nil, nil, recorded{}, err
		}
	}
	rec := newRecorded(len(mp.Entries))
	if st, err := r.readPartialState(); err == nil && st.ID == was {
		if rec, err = st.recorded(len(mp.Entries)); err != nil {
			r.log.Warn("identities of the partial release unreadable; every file is read back", "id", was, "err", err)
		}
	}
	q := r.newQuarantine(was)
	base, baseIDs, v, err := verifyTree(ctx, r.partialDir(), mp, rec, q)
	if v.quarantined > 0 {
		r.pruneQuarantine()
	}
	if err != nil {
		return nil, nil, recorded{}, err
	}
	if v.hashed > 0 {
		if err := syncFS(r.relDir); err != nil { // what was read back is durable from here
			return nil, nil, recorded{}, err
		}
	}
	rec = recordedIn(base, baseIDs, m)
	if err := r.writePartialState(rec.state(meta.ID)); err != nil {
		return nil, nil, recorded{}, err
	}
	if was != meta.ID {
		r.partialID = meta.ID
		if err := removeIfExists(r.metaFile(manifestsDir, was)); err != nil {
			r.log.Warn("remove manifest of the partial release", "id", was, "err", err)
		}
	}
	if v.changed > 0 || v.quarantined > 0 {
		r.log.Warn("the partial release was altered since the agent recorded it: changed files read back, what is not the agent's moved to the quarantine",
			"id", was, "changed", v.changed, "quarantined", v.quarantined)
	}
	files, bytes := base.Files()
	r.log.Info("resuming partial release", "id", meta.ID, "seq", meta.Seq, "from", was,
		"files_kept", files, "bytes_kept", bytes, "files_read_back", v.hashed, "bytes_read_back", v.hashedBytes,
		"removed", v.removed, "quarantined", v.quarantined, "duration", time.Since(start).Round(time.Millisecond))
	return base, baseIDs, rec, nil
}

// recordedIn returns the files of m that base (with identities baseIDs)
// holds unchanged, with their identities.
func recordedIn(base *Manifest, baseIDs identities, m *Manifest) recorded {
	rec := newRecorded(len(m.Entries))
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != TypeFile {
			continue
		}
		if oi := base.index(e.Path); oi >= 0 && base.Entries[oi] == *e && baseIDs[oi] != (fileIdentity{}) {
			rec.done.set(i)
			rec.ids[i] = baseIDs[oi]
		}
	}
	return rec
}

// verifyStats counts what verifyTree did.
type verifyStats struct {
	hashed      int
	hashedBytes int64
	removed     int
	changed     int // recorded files no longer as recorded
	quarantined int
}

// verifyTree compares the tree at dir with mp, which it was being built to,
// and returns the manifest of what stays and the identities of its files.
//
// The agent never makes an entry it does not own: one is moved to q, as a
// planted entry of a release is. An entry mp lacks or has otherwise (of
// another type, a symlink to elsewhere, a file of another size or mode) is
// the agent's own debris and is removed. A file stays when it is as rec
// recorded it (owner, mode, size, inode, modification time); otherwise,
// when its content has mp's hash. A recorded file no longer as recorded
// was complete and durable, so a crash cannot explain a change: if its
// content is wrong too, or it has another size or mode, it goes to q.
// The release root gets its release mode, directories mode 0700 (as they
// are made writable).
func verifyTree(ctx context.Context, dir string, mp *Manifest, rec recorded, q *quarantine) (*Manifest, identities, verifyStats, error) {
	v := &treeVerifier{dir: dir, mp: mp, rec: rec, q: q, keep: make([]bool, len(mp.Entries)),
		ids: make(identities, len(mp.Entries))}
	if err := v.root(); err != nil {
		return nil, nil, v.st, fmt.Errorf("verify partial release: %w", err)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return v.entry(p, d)
	})
	if err == nil {
		err = v.hashCheck(ctx)
	}
	if err != nil {
		return nil, nil, v.st, fmt.Errorf("verify partial release: %w", err)
	}
	base := &Manifest{}
	var baseIDs identities
	for i, k := range v.keep {
		if k {
			e := mp.Entries[i]
			if e.Type == TypeDir {
				e.Mode = 0o700
			}
			base.Entries = append(base.Entries, e)
			baseIDs = append(baseIDs, v.ids[i])
		}
	}
	return base, baseIDs, v.st, nil
}

// treeVerifier is the state of one verifyTree.
type treeVerifier struct {
	dir   string
	mp    *Manifest
	rec   recorded
	q     *quarantine
	keep  []bool     // by entry of mp
	ids   identities // by entry of mp: of the files kept
	check []fileToHash
	st    verifyStats
}

// fileToHash is a file verifyTree reads back.
type fileToHash struct {
	entry    int
	recorded bool // recorded, but no longer as recorded
}

// root checks the partial directory itself: the agent's, given its
// release mode.
func (v *treeVerifier) root() error {
	var st unix.Stat_t
	if err := unix.Lstat(v.dir, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != agentUID {
		return fmt.Errorf("%s: not a directory of the agent (%s, uid %d)", partialName, typeName(st.Mode), st.Uid)
	}
	return os.Chmod(v.dir, releaseRootMode)
}

// entry judges the entry at p (d): kept, to hash, removed or quarantined.
func (v *treeVerifier) entry(p string, d fs.DirEntry) error {
	rel, err := filepath.Rel(v.dir, p)
	if err != nil {
		return err
	}
	rel = filepath.ToSlash(rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	i := v.mp.index(rel)
	var e *Entry
	if i >= 0 {
		e = &v.mp.Entries[i]
	}
	switch {
	case st.Uid != agentUID:
		return v.takeOut(rel, d, true)
	case e == nil || typeOf(st.Mode) != e.Type:
	case e.Type == TypeDir:
		v.keep[i] = true
		return os.Chmod(p, 0o700)
	case e.Type == TypeSymlink:
		if target, err := os.Readlink(p); err == nil && target == e.Target {
			v.keep[i] = true
			return nil
		}
	default:
		return v.file(rel, d, i, e, &st)
	}
	return v.takeOut(rel, d, false)
}

// file judges the file at rel, entry i (e) of mp, with status st.
func (v *treeVerifier) file(rel string, d fs.DirEntry, i int, e *Entry, st *unix.Stat_t) error {
	want := v.rec.identity(i)
	if want != nil {
		if kind, _ := fileProblem(st, e, want); kind == "" {
			v.keep[i] = true
			v.ids[i] = identityOf(st)
			return nil
		}
		v.st.changed++
	}
	if kind, _ := fileProblem(st, e, nil); kind != "" {
		return v.takeOut(rel, d, want != nil)
	}
	v.ids[i] = identityOf(st) // the inspection of the base checks it again
	v.check = append(v.check, fileToHash{entry: i, recorded: want != nil})
	return nil
}

// takeOut removes the entry at rel (d) from the tree, or quarantines it.
func (v *treeVerifier) takeOut(rel string, d fs.DirEntry, quarantine bool) error {
	if quarantine {
		v.st.quarantined++
		err := v.q.takeOut(v.dir, rel)
		if err == nil && d.IsDir() {
			return filepath.SkipDir
		}
		return err
	}
	v.st.removed++
	if err := removeTree(entryPathRel(v.dir, rel)); err != nil {
		return err
	}
	if d.IsDir() {
		return filepath.SkipDir
	}
	return nil
}

// hashCheck reads the files to check in parallel: those whose content has
// mp's hash are kept, the others removed (or quarantined, if recorded).
func (v *treeVerifier) hashCheck(ctx context.Context) error {
	var removed, quarantined, hashed atomic.Int64
	err := parallel(ctx, len(v.check), func(k int) error {
		c := v.check[k]
		e := &v.mp.Entries[c.entry]
		p := entryPath(v.dir, e)
		sum, err := sumFile(p)
		if err != nil {
			return err
		}
		hashed.Add(e.Size)
		switch {
		case sum == e.SHA256:
			v.keep[c.entry] = true // one entry per goroutine
			return nil
		case c.recorded:
			quarantined.Add(1)
			return v.q.takeOut(v.dir, e.Path)
		default:
			removed.Add(1)
			return os.Remove(p)
		}
	})
	v.st.hashed += len(v.check)
	v.st.hashedBytes += hashed.Load()
	v.st.removed += int(removed.Load())
	v.st.quarantined += int(quarantined.Load())
	return err
}
