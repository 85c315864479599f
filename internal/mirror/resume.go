package mirror

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	sha256 "github.com/minio/sha256-simd"
	"golang.org/x/sys/unix"
)

// buildPartial makes the tree of m, the manifest of meta, in the partial
// directory: from the partial tree an earlier attempt left when there is
// one (a crash, a failure, a stop), else from a kept release gc would
// remove, else from nothing. Files are checkpointed as they become durable,
// and a failure leaves the tree for the next attempt.
func (r *Releases) buildPartial(ctx context.Context, meta Revision, m *Manifest, src Source) (err error) {
	base, baseIDs, durable, err := r.partialBase(ctx, meta, m)
	if err != nil {
		return err
	}
	c := r.startCheckpoints(meta.ID, len(m.Entries), durable)
	r.ckpt = c
	defer func() {
		r.ckpt = nil
		c.close(err != nil)
	}()
	if base != nil {
		// Inspected against base and baseIDs like a recycled release.
		return r.updateTree(ctx, r.partialDir(), base, baseIDs, m, src)
	}
	return r.buildTree(ctx, r.partialDir(), m, src)
}

// partialBase prepares the partial directory for meta and returns the
// manifest and identities of what it holds (nil: nothing yet) and the
// files of m known durable there. partial.json names meta before the tree
// changes.
func (r *Releases) partialBase(ctx context.Context, meta Revision, m *Manifest) (*Manifest, identities, bitmap, error) {
	dir := r.partialDir()
	_, statErr := os.Lstat(dir)
	if was := r.partialID; was != "" && statErr == nil {
		base, baseIDs, durable, err := r.resumePartial(ctx, meta, m)
		if err == nil || ctx.Err() != nil {
			return base, baseIDs, durable, err
		}
		r.log.Warn("partial release unusable; building anew", "id", was, "err", err)
		if was != meta.ID {
			_ = removeIfExists(r.metaFile(manifestsDir, was))
		}
	}
	r.partialID = ""
	if statErr == nil {
		if err := r.trash(dir, "partial release"); err != nil {
			return nil, nil, nil, err
		}
	}
	if err := r.writePartialState(partialState{ID: meta.ID}); err != nil {
		return nil, nil, nil, err
	}
	r.partialID = meta.ID
	old, oldIDs := r.recycle(meta, dir)
	if old == nil {
		return nil, nil, nil, nil
	}
	// The recycled release was durable: record what of it m keeps, so that
	// a crash from here on does not read it all again.
	durable := durableIn(old, m)
	if err := r.writePartialState(partialState{ID: meta.ID, Durable: durable.bytes()}); err != nil {
		return nil, nil, nil, err
	}
	return old, oldIDs, durable, nil
}

// resumePartial checks the partial tree against the manifest it was
// becoming, keeps what is right and removes the rest, then makes it the
// partial build of meta. It returns the manifest and identities of what
// the tree holds.
func (r *Releases) resumePartial(ctx context.Context, meta Revision, m *Manifest) (*Manifest, identities, bitmap, error) {
	start := time.Now()
	was := r.partialID
	mp := m
	if was != meta.ID {
		var err error
		if mp, err = r.loadManifest(was); err != nil {
			return nil, nil, nil, err
		}
	}
	var durable bitmap
	if st, err := r.readPartialState(); err == nil && st.ID == was {
		durable = newBitmap(len(mp.Entries), st.Durable)
	}
	base, baseIDs, v, err := verifyTree(ctx, r.partialDir(), mp, durable)
	if err != nil {
		return nil, nil, nil, err
	}
	if v.hashed > 0 {
		if err := syncFS(r.relDir); err != nil { // what was read back is durable from here
			return nil, nil, nil, err
		}
	}
	durable = durableIn(base, m)
	if err := r.writePartialState(partialState{ID: meta.ID, Durable: durable.bytes()}); err != nil {
		return nil, nil, nil, err
	}
	if was != meta.ID {
		r.partialID = meta.ID
		if err := removeIfExists(r.metaFile(manifestsDir, was)); err != nil {
			r.log.Warn("remove manifest of the partial release", "id", was, "err", err)
		}
	}
	files, bytes := base.Files()
	r.log.Info("resuming partial release", "id", meta.ID, "seq", meta.Seq, "from", was,
		"files_kept", files, "bytes_kept", bytes, "files_read_back", v.hashed, "bytes_read_back", v.hashedBytes,
		"removed", v.removed, "duration", time.Since(start).Round(time.Millisecond))
	return base, baseIDs, durable, nil
}

