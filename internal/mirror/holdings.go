package mirror

import (
	"encoding/binary"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"
)

// holdings is the content a web node can give to its peers (see
// peerserver.go): every object of its current release, and the objects of
// the release it is building, as they are stored. Serving a build in
// progress is what lets new nodes that sync together feed each other, as
// BitTorrent peers do, instead of all waiting on the controller.
//
// The index of the current release is built from its manifest when a peer
// first asks, and dropped after holdingsIdle without a request: an idle web
// node does not keep a manifest in memory.
type holdings struct {
	mu      sync.Mutex
	build   *building
	current *releaseIndex
	timer   *time.Timer // drops current when idle
}

// holdingsIdle is how long the current release's index outlives the last
// request that used it.
const holdingsIdle = 2 * time.Minute

// releaseIndex maps the content of a release to its files.
type releaseIndex struct {
	id       string
	root     string
	m        *Manifest
	byHash   map[Hash]int32 // entry index of the first file with that content
	lastUsed time.Time
}

// building is the release under construction and what of it is stored.
type building struct {
	rev Revision
	releaseIndex
	epoch uint64   // tells one build of rev from the next one
	log   []uint64 // prefixes of the stored objects, in the order stored
	grew  chan struct{}
}

// begin starts serving what a build of rev into dir stores.
func (h *holdings) begin(rev Revision, m *Manifest, dir string) {
	b := &building{
		rev:          rev,
		releaseIndex: releaseIndex{id: rev.ID, root: dir, m: m, byHash: map[Hash]int32{}},
		epoch:        rand.Uint64()>>11 | 1, // exact as a JSON number
		grew:         make(chan struct{}),
	}
	h.mu.Lock()
	h.build = b
	h.mu.Unlock()
}

// stored records that the object h is complete in the file of entry.
func (h *holdings) stored(hash Hash, entry int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.build
	if b == nil {
		return
	}
	if _, dup := b.byHash[hash]; dup {
		return
	}
	b.byHash[hash] = int32(entry)
	b.log = append(b.log, hashPrefix(hash))
	close(b.grew)
	b.grew = make(chan struct{})
}

// moved follows the build of id to root, where its files now are.
func (h *holdings) moved(id, root string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.build != nil && h.build.id == id {
		h.build.root = root
	}
}

// end stops serving the build of id.
func (h *holdings) end(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.build != nil && h.build.id == id {
		close(h.build.grew)
		h.build = nil
	}
}

// hashPrefix is the first 8 bytes of h: what the have log carries.
func hashPrefix(h Hash) uint64 { return binary.BigEndian.Uint64(h[:8]) }

// objectFile is where a held object is read from.
type objectFile struct {
	path string
	size int64
}

// locate resolves hashes to the files holding them: in the current release,
// else in the build in progress. missing lists what is not held.
func (r *Releases) locate(hashes []Hash) (files []objectFile, missing []string) {
	cur := r.currentIndex()
	h := &r.holdings
	h.mu.Lock()
	defer h.mu.Unlock()
	files = make([]objectFile, len(hashes))
	for i, hash := range hashes {
		idx := cur
		e, ok := int32(0), false
		if idx != nil {
			e, ok = idx.byHash[hash]
		}
		if !ok && h.build != nil {
			idx = &h.build.releaseIndex
			e, ok = idx.byHash[hash]
		}
		if !ok {
			missing = append(missing, hash.String())
			continue
		}
		ent := &idx.m.Entries[e]
		files[i] = objectFile{path: entryPath(idx.root, ent), size: ent.Size}
	}
	if len(missing) > 0 {
		return nil, missing
	}
	return files, nil
}

// currentIndex returns the index of the current release, loading it if
// needed; nil when there is none.
func (r *Releases) currentIndex() *releaseIndex {
	cur, ok := r.Current()
	if !ok {
		return nil
	}
	h := &r.holdings
	h.mu.Lock()
	if c := h.current; c != nil && c.id == cur.ID {
		c.lastUsed = time.Now()
		h.mu.Unlock()
		return c
	}
	h.mu.Unlock()
	m, err := r.loadManifest(cur.ID)
	if err != nil {
		r.log.Warn("peers: current manifest unreadable", "id", cur.ID, "err", err)
		return nil
	}
	idx := &releaseIndex{id: cur.ID, root: filepath.Join(r.relDir, cur.ID), m: m,
		byHash: make(map[Hash]int32, len(m.Entries)), lastUsed: time.Now()}
	for i := range m.Entries {
		if e := &m.Entries[i]; e.Type == TypeFile {
			if _, dup := idx.byHash[e.SHA256]; !dup {
				idx.byHash[e.SHA256] = int32(i)
			}
		}
	}
	h.mu.Lock()
	h.current = idx
	if h.timer == nil {
		h.timer = time.AfterFunc(holdingsIdle, h.dropIdle)
	}
	h.mu.Unlock()
	return idx
}

// dropIdle forgets the current release's index once unused for
// holdingsIdle.
func (h *holdings) dropIdle() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.current == nil {
		h.timer = nil
		return
	}
	if idle := time.Since(h.current.lastUsed); idle < holdingsIdle {
		h.timer.Reset(holdingsIdle - idle)
		return
	}
	h.current, h.timer = nil, nil
}

// haveAnswer is what a node holds of a revision: all of it (Complete), or
// the prefixes of the objects stored by its build from position From on.
type haveAnswer struct {
	Complete bool
	Epoch    uint64
	From     int
	Objects  []uint64
}

// have answers what this node holds of id, from position from of the build
// epoch. When there is nothing new yet, the returned channel is closed when
// there is; ok is false when the node holds nothing of id.
func (r *Releases) have(id string, epoch uint64, from int) (ans haveAnswer, grew <-chan struct{}, ok bool) {
	if cur, ok := r.Current(); ok && cur.ID == id {
		return haveAnswer{Complete: true}, nil, true
	}
	h := &r.holdings
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.build
	if b == nil || b.id != id {
		return ans, nil, false
	}
	if epoch != b.epoch || from < 0 || from > len(b.log) {
		from = 0
	}
	ans = haveAnswer{Epoch: b.epoch, From: from, Objects: b.log[from:len(b.log):len(b.log)]}
	if len(ans.Objects) == 0 {
		grew = b.grew
	}
	return ans, grew, true
}

// inBuild returns the revision being built, if any.
func (r *Releases) inBuild() (Revision, bool) {
	h := &r.holdings
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.build == nil {
		return Revision{}, false
	}
	return h.build.rev, true
}
