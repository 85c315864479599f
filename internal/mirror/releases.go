package mirror

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sha256 "github.com/minio/sha256-simd"
)

// releasesDir holds the release trees of a web node (see fsutil.go).
const releasesDir = "releases"

// ReleasesConfig configures the release store of a web node.
type ReleasesConfig struct {
	Dir    string // data_dir/mirror
	Target string // mirror.target: the symlink the agent owns
	// Keep is how many releases are kept, the newest by seq, plus the
	// current one if older; at least 1.
	Keep int
	// AfterSwitch is run (argv, no shell) after each switch.
	AfterSwitch []string
	// AfterSwitchTimeout bounds AfterSwitch; default 60 s.
	AfterSwitchTimeout time.Duration
	Logger             *slog.Logger
}

// Releases is the release store of a web node: complete trees under
// <Dir>/releases/<id>, built from a Source, and the symlink Target that
// points at the current one.
type Releases struct {
	cfg    ReleasesConfig
	log    *slog.Logger
	relDir string // absolute <Dir>/releases
	target string // absolute Target

	applyMu sync.Mutex // serializes Apply and Repair, owns base, building and spare
	base    struct {   // the last manifest loaded or built, for the next delta
		id  string
		m   *Manifest
		enc *encoding // m's stored bytes, to splice the next manifest from
	}
	spare spare
	// building holds the identities of the release being built, by
	// entry, as far as known (see identity.go).
	building identities
	// reuseByContent: files linked from kept releases are checked by
	// their content, not their identity (repairs: the content of an inode
	// written in place by root, its time set back, passes for intact).
	reuseByContent bool
	// The partial build to resume (see partial.go), owned by applyMu.
	partialID string
	ckpt      *checkpoints // of the build in progress
	janitor   janitor      // trees set aside for RunCleanup

	mu         sync.Mutex
	kept       map[string]Revision
	current    string
	progress   SyncProgress
	phaseStart time.Time

	filesDone atomic.Int64
	bytesDone atomic.Int64

	holdings holdings // what peers may fetch from this node
}

// Phases of SyncProgress.
const (
	PhaseIdle        = "idle"
	PhaseManifest    = "manifest"     // fetching and verifying the manifest
	PhaseLink        = "link"         // directories, symlinks, hard links from kept releases
	PhaseFetch       = "fetch"        // downloading the missing content
	PhaseDurable     = "durable"      // flushing the release to disk
	PhaseSwitch      = "switch"       // switching Target
	PhaseAfterSwitch = "after_switch" // running AfterSwitch
	PhaseGC          = "gc"           // removing releases beyond Keep
	PhaseSpare       = "spare"        // idle: making the warm spare of the current release
)

// SyncProgress is the state of the Apply in progress; between two, Phase
// is "idle" and the rest describes the last one.
type SyncProgress struct {
	Phase     string   `json:"phase"`
	Files     int      `json:"files"`
	FilesDone int      `json:"files_done"`
	Bytes     int64    `json:"bytes"`
	BytesDone int64    `json:"bytes_done"`
	Revision  Revision `json:"revision,omitzero"`
	// Sources is where the content came from (filled by the agent).
	Sources []SourceCount `json:"sources,omitempty"`
}

// ErrAfterSwitch marks a failure of the AfterSwitch command: the switch
// itself succeeded and stands.
var ErrAfterSwitch = errors.New("after_switch")

