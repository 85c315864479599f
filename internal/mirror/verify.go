package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// VerifyReport is the outcome of checking the served release against its
// manifest.
type VerifyReport struct {
	Release Revision `json:"release"`
	Entries int      `json:"entries"`
	Files   int      `json:"files"`
	Bytes   int64    `json:"bytes"`
	// Content: every file's SHA-256 was compared, not only its identity.
	Content     bool         `json:"content"`
	Differences []Difference `json:"differences"`
	// Repaired lists what a repair put back (then Differences is what is
	// left, found by checking again).
	Repaired []Difference `json:"repaired,omitempty"`
	Seconds  float64      `json:"seconds"`
}

// ErrNoRelease reports a node that serves no release yet.
var ErrNoRelease = errors.New("no release is served yet")

// verifyRelease checks release id (manifest m, identities ids or nil)
// against m: an inspection, and with content the SHA-256 of every file
// (in one goroutine). The inspection runs in workers goroutines.
func (r *Releases) verifyRelease(ctx context.Context, id string, m *Manifest, ids identities, content bool, workers int) ([]finding, error) {
	dir := r.releaseDir(id)
	found, err := inspectTree(ctx, dir, m, ids, workers)
	if err != nil || !content {
		return found, err
	}
	hc, err := newHashChecker(dir)
	if err != nil {
		return nil, err
	}
	defer hc.close()
	tampered, err := hc.check(ctx, m, 0, len(m.Entries))
	if err != nil {
		return nil, err
	}
	return mergeFindings(found, tampered), nil
}

func (r *Releases) releaseDir(id string) string { return filepath.Join(r.relDir, id) }

// mergeFindings adds to found the findings of more about entries it has
// none for, sorted by path.
func mergeFindings(found, more []finding) []finding {
	if len(more) == 0 {
		return found
	}
	have := make(map[int]bool, len(found))
	for _, f := range found {
		have[f.entry] = true
	}
	for _, f := range more {
		if f.entry < 0 || !have[f.entry] {
			found = append(found, f)
		}
	}
	slices.SortFunc(found, func(a, b finding) int { return strings.Compare(a.Path, b.Path) })
	return found
}

// currentRelease returns the current release with its manifest and
// identities (nil when none are recorded).
func (r *Releases) currentRelease() (Revision, *Manifest, identities, error) {
	cur, ok := r.Current()
	if !ok {
		return cur, nil, nil, ErrNoRelease
	}
	m, err := r.loadManifest(cur.ID)
	if err != nil {
		return cur, nil, nil, fmt.Errorf("manifest of release %s: %w", cur.ID, err)
	}
	ids, err := r.loadIdentities(cur.ID, m)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.log.Warn("identities of the current release unreadable; it is checked by content", "id", cur.ID, "err", err)
	}
	if err != nil {
		ids = nil
	}
	return cur, m, ids, nil
}

// Verify checks the current release against its manifest: every path,
// type, owner, mode and symlink target, and the SHA-256 of every file.
// With repair, what differs is put back (see repair.go) from kept releases
// or src, and the release is checked again; Differences is then what
// could not be repaired.
func (r *Releases) Verify(ctx context.Context, repair bool, src Source) (VerifyReport, error) {
	rep, _, err := r.verify(ctx, repair, src)
	return rep, err
}

// verify is Verify, with the findings left.
func (r *Releases) verify(ctx context.Context, repair bool, src Source) (VerifyReport, []finding, error) {
	start := time.Now()
	cur, m, ids, err := r.currentRelease()
	if err != nil {
		return VerifyReport{}, nil, err
	}
	rep := VerifyReport{Release: cur, Entries: len(m.Entries), Content: true}
	rep.Files, rep.Bytes = m.Files()
	found, err := r.verifyRelease(ctx, cur.ID, m, ids, true, 1)
	if err != nil {
		return rep, nil, err
	}
	if repair && len(found) > 0 {
		if rep.Repaired, err = r.repairCurrent(ctx, cur.ID, found, src); err != nil {
			r.log.Error("repair", "id", cur.ID, "err", err)
		}
		if cur, m, ids, err = r.currentRelease(); err != nil { // identities changed
			return rep, nil, err
		}
		if found, err = r.verifyRelease(ctx, cur.ID, m, ids, true, 1); err != nil {
			return rep, nil, err
		}
	}
	rep.Differences = differences(found)
	rep.Seconds = time.Since(start).Seconds()
	return rep, found, nil
}

// Inspect checks the current release against its manifest without
// reading content: every path, type, owner, mode and symlink target, and
// each file's size and recorded identity (what the background audit does
// every check_interval). A release without identities is checked by
// content instead.
func (r *Releases) Inspect(ctx context.Context) (VerifyReport, error) {
	start := time.Now()
	cur, m, ids, err := r.currentRelease()
	if err != nil {
		return VerifyReport{}, err
	}
	rep := VerifyReport{Release: cur, Entries: len(m.Entries), Content: ids == nil}
	rep.Files, rep.Bytes = m.Files()
	found, err := r.verifyRelease(ctx, cur.ID, m, ids, ids == nil, 1)
	if err != nil {
		return rep, err
	}
	rep.Differences = differences(found)
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// repairCurrent puts back what found says differs in release id, which must
// still be the current one; it waits for a sync in progress.
func (r *Releases) repairCurrent(ctx context.Context, id string, found []finding, src Source) ([]Difference, error) {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	cur, m, ids, err := r.currentRelease()
	if err != nil {
		return nil, err
	}
	if cur.ID != id {
		return nil, fmt.Errorf("repair: release %.12s is no longer served", id)
	}
	done, err := r.repairRelease(ctx, id, m, ids, found, src)
	if len(done) > 0 {
		r.log.Warn("release repaired", "id", id, "seq", cur.Seq, "repaired", len(done), "first", done[0].String())
	}
	if err == nil && ids == nil {
		if rest, verr := r.verifyRelease(ctx, id, m, nil, true, 1); verr == nil && len(rest) == 0 {
			err = r.adoptIdentities(id, m, nil)
		}
	}
	return done, err
}

func differences(found []finding) []Difference {
	out := make([]Difference, len(found))
	for i, f := range found {
		out[i] = f.Difference
	}
	return out
}
