package mirror

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// A release build outlives the process that started it. The tree is built
// in releases/.partial; mirror/partial.json names the revision it is
// becoming, which of its files are known to be durable, and the identity
// (inode, modification time) each had when the agent placed it. A build
// that fails, is cancelled or is killed leaves both behind, and the next
// build starts from what they hold rather than from nothing (resume.go).
//
// A file is durable once a syncfs(2) has completed after it was written:
// the checkpoints below take a snapshot of the files done, flush the
// filesystem, then record the snapshot. After a power loss, a file written
// after the last checkpoint may hold garbage or nothing, so the resume
// trusts without reading it only a recorded file that still has the
// identity recorded (with the agent as owner, its mode and size), as a kept
// release's files are trusted (identity.go); it hashes the others.
const (
	partialName      = ".partial"
	partialStateName = "partial.json"
	// checkpointEvery is how often a build records its durable files while
	// it makes progress: what a power loss can cost to fetch again.
	checkpointEvery = 2 * time.Second
)

// partialState is the content of partial.json.
type partialState struct {
	ID string `json:"id"` // the revision the partial tree is becoming
	// Durable is a bitmap over the entries of ID's manifest (entry i is
	// bit i%8 of byte i/8): the files known to be in the tree, complete
	// and flushed.
	Durable []byte `json:"durable,omitempty"`
	// Identities are the identities of those files, by entry (zero for
	// the others), encoded as a release's identities file is.
	Identities []byte `json:"identities,omitempty"`
}

// recorded is what a partial build knows of the files of its manifest:
// which are durable (done) and the identity of each (ids, by entry).
type recorded struct {
	done bitmap
	ids  identities
}

func newRecorded(n int) recorded {
	return recorded{done: newBitmap(n, nil), ids: make(identities, n)}
}

// identity returns the recorded identity of the file at entry i, or nil
// when it is not recorded durable.
func (rc recorded) identity(i int) *fileIdentity {
	if !rc.done.has(i) || i >= len(rc.ids) || rc.ids[i] == (fileIdentity{}) {
		return nil
	}
	return &rc.ids[i]
}

// state returns the partial.json of the build of id.
func (rc recorded) state(id string) partialState {
	return partialState{ID: id, Durable: rc.done.bytes(), Identities: rc.ids.encode(id)}
}

// recorded returns what st records of the files of its revision, whose
// manifest has n entries; nothing when its identities are missing or
// unreadable (every file is then read back).
func (st partialState) recorded(n int) (recorded, error) {
	if len(st.Identities) == 0 {
		return newRecorded(n), nil
	}
	ids, err := decodeIdentities(st.Identities, st.ID, n)
	if err != nil {
		return newRecorded(n), fmt.Errorf("%s: %w", partialStateName, err)
	}
	return recorded{done: newBitmap(n, st.Durable), ids: ids}, nil
}

func (r *Releases) partialDir() string { return filepath.Join(r.relDir, partialName) }

func (r *Releases) partialStatePath() string {
	return filepath.Join(filepath.Dir(r.relDir), partialStateName)
}

func (r *Releases) readPartialState() (partialState, error) {
	var st partialState
	data, err := os.ReadFile(r.partialStatePath())
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%s: %w", partialStateName, err)
	}
	if _, err := ParseHash(st.ID); err != nil {
		return st, fmt.Errorf("%s: %w", partialStateName, err)
	}
	return st, nil
}

func (r *Releases) writePartialState(st partialState) error {
	if err := writeJSONAtomic(r.partialStatePath(), st); err != nil {
		return fmt.Errorf("write %s: %w", partialStateName, err)
	}
	return nil
}

