package mirror

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sha256 "github.com/minio/sha256-simd"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// StoreConfig configures the controller's revision store.
type StoreConfig struct {
	Dir     string   // data_dir/mirror
	Source  string   // the tree to publish (mirror.source)
	Exclude []string // globs, see excluder
	Keep    int      // revisions kept besides the pinned one; <= 0 means DefaultKeep
	// FullScanEvery: a publish learns what changed from a watcher of the
	// source, and scans the whole tree at least this often; 0 means
	// DefaultFullScanEvery, < 0 never watches (every publish scans).
	FullScanEvery time.Duration
	Logger        *slog.Logger
}

// DefaultKeep is the number of revisions a store keeps when Keep is unset.
const DefaultKeep = 5

// PublishProgress reports a running publish, or the last one when none runs.
// Files and Bytes count what must be read and hashed: files whose identity
// (size, times, inode) changed since the last publish, or new ones.
type PublishProgress struct {
	Phase     string `json:"phase"` // scan, capture, commit, gc, done
	Files     int    `json:"files"`
	FilesDone int    `json:"files_done"`
	Bytes     int64  `json:"bytes"`
	BytesDone int64  `json:"bytes_done"`
}

var (
	// ErrNotFound reports an unknown (or garbage-collected) revision.
	ErrNotFound = errors.New("revision not found")
	// ErrAmbiguous reports a revision reference matching several revisions.
	ErrAmbiguous = errors.New("revision reference is ambiguous")
)

// scanCacheFile persists the identity cache between runs.
const scanCacheFile = "scan-cache"

// Store is the controller's revision store: it publishes the source tree
// as immutable revisions, captures their content into packs, keeps the
// newest Keep revisions plus the pinned one, and serves them to web nodes
// (Handler). Every kept revision stays servable byte-for-byte whatever
// happens to the source afterwards.
type Store struct {
	cfg     StoreConfig
	log     *slog.Logger
	objects string

	// pubMu serialises Publish, its garbage collection, Open and Close. The
	// object index and pack set change only under pubMu and mu together,
	// so a publish reads them without mu.
	pubMu sync.Mutex
	ex    *excluder
	cache *scanCache
	dirty bool              // cache changed since it was last written
	live  map[Hash]struct{} // scratch set of garbage collection
	// gcRuns is the garbage collection that follows each new revision,
	// after Publish returned (see collectLater).
	gcRuns  sync.WaitGroup
	closing bool
	src     sourceScan

	mu        sync.RWMutex
	opened    bool
	revs      []Revision // oldest first
	pinned    string
	index     map[Hash]objLoc
	packs     map[uint64]*pack
	nextPack  atomic.Uint64
	manifests map[string]*keptManifest

	prog progress

	// racyMargin: a file whose ctime is this close to the start of a scan
	// may change again within the same timestamp tick unnoticed, so its
	// identity is not cached.
	racyMargin time.Duration
	// testHookRead, if set, runs between a file's open and its reading;
	// testHookOpen before the open (with the relative path).
	testHookRead func(path string)
	testHookOpen func(rel string)
}

// objLoc locates the content of a hash.
type objLoc struct {
	p *pack
	packObj
}

// NewStore returns a store; Open loads it.
func NewStore(cfg StoreConfig) *Store {
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeep
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{
		cfg:        cfg,
		log:        log,
		objects:    filepath.Join(cfg.Dir, objectsDir),
		racyMargin: 2 * time.Second,
	}
}

