package mirror

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"sync"

	sha256 "github.com/minio/sha256-simd"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// Fetching: objects are asked for in batches of at most MaxObjectsPerRequest
// hashes and about fetchBatchBytes, fetchInFlight requests at a time. What a
// round could not store (bad content, a cut stream) is asked for again, up to
// fetchAttempts rounds in all.
//
// Objects of up to fetchHeldMax bytes, nearly all of a code tree, are read
// whole and verified by the request's goroutine, then written by fsWorkers
// writers, so that slow file creation overlaps the download; at most
// fetchHeldBytes are held at a time. Larger objects are streamed to their
// file while being hashed.
const (
	fetchBatchBytes    = 64 << 20
	fetchMinBatchBytes = 1 << 20
	fetchInFlight      = 2
	fetchAttempts      = 4
	fetchBufferSize    = 256 << 10
	fetchHeldMax       = 1 << 20
	fetchHeldBytes     = 16 << 20
)

// errContentMismatch reports an object whose content is not what its hash
// says.
var errContentMismatch = errors.New("object content does not match its hash")

// diskError marks a failure of the local filesystem: fetching again cannot
// help.
type diskError struct{ err error }

func (e *diskError) Error() string { return e.err.Error() }
func (e *diskError) Unwrap() error { return e.err }

func isDiskError(err error) bool {
	var d *diskError
	return errors.As(err, &d)
}

// fetchObjects downloads objects from src into the release tree at dir,
// verifying each against its hash, and links or copies it to every file
// that carries it.
func (r *Releases) fetchObjects(ctx context.Context, dir string, m *Manifest, objects []*fetchObject, src Source) error {
	missing := slices.Clone(objects)
	for attempt := 1; ; attempt++ {
		err := r.fetchRound(ctx, dir, m, missing, src)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if isDiskError(err) {
			return err
		}
		missing = slices.DeleteFunc(missing, func(o *fetchObject) bool { return o.done })
		if len(missing) == 0 {
			return nil
		}
		if err == nil {
			err = errors.New("the source did not send them")
		}
		if attempt == fetchAttempts {
			return fmt.Errorf("fetch: %d objects still missing after %d attempts: %w", len(missing), attempt, err)
		}
		r.log.Warn("fetching objects again", "missing", len(missing), "attempt", attempt+1, "err", err)
	}
}

// fetchRound fetches objects once, in batches. It returns a disk error
// at once, else the first stream error.
func (r *Releases) fetchRound(ctx context.Context, dir string, m *Manifest, objects []*fetchObject, src Source) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := r.startWriters(ctx, cancel, dir, m)
	var g errgroup.Group
	g.SetLimit(fetchInFlight)
	var mu sync.Mutex
	var firstErr error
	batches := fetchBatches(objects)
	if _, ok := src.(interface{ wholeRound() }); ok {
		batches = [][]*fetchObject{objects} // Sources plans its own requests
	}
	for _, batch := range batches {
		g.Go(func() error {
			err := r.fetchBatch(ctx, w, batch, src)
			if isDiskError(err) {
				cancel(err)
				return err
			}
			if err != nil {
				mu.Lock()
				firstErr = firstError(firstErr, err)
				mu.Unlock()
			}
			return nil
		})
	}
	err := g.Wait()
	return firstError(firstError(w.wait(), err), firstErr)
}

// fetchBatches splits objects into requests: at most MaxObjectsPerRequest
// objects and about fetchBatchBytes each, but small enough that a sizeable
// download still uses fetchInFlight requests.
func fetchBatches(objects []*fetchObject) [][]*fetchObject {
	var total int64
	for _, o := range objects {
		total += o.size
	}
	limit := min(fetchBatchBytes, max(total/fetchInFlight+1, fetchMinBatchBytes))
	var out [][]*fetchObject
	start, bytes := 0, int64(0)
	for i, o := range objects {
		if i > start && (i-start == MaxObjectsPerRequest || bytes+o.size > limit) {
			out = append(out, objects[start:i])
			start, bytes = i, 0
		}
		bytes += o.size
	}
	if start < len(objects) {
		out = append(out, objects[start:])
	}
	return out
}

// fetchBatch asks src for one batch and verifies each object as it arrives:
// it must be one of the batch not stored yet, with the size of the
// manifest. A bad object is reported to src, which may deliver it again.
func (r *Releases) fetchBatch(ctx context.Context, w *objectWriters, batch []*fetchObject, src Source) error {
	hashes := make([]Hash, len(batch))
	wanted := make(map[Hash]*fetchObject, len(batch))
	for i, o := range batch {
		hashes[i] = o.hash
		wanted[o.hash] = o
	}
	var mu sync.Mutex // src may deliver from several goroutines
	return src.Objects(ctx, hashes, func(h Hash, size int64, rd io.Reader) error {
		mu.Lock()
		o := wanted[h]
		delete(wanted, h) // no second delivery while this one runs
		mu.Unlock()
		if o == nil {
			return fmt.Errorf("%w: object %s not asked, or sent twice", ErrFrame, h)
		}
		var err error
		switch {
		case size != o.size:
			err = fmt.Errorf("%w: object %s has %d bytes, want %d", ErrFrame, h, size, o.size)
		case size <= fetchHeldMax:
			err = w.hold(ctx, o, rd)
		default:
			err = w.stream(o, rd)
		}
		if err != nil {
			mu.Lock()
			wanted[h] = o // may be delivered again
			mu.Unlock()
		}
		return err
	})
}

