package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// AuditConfig configures the background audit of the served release.
type AuditConfig struct {
	Releases *Releases
	// CheckInterval is how often every entry of the served release is
	// inspected without reading content (type, owner, mode, symlink
	// target, file identity; directory listings for extras); 0: never.
	CheckInterval time.Duration
	// HashPeriod is how long one pass over the content of every file
	// (SHA-256) takes: it is spread evenly over the period, a slice at
	// each check, in one goroutine; 0: never.
	HashPeriod time.Duration
	// Repair puts back what an audit finds, by itself.
	Repair bool
	// Source returns where to fetch content a repair finds in no kept
	// release.
	Source func(ctx context.Context) (Source, error)
	Logger *slog.Logger
}

// AuditStatus is what the audit knows of the served release.
type AuditStatus struct {
	Enabled bool   `json:"enabled"`
	Release string `json:"release,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	// CheckedAt is when the release was last inspected whole; HashedAt
	// when a pass over the content of every file last ended, HashProgress
	// how far the running one is (0-1).
	CheckedAt    time.Time `json:"checked_at,omitzero"`
	HashedAt     time.Time `json:"hashed_at,omitzero"`
	HashProgress float64   `json:"hash_progress"`
	// Count is the number of differences found; Differences the first
	// auditStatusMax of them, Kinds their count by kind.
	Count       int            `json:"count"`
	Kinds       map[string]int `json:"kinds"`
	Differences []Difference   `json:"differences,omitempty"`
	// Repaired counts the differences repaired since the agent started.
	Repaired int    `json:"repaired"`
	Error    string `json:"error,omitempty"`
}

// auditStatusMax bounds the differences an AuditStatus lists.
const auditStatusMax = 20

// defaultAuditTick paces the content pass when inspections are off.
const defaultAuditTick = time.Minute

// hashFileCost is what a file costs the content pass beyond its bytes
// (open, stat, close), in bytes, to spread small files evenly too.
const hashFileCost = 4 << 10

// Auditor audits the served release in the background (Open, Close) and
// runs the checks asked for (Verify).
type Auditor struct {
	cfg AuditConfig
	log *slog.Logger

	mu        sync.Mutex // one pass at a time; owns the pass state
	release   string
	cursor    int             // next entry of the content pass
	lastSlice time.Time       // when the last slice of it was hashed
	hashed    map[int]finding // content differences found, by entry
	logged    string          // the differences last logged
	status    AuditStatus
	statusMu  sync.Mutex

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// NewAuditor returns an auditor; Open starts it.
func NewAuditor(cfg AuditConfig) *Auditor {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Auditor{cfg: cfg, log: log.With("component", "audit")}
	a.status = AuditStatus{Enabled: cfg.CheckInterval > 0 || cfg.HashPeriod > 0, Kinds: countKinds(nil)}
	return a
}

// Open starts the audit loop, unless both checks are off.
func (a *Auditor) Open(ctx context.Context) error {
	if a.cfg.Releases == nil {
		return errors.New("open auditor: Releases is required")
	}
	ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	a.done = make(chan struct{})
	if !a.status.Enabled {
		close(a.done)
		return nil
	}
	go func() {
		defer close(a.done)
		a.run(ctx)
	}()
	return nil
}

// Close stops the loop and waits for it.
func (a *Auditor) Close() error {
	a.once.Do(func() {
		if a.cancel != nil {
			a.cancel()
			<-a.done
		}
	})
	return nil
}

// tick is the time between two passes.
func (a *Auditor) tick() time.Duration {
	if a.cfg.CheckInterval > 0 {
		return a.cfg.CheckInterval
	}
	return min(defaultAuditTick, a.cfg.HashPeriod)
}

func (a *Auditor) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		err := a.pass(ctx)
		a.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			a.log.Warn("integrity audit", "err", err)
			a.setError(err)
		}
		t.Reset(a.tick())
	}
}

// Status returns what the audit knows now.
func (a *Auditor) Status() AuditStatus {
	a.statusMu.Lock()
	defer a.statusMu.Unlock()
	st := a.status
	st.Kinds = countKindsCopy(st.Kinds)
	st.Differences = slices.Clone(st.Differences)
	return st
}

func countKindsCopy(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (a *Auditor) setError(err error) {
	a.statusMu.Lock()
	a.status.Error = err.Error()
	a.statusMu.Unlock()
}

// pass inspects the served release and hashes the next slice of its
// files; it repairs what differs when configured. Called with mu held.
func (a *Auditor) pass(ctx context.Context) error {
	rels := a.cfg.Releases
	cur, m, ids, err := rels.currentRelease()
	if errors.Is(err, ErrNoRelease) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.ID != a.release {
		a.release, a.cursor, a.hashed = cur.ID, 0, map[int]finding{}
	}
	if ids == nil {
		return a.adopt(ctx, cur, m)
	}
	now := time.Now()
	var found []finding
	if a.cfg.CheckInterval > 0 {
		if found, err = inspectTree(ctx, rels.releaseDir(cur.ID), m, ids, 1); err != nil {
			return err
		}
	}
	hashedAt, err := a.hashSlice(ctx, cur.ID, m)
	if err != nil {
		return err
	}
	if still, _ := rels.Current(); still.ID != cur.ID {
		return nil // switched meanwhile: the next pass looks at the new one
	}
	found = mergeFindings(found, slices.Collect(maps.Values(a.hashed)))
	repaired := 0
	if a.cfg.Repair && len(found) > 0 {
		if found, repaired, err = a.repair(ctx, cur, m, found); err != nil {
			a.log.Error("integrity repair", "release", cur.ID, "err", err)
		}
	}
	a.record(cur, found, now, hashedAt, repaired, err)
	return nil
}

// hashSlice hashes the next slice of the files of release id: one tick's
// share of HashPeriod. It returns when a pass over every file ended (zero
// if none did).
func (a *Auditor) hashSlice(ctx context.Context, id string, m *Manifest) (time.Time, error) {
	if a.cfg.HashPeriod <= 0 {
		return time.Time{}, nil
	}
	// The share of the pass due since the last slice (a tick's when there
	// was none, at most a few ticks' after a long pause).
	now := time.Now()
	since := a.tick()
	if !a.lastSlice.IsZero() {
		since = min(now.Sub(a.lastSlice), 4*a.tick())
	}
	a.lastSlice = now
	files, bytes := m.Files()
	total := bytes + int64(files)*hashFileCost
	budget := max(1, int64(float64(total)*since.Seconds()/a.cfg.HashPeriod.Seconds()))
	hc, err := newHashChecker(a.cfg.Releases.releaseDir(id))
	if err != nil {
		return time.Time{}, err
	}
	defer hc.close()
	var spent int64
	for ; a.cursor < len(m.Entries) && spent < budget; a.cursor++ {
		i := a.cursor
		if m.Entries[i].Type != TypeFile {
			continue
		}
		found, err := hc.check(ctx, m, i, i+1)
		if err != nil {
			return time.Time{}, err
		}
		delete(a.hashed, i)
		for _, f := range found {
			a.hashed[i] = f
		}
		spent += m.Entries[i].Size + hashFileCost
	}
	var ended time.Time
	if a.cursor >= len(m.Entries) {
		ended, a.cursor = time.Now(), 0
	}
	a.setProgress(float64(a.cursor) / float64(max(1, len(m.Entries))))
	return ended, nil
}

// adopt checks a release made before identities were recorded by its
// content, at once, and records its identities if it is whole.
func (a *Auditor) adopt(ctx context.Context, cur Revision, m *Manifest) error {
	rels := a.cfg.Releases
	now := time.Now()
	found, err := rels.verifyRelease(ctx, cur.ID, m, nil, true, 1)
	if err != nil {
		return err
	}
	repaired := 0
	if a.cfg.Repair && len(found) > 0 {
		if found, repaired, err = a.repair(ctx, cur, m, found); err != nil {
			a.log.Error("integrity repair", "release", cur.ID, "err", err)
		}
	}
	// Recorded whatever was found: a file that differs gets no identity,
	// so the identity checks keep reporting it until it is repaired.
	if err := rels.adoptIdentities(cur.ID, m, found); err != nil {
		return err
	}
	a.log.Info("release checked by content and its identities recorded", "release", cur.ID, "seq", cur.Seq,
		"differences", len(found))
	a.record(cur, found, now, now, repaired, err)
	return nil
}

// repair repairs found in the current release and inspects it again.
func (a *Auditor) repair(ctx context.Context, cur Revision, m *Manifest, found []finding) ([]finding, int, error) {
	src := a.source(ctx)
	done, err := a.cfg.Releases.repairCurrent(ctx, cur.ID, found, src)
	_, m2, ids, lerr := a.cfg.Releases.currentRelease()
	if lerr != nil {
		return found, len(done), errors.Join(err, lerr)
	}
	// What was repaired is no longer a content difference.
	clear(a.hashed)
	again, ierr := a.cfg.Releases.verifyRelease(ctx, cur.ID, m2, ids, ids == nil, 1)
	if ierr != nil {
		return found, len(done), errors.Join(err, ierr)
	}
	return again, len(done), err
}

// source returns the source for repairs; one that fails every fetch when
// the controller cannot be reached (kept releases may still do).
func (a *Auditor) source(ctx context.Context) Source {
	if a.cfg.Source != nil {
		src, err := a.cfg.Source(ctx)
		if err == nil {
			return src
		}
		return noSource{err}
	}
	return noSource{errors.New("no source configured")}
}

// record updates the status with a pass's outcome and logs a change of
// the differences.
func (a *Auditor) record(cur Revision, found []finding, checked, hashed time.Time, repaired int, err error) {
	diffs := differences(found)
	a.statusMu.Lock()
	a.status.Release, a.status.Seq = cur.ID, cur.Seq
	if a.cfg.CheckInterval > 0 || checked.Equal(hashed) {
		a.status.CheckedAt = checked
	}
	if !hashed.IsZero() {
		a.status.HashedAt = hashed
	}
	a.status.Count = len(diffs)
	a.status.Kinds = countKinds(diffs)
	a.status.Differences = diffs[:min(len(diffs), auditStatusMax)]
	a.status.Repaired += repaired
	a.status.Error = ""
	if err != nil {
		a.status.Error = err.Error()
	}
	a.statusMu.Unlock()
	a.logChange(cur, diffs)
}

func (a *Auditor) setProgress(p float64) {
	a.statusMu.Lock()
	a.status.HashProgress = p
	a.statusMu.Unlock()
}

// logChange logs the differences when they are not those last logged: a
// warning naming each (the first auditStatusMax), or that none is left.
func (a *Auditor) logChange(cur Revision, diffs []Difference) {
	key := fmt.Sprint(diffs)
	if key == a.logged {
		return
	}
	first := a.logged == ""
	a.logged = key
	if len(diffs) == 0 {
		if !first {
			a.log.Info("the served release matches its manifest again", "release", cur.ID, "seq", cur.Seq)
		}
		return
	}
	args := []any{"release", cur.ID, "seq", cur.Seq, "differences", len(diffs)}
	counts := countKinds(diffs)
	for _, k := range Kinds {
		if counts[k] > 0 {
			args = append(args, k, counts[k])
		}
	}
	a.log.Warn("the served release differs from its manifest", args...)
	for _, d := range diffs[:min(len(diffs), auditStatusMax)] {
		a.log.Warn("integrity difference", "release", cur.ID, "kind", d.Kind, "path", d.Path, "detail", d.Detail)
	}
}

// Verify checks the served release whole now (content included), between
// two passes of the loop, and repairs what differs when asked.
func (a *Auditor) Verify(ctx context.Context, repair bool) (VerifyReport, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var src Source
	if repair {
		src = a.source(ctx)
	}
	start := time.Now()
	rep, found, err := a.cfg.Releases.verify(ctx, repair, src)
	if err != nil {
		return rep, err
	}
	cur := rep.Release
	a.release, a.cursor, a.hashed = cur.ID, 0, map[int]finding{}
	for _, f := range found {
		if f.Kind == KindTampered && f.entry >= 0 {
			a.hashed[f.entry] = f
		}
	}
	a.record(cur, found, start, start, len(rep.Repaired), nil)
	return rep, nil
}

// noSource is a Source that cannot be reached.
type noSource struct{ err error }

func (s noSource) Revision(context.Context, string) (Revision, error) { return Revision{}, s.err }
func (s noSource) Manifest(context.Context, string) ([]byte, error)   { return nil, s.err }
func (s noSource) Delta(context.Context, string, string) (*Delta, error) {
	return nil, s.err
}
func (s noSource) Objects(context.Context, []Hash, func(Hash, int64, io.Reader) error) error {
	return fmt.Errorf("fetch for repair: %w", s.err)
}
