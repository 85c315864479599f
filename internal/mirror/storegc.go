package mirror

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	sha256 "github.com/minio/sha256-simd"
)

// collectLater runs gc once the publish that calls it has returned: the
// revisions and packs it removes are not the caller's concern, and at 50k
// files finding what is still live costs tens of milliseconds. The next
// publish waits for it (pubMu); Close waits for it.
func (s *Store) collectLater() {
	s.gcRuns.Go(func() {
		s.pubMu.Lock()
		defer s.pubMu.Unlock()
		if !s.isOpen() {
			return
		}
		start := time.Now()
		if err := s.gc(); err != nil {
			s.log.Error("mirror garbage collection", "err", err)
			return
		}
		s.log.Debug("mirror garbage collection done", "took", time.Since(start).Round(time.Millisecond))
	})
}

// WaitCollected waits for the garbage collection of the publishes that
// returned.
func (s *Store) WaitCollected() { s.gcRuns.Wait() }

// gc keeps the newest Keep revisions and the pinned one, removes the
// others, deletes packs that hold nothing they need and repacks those that
// are mostly dead.
func (s *Store) gc() error {
	s.mu.Lock()
	var keep, drop []Revision
	for i, r := range s.revs {
		if i >= len(s.revs)-s.cfg.Keep || r.ID == s.pinned {
			keep = append(keep, r)
		} else {
			drop = append(drop, r)
		}
	}
	s.mu.Unlock()
	dropped := 0
	for _, r := range drop {
		ok, err := s.dropRevision(r)
		if err != nil {
			return err
		}
		if !ok {
			keep = append(keep, r)
			continue
		}
		dropped++
	}
	if dropped > 0 {
		for _, d := range []string{revisionsDir, manifestsDir} {
			if err := syncDir(filepath.Join(s.cfg.Dir, d)); err != nil {
				return err
			}
		}
	}
	live, err := s.liveObjects(keep)
	if err != nil {
		return err
	}
	return s.collectPacks(live)
}

// dropRevision forgets a revision, unless it was pinned meanwhile, then
// removes its revision file and its manifest: a crash in between leaves an
// orphan manifest, which Open removes.
func (s *Store) dropRevision(r Revision) (bool, error) {
	s.mu.Lock()
	if r.ID == s.pinned {
		s.mu.Unlock()
		return false, nil
	}
	s.revs = slices.DeleteFunc(s.revs, func(x Revision) bool { return x.ID == r.ID })
	delete(s.manifests, r.ID)
	s.mu.Unlock()
	if err := os.Remove(s.revisionPath(r.ID)); err != nil && !os.IsNotExist(err) {
		return true, err
	}
	if err := os.Remove(s.manifestPath(r.ID)); err != nil && !os.IsNotExist(err) {
		return true, err
	}
	s.log.Info("revision garbage-collected", "seq", r.Seq, "id", r.ID)
	return true, nil
}

// liveObjects returns the hashes the kept revisions reference.
func (s *Store) liveObjects(keep []Revision) (map[Hash]struct{}, error) {
	if s.live == nil {
		s.live = map[Hash]struct{}{}
	}
	live := s.live
	clear(live)
	for _, r := range keep {
		m, err := s.manifest(r.ID)
		if err != nil {
			return nil, err
		}
		for i := range m.Entries {
			if m.Entries[i].Type == TypeFile {
				live[m.Entries[i].SHA256] = struct{}{}
			}
		}
	}
	return live, nil
}

// Pack garbage collection: a pack with no live object is deleted; one
// whose live bytes fall below half its size is rewritten. Too many packs
// (one or two per publish) are merged too, so open files stay few.
const maxPacks = 32