// Open creates the store's directories, removes crash leftovers and loads
// the revisions, the pack indexes and the persisted identity cache. It
// verifies no content.
func (s *Store) Open(ctx context.Context) error {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if s.opened {
		return errors.New("already open")
	}
	self, err := s.selfExclude()
	if err != nil {
		return fmt.Errorf("open %s: %w", s.cfg.Dir, err)
	}
	ex, err := newExcluder(append(slices.Clip(s.cfg.Exclude), self...))
	if err != nil {
		return fmt.Errorf("open %s: %w", s.cfg.Dir, err)
	}
	s.ex = ex
	s.closing = false
	if err := s.makeDirs(); err != nil {
		return fmt.Errorf("open %s: %w", s.cfg.Dir, err)
	}
	revs, err := s.loadRevisions()
	if err != nil {
		return fmt.Errorf("open %s: %w", s.cfg.Dir, err)
	}
	if err := s.loadPacks(); err != nil {
		return fmt.Errorf("open %s: %w", s.cfg.Dir, err)
	}
	s.cache = loadScanCache(filepath.Join(s.cfg.Dir, scanCacheFile), s.cfg.Source, s.log)
	s.openWatcher()
	s.mu.Lock()
	s.revs = revs
	s.manifests = make(map[string]*keptManifest, len(revs))
	for _, r := range revs {
		s.manifests[r.ID] = &keptManifest{}
	}
	s.opened = true
	s.mu.Unlock()
	s.log.Info("mirror store open", "dir", s.cfg.Dir, "revisions", len(revs), "packs", len(s.packs), "objects", len(s.index))
	return nil
}

// selfExclude keeps the store out of what it publishes when Dir lies
// inside Source.
func (s *Store) selfExclude() ([]string, error) {
	src, err1 := filepath.Abs(s.cfg.Source)
	dir, err2 := filepath.Abs(s.cfg.Dir)
	rel, err3 := filepath.Rel(src, dir)
	if err := errors.Join(err1, err2, err3); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, nil
	}
	if rel == "." {
		return nil, fmt.Errorf("store directory %s is the source itself", s.cfg.Dir)
	}
	s.log.Warn("mirror store lies inside the source; excluding it", "dir", s.cfg.Dir)
	return []string{"/" + filepath.ToSlash(rel)}, nil
}

func (s *Store) makeDirs() error {
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return err
	}
	for _, d := range []string{manifestsDir, revisionsDir, objectsDir} {
		p := filepath.Join(s.cfg.Dir, d)
		if err := os.MkdirAll(p, 0o700); err != nil {
			return err
		}
		if err := removeTemps(p); err != nil {
			return err
		}
	}
	if err := removeTemps(s.cfg.Dir); err != nil {
		return err
	}
	return syncDir(s.cfg.Dir)
}

