package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// rescan is the scan of a publish that the watcher vouches for: the
// entries of the last publish, prev (sorted, not modified), with only the
// dirty paths looked at again. A directory that appeared (created, or
// moved in from elsewhere) is watched and scanned whole; one that went
// away takes its subtree and its watches with it. Files found new or
// changed go to onFile, as in a scan; lookup is the identity cache.
type rescan struct {
	ctx    context.Context
	root   string // for messages
	rootFD int    // everything is opened beneath it
	ex     *excluder
	log    *slog.Logger
	w      *watcher
	lookup func(string) *cacheEntry
	onFile func(*scanEntry)

	prev    []*scanEntry
	removed []string                // paths dropped with their subtrees
	upsert  map[string]*scanEntry   // new or changed entries
	subtree map[string][]*scanEntry // directories scanned whole: their entries below
	files   []*scanEntry            // the files looked at again
}

func (r *rescan) run(dirty map[string]uint8) ([]*scanEntry, error) {
	r.upsert = map[string]*scanEntry{}
	r.subtree = map[string][]*scanEntry{}
	paths := make([]string, 0, len(dirty))
	for p := range dirty {
		paths = append(paths, p)
	}
	slices.Sort(paths) // parents before their children
	for _, p := range paths {
		if err := r.ctx.Err(); err != nil {
			return nil, err
		}
		if err := r.path(p, dirty[p]); err != nil {
			return nil, err
		}
	}
	return r.merge(), nil
}

// isDir reports whether p is a directory of the new tree.
func (r *rescan) isDir(p string) bool {
	if p == "." || p == "" {
		return true
	}
	if e, ok := r.upsert[p]; ok {
		return e.typ == TypeDir
	}
	if r.underRemoved(p) {
		return false
	}
	e := r.find(p)
	return e != nil && e.typ == TypeDir
}

// underRemoved reports whether p or one of its parents was removed.
func (r *rescan) underRemoved(p string) bool {
	for _, q := range r.removed {
		if p == q || strings.HasPrefix(p, q+"/") {
			return true
		}
	}
	return false
}

// find returns the entry of prev at p.
func (r *rescan) find(p string) *scanEntry {
	i := sort.Search(len(r.prev), func(i int) bool { return r.prev[i].path >= p })
	if i < len(r.prev) && r.prev[i].path == p {
		return r.prev[i]
	}
	return nil
}

// path looks at the dirty path p again.
func (r *rescan) path(p string, flags uint8) error {
	parent := path.Dir(p)
	if !r.isDir(parent) {
		return nil // its parent went away, or is scanned whole, or is excluded
	}
	if _, inSubtree := r.subtreeOf(p); inSubtree {
		return nil
	}
	e, ok, err := r.stat(p)
	if err != nil {
		return err
	}
	was := r.find(p)
	if !ok || r.ex.excluded(p, path.Base(p), e.typ == TypeDir) {
		r.remove(p, was)
		return nil
	}
	if was != nil && was.typ == TypeDir && e.typ != TypeDir {
		r.remove(p, was)
	}
	r.upsert[p] = &e
	switch {
	case e.typ == TypeFile:
		e.cached = r.lookup(p)
		r.files = append(r.files, &e)
		r.onFile(&e)
	case e.typ == TypeDir && (flags&dirtySubtree != 0 || was == nil || was.typ != TypeDir):
		return r.scanDir(p, was)
	}
	return nil
}

// subtreeOf returns the directory scanned whole that holds p, if any.
func (r *rescan) subtreeOf(p string) (string, bool) {
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		if _, ok := r.subtree[d]; ok {
			return d, true
		}
	}
	return "", false
}

// remove drops p and what was below it, and the watches there.
func (r *rescan) remove(p string, was *scanEntry) {
	r.removed = append(r.removed, p)
	delete(r.upsert, p)
	if was != nil && was.typ == TypeDir {
		r.w.unwatchUnder(p)
	}
}

// scanDir watches and scans the directory p whole, replacing what prev
// held below it.
func (r *rescan) scanDir(p string, was *scanEntry) error {
	if was != nil && was.typ == TypeDir {
		r.w.unwatchUnder(p) // moved here from elsewhere: watch again below
	}
	ents, err := scanSubtree(r.ctx, r.root, r.rootFD, p, r.ex, r.log, r.lookup, r.onFile, r.w.watchDir)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, errPathChanged) {
			r.remove(p, was) // gone again: its parent's event follows
			return nil
		}
		return err
	}
	r.subtree[p] = ents
	for _, e := range ents {
		if e.typ == TypeFile {
			r.files = append(r.files, e)
		}
	}
	return nil
}

// stat describes the entry at p as a scan would. ok is false for what a
// tree does not record: special files, and entries that are gone.
func (r *rescan) stat(p string) (scanEntry, bool, error) {
	dir := path.Dir(p)
	var fd int
	var err error
	if dir == "." {
		fd, err = unix.Openat(r.rootFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	} else {
		fd, err = openBeneath(r.rootFD, dir, unix.O_RDONLY|unix.O_DIRECTORY)
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, errPathChanged) {
		return scanEntry{}, false, nil // gone, or no longer a directory of the tree
	}
	if err != nil {
		return scanEntry{}, false, fmt.Errorf("scan %s/%s: %w", r.root, dir, err)
	}
	defer unix.Close(fd)
	wk := &walker{root: r.root, log: r.log}
	return wk.stat(fd, path.Base(p), p)
}

// merge builds the new sorted entry list: prev without what was removed,
// changed or rescanned, plus the new entries.
func (r *rescan) merge() []*scanEntry {
	drop := make([]bool, len(r.prev))
	dropRange := func(prefix string) {
		lo := sort.Search(len(r.prev), func(i int) bool { return r.prev[i].path >= prefix+"/" })
		hi := sort.Search(len(r.prev), func(i int) bool { return r.prev[i].path >= prefix+"0" }) // '0' follows '/'
		for i := lo; i < hi; i++ {
			drop[i] = true
		}
	}
	dropOne := func(p string) {
		i := sort.Search(len(r.prev), func(i int) bool { return r.prev[i].path >= p })
		if i < len(r.prev) && r.prev[i].path == p {
			drop[i] = true
		}
	}
	for _, p := range r.removed {
		dropOne(p)
		dropRange(p)
	}
	var add []*scanEntry
	for p, e := range r.upsert {
		dropOne(p)
		add = append(add, e)
	}
	for p, ents := range r.subtree {
		dropRange(p)
		add = append(add, ents...)
	}
	slices.SortFunc(add, func(a, b *scanEntry) int { return strings.Compare(a.path, b.path) })
	out := make([]*scanEntry, 0, len(r.prev)+len(add))
	i := 0
	for _, e := range add {
		for i < len(r.prev) && r.prev[i].path < e.path {
			if !drop[i] {
				out = append(out, r.prev[i])
			}
			i++
		}
		out = append(out, e)
	}
	for ; i < len(r.prev); i++ {
		if !drop[i] {
			out = append(out, r.prev[i])
		}
	}
	return out
}