// firstError returns the first non-nil error.
func firstError(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// objectWriters writes the fetched objects of one round into the release
// tree at dir.
type objectWriters struct {
	ctx   context.Context
	r     *Releases
	dir   string
	m     *Manifest
	fail  context.CancelCauseFunc
	queue chan heldObject
	mem   *semaphore.Weighted
	wg    sync.WaitGroup

	mu  sync.Mutex
	err error // the first disk error
}

// heldObject is a verified object waiting for a writer.
type heldObject struct {
	o    *fetchObject
	data []byte
}

func (r *Releases) startWriters(ctx context.Context, fail context.CancelCauseFunc, dir string, m *Manifest) *objectWriters {
	w := &objectWriters{ctx: ctx, r: r, dir: dir, m: m, fail: fail,
		queue: make(chan heldObject, 256), mem: semaphore.NewWeighted(fetchHeldBytes)}
	for range fsWorkers {
		w.wg.Go(w.run)
	}
	return w
}

// run writes the queued objects. They are verified already: after a
// cancellation they are still written, for the next build to resume from,
// but not after a disk error.
func (w *objectWriters) run() {
	for h := range w.queue {
		if w.failed() == nil {
			if err := w.write(h.o, h.data); err != nil {
				w.setFailed(err)
			}
		}
		w.mem.Release(int64(len(h.data)))
	}
}

// wait lets the writers finish the queue; it returns the first disk error.
func (w *objectWriters) wait() error {
	close(w.queue)
	w.wg.Wait()
	return w.failed()
}

func (w *objectWriters) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *objectWriters) setFailed(err error) {
	err = &diskError{err}
	w.mu.Lock()
	w.err = firstError(w.err, err)
	w.mu.Unlock()
	w.fail(err)
}

// hold reads a small object whole, verifies it and queues it for writing.
func (w *objectWriters) hold(ctx context.Context, o *fetchObject, rd io.Reader) error {
	if err := w.mem.Acquire(ctx, o.size); err != nil {
		return err
	}
	var data []byte
	var err error
	if hr, ok := rd.(*heldReader); ok && int64(len(hr.data)) == o.size {
		data = hr.data // decompressed by the client: no copy
	} else {
		data = make([]byte, o.size)
		_, err = io.ReadFull(rd, data)
		if _, held := rd.(*heldReader); held {
			err = nil // a bad compressed object: the hash check refuses it
		}
	}
	if err == nil && Hash(sha256.Sum256(data)) != o.hash {
		err = fmt.Errorf("%w: %s (%d bytes)", errContentMismatch, o.hash, o.size)
	}
	if err == nil {
		select {
		case w.queue <- heldObject{o, data}:
			return nil
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
	}
	w.mem.Release(o.size)
	return err
}

// write stores a verified object held in memory.
func (w *objectWriters) write(o *fetchObject, data []byte) error {
	first := &w.m.Entries[o.entries[0]]
	p := entryPath(w.dir, first)
	f, err := createReleaseFile(p)
	if err != nil {
		return err
	}
	if len(data) > 0 {
		if _, err := f.Write(data); err != nil {
			f.Close()
			os.Remove(p)
			return err
		}
	}
	if err := closeReleaseFile(f, first.Mode); err != nil {
		os.Remove(p)
		return err
	}
	return w.placeCopies(o, p)
}

// stream writes a large object to its first file while hashing it;
// whatever was written for a bad object is removed.
func (w *objectWriters) stream(o *fetchObject, rd io.Reader) error {
	first := &w.m.Entries[o.entries[0]]
	p := entryPath(w.dir, first)
	f, err := createReleaseFile(p)
	if err != nil {
		return &diskError{err}
	}
	hs := sha256.New()
	n, err := copyHashing(f, hs, rd)
	if err == nil && (n != o.size || Hash(hs.Sum(nil)) != o.hash) {
		err = fmt.Errorf("%w: %s (%d bytes)", errContentMismatch, o.hash, n)
	}
	if err == nil {
		if err = closeReleaseFile(f, first.Mode); err != nil {
			err = &diskError{err}
		}
	} else {
		f.Close()
	}
	if err != nil {
		os.Remove(p)
		return err
	}
	if err := w.placeCopies(o, p); err != nil {
		return &diskError{err}
	}
	return nil
}

// placeCopies gives the other files of o their content from p: a hard link,
// or a copy for another mode. Then o is done.
func (w *objectWriters) placeCopies(o *fetchObject, p string) error {
	first := &w.m.Entries[o.entries[0]]
	for _, i := range o.entries[1:] {
		e := &w.m.Entries[i]
		var err error
		if e.Mode == first.Mode {
			err = linkOrCopy(p, entryPath(w.dir, e), e.Mode)
		} else {
			err = copyFile(p, entryPath(w.dir, e), e.Mode)
		}
		if err != nil {
			return err
		}
	}
	o.done = true
	for _, i := range o.entries {
		if err := w.r.notePlaced(i, entryPath(w.dir, &w.m.Entries[i])); err != nil {
			return err
		}
		w.r.fileDone(i, o.size)
	}
	w.r.holdings.stored(o.hash, o.entries[0])
	return nil
}

// copyHashing writes rd to f and to hs; write errors are disk errors, read
// errors are stream errors.
func copyHashing(f *os.File, hs hash.Hash, rd io.Reader) (int64, error) {
	buf := make([]byte, fetchBufferSize)
	var n int64
	for {
		k, rerr := rd.Read(buf)
		if k > 0 {
			hs.Write(buf[:k])
			if _, err := f.Write(buf[:k]); err != nil {
				return n, &diskError{err}
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