// loadRevisions reads revisions/*.json, oldest first, and removes manifests
// without a revision: a publish that crashed before its commit point.
func (s *Store) loadRevisions() ([]Revision, error) {
	revDir := filepath.Join(s.cfg.Dir, revisionsDir)
	ents, err := os.ReadDir(revDir)
	if err != nil {
		return nil, err
	}
	var revs []Revision
	ids := map[string]bool{}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		r, err := readRevisionFile(filepath.Join(revDir, e.Name()))
		if err != nil {
			return nil, err
		}
		if r.ID != id {
			return nil, fmt.Errorf("%s: holds revision %s", e.Name(), r.ID)
		}
		if _, err := os.Stat(s.manifestPath(id)); err != nil {
			s.log.Error("revision without manifest, ignored", "revision", id, "err", err)
			continue
		}
		revs = append(revs, r)
		ids[id] = true
	}
	slices.SortFunc(revs, func(a, b Revision) int { return cmp.Compare(a.Seq, b.Seq) })
	mdir := filepath.Join(s.cfg.Dir, manifestsDir)
	ments, err := os.ReadDir(mdir)
	if err != nil {
		return nil, err
	}
	for _, e := range ments {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && !ids[id] {
			if err := os.Remove(filepath.Join(mdir, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	return revs, nil
}

func readRevisionFile(p string) (Revision, error) {
	var r Revision
	data, err := os.ReadFile(p)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%s: %w", p, err)
	}
	return r, nil
}

// loadPacks opens every complete pack and builds the object index. Data
// without an index (a crash between the two renames) is removed; a pack
// with a corrupt index is renamed aside and ignored: what it held is stored
// again by the next publish that needs it.
func (s *Store) loadPacks() error {
	ents, err := os.ReadDir(s.objects)
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	s.index = map[Hash]objLoc{}
	s.packs = map[uint64]*pack{}
	var maxNum uint64
	for _, e := range ents {
		num, ext, ok := parsePackName(e.Name())
		if !ok {
			continue
		}
		maxNum = max(maxNum, num)
		switch {
		case ext == "dat" && !names[packFileName(num, "idx")]:
			s.log.Warn("removing pack data without index", "pack", e.Name())
			if err := os.Remove(filepath.Join(s.objects, e.Name())); err != nil {
				return err
			}
		case ext == "idx":
			p, err := openPack(s.objects, num)
			if err != nil {
				s.log.Error("ignoring unreadable pack", "pack", num, "err", err)
				s.setPackAside(num)
				continue
			}
			s.addPack(p)
		}
	}
	s.nextPack.Store(maxNum + 1)
	return nil
}

func (s *Store) setPackAside(num uint64) {
	for _, ext := range []string{"idx", "dat"} {
		p := filepath.Join(s.objects, packFileName(num, ext))
		_ = os.Rename(p, p+".corrupt")
	}
}

// addPack adds p to the pack set and its objects to the index (the caller
// holds mu or runs before the store is shared).
func (s *Store) addPack(p *pack) {
	s.packs[p.num] = p
	for _, o := range p.objs {
		s.index[o.hash] = objLoc{p: p, packObj: o}
	}
}

// Close writes the identity cache if it changed and closes the packs;
// requests still streaming keep their packs open until they end.
func (s *Store) Close() error {
	s.pubMu.Lock()
	s.closing = true // no garbage collection starts after this
	s.pubMu.Unlock()
	s.gcRuns.Wait()
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.opened {
		return nil
	}
	s.opened = false
	s.closeWatcher()
	var err error
	if s.dirty {
		if err = s.writeScanCache(); err == nil {
			s.dirty = false
		}
	}
	for _, p := range s.packs {
		p.release()
	}
	s.packs, s.index, s.manifests = nil, nil, nil
	return err
}

func (s *Store) manifestPath(id string) string {
	return filepath.Join(s.cfg.Dir, manifestsDir, id+".json")
}

func (s *Store) revisionPath(id string) string {
	return filepath.Join(s.cfg.Dir, revisionsDir, id+".json")
}

// writeScanCache replaces the cache file without waiting for the disk: a
// cache lost or torn by a crash fails its checksum and is only slower.
func (s *Store) writeScanCache() error {
	f, err := os.CreateTemp(s.cfg.Dir, tmpPrefix+scanCacheFile+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	_, err = f.Write(s.cache.encode())
	if err := errors.Join(err, f.Close()); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(s.cfg.Dir, scanCacheFile))
}

// Revisions returns the kept revisions, oldest first.
func (s *Store) Revisions() []Revision {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.revs)
}

// Latest returns the newest revision.
func (s *Store) Latest() (Revision, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.revs) == 0 {
		return Revision{}, false
	}
	return s.revs[len(s.revs)-1], true
}