// NewReleases returns a release store; Open prepares it.
func NewReleases(cfg ReleasesConfig) *Releases {
	if cfg.Keep < 1 {
		cfg.Keep = 1
	}
	if cfg.AfterSwitchTimeout <= 0 {
		cfg.AfterSwitchTimeout = 60 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Releases{cfg: cfg, log: log, kept: map[string]Revision{}, progress: SyncProgress{Phase: PhaseIdle}}
}

// Open creates the directories, removes the leftovers of a crash, finds the
// kept releases and the current one, and checks that Target can be taken
// over. A real directory at Target is moved aside to "<Target>.pre-nodeagent"
// at the first switch, never deleted.
func (r *Releases) Open(ctx context.Context) error {
	if r.cfg.Dir == "" || r.cfg.Target == "" {
		return errors.New("open releases: Dir and Target are required")
	}
	dir, err := filepath.Abs(r.cfg.Dir)
	if err != nil {
		return fmt.Errorf("open releases: %w", err)
	}
	if r.target, err = filepath.Abs(r.cfg.Target); err != nil {
		return fmt.Errorf("open releases: %w", err)
	}
	r.relDir = filepath.Join(dir, releasesDir)
	for _, d := range []string{r.relDir, r.metaDir(manifestsDir), r.metaDir(revisionsDir), r.metaDir(identitiesDir)} {
		// The web server traverses releases/ through Target: 0755.
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("open releases: %w", err)
		}
		if d == r.relDir {
			continue // trees: removed in the background (cleanup.go)
		}
		if err := removeTemps(d); err != nil {
			return fmt.Errorf("open releases: remove leftovers: %w", err)
		}
	}
	if err := r.trashLeftovers(); err != nil {
		return fmt.Errorf("open releases: set leftovers aside: %w", err)
	}
	if err := r.openTarget(); err != nil {
		return fmt.Errorf("open releases: %w", err)
	}
	if err := r.openPartial(); err != nil {
		return fmt.Errorf("open releases: %w", err)
	}
	if err := r.loadKept(); err != nil {
		return fmt.Errorf("open releases: %w", err)
	}
	r.hardenOlderReleases()
	if cur, ok := r.Current(); ok {
		r.log.Info("releases opened", "current", cur.ID, "seq", cur.Seq, "kept", len(r.kept))
	} else {
		r.log.Info("releases opened", "current", "none", "kept", len(r.kept))
	}
	return nil
}

func (r *Releases) metaDir(kind string) string { return filepath.Join(filepath.Dir(r.relDir), kind) }

func (r *Releases) metaFile(kind, id string) string {
	return filepath.Join(r.metaDir(kind), id+".json")
}

// loadKept lists the complete releases: a directory with its manifest and
// revision files. Others are crash leftovers and are removed, as are
// metadata files without a release.
func (r *Releases) loadKept() error {
	ents, err := os.ReadDir(r.relDir)
	if err != nil {
		return err
	}
	kept := map[string]Revision{}
	for _, e := range ents {
		id := e.Name()
		if id == partialName || id == spareName || strings.HasPrefix(id, tmpPrefix) {
			continue
		}
		if _, err := ParseHash(id); err != nil || !e.IsDir() {
			r.log.Warn("ignoring a foreign entry in the releases directory", "name", id)
			continue
		}
		rev, err := r.readRevision(id)
		if err == nil {
			_, err = os.Stat(r.metaFile(manifestsDir, id))
		}
		switch {
		case err == nil:
			kept[id] = rev
		case id == r.current:
			r.log.Warn("current release has no metadata", "id", id, "err", err)
			kept[id] = Revision{ID: id}
		default:
			r.log.Warn("removing an incomplete release in the background", "id", id, "err", err)
			if err := r.trash(filepath.Join(r.relDir, id), "incomplete release "+id); err != nil {
				return fmt.Errorf("set incomplete release %s aside: %w", id, err)
			}
		}
	}
	if r.current != "" {
		if _, ok := kept[r.current]; !ok {
			r.current = "" // Target points at a release that is gone
		}
	}
	r.mu.Lock()
	r.kept = kept
	r.mu.Unlock()
	if err := r.removeOrphanIdentities(kept); err != nil {
		return err
	}
	return r.removeOrphans(kept)
}

