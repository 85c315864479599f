package mirror

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultFullScanEvery is how often a publish scans the whole source even
// though the watcher vouches for it.
const DefaultFullScanEvery = time.Hour

// sourceScan is what a publish knows of the source between publishes.
type sourceScan struct {
	watch    *watcher     // nil: every publish scans the whole tree
	model    []*scanEntry // the entries of the last publish, while the watcher vouches for them
	lastFull time.Time
	forced   bool   // the next publish scans the whole tree
	last     string // how the last publish found the source (tests, logs)
	// files are the files the last scan looked at again, when it rechecked
	// what changed; nil after a full scan.
	files []*scanEntry
}

// localFS lists the filesystems whose changes inotify sees (all of them
// are made by this kernel). On a network filesystem (NFS, SMB, FUSE) other
// hosts change files unseen, so every publish scans the whole tree.
var localFS = map[int64]string{
	0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs",
	0x794c7630: "overlayfs", 0x2fc12fc1: "zfs", 0xF2F52010: "f2fs", 0x3153464a: "jfs",
}

// openWatcher starts watching the source, unless it is disabled or the
// source's filesystem is not local.
func (s *Store) openWatcher() {
	if s.cfg.FullScanEvery < 0 {
		return
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.cfg.Source, &st); err != nil {
		s.log.Warn("source not watched: every publish scans it whole", "err", err)
		return
	}
	if _, ok := localFS[int64(st.Type)]; !ok {
		s.log.Info("source is not on a local filesystem: every publish scans it whole",
			"fstype", st.Type)
		return
	}
	w, err := newWatcher(s.cfg.Source, s.log)
	if err != nil {
		s.log.Warn("source not watched: every publish scans it whole", "err", err)
		return
	}
	s.src.watch = w
}

func (s *Store) closeWatcher() {
	if s.src.watch != nil {
		s.src.watch.close()
		s.src.watch = nil
	}
	s.src.model = nil
}

// ForceFullScan makes the next publish scan the whole source tree.
func (s *Store) ForceFullScan() {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.src.forced = true
}

// scanSource finds the entries of the source tree: by rechecking what the
// watcher saw change since the last publish, or by scanning the whole tree
// (first publish, watcher not vouching, FullScanEvery passed, forced).
// Files to read go to onFile.
func (s *Store) scanSource(ctx context.Context, rootFD int, lookup func(string) *cacheEntry, onFile func(*scanEntry)) ([]*scanEntry, error) {
	src := &s.src
	every := s.cfg.FullScanEvery
	if every == 0 {
		every = DefaultFullScanEvery
	}
	reason := "first publish"
	switch {
	case src.watch == nil:
		reason = "no watcher"
	case src.forced:
		reason = "asked for"
	case src.model != nil && time.Since(src.lastFull) >= every:
		reason = "periodic"
	case src.model != nil:
		dirty, broken := src.watch.take()
		if broken == "" {
			r := &rescan{ctx: ctx, root: s.cfg.Source, rootFD: rootFD, ex: s.ex, log: s.log, w: src.watch,
				lookup: lookup, onFile: onFile, prev: src.model}
			s.log.Debug("publish rechecks what changed", "paths", len(dirty))
			src.last = fmt.Sprintf("changes: %d paths", len(dirty))
			ents, err := r.run(dirty)
			src.files = r.files
			return ents, err
		}
		reason = broken
	}
	var onDir func(string)
	if src.watch != nil {
		s.log.Info("publish scans the whole source", "reason", reason)
		src.watch.reset()
		onDir = src.watch.watchDir
	}
	src.last, src.files = "full: "+reason, nil
	start := time.Now()
	ents, err := scanSubtree(ctx, s.cfg.Source, rootFD, "", s.ex, s.log, lookup, onFile, onDir)
	if err == nil {
		src.forced, src.lastFull = false, start
	}
	return ents, err
}

// scanned records the entries of a publish that succeeded, or forgets
// them (nil) after one that failed: then the next publish scans the whole
// tree, since the changes it took from the watcher were not published.
func (s *Store) scanned(ents []*scanEntry) {
	if s.src.watch == nil {
		return
	}
	s.src.model = ents
}