// Find resolves ref, a decimal seq or a hex id prefix of at least 4
// digits, among the kept revisions. A ref that reads both ways and matches
// two revisions is ambiguous.
func (s *Store) Find(ref string) (Revision, error) {
	ref = strings.ToLower(strings.TrimSpace(ref))
	s.mu.RLock()
	defer s.mu.RUnlock()
	var found []Revision
	if seq, err := strconv.ParseUint(ref, 10, 64); err == nil {
		for _, r := range s.revs {
			if r.Seq == seq {
				found = append(found, r)
			}
		}
	}
	if len(ref) >= 4 && isHex(ref) {
		for _, r := range s.revs {
			if strings.HasPrefix(r.ID, ref) && (len(found) == 0 || found[0].ID != r.ID) {
				found = append(found, r)
			}
		}
	}
	switch len(found) {
	case 0:
		return Revision{}, fmt.Errorf("revision %q: %w", ref, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return Revision{}, fmt.Errorf("revision %q matches %d revisions: %w", ref, len(found), ErrAmbiguous)
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s + s[:len(s)%2])
	return err == nil
}

// Pin protects revision id (the cluster target) from garbage collection
// even when it is older than the newest Keep; "" unpins.
func (s *Store) Pin(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pinned = id
}

// Progress reports the running publish, or the last one.
func (s *Store) Progress() PublishProgress { return s.prog.get() }

// Publish records the source tree as a new revision. If the tree equals the
// latest revision it returns that one with created false and writes
// nothing. Publishes run one at a time.
func (s *Store) Publish(ctx context.Context, message string) (Revision, bool, error) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if !s.isOpen() {
		return Revision{}, false, errors.New("publish: mirror store is not open")
	}
	start := time.Now()
	s.prog.begin()
	rev, created, err := s.publish(ctx, message)
	if err == nil && created && !s.closing {
		s.collectLater()
	}
	s.prog.setPhase("done")
	if err != nil {
		return Revision{}, false, fmt.Errorf("publish %s: %w", s.cfg.Source, err)
	}
	p := s.prog.get()
	s.log.Info("published", "seq", rev.Seq, "id", rev.ID, "created", created, "files", rev.Files,
		"changed", rev.Changed, "read", p.Files, "read_bytes", p.BytesDone,
		"took", time.Since(start).Round(time.Millisecond), "phases", s.prog.phaseTimings())
	return rev, created, nil
}

func (s *Store) isOpen() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.opened
}

func (s *Store) publish(ctx context.Context, message string) (_ Revision, _ bool, err error) {
	start := time.Now()
	ents, c, valid, err := s.scanAndCapture(ctx)
	if err != nil {
		s.scanned(nil)
		return Revision{}, false, err
	}
	defer func() {
		if err != nil {
			ents = nil
		}
		s.scanned(ents)
	}()
	defer c.abort()
	s.prog.setPhase("commit")
	// The packs reach the disk while the manifest is built.
	finished := make(chan error, 1)
	go func() { finished <- c.finish() }()
	cached := make(chan struct{})
	go func() {
		defer close(cached)
		s.updateScanCache(ents, start)
	}()
	m := manifestOf(ents)
	// Only the entries that changed are encoded: the others' lines are
	// copied from the latest revision's bytes.
	prev, prevEnc := s.latestManifest()
	enc := encodeFrom(prev, prevEnc, m)
	data := enc.data
	sum := sha256.Sum256(data)
	id := hex.EncodeToString(sum[:])
	<-cached
	if err := errors.Join(<-valid, <-finished); err != nil {
		return Revision{}, false, err
	}
	latest, ok := s.Latest()
	if ok && latest.ID == id {
		// Content read for an unchanged tree is new only if the store had
		// lost some (a pack set aside at Open): keep it, the revision needs it.
		if err := s.installPacks(c); err != nil {
			return Revision{}, false, err
		}
		return latest, false, nil
	}
	files, bytes := m.Files()
	rev := Revision{Seq: latest.Seq + 1, ID: id, Created: time.Now().UTC(), Message: message,
		Files: files, Bytes: bytes, Changed: c.changed}
	if err := s.commit(rev, m, enc, c); err != nil {
		return Revision{}, false, err
	}
	return rev, true, nil
}

// scanAndCapture scans the source while capturing the content of the files
// found. The tree's shape is checked meanwhile: valid yields the outcome
// (and a bad shape cancels the capture).
func (s *Store) scanAndCapture(ctx context.Context) (ents []*scanEntry, c *capture, valid <-chan error, err error) {
	// One descriptor of the root for the whole publish: the scan lists
	// and the capture opens everything beneath it, never by path.
	root, err := openRoot(s.cfg.Source)
	if err != nil {
		return nil, nil, nil, err
	}
	defer unix.Close(root)
	c = s.startCapture(ctx, root)
	ents, err = s.scanSource(ctx, root, c.lookup, c.offer)
	if err != nil {
		c.stop()
		return nil, nil, nil, err
	}
	prev, _ := s.latestManifest()
	validated := make(chan error, 1)
	go func() {
		err := validateShape(ents, prev)
		if err != nil {
			c.cancel()
		}
		validated <- err
	}()
	s.prog.setPhase("capture")
	if err := c.wait(); err != nil {
		if verr := <-validated; verr != nil {
			return nil, nil, nil, verr
		}
		return nil, nil, nil, err
	}
	return ents, c, validated, nil
}

