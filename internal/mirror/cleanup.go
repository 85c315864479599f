package mirror

import (
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Removing a tree of a release costs an unlink per file: seconds for a
// large one on a slow disk. Whatever Open or a build sets aside (crash
// leftovers, a partial tree that cannot be resumed, an incomplete release,
// the warm spare of an earlier run, a quarantine directory past
// quarantineKeep) is renamed out of the way at once, into the releases
// directory, and removed later by RunCleanup, in the background of a
// running agent, with one log line saying what it was, how much and how
// long it took. This is the one place trees are set aside for removal; the
// quarantine (quarantine.go) keeps what it holds.

// trashPrefix names what is set aside; it is a temporary name, so a crash
// before its removal leaves nothing Open would take for a release.
const trashPrefix = tmpPrefix + "trash-"

// janitor holds what is set aside for removal.
type janitor struct {
	mu    sync.Mutex
	queue []trashItem
	wake  chan struct{}
}

type trashItem struct {
	path string
	what string
}

// trash renames p (on the releases' filesystem) to a fresh temporary name
// in the releases directory, where Open finds it after a crash, and queues
// it for RunCleanup; what says what it was, for the log.
func (r *Releases) trash(p, what string) error {
	dest := filepath.Join(r.relDir, trashPrefix+strconv.FormatUint(rand.Uint64(), 36))
	if err := os.Rename(p, dest); err != nil {
		return err
	}
	r.queueTrash(dest, what)
	return nil
}

func (r *Releases) queueTrash(p, what string) {
	j := &r.janitor
	j.mu.Lock()
	j.queue = append(j.queue, trashItem{p, what})
	wake := j.wakeLocked()
	j.mu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
}

func (j *janitor) wakeLocked() chan struct{} {
	if j.wake == nil {
		j.wake = make(chan struct{}, 1)
	}
	return j.wake
}

// next pops the oldest item, or returns the channel that signals more.
func (j *janitor) next() (trashItem, <-chan struct{}, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.queue) == 0 {
		return trashItem{}, j.wakeLocked(), false
	}
	item := j.queue[0]
	j.queue = j.queue[1:]
	return item, nil, true
}

// trashLeftovers sets aside the temporary entries of the releases
// directory, builds and removals a crash interrupted, and the warm spare
// of an earlier run, never trusted across a restart (spare.go).
func (r *Releases) trashLeftovers() error {
	ents, err := os.ReadDir(r.relDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(r.relDir, name)
		switch {
		case strings.HasPrefix(name, trashPrefix):
			r.queueTrash(p, "leftover")
		case strings.HasPrefix(name, tmpPrefix):
			if err := r.trash(p, "interrupted build or removal"); err != nil {
				return err
			}
		case name == spareName:
			if err := r.trash(p, "warm spare of an earlier run"); err != nil {
				return err
			}
		}
	}
	return nil
}

// Pending returns how many trees wait for RunCleanup.
func (r *Releases) Pending() int {
	r.janitor.mu.Lock()
	defer r.janitor.mu.Unlock()
	return len(r.janitor.queue)
}

// RunCleanup removes what was set aside, now and whenever more is, until
// ctx is done; an interrupted removal is finished after the next Open. The
// agent runs it once its edge and API serve.
func (r *Releases) RunCleanup(ctx context.Context) {
	for {
		item, wake, ok := r.janitor.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-wake:
				continue
			}
		}
		r.removeTrash(ctx, item)
		if ctx.Err() != nil {
			return
		}
	}
}

func (r *Releases) removeTrash(ctx context.Context, item trashItem) {
	start := time.Now()
	files, bytes, err := removeCounting(ctx, item.path)
	log := r.log.With("what", item.what, "path", item.path, "files", files, "bytes", bytes,
		"duration", time.Since(start).Round(time.Millisecond))
	switch {
	case ctx.Err() != nil:
		log.Info("cleanup interrupted; it goes on after the next start")
	case err != nil:
		log.Warn("cleanup failed", "err", err)
	default:
		log.Info("cleanup done")
	}
}

// removeCounting removes the tree at p, files in parallel, and returns how
// many files and bytes it held. It stops early when ctx is done.
func removeCounting(ctx context.Context, p string) (int, int64, error) {
	var dirs, files []string
	var bytes int64
	err := filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, q)
			return os.Chmod(q, 0o700) // before WalkDir reads it
		}
		if info, err := d.Info(); err == nil && d.Type().IsRegular() {
			bytes += info.Size()
		}
		files = append(files, q)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	var removed atomic.Int64
	err = parallel(ctx, len(files), func(i int) error {
		if err := os.Remove(files[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		removed.Add(1)
		return nil
	})
	if err != nil {
		return int(removed.Load()), bytes, err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return len(files), bytes, err
		}
	}
	return len(files), bytes, nil
}