// durableIn returns the files of m that base holds unchanged.
func durableIn(base, m *Manifest) bitmap {
	b := newBitmap(len(m.Entries), nil)
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != TypeFile {
			continue
		}
		if o, ok := base.lookup(e.Path); ok && *o == *e {
			b.set(i)
		}
	}
	return b
}

// verifyStats counts what verifyTree did.
type verifyStats struct {
	hashed      int
	hashedBytes int64
	removed     int
}

// verifyTree compares the tree at dir with mp, which it was being built to:
// every entry mp lacks, or that differs from mp's, is removed; a file must
// have mp's size and release mode, and its content mp's hash unless
// durable says it is known durable. It returns the manifest of what stays,
// in which directories have mode 0700 (as they are made writable), and
// the identities of its files (from a stat: they were just verified).
func verifyTree(ctx context.Context, dir string, mp *Manifest, durable bitmap) (*Manifest, identities, verifyStats, error) {
	var st verifyStats
	keep := make([]bool, len(mp.Entries))
	var check []int // files to hash
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			if p == dir && err == nil {
				return os.Chmod(dir, releaseRootMode) // as the inspection of the base wants it
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		i := mp.index(filepath.ToSlash(rel))
		ok := i >= 0
		switch {
		case ok && d.IsDir() && mp.Entries[i].Type == TypeDir:
			keep[i] = true
			return os.Chmod(p, 0o700)
		case ok && d.Type()&fs.ModeSymlink != 0 && mp.Entries[i].Type == TypeSymlink:
			if target, err := os.Readlink(p); err == nil && target == mp.Entries[i].Target {
				keep[i] = true
				return nil
			}
		case ok && d.Type().IsRegular() && mp.Entries[i].Type == TypeFile:
			if sameShape(d, &mp.Entries[i]) {
				if durable.has(i) {
					keep[i] = true
				} else {
					check = append(check, i)
				}
				return nil
			}
		}
		st.removed++
		if err := removeTree(p); err != nil {
			return err
		}
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, nil, st, fmt.Errorf("verify partial release: %w", err)
	}
	if err := hashCheck(ctx, dir, mp, check, keep, &st); err != nil {
		return nil, nil, st, fmt.Errorf("verify partial release: %w", err)
	}
	base := &Manifest{}
	var baseIDs identities
	for i, k := range keep {
		if !k {
			continue
		}
		e := mp.Entries[i]
		var id fileIdentity
		switch e.Type {
		case TypeDir:
			e.Mode = 0o700
		case TypeFile:
			var st unix.Stat_t
			if err := unix.Lstat(entryPath(dir, &e), &st); err != nil {
				return nil, nil, verifyStats{}, fmt.Errorf("verify partial release: %w", err)
			}
			id = identityOf(&st)
		}
		base.Entries = append(base.Entries, e)
		baseIDs = append(baseIDs, id)
	}
	return base, baseIDs, st, nil
}

// sameShape reports whether the file d has e's size and release mode.
func sameShape(d fs.DirEntry, e *Entry) bool {
	info, err := d.Info()
	return err == nil && info.Size() == e.Size && info.Mode() == releaseFileMode(e.Mode)
}

// hashCheck reads the files of mp at the indexes check in parallel: those
// whose content has mp's hash are kept, the others removed.
func hashCheck(ctx context.Context, dir string, mp *Manifest, check []int, keep []bool, st *verifyStats) error {
	var removed, hashed atomic.Int64
	var mu sync.Mutex
	err := parallel(ctx, len(check), func(k int) error {
		i := check[k]
		e := &mp.Entries[i]
		p := entryPath(dir, e)
		ok, err := hasContent(p, e.SHA256)
		if err != nil {
			return err
		}
		hashed.Add(e.Size)
		if !ok {
			removed.Add(1)
			return os.Remove(p)
		}
		mu.Lock()
		keep[i] = true
		mu.Unlock()
		return nil
	})
	st.hashed += len(check)
	st.hashedBytes += hashed.Load()
	st.removed += int(removed.Load())
	return err
}

// hasContent reports whether the file at p hashes to h.
func hasContent(p string, h Hash) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	hs := sha256.New()
	if _, err := io.Copy(hs, f); err != nil {
		return false, err
	}
	return Hash(hs.Sum(nil)) == h, nil
}