// validateShape checks paths, types and symlinks (none may lead out of the
// tree) without the files' identity and hash, which capture workers may
// still be filling in. A tree of the same shape as prev, a valid manifest,
// is valid.
func validateShape(ents []*scanEntry, prev *Manifest) error {
	if prev != nil && len(prev.Entries) == len(ents) {
		same := true
		for i, e := range ents {
			pe := &prev.Entries[i]
			if pe.Path != e.path || pe.Type != e.typ || pe.Target != e.target {
				same = false
				break
			}
		}
		if same {
			return nil
		}
	}
	m := &Manifest{Entries: make([]Entry, len(ents))}
	for i, e := range ents {
		m.Entries[i] = Entry{Path: e.path, Type: e.typ, Target: e.target}
	}
	return m.Validate()
}

// latestManifest returns the latest revision's manifest and its encoding
// if they are in memory.
func (s *Store) latestManifest() (*Manifest, *encoding) {
	latest, ok := s.Latest()
	if !ok {
		return nil, nil
	}
	km, err := s.kept(latest.ID)
	if err != nil {
		return nil, nil
	}
	km.mu.Lock()
	defer km.mu.Unlock()
	return km.m, km.enc
}

// manifestOf builds the manifest of a captured scan.
func manifestOf(ents []*scanEntry) *Manifest {
	m := &Manifest{Entries: make([]Entry, len(ents))}
	for i, e := range ents {
		m.Entries[i] = Entry{Path: e.path, Type: e.typ, Mode: e.id.Mode, Target: e.target}
		if e.typ == TypeFile {
			m.Entries[i].Size, m.Entries[i].SHA256 = e.id.Size, e.hash
		}
	}
	return m
}

// updateScanCache replaces the identity cache with the files of this scan,
// but for those changed too recently to trust their timestamps. After a
// scan that rechecked only what changed, only those files are updated: the
// others' entries stand.
func (s *Store) updateScanCache(ents []*scanEntry, scanStart time.Time) {
	racy := scanStart.Add(-s.racyMargin).UnixNano()
	files := s.cache.files
	if s.src.files != nil {
		for _, e := range s.src.files {
			if e.id.CtimeNs < racy {
				files[e.path] = &cacheEntry{id: e.id, hash: e.hash}
			} else {
				delete(files, e.path)
			}
		}
		s.dirty = true
		return
	}
	clear(files) // the scan is over: refill its map
	arena := make([]cacheEntry, len(ents))
	for i, e := range ents {
		if e.typ == TypeFile && e.id.CtimeNs < racy {
			arena[i] = cacheEntry{id: e.id, hash: e.hash}
			files[e.path] = &arena[i]
		}
	}
	s.cache.files = files
	s.dirty = true
}

// installPacks renames the captured packs, made durable by c.finish, into
// place and adds their objects to the index.
func (s *Store) installPacks(c *capture) error {
	if len(c.writers) == 0 {
		return nil
	}
	var packs []*pack
	for _, w := range c.writers {
		p, err := w.install()
		if err != nil {
			return fmt.Errorf("install pack: %w", err)
		}
		packs = append(packs, p)
	}
	c.writers = nil
	s.mu.Lock()
	for _, p := range packs {
		s.addPack(p)
	}
	s.mu.Unlock()
	return syncDir(s.objects)
}

