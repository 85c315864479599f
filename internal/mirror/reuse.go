package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	sha256 "github.com/minio/sha256-simd"
	"golang.org/x/sys/unix"
)

// Content is reused from kept releases only when it is still what the
// agent placed there: a file hard-linked from a kept release is checked
// after the link (the new name holds the very inode that is checked), and a
// kept release is inspected before it is served again.

// reused checks the file just linked or copied to dst for entry i (e) of
// the release being built: the inode recorded as want, unchanged (owner,
// mode, size, time); or, for a copy, another inode, a release without
// identities or a repair, the agent's owner and mode and the right
// content. A file
// that fails is removed and reused reports false. The identity of a good
// one is recorded for the new release.
func (r *Releases) reused(dst string, i int, e *Entry, want *fileIdentity) (bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(dst, &st); err != nil {
		return false, err
	}
	ok := false
	if want != nil && st.Ino == want.Ino && !r.reuseByContent {
		kind, _ := fileProblem(&st, e, want)
		ok = kind == ""
	} else if kind, _ := fileProblem(&st, e, nil); kind == "" {
		sum, err := sumFile(dst)
		if err != nil {
			return false, err
		}
		ok = sum == e.SHA256
	}
	if !ok {
		if err := os.Remove(dst); err != nil {
			return false, err
		}
		return false, nil
	}
	r.building[i] = identityOf(&st)
	return true, nil
}

// sumFile returns the SHA-256 of the regular file at p (not followed if a
// symlink).
func sumFile(p string) (Hash, error) {
	var sum Hash
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, hashCheckBuffer)); err != nil {
		return sum, err
	}
	h.Sum(sum[:0])
	return sum, nil
}

// checkKept inspects the kept release rev before it is served again, and
// repairs what differs from its manifest (from src where no kept release
// holds the content). A release made before identities were recorded is
// checked by content, then its identities are recorded. It fails, and the
// switch does not happen, when the release cannot be made whole.
func (r *Releases) checkKept(ctx context.Context, rev Revision, src Source) error {
	m, err := r.loadManifest(rev.ID)
	if err != nil {
		return fmt.Errorf("check kept release: %w", err)
	}
	ids, err := r.loadIdentities(rev.ID, m)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.log.Warn("identities of a kept release unreadable; checking it by content", "id", rev.ID, "err", err)
	}
	rep, err := r.verifyRelease(ctx, rev.ID, m, ids, ids == nil, fsWorkers)
	if err != nil {
		return fmt.Errorf("check kept release: %w", err)
	}
	if len(rep) > 0 {
		r.log.Warn("kept release differs from its manifest; repairing it before serving it", "id", rev.ID,
			"differences", len(rep), "first", rep[0].String())
		if _, err := r.repairRelease(ctx, rev.ID, m, ids, rep, src); err != nil {
			return fmt.Errorf("repair kept release: %w", err)
		}
		if rep, err = r.verifyRelease(ctx, rev.ID, m, ids, ids == nil, fsWorkers); err != nil {
			return err
		}
		if len(rep) > 0 {
			return fmt.Errorf("kept release still differs from its manifest after repair: %s", rep[0])
		}
	}
	if ids == nil {
		return r.adoptIdentities(rev.ID, m, nil)
	}
	return nil
}

// adoptIdentities records the identities of a release checked by content
// that had none (made by an older version), but for the entries with a
// finding: a file that is not the one published gets none.
func (r *Releases) adoptIdentities(id string, m *Manifest, found []finding) error {
	ids := make(identities, len(m.Entries))
	bad := make(map[int]bool, len(found))
	for _, f := range found {
		bad[f.entry] = true
	}
	err := parallel(bgCtx, len(m.Entries), func(i int) error {
		e := &m.Entries[i]
		if e.Type != TypeFile || bad[i] {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(entryPath(r.releaseDir(id), e), &st); err != nil {
			return nil // missing meanwhile: no identity
		}
		ids[i] = identityOf(&st)
		return nil
	})
	if err != nil {
		return err
	}
	return r.writeIdentities(id, ids)
}

// hardenOlderReleases takes write for group and others off the directories
// of kept releases made by older versions, which copied directory modes as
// they were (Moodle makes its directories 02777). What may have been
// planted meanwhile is found when the release is inspected (served again,
// recycled, audited).
func (r *Releases) hardenOlderReleases() {
	for _, rev := range r.List() {
		if _, err := os.Stat(r.identitiesFile(rev.ID)); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		m, err := r.loadManifest(rev.ID)
		if err != nil {
			continue
		}
		n := 0
		for i := range m.Entries {
			e := &m.Entries[i]
			if e.Type != TypeDir || e.Mode&0o022 == 0 {
				continue
			}
			p := entryPath(filepath.Join(r.relDir, rev.ID), e)
			if fi, err := os.Lstat(p); err == nil && fi.IsDir() && fi.Mode()&0o022 != 0 {
				if err := os.Chmod(p, releaseDirMode(ModeBits(fi.Mode()))); err == nil {
					n++
				}
			}
		}
		if n > 0 {
			r.log.Warn("directories of a release made by an older version were writable by group or others; fixed",
				"id", rev.ID, "directories", n)
		}
	}
}

// removeOrphanIdentities removes identities files of releases not kept.
func (r *Releases) removeOrphanIdentities(kept map[string]Revision) error {
	ents, err := os.ReadDir(r.metaDir(identitiesDir))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if _, ok := kept[e.Name()]; ok {
			continue
		}
		if err := os.Remove(filepath.Join(r.metaDir(identitiesDir), e.Name())); err != nil {
			return fmt.Errorf("remove orphan identities %s: %w", e.Name(), err)
		}
	}
	return nil
}
