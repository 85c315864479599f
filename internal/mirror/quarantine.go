package mirror

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// What the agent takes out of a release because it differs from the
// manifest (planted, replaced or altered entries) is moved, not deleted, to
// <Dir>/quarantine/<UTC time>-<release>/<path>: evidence for whoever
// investigates. The newest quarantineKeep of these directories are kept.
const (
	quarantineDir  = "quarantine"
	quarantineKeep = 20
)

// quarantine moves entries of one release out of it, for one repair.
type quarantine struct {
	dir string // created at the first takeOut
	log *slog.Logger
}

func (r *Releases) newQuarantine(releaseID string) *quarantine {
	name := time.Now().UTC().Format("20060102T150405.000000000Z") + "-" + releaseID[:min(12, len(releaseID))]
	return &quarantine{dir: filepath.Join(r.metaDir(quarantineDir), name), log: r.log}
}

// takeOut moves the entry at rel of the tree at tree into the quarantine,
// or removes it when it cannot be moved.
func (q *quarantine) takeOut(tree, rel string) error {
	return q.takeOutAs(entryPathRel(tree, rel), rel)
}

// takeOutAs moves the entry at p, which stood at rel in the release, into
// the quarantine, or removes it when it cannot be moved.
func (q *quarantine) takeOutAs(p, rel string) error {
	dest := entryPathRel(q.dir, rel)
	err := os.MkdirAll(filepath.Dir(dest), 0o700)
	if err == nil {
		err = os.Rename(p, dest)
	}
	switch {
	case err == nil:
		q.log.Warn("moved out of a release into the quarantine", "path", rel, "quarantine", dest)
		return nil
	case os.IsNotExist(err) && !exists(p):
		return nil // gone meanwhile
	}
	q.log.Warn("could not quarantine; removing", "path", rel, "err", err)
	if err := removeTree(p); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove %s: %w", rel, err)
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// pruneQuarantine sets aside all but the newest quarantineKeep
// directories, for RunCleanup to remove.
func (r *Releases) pruneQuarantine() {
	dir := r.metaDir(quarantineDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), tmpPrefix) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names) // by time
	for _, n := range names[:max(0, len(names)-quarantineKeep)] {
		if err := r.trash(filepath.Join(dir, n), "quarantine "+n); err != nil {
			r.log.Warn("prune quarantine", "dir", n, "err", err)
		}
	}
}