// commit makes a new revision durable: its packs, manifest and the scan
// cache are written in parallel, then the revision file, the commit point.
// A crash before it leaves unreferenced packs (collected later) and an
// orphan manifest (removed by Open).
func (s *Store) commit(rev Revision, m *Manifest, enc *encoding, c *capture) error {
	data := enc.data
	var g errgroup.Group
	g.Go(func() error {
		if err := writeFileAtomic(s.manifestPath(rev.ID), data, 0o644); err != nil {
			return fmt.Errorf("write manifest: %w", err)
		}
		return nil
	})
	// The cache file only speeds up the first publish after a restart: it
	// is written after full scans, and at Close.
	var cacheErr error
	if s.src.files == nil {
		g.Go(func() error {
			cacheErr = s.writeScanCache()
			return nil
		})
	}
	packErr := s.installPacks(c)
	if err := errors.Join(packErr, g.Wait()); err != nil {
		return err
	}
	if cacheErr != nil {
		s.log.Warn("write scan cache", "err", cacheErr)
	} else if s.src.files == nil {
		s.dirty = false
	}
	if err := writeJSONAtomic(s.revisionPath(rev.ID), rev); err != nil {
		return fmt.Errorf("write revision: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.revs); n > 0 {
		if km := s.manifests[s.revs[n-1].ID]; km != nil {
			km.mu.Lock()
			km.enc = nil // only the latest one's is spliced from
			km.mu.Unlock()
		}
	}
	s.revs = append(s.revs, rev)
	s.manifests[rev.ID] = &keptManifest{m: m, enc: enc}
	return nil
}

// keptManifest caches what the store derives from a kept manifest.
type keptManifest struct {
	mu  sync.Mutex
	m   *Manifest
	enc *encoding // the latest revision's: the next publish splices from it
	gz  []byte
}

// manifest returns the decoded manifest of a kept revision.
func (s *Store) manifest(id string) (*Manifest, error) {
	km, err := s.kept(id)
	if err != nil {
		return nil, err
	}
	km.mu.Lock()
	defer km.mu.Unlock()
	if km.m != nil {
		return km.m, nil
	}
	data, err := os.ReadFile(s.manifestPath(id))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", id, err)
	}
	m, err := DecodeManifest(data, id)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", id, err)
	}
	km.m = m
	return m, nil
}

func (s *Store) kept(id string) (*keptManifest, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	km, ok := s.manifests[id]
	if !ok {
		return nil, fmt.Errorf("revision %s: %w", id, ErrNotFound)
	}
	return km, nil
}

// progress is the PublishProgress of the running publish.
type progress struct {
	mu        sync.Mutex
	phase     string
	since     time.Time       // start of phase
	timings   strings.Builder // "phase=duration" of the finished phases
	files     atomic.Int64
	bytes     atomic.Int64
	filesDone atomic.Int64
	bytesDone atomic.Int64
}

func (p *progress) begin() {
	p.mu.Lock()
	p.phase = ""
	p.timings.Reset()
	p.mu.Unlock()
	p.setPhase("scan")
	p.files.Store(0)
	p.bytes.Store(0)
	p.filesDone.Store(0)
	p.bytesDone.Store(0)
}

// plan counts a file to read, of size bytes if known yet.
func (p *progress) plan(size int64) {
	p.files.Add(1)
	p.bytes.Add(size)
}

// planBytes counts the bytes of a file planned before its size was known.
func (p *progress) planBytes(size int64) { p.bytes.Add(size) }

func (p *progress) setPhase(phase string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.phase != "" {
		fmt.Fprintf(&p.timings, " %s=%s", p.phase, now.Sub(p.since).Round(time.Millisecond))
	}
	p.phase, p.since = phase, now
}

// phaseTimings returns how long each finished phase took.
func (p *progress) phaseTimings() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.TrimSpace(p.timings.String())
}

func (p *progress) done(size int64) {
	p.filesDone.Add(1)
	p.bytesDone.Add(size)
}

func (p *progress) get() PublishProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PublishProgress{Phase: p.phase, Files: int(p.files.Load()), Bytes: p.bytes.Load(),
		FilesDone: int(p.filesDone.Load()), BytesDone: p.bytesDone.Load()}
}