func (s *Store) collectPacks(live map[Hash]struct{}) error {
	type usage struct {
		p     *pack
		bytes int64
		objs  int
	}
	use := make(map[uint64]*usage, len(s.packs))
	for num, p := range s.packs {
		use[num] = &usage{p: p}
	}
	for h := range live {
		if loc, ok := s.index[h]; ok {
			u := use[loc.p.num]
			u.bytes += loc.size
			u.objs++
		}
	}
	var dead, sparse []*pack
	var largest *pack
	for _, u := range use {
		switch {
		case u.objs == 0:
			dead = append(dead, u.p)
		case u.bytes*2 < u.p.size:
			sparse = append(sparse, u.p)
		}
		if u.objs > 0 && (largest == nil || u.p.size > largest.size) {
			largest = u.p
		}
	}
	if len(use)-len(dead) > maxPacks {
		for _, u := range use {
			if u.objs > 0 && u.bytes*2 >= u.p.size && u.p != largest {
				sparse = append(sparse, u.p)
			}
		}
	}
	if len(sparse) > 0 {
		if err := s.repack(sparse, live); err != nil {
			return err
		}
	}
	return s.removePacks(append(dead, sparse...))
}

// removePacks drops packs from the store, their objects from the index,
// and deletes their files.
func (s *Store) removePacks(packs []*pack) error {
	if len(packs) == 0 {
		return nil
	}
	s.mu.Lock()
	for _, p := range packs {
		delete(s.packs, p.num)
		for _, o := range p.objs {
			if loc, ok := s.index[o.hash]; ok && loc.p == p {
				delete(s.index, o.hash)
			}
		}
	}
	s.mu.Unlock()
	for _, p := range packs {
		p.release()
		if err := removePackFiles(s.objects, p.num); err != nil {
			return err
		}
		s.log.Info("pack removed", "pack", p.num, "bytes", p.size)
	}
	return syncDir(s.objects)
}

// repack copies the live objects of packs into one new pack, verifying
// their hashes, and makes it durable before the caller removes the old
// ones. A corrupt object is left out (and logged): the next publish of
// that content stores it again.
func (s *Store) repack(packs []*pack, live map[Hash]struct{}) error {
	w, err := createPackWriter(s.objects, s.nextPack.Add(1)-1)
	if err != nil {
		return fmt.Errorf("repack: %w", err)
	}
	defer w.abort()
	var scratch []byte
	for _, p := range packs {
		for _, o := range p.objs {
			if _, ok := live[o.hash]; !ok || s.index[o.hash].p != p {
				continue
			}
			start := w.size()
			if err := copyVerified(w, &scratch, p.f, o); err != nil {
				if !errors.Is(err, errCorrupt) {
					return fmt.Errorf("repack: pack %d: %w", p.num, err)
				}
				s.log.Error("corrupt object left out of repack", "pack", p.num, "object", o.hash, "err", err)
				w.rewind(start)
				continue
			}
			w.add(o.hash, start, o.raw, o.codec)
		}
	}
	if err := w.finish(); err != nil {
		return fmt.Errorf("repack: %w", err)
	}
	np, err := w.install()
	if err != nil {
		return fmt.Errorf("repack: %w", err)
	}
	if err := syncDir(s.objects); err != nil {
		return err
	}
	s.mu.Lock()
	s.addPack(np)
	s.mu.Unlock()
	s.log.Info("repacked", "from", len(packs), "pack", np.num, "objects", len(np.objs), "bytes", np.size)
	return nil
}

// errCorrupt reports stored bytes that do not decode to their hash.
var errCorrupt = errors.New("content does not match its hash")

// copyVerified appends the stored bytes of o, read from f, to w and checks
// that they decode to content of o's hash. Raw objects are copied and
// hashed in pieces; compressed ones, at most compressMax bytes, whole.
func copyVerified(w *packWriter, scratch *[]byte, f *os.File, o packObj) error {
	h := sha256.New()
	off, size := o.off, o.size
	for size > 0 {
		n := int(min(size, packFlushBytes))
		if o.codec != CodecRaw {
			n = int(size)
		}
		b, err := w.reserve(n)
		if err != nil {
			return err
		}
		if _, err := f.ReadAt(b, off); err != nil {
			return err
		}
		w.commit(n)
		if o.codec != CodecRaw {
			raw, err := decodeObject((*scratch)[:0], b, o.codec, o.raw)
			if err != nil {
				return fmt.Errorf("%w: %v", errCorrupt, err)
			}
			*scratch = raw
			b = raw
		}
		h.Write(b)
		off += int64(n)
		size -= int64(n)
	}
	if Hash(h.Sum(nil)) != o.hash {
		return errCorrupt
	}
	return nil
}
