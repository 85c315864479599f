package mirror

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Repairing a release puts back what its manifest says, in place and
// without a switch. Files are shared by hard links between releases, so a
// file is never written through: a replacement is made beside the tree
// (linked from a kept release where an intact copy is, else fetched and
// verified), then exchanged with the entry in one renameat2(RENAME_EXCHANGE),
// so a reader sees the old entry or the new one, never none. What comes
// out goes to the quarantine. Directories keep their inode: their owner
// and mode are set again.

// repairRelease repairs the findings in release id (manifest m,
// identities ids, nil when none are recorded; then it records none). It
// returns what it repaired; entries it could not repair stay as they are.
// The caller holds applyMu.
func (r *Releases) repairRelease(ctx context.Context, id string, m *Manifest, ids identities, findings []finding, src Source) ([]Difference, error) {
	dir := filepath.Join(r.relDir, id)
	q := r.newQuarantine(id)
	defer r.pruneQuarantine()
	var done []Difference
	var tops []int // entries to replace, each with what is under it
	for _, f := range findings {
		switch {
		case f.entry == rootEntry:
			if err := fixDir(dir, &Entry{Path: ".", Type: TypeDir, Mode: releaseRootMode}); err != nil {
				return done, err
			}
			done = append(done, f.Difference)
		case f.entry < 0: // extra
			if err := q.takeOut(dir, f.Path); err != nil {
				return done, err
			}
			done = append(done, f.Difference)
		case m.Entries[f.entry].Type == TypeDir && (f.Kind == KindMode || f.Kind == KindOwner):
			if err := fixDir(dir, &m.Entries[f.entry]); err != nil {
				return done, err
			}
			done = append(done, f.Difference)
		default:
			if len(tops) == 0 || tops[len(tops)-1] != f.entry {
				tops = append(tops, f.entry)
			}
		}
	}
	if len(tops) == 0 {
		return done, nil
	}
	placed, err := r.replaceEntries(ctx, dir, m, ids, tops, src, q)
	for _, f := range findings {
		if f.entry >= 0 && placed[f.entry] {
			done = append(done, f.Difference)
		}
	}
	if ids != nil && len(placed) > 0 {
		err = errors.Join(err, r.writeIdentities(id, ids))
	}
	return done, err
}

// fixDir gives the directory of e in the tree at dir the agent as owner
// and its release mode.
func fixDir(dir string, e *Entry) error {
	p := entryPath(dir, e)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("repair %s: no longer a directory", e.Path)
	}
	if err := os.Lchown(p, int(agentUID), os.Getegid()); err != nil {
		return fmt.Errorf("repair %s: %w", e.Path, err)
	}
	if err := os.Chmod(p, releaseDirMode(e.Mode)); err != nil {
		return fmt.Errorf("repair %s: %w", e.Path, err)
	}
	return nil
}

// replaceEntries builds the entries tops of m (each with its subtree) in a
// staging tree beside the release at dir, with the machinery of a build,
// then exchanges each into place. It updates ids (when not nil) and
// returns the entries placed.
func (r *Releases) replaceEntries(ctx context.Context, dir string, m *Manifest, ids identities, tops []int, src Source, q *quarantine) (map[int]bool, error) {
	staging := filepath.Join(r.relDir, tmpPrefix+"repair-"+strconv.FormatUint(rand.Uint64(), 36))
	defer func() {
		if err := removeTree(staging); err != nil {
			r.log.Warn("remove repair staging", "dir", staging, "err", err)
		}
	}()
	sub, origin := stagingManifest(m, tops)
	saved := r.building
	r.building, r.reuseByContent = make(identities, len(sub.Entries)), true
	defer func() { r.building, r.reuseByContent = saved, false }()
	err := r.buildTree(ctx, staging, sub, src)
	if err == nil {
		err = recordIdentities(staging, sub, r.building)
	}
	r.setPhase(PhaseIdle)
	if err != nil {
		return nil, fmt.Errorf("repair: build replacements: %w", err)
	}
	placed := map[int]bool{}
	for k, t := range tops {
		slot := slotName(k)
		if err := exchangeInto(filepath.Join(staging, slot), entryPath(dir, &m.Entries[t])); err != nil {
			return placed, fmt.Errorf("repair %s: %w", m.Entries[t].Path, err)
		}
		if exists(filepath.Join(staging, slot)) { // what was there before
			if err := q.takeOutAs(filepath.Join(staging, slot), m.Entries[t].Path); err != nil {
				return placed, err
			}
		}
		for j, i := range origin {
			if sub.Entries[j].Path == slot || strings.HasPrefix(sub.Entries[j].Path, slot+"/") {
				placed[i] = true
				if ids != nil {
					ids[i] = r.building[j]
				}
			}
		}
		r.log.Info("repaired", "path", m.Entries[t].Path)
	}
	return placed, nil
}

// stagingManifest returns the manifest of the staging tree for tops: each
// top entry at slotName(k), with its subtree under it; and for each of its
// entries, the index of the entry of m it stands for.
func stagingManifest(m *Manifest, tops []int) (*Manifest, []int) {
	sub := &Manifest{}
	var origin []int
	for k, t := range tops {
		top := &m.Entries[t]
		slot := slotName(k)
		e := *top
		e.Path = slot
		sub.Entries = append(sub.Entries, e)
		origin = append(origin, t)
		if top.Type != TypeDir {
			continue
		}
		prefix := top.Path + "/"
		for i := t + 1; i < len(m.Entries) && strings.HasPrefix(m.Entries[i].Path, prefix); i++ {
			e := m.Entries[i]
			e.Path = slot + "/" + strings.TrimPrefix(e.Path, prefix)
			sub.Entries = append(sub.Entries, e)
			origin = append(origin, i)
		}
	}
	return sub, origin
}

// slotName names the k-th replacement of a staging tree (fixed width, so
// that slots sort in order).
func slotName(k int) string { return fmt.Sprintf("r%08d", k) }

// exchangeInto puts the entry at from in place of the one at to in one
// step: exchanged when there is one (the old one then is at from), renamed
// when there is none. The parent of to is made writable by its owner for
// the moment if it is not.
func exchangeInto(from, to string) error {
	parent := filepath.Dir(to)
	if fi, err := os.Lstat(parent); err == nil && fi.IsDir() && fi.Mode()&0o200 == 0 {
		if err := os.Chmod(parent, fi.Mode()|0o200); err != nil {
			return err
		}
		defer os.Chmod(parent, fi.Mode())
	}
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOENT) {
		err = unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	}
	return err
}