// openPartial finds the partial build a crash or a failure left, to be
// resumed by the next build. A partial tree whose state or manifest is
// missing cannot be trusted: it is set aside for CleanUp.
func (r *Releases) openPartial() error {
	dir := r.partialDir()
	_, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// A commit completed before its state file went, or nothing at all.
		return removeIfExists(r.partialStatePath())
	}
	if err != nil {
		return err
	}
	st, err := r.readPartialState()
	if err == nil {
		_, err = os.Stat(r.metaFile(manifestsDir, st.ID))
	}
	if err == nil {
		if _, kerr := os.Lstat(filepath.Join(r.relDir, st.ID)); kerr == nil {
			err = errors.New("its release is complete already")
		}
	}
	if err != nil {
		r.log.Warn("partial release cannot be resumed; removing it in the background", "err", err)
		if err := r.trash(dir, "partial release"); err != nil {
			return err
		}
		return removeIfExists(r.partialStatePath())
	}
	r.partialID = st.ID
	r.log.Info("partial release found: the next sync resumes it", "id", st.ID)
	return nil
}

// finishPartial forgets the partial build once its tree is a release.
func (r *Releases) finishPartial() error {
	r.partialID = ""
	return removeIfExists(r.partialStatePath())
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// bitmap is a set of manifest entry indexes, safe for concurrent marking.
type bitmap []atomic.Uint64

func newBitmap(n int, from []byte) bitmap {
	b := make(bitmap, (n+63)/64)
	for i := range min(len(from), len(b)*8) {
		if from[i] != 0 {
			b[i/8].Or(uint64(from[i]) << (8 * (i % 8)))
		}
	}
	return b
}

func (b bitmap) set(i int)      { b[i/64].Or(1 << (i % 64)) }
func (b bitmap) has(i int) bool { return i/64 < len(b) && b[i/64].Load()&(1<<(i%64)) != 0 }

func (b bitmap) bytes() []byte {
	out := make([]byte, 8*len(b))
	for i := range b {
		binary.LittleEndian.PutUint64(out[8*i:], b[i].Load())
	}
	return out
}

// checkpoints records, while a build runs, which files of the partial
// tree are durable and their identities: every checkpointEvery, if files
// were done since the last one, it snapshots them, flushes the filesystem,
// and writes the snapshot to partial.json.
type checkpoints struct {
	r  *Releases
	id string
	mu sync.Mutex // guards rec
	// rec holds the files done: complete, durable once a checkpoint that
	// covers them is written.
	rec recorded
	n   atomic.Int64 // files marked so far

	saved int64 // n at the last checkpoint; owned by the loop, then by close
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startCheckpoints starts recording the build of id, whose manifest has n
// entries; rec holds the files known durable already (zero: none).
func (r *Releases) startCheckpoints(id string, n int, rec recorded) *checkpoints {
	if rec.done == nil {
		rec = newRecorded(n)
	}
	c := &checkpoints{r: r, id: id, rec: rec, stop: make(chan struct{})}
	c.wg.Go(c.loop)
	return c
}

// mark records that the file at entry i is complete (not yet durable),
// with the identity the agent gave it.
func (c *checkpoints) mark(i int, id fileIdentity) {
	c.mu.Lock()
	c.rec.done.set(i)
	c.rec.ids[i] = id
	c.mu.Unlock()
	c.n.Add(1)
}

func (c *checkpoints) loop() {
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if err := c.save(); err != nil {
				c.r.log.Warn("partial release checkpoint", "id", c.id, "err", err)
			}
		}
	}
}

// save writes a checkpoint if files were done since the last one.
func (c *checkpoints) save() error {
	n := c.n.Load()
	if n == c.saved {
		return nil
	}
	c.mu.Lock()
	snapshot := c.rec.state(c.id) // before the flush: only what it covers
	c.mu.Unlock()
	if err := syncFS(c.r.relDir); err != nil {
		return err
	}
	if err := c.r.writePartialState(snapshot); err != nil {
		return err
	}
	c.saved = n
	return nil
}

// close stops the checkpoints; after a failed build it records a last one,
// so that a restart after a clean stop reads none of the files again.
func (c *checkpoints) close(failed bool) {
	close(c.stop)
	c.wg.Wait()
	if failed {
		if err := c.save(); err != nil {
			c.r.log.Warn("partial release checkpoint", "id", c.id, "err", err)
		}
	}
}
