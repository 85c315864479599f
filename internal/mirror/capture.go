package mirror

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"runtime"
	"slices"
	"sync"

	sha256 "github.com/minio/sha256-simd"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Capturing reads each file to publish once: the bytes land straight in a
// pack buffer and are hashed there. Each worker (one per CPU) has its own
// hasher and its own pack, so nothing is copied between goroutines; content
// already stored, or stored by another worker meanwhile, is taken back.
const (
	captureChunk   = 256 << 10 // largest single read
	captureRetries = 3         // reads of a file that keeps changing
)

// errFileChanged reports a file whose identity changed while it was read.
var errFileChanged = errors.New("changed while read")

// capture reads, hashes and stores the files a scan finds, while the scan
// goes on: files whose identity the cache knows are only looked up, the
// others go to one worker per CPU.
type capture struct {
	s       *Store
	root    int // the source root, which every file is opened beneath
	ctx     context.Context
	cancel  context.CancelFunc
	work    chan *scanEntry
	wg      sync.WaitGroup
	workers []*captureWorker
	errs    []error

	mu      sync.Mutex
	claimed map[Hash]struct{} // stored by this capture

	writers []*packWriter // after wait: packs with new objects, not installed
	changed int           // after wait: files whose content was not stored before
}

// startCapture starts the workers of a capture of the tree open as root
// (the caller closes it after wait).
func (s *Store) startCapture(ctx context.Context, root int) *capture {
	c := &capture{s: s, root: root, work: make(chan *scanEntry, 1024), claimed: map[Hash]struct{}{}}
	c.ctx, c.cancel = context.WithCancel(ctx)
	n := runtime.NumCPU()
	c.workers = make([]*captureWorker, n)
	c.errs = make([]error, n)
	for i := range c.workers {
		c.workers[i] = &captureWorker{c: c, h: sha256.New()}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if c.errs[i] = c.workers[i].run(); c.errs[i] != nil {
				c.cancel()
			}
		}()
	}
	return c
}

// lookup is the scan's lookup in the identity cache.
func (c *capture) lookup(path string) *cacheEntry { return c.s.cache.files[path] }

// offer is the scan's onFile: it fills in the hash of a file the identity
// cache knows, whose content is stored, or queues the file to be read.
func (c *capture) offer(e *scanEntry) {
	if ce := e.cached; ce != nil && ce.id == e.id {
		if _, stored := c.s.index[ce.hash]; stored {
			e.hash = ce.hash
			return
		}
	}
	c.s.prog.plan(e.id.Size)
	select {
	case c.work <- e:
	case <-c.ctx.Done():
	}
}

// wait waits for the queued files to be captured. On error, nothing of the
// capture remains.
func (c *capture) wait() error {
	close(c.work)
	c.wg.Wait()
	c.cancel()
	for _, w := range c.workers {
		if w.pw != nil {
			c.writers = append(c.writers, w.pw)
		}
		c.changed += w.changed
	}
	if err := firstCause(c.errs); err != nil {
		c.abort()
		return err
	}
	return nil
}

// stop cancels the capture and removes what it wrote.
func (c *capture) stop() {
	c.cancel()
	_ = c.wait()
	c.abort()
}

// finish makes the captured packs durable under their temporary names,
// dropping those that ended up empty (all they read was stored already).
func (c *capture) finish() error {
	c.writers = slices.DeleteFunc(c.writers, func(w *packWriter) bool {
		if len(w.objs) == 0 {
			w.abort()
			return true
		}
		return false
	})
	var g errgroup.Group
	for _, w := range c.writers {
		g.Go(w.finish)
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("write pack: %w", err)
	}
	return nil
}

// abort removes packs that were not installed.
func (c *capture) abort() {
	for _, w := range c.writers {
		w.abort()
	}
	c.writers = nil
}