func (r *Releases) readRevision(id string) (Revision, error) {
	data, err := os.ReadFile(r.metaFile(revisionsDir, id))
	if err != nil {
		return Revision{}, err
	}
	var rev Revision
	if err := json.Unmarshal(data, &rev); err != nil {
		return Revision{}, fmt.Errorf("revision file %s: %w", id, err)
	}
	if rev.ID != id {
		return Revision{}, fmt.Errorf("revision file %s: names %s", id, rev.ID)
	}
	return rev, nil
}

// removeOrphans removes manifest and revision files of releases not kept.
func (r *Releases) removeOrphans(kept map[string]Revision) error {
	for _, kind := range []string{manifestsDir, revisionsDir} {
		ents, err := os.ReadDir(r.metaDir(kind))
		if err != nil {
			return err
		}
		for _, e := range ents {
			id, ok := strings.CutSuffix(e.Name(), ".json")
			if _, isKept := kept[id]; !ok || isKept || id == r.partialID {
				continue
			}
			if err := os.Remove(filepath.Join(r.metaDir(kind), e.Name())); err != nil {
				return fmt.Errorf("remove orphan %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

// Current returns the revision Target points at.
func (r *Releases) Current() (Revision, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.current == "" {
		return Revision{}, false
	}
	return r.kept[r.current], true
}

// List returns the kept releases, oldest first.
func (r *Releases) List() []Revision {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Revision, 0, len(r.kept))
	for _, rev := range r.kept {
		out = append(out, rev)
	}
	sortRevisions(out)
	return out
}

// sortRevisions sorts by seq, oldest first.
func sortRevisions(revs []Revision) {
	slices.SortFunc(revs, func(a, b Revision) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
}

// Progress returns the state of the Apply in progress, or of the last one
// with Phase "idle".
func (r *Releases) Progress() SyncProgress {
	r.mu.Lock()
	p := r.progress
	r.mu.Unlock()
	p.FilesDone = int(r.filesDone.Load())
	p.BytesDone = r.bytesDone.Load()
	return p
}

// setPhase moves the Apply in progress to phase and logs how long the
// previous one took.
func (r *Releases) setPhase(phase string) {
	now := time.Now()
	r.mu.Lock()
	prev, took := r.progress.Phase, now.Sub(r.phaseStart)
	r.progress.Phase, r.phaseStart = phase, now
	r.mu.Unlock()
	if prev != PhaseIdle {
		r.log.Debug("sync phase done", "phase", prev, "duration", took.Round(time.Microsecond))
	}
}

func (r *Releases) startProgress(rev Revision, files int, bytes int64) {
	r.filesDone.Store(0)
	r.bytesDone.Store(0)
	r.mu.Lock()
	r.progress = SyncProgress{Phase: r.progress.Phase, Files: files, Bytes: bytes, Revision: rev}
	r.mu.Unlock()
}

// fileDone counts the file at entry i of the manifest being built as
// placed, for the progress and the checkpoints; r.building[i] holds its
// identity already.
func (r *Releases) fileDone(i int, size int64) {
	r.filesDone.Add(1)
	r.bytesDone.Add(size)
	if r.ckpt != nil {
		r.ckpt.mark(i, r.building[i])
	}
}

// Apply makes rev the current release: it builds releases/<id> from src
// unless that release is kept already (a rollback downloads nothing), then
// switches Target to it atomically, runs AfterSwitch and removes the
// releases beyond Keep. On any error before the switch, Target is untouched.
// An error wrapping ErrAfterSwitch means the switch happened.
func (r *Releases) Apply(ctx context.Context, rev Revision, src Source) error {
	if _, err := ParseHash(rev.ID); err != nil {
		return fmt.Errorf("apply: revision id: %w", err)
	}
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	defer r.setPhase(PhaseIdle)

	r.mu.Lock()
	cur := r.current
	kept, isKept := r.kept[rev.ID]
	r.mu.Unlock()
	if cur == rev.ID {
		return nil
	}
	if isKept {
		rev = kept
		r.startProgress(rev, rev.Files, rev.Bytes)
		r.filesDone.Store(int64(rev.Files))
		r.bytesDone.Store(rev.Bytes)
		r.log.Info("switching to a kept release", "id", rev.ID, "seq", rev.Seq)
		if err := r.checkKept(ctx, rev, src); err != nil {
			return fmt.Errorf("apply %d (%s): %w", rev.Seq, rev.ID, err)
		}
	} else {
		start := time.Now()
		defer r.holdings.end(rev.ID) // served as the current release once switched
		built, err := r.build(ctx, rev, src)
		if err != nil {
			return fmt.Errorf("apply %d (%s): %w", rev.Seq, rev.ID, err)
		}
		rev = built
		r.log.Info("release built", "id", rev.ID, "seq", rev.Seq, "files", rev.Files,
			"bytes", rev.Bytes, "duration", time.Since(start).Round(time.Millisecond))
	}
	r.setPhase(PhaseSwitch)
	if err := r.switchTo(rev.ID); err != nil {
		return fmt.Errorf("apply %d (%s): %w", rev.Seq, rev.ID, err)
	}
	r.mu.Lock()
	r.current = rev.ID
	r.mu.Unlock()
	r.log.Info("switched", "target", r.target, "id", rev.ID, "seq", rev.Seq)

	r.setPhase(PhaseAfterSwitch)
	hookErr := r.runAfterSwitch(ctx, rev)
	r.setPhase(PhaseGC)
	if err := r.gc(); err != nil {
		r.log.Warn("release gc", "err", err)
	}
	return hookErr
}

// build makes releases/<id> from src and records its manifest and revision.
// On failure it leaves the partial tree and its manifest for the next
// attempt to resume, and nothing else.
func (r *Releases) build(ctx context.Context, rev Revision, src Source) (_ Revision, err error) {
	r.startProgress(rev, 0, 0)
	r.setPhase(PhaseManifest)
	// The spare is inspected while the manifest is fetched and verified;
	// a build that fails before using it gives it back.
	spare := r.checkSpare(ctx)
	defer func() {
		spare.stop()
		if err != nil {
			r.returnSpare(spare)
		}
	}()
	meta, err := src.Revision(ctx, rev.ID)
	if err != nil {
		return rev, err
	}
	if meta.ID != rev.ID {
		return rev, fmt.Errorf("revision metadata names %s", meta.ID)
	}
	if meta.Seq == 0 {
		meta.Seq = rev.Seq
	}
	m, data, err := r.manifest(ctx, rev.ID, src)
	if err != nil {
		return rev, err
	}
	defer func() {
		if err != nil && r.partialID != rev.ID {
			r.discard(rev.ID)
		}
	}()
	// Written now so the bytes need not stay in memory during the build;
	// without its release directory, Open treats it as an orphan. The
	// commit's syncfs, on this same filesystem, makes it durable before the
	// release is named.
	if err := writeFileRenamed(r.metaFile(manifestsDir, rev.ID), data, 0o644); err != nil {
		return rev, fmt.Errorf("write manifest: %w", err)
	}

	meta.Files, meta.Bytes = m.Files()
	r.holdings.begin(meta, m, r.partialDir()) // peers may fetch what is stored; Apply ends it
	r.startProgress(meta, meta.Files, meta.Bytes)
	r.setPhase(PhaseLink)
	r.building = make(identities, len(m.Entries))
	defer func() { r.building = nil }()
	if err := r.buildPartial(ctx, meta, m, src, spare); err != nil {
		return rev, err
	}
	dir := r.partialDir()
	if err := recordIdentities(dir, m, r.building); err != nil {
		return rev, err
	}
	if err := r.commit(dir, meta, r.building); err != nil {
		return rev, err
	}
	if err := r.finishPartial(); err != nil {
		r.log.Warn("remove partial release state", "err", err)
	}
	// The new manifest is not kept for the next delta: at 50k files it is
	// ~8 MB an idle agent would hold for hours. The next sync reads it back
	// from the release (tens of ms).
	r.dropBase()
	return meta, nil
}

// discard removes the metadata files a build failed before it had a
// partial tree.
func (r *Releases) discard(id string) {
	for _, p := range []string{r.metaFile(manifestsDir, id), r.metaFile(revisionsDir, id), r.identitiesFile(id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("remove metadata of failed build", "id", id, "err", err)
		}
	}
}

// commit makes the built tree durable and gives it its name, the commit
// point: a release directory is complete once named, and Open removes
// metadata files without one.
func (r *Releases) commit(tmp string, rev Revision, ids identities) error {
	r.setPhase(PhaseDurable)
	if err := syncFS(r.relDir); err != nil {
		return err
	}
	if err := r.writeIdentities(rev.ID, ids); err != nil {
		return err
	}
	if err := writeJSONAtomic(r.metaFile(revisionsDir, rev.ID), rev); err != nil {
		return fmt.Errorf("write revision: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(r.relDir, rev.ID)); err != nil {
		return err
	}
	r.holdings.moved(rev.ID, filepath.Join(r.relDir, rev.ID))
	if err := syncDir(r.relDir); err != nil {
		return err
	}
	r.mu.Lock()
	r.kept[rev.ID] = rev
	r.mu.Unlock()
	return nil
}

// manifest returns the verified manifest of id and its canonical bytes: from
// a delta against the current release when possible, else in full.
func (r *Releases) manifest(ctx context.Context, id string, src Source) (*Manifest, []byte, error) {
	if base, baseID := r.baseManifest(); base != nil {
		m, data, err := r.manifestFromDelta(ctx, id, baseID, base, r.base.enc, src)
		if err == nil {
			return m, data, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		r.log.Info("delta unusable, fetching the full manifest", "id", id, "base", baseID, "err", err)
	}
	data, err := src.Manifest(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	m, err := DecodeManifest(data, id)
	if err != nil {
		return nil, nil, fmt.Errorf("manifest %s: %w", id, err)
	}
	return m, data, nil
}

// manifestFromDelta fetches the delta from base (whose stored bytes are
// at baseEnc, if known) to id and returns the manifest it makes, with its
// canonical bytes spliced from base's: only the changed entries are
// encoded, and the hash of the result checks every byte.
func (r *Releases) manifestFromDelta(ctx context.Context, id, baseID string, base *Manifest, baseEnc *encoding, src Source) (*Manifest, []byte, error) {
	d, err := src.Delta(ctx, id, baseID)
	if err != nil {
		return nil, nil, err
	}
	if d.Base != baseID {
		return nil, nil, fmt.Errorf("%w: delta from %s, want %s", ErrBadManifest, d.Base, baseID)
	}
	m, err := d.Apply(base)
	if err != nil {
		return nil, nil, err
	}
	data := encodeFrom(base, baseEnc, m).data
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != id {
		return nil, nil, fmt.Errorf("%w: delta result does not hash to %s", ErrBadManifest, id)
	}
	if err := ValidateDelta(base, d, m); err != nil {
		return nil, nil, err
	}
	return m, data, nil
}

// baseManifest returns the manifest of the current release, loading it when
// the cached one is another. Called with applyMu held.
func (r *Releases) baseManifest() (*Manifest, string) {
	cur, ok := r.Current()
	if !ok {
		return nil, ""
	}
	if r.base.id != cur.ID {
		m, enc, err := r.loadEncoded(cur.ID)
		if err != nil {
			r.log.Warn("current manifest unreadable", "id", cur.ID, "err", err)
			return nil, ""
		}
		r.base.id, r.base.m, r.base.enc = cur.ID, m, enc
	}
	return r.base.m, r.base.id
}

// dropBase forgets the manifest kept for the next delta.
func (r *Releases) dropBase() { r.base.id, r.base.m, r.base.enc = "", nil, nil }

func (r *Releases) loadManifest(id string) (*Manifest, error) {
	m, _, err := r.loadEncoded(id)
	return m, err
}

// loadEncoded is loadManifest with where each entry is in the stored
// bytes (nil if they are not in the encoder's layout).
func (r *Releases) loadEncoded(id string) (*Manifest, *encoding, error) {
	data, err := os.ReadFile(r.metaFile(manifestsDir, id))
	if err != nil {
		return nil, nil, err
	}
	return decodeManifest(data, id, false) // validated before it was stored
}

// removeTreeParallel is removeTree with the top-level entries of p removed
// in parallel: removing a release of a large tree unlinks every file.
func removeTreeParallel(p string) error {
	ents, err := os.ReadDir(p)
	if err != nil {
		return removeTree(p)
	}
	if err := os.Chmod(p, 0o700); err != nil {
		return err
	}
	err = parallel(context.Background(), len(ents), func(i int) error {
		return removeTree(filepath.Join(p, ents[i].Name()))
	})
	if err != nil {
		return err
	}
	return removeTree(p)
}

// gc removes the releases beyond the newest Keep (by seq), never the
// current one.
func (r *Releases) gc() error {
	list := r.List()
	cur, _ := r.Current()
	var errs []error
	for i, rev := range list {
		if i >= len(list)-r.cfg.Keep || rev.ID == cur.ID {
			continue
		}
		if err := r.removeRelease(rev.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		r.log.Info("release removed", "id", rev.ID, "seq", rev.Seq)
	}
	return errors.Join(errs...)
}

// removeRelease renames the release out of the kept set first, so a crash in
// the middle of the removal leaves only a temporary name that Open removes,
// never a half-deleted release that looks complete.
func (r *Releases) removeRelease(id string) error {
	trash := filepath.Join(r.relDir, tmpPrefix+"gc-"+id)
	err := removeTree(trash) // left by an earlier failure
	if err == nil {
		err = r.unkeep(id, trash)
	}
	if err == nil {
		err = removeTreeParallel(trash)
	}
	if err != nil {
		return fmt.Errorf("remove release %s: %w", id, err)
	}
	return nil
}

// recycle finds a kept release that gc would remove once rev is current and
// that is not served now, and moves it to tmp: rev's tree is made from it by
// changing what differs, rather than built from nothing while the other is
// deleted file by file. It returns the manifest and identities of the
// recycled tree, or nil if there is none to recycle (a release without
// identities, made by an older version, is not: nothing tells its files
// are still the agent's).
func (r *Releases) recycle(rev Revision, tmp string) (*Manifest, identities) {
	list := append(r.List(), rev)
	sortRevisions(list)
	cur, _ := r.Current()
	id := ""
	for _, k := range list[:max(0, len(list)-r.cfg.Keep)] {
		if k.ID != rev.ID && k.ID != cur.ID {
			id = k.ID // the newest of them: the fewest changes
		}
	}
	if id == "" {
		return nil, nil
	}
	old, err := r.loadManifest(id)
	var ids identities
	if err == nil {
		ids, err = r.loadIdentities(id, old)
	}
	if err == nil {
		err = r.unkeep(id, tmp)
	}
	if err != nil {
		r.log.Warn("release not recycled; building from nothing", "id", id, "err", err)
		return nil, nil
	}
	r.log.Debug("recycling release", "id", id, "for", rev.ID)
	return old, ids
}

// unkeep renames the release id to dir, out of the kept set, and removes
// its metadata files.
func (r *Releases) unkeep(id, dir string) error {
	if err := os.Rename(filepath.Join(r.relDir, id), dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	r.mu.Lock()
	delete(r.kept, id)
	r.mu.Unlock()
	if r.base.id == id {
		r.dropBase()
	}
	var errs []error
	for _, p := range []string{r.metaFile(manifestsDir, id), r.metaFile(revisionsDir, id), r.identitiesFile(id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