// firstCause returns the first error that is not a cancellation caused by
// another, or else the first error.
func firstCause(errs []error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// claim reports whether h is new content that the caller must keep, and
// marks it as stored. known is whether the store held h before.
func (c *capture) claim(h Hash) (keep, known bool) {
	if _, ok := c.s.index[h]; ok {
		return false, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.claimed[h]; ok {
		return false, false
	}
	c.claimed[h] = struct{}{}
	return true, false
}

type captureWorker struct {
	c       *capture
	h       hash.Hash
	pw      *packWriter
	buf     scratch // a file read whole, to be compressed
	changed int
}

func (w *captureWorker) run() error {
	for e := range w.c.work {
		if err := w.c.ctx.Err(); err != nil {
			return err
		}
		if w.pw == nil {
			pw, err := createPackWriter(w.c.s.objects, w.c.s.nextPack.Add(1)-1)
			if err != nil {
				return fmt.Errorf("create pack: %w", err)
			}
			w.pw = pw
		}
		if err := w.file(e); err != nil {
			return err
		}
	}
	return nil
}

// file captures e, retrying if it changes while read.
func (w *captureWorker) file(e *scanEntry) error {
	full := w.c.s.cfg.Source + "/" + e.path
	var err error
	before := &e.id
	if e.unstatted {
		before = nil
	}
	for range captureRetries {
		var id fileID
		var sum Hash
		start := w.pw.size()
		var whole bool
		id, sum, whole, err = w.read(e.path, before)
		before = nil
		if errors.Is(err, errFileChanged) {
			w.pw.rewind(start)
			continue
		}
		if err != nil {
			return err
		}
		keep, known := w.c.claim(sum)
		switch {
		case keep && whole:
			if err := w.store(sum); err != nil {
				return err
			}
		case keep:
			w.pw.add(sum, start, id.Size, CodecRaw)
		default:
			w.pw.rewind(start)
		}
		if !known {
			w.changed++
		}
		if e.unstatted {
			w.c.s.prog.planBytes(id.Size)
		}
		e.id, e.hash, e.unstatted = id, sum, false
		w.c.s.prog.done(id.Size)
		return nil
	}
	return fmt.Errorf("read %s: %w %d times; publish again when it is stable", full, err, captureRetries)
}

// store appends the file read whole into w.buf to the pack, compressed
// where that pays.
func (w *captureWorker) store(sum Hash) error {
	data := w.buf.b
	start := w.pw.size()
	dst, err := w.pw.reserve(encoder().MaxEncodedSize(len(data)))
	if err != nil {
		return fmt.Errorf("write pack: %w", err)
	}
	codec := CodecRaw
	if out, ok := compressObject(dst[:0], data); ok {
		codec = CodecZstd
		w.pw.commit(len(out))
	} else {
		w.pw.commit(copy(dst, data))
	}
	w.pw.add(sum, start, int64(len(data)), codec)
	return nil
}

// scratch is a growable buffer with the reserve/commit of packWriter.
type scratch struct{ b []byte }

func (s *scratch) reserve(n int) ([]byte, error) {
	s.b = slices.Grow(s.b, n)
	return s.b[len(s.b) : len(s.b)+n], nil
}

func (s *scratch) commit(m int) { s.b = s.b[:len(s.b)+m] }

// readSink is where read puts the bytes of a file: the pack, or w.buf.
type readSink interface {
	reserve(n int) ([]byte, error)
	commit(m int)
}

// read hashes the content of the file at rel and appends it to the pack,
// or, when it may be compressed, reads it whole into w.buf (whole is
// true). The file's identity must be the same before and after reading,
// and the bytes read must match its size. The identity before is the
// scan's when given, else the open file's: a change made after the scan's
// stat shows in the fstat after reading as surely as one made after an
// fstat at open would, and it saves a syscall per file.
func (w *captureWorker) read(rel string, before *fileID) (id fileID, sum Hash, whole bool, err error) {
	full := w.c.s.cfg.Source + "/" + rel
	if hook := w.c.s.testHookOpen; hook != nil {
		hook(rel)
	}
	fd, err := openSource(w.c.root, rel)
	if err != nil {
		return fileID{}, sum, false, fmt.Errorf("read %s: %w", full, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if before != nil {
		id = *before
	} else {
		if err := unix.Fstat(fd, &st); err != nil {
			return fileID{}, sum, false, fmt.Errorf("read %s: %w", full, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return fileID{}, sum, false, fmt.Errorf("read %s: no longer a regular file", full)
		}
		id = fileIDOf(&st)
	}
	if hook := w.c.s.testHookRead; hook != nil {
		hook(full)
	}
	var sink readSink = w.pw
	if whole = id.Size <= compressMax; whole {
		w.buf.b = w.buf.b[:0]
		sink = &w.buf
	}
	w.h.Reset()
	var total int64
	for {
		want := int(min(id.Size-total+1, captureChunk))
		b, err := sink.reserve(want)
		if err != nil {
			return fileID{}, sum, false, fmt.Errorf("write pack: %w", err)
		}
		n, err := readRetry(fd, b)
		if err != nil {
			return fileID{}, sum, false, fmt.Errorf("read %s: %w", full, err)
		}
		w.h.Write(b[:n])
		sink.commit(n)
		total += int64(n)
		// A short read at the expected size is the end of the file; a
		// file that grew shows in the second fstat.
		if n == 0 || total > id.Size || (total == id.Size && n < want) {
			break
		}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return fileID{}, sum, false, fmt.Errorf("read %s: %w", full, err)
	}
	if total != id.Size || fileIDOf(&st) != id || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileID{}, sum, false, errFileChanged
	}
	w.h.Sum(sum[:0])
	return id, sum, whole, nil
}

// openSource opens the source file at rel beneath root for reading (see
// openBeneath), without updating its access time where the kernel allows
// it.
func openSource(root int, rel string) (int, error) {
	flags := unix.O_RDONLY | unix.O_NOCTTY | unix.O_NONBLOCK
	fd, err := openBeneath(root, rel, flags|unix.O_NOATIME)
	if err == unix.EPERM { // not the owner
		fd, err = openBeneath(root, rel, flags)
	}
	return fd, err
}

func readRetry(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}
