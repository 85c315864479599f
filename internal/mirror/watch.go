package mirror

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The controller learns what changed in the source from inotify, so that a
// publish re-reads only the paths touched since the last one instead of
// walking the whole tree. A watch is set on every directory of the tree;
// each event names a directory and an entry in it, which becomes a dirty
// path. A publish first drains the event queue: the kernel queues an event
// before the system call that caused it returns, so every change made
// before the publish started is among the dirty paths it takes.
//
// Whatever the watcher cannot vouch for forces a full scan: no watch set
// yet, a queue overflow, a failed watch, the source root moved or removed,
// or more dirty paths than maxDirty. A full scan is also run every
// FullScanEvery, and compared with what the watcher would have published.

// maxDirty bounds the dirty paths kept between two publishes; beyond it a
// full scan is cheaper than rechecking them one by one.
const maxDirty = 1 << 17

// watchMask is what a directory watch reports: changes of its entries
// (content, metadata, creation, removal, renames) and of itself.
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_ATTRIB |
	unix.IN_CLOSE_WRITE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF |
	unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW | unix.IN_EXCL_UNLINK

// dirty flags of a path.
const (
	dirtyPath    = 1 << iota // recheck the entry
	dirtySubtree             // a directory that appeared: scan it whole, watch it
)

// watcher is an inotify instance over the source tree.
type watcher struct {
	root string
	log  *slog.Logger

	mu     sync.Mutex // everything below, and reads of fd
	fd     int        // -1 when closed
	wake   [2]int     // pipe that stops the reader goroutine
	byWD   map[int32]string
	byPath map[string]int32
	dirty  map[string]uint8
	broken string // why the next publish must scan the whole tree; "" if it need not
	done   chan struct{}
}

// newWatcher starts an inotify instance and its reader goroutine. No
// directory is watched yet (see watchTree); until then it is broken.
func newWatcher(root string, log *slog.Logger) (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &watcher{root: root, log: log, fd: fd, byWD: map[int32]string{}, byPath: map[string]int32{},
		dirty: map[string]uint8{}, broken: "no watch set yet", done: make(chan struct{})}
	if err := unix.Pipe2(w.wake[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify: %w", err)
	}
	go w.run()
	return w, nil
}

// close stops the reader and releases the instance.
func (w *watcher) close() {
	unix.Write(w.wake[1], []byte{0})
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	unix.Close(w.fd)
	unix.Close(w.wake[0])
	unix.Close(w.wake[1])
	w.fd = -1
}

// run reads events as they come, so the kernel's queue (fs.inotify.
// max_queued_events) rarely fills between publishes.
func (w *watcher) run() {
	defer close(w.done)
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(w.wake[0]), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err != nil && err != unix.EINTR {
			w.setBroken(fmt.Sprintf("poll: %v", err))
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents != 0 {
			w.mu.Lock()
			w.drainLocked()
			w.mu.Unlock()
		}
	}
}

func (w *watcher) setBroken(why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.setBrokenLocked(why)
}

func (w *watcher) setBrokenLocked(why string) {
	if w.broken == "" {
		w.broken = why
	}
	clear(w.dirty)
}

// drainLocked reads every queued event.
func (w *watcher) drainLocked() {
	var buf [64 << 10]byte
	for {
		n, err := unix.Read(w.fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			if err != nil && err != unix.EAGAIN {
				w.setBrokenLocked(fmt.Sprintf("read events: %v", err))
			}
			return
		}
		w.parseLocked(buf[:n])
	}
}

// parseLocked handles the inotify_event records of buf.
func (w *watcher) parseLocked(buf []byte) {
	for len(buf) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(buf) {
			return
		}
		name := string(buf[unix.SizeofInotifyEvent:end])
		if i := strings.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		w.eventLocked(ev.Wd, ev.Mask, name)
		buf = buf[end:]
	}
}

func (w *watcher) eventLocked(wd int32, mask uint32, name string) {
	switch {
	case mask&unix.IN_Q_OVERFLOW != 0:
		w.setBrokenLocked("the event queue overflowed")
		return
	case mask&unix.IN_IGNORED != 0:
		if p, ok := w.byWD[wd]; ok {
			delete(w.byWD, wd)
			if w.byPath[p] == wd {
				delete(w.byPath, p)
			}
		}
		return
	}
	dir, ok := w.byWD[wd]
	if !ok {
		return // a watch removed meanwhile
	}
	if name == "" { // the directory itself
		if mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 && dir == "" {
			w.setBrokenLocked("the source root was moved or removed")
		}
		if dir != "" {
			w.markLocked(dir, dirtyPath)
		}
		return
	}
	p := name
	if dir != "" {
		p = dir + "/" + name
	}
	flags := uint8(dirtyPath)
	if mask&unix.IN_ISDIR != 0 && mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
		flags |= dirtySubtree
	}
	w.markLocked(p, flags)
}

func (w *watcher) markLocked(p string, flags uint8) {
	if w.broken != "" {
		return
	}
	if len(w.dirty) >= maxDirty {
		w.setBrokenLocked(fmt.Sprintf("more than %d paths changed", maxDirty))
		return
	}
	w.dirty[p] |= flags
}

// take drains the queue and returns the dirty paths, or why the whole tree
// must be scanned instead; either way the set starts empty again.
func (w *watcher) take() (dirty map[string]uint8, broken string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drainLocked()
	dirty, broken = w.dirty, w.broken
	w.dirty = map[string]uint8{}
	return dirty, broken
}

// reset forgets every watch and event, ahead of watchTree and a full scan.
func (w *watcher) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drainLocked()
	for wd := range w.byWD {
		unix.InotifyRmWatch(w.fd, uint32(wd))
	}
	w.drainLocked() // the IN_IGNORED of the removals
	clear(w.byWD)
	clear(w.byPath)
	clear(w.dirty)
	w.broken = ""
}

// watch sets a watch on the directory at rel ("" for the root).
func (w *watcher) watch(rel string) error {
	full := w.root
	if rel != "" {
		full = w.root + "/" + rel
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd < 0 {
		return errors.New("watcher closed")
	}
	wd, err := unix.InotifyAddWatch(w.fd, full, watchMask)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil // gone or replaced meanwhile: its parent's event says so
		}
		w.setBrokenLocked(fmt.Sprintf("watch %s: %v", full, err))
		return fmt.Errorf("watch %s: %w", full, err)
	}
	if old, ok := w.byWD[int32(wd)]; ok && old != rel {
		delete(w.byPath, old) // the same directory, moved
	}
	w.byWD[int32(wd)] = rel
	w.byPath[rel] = int32(wd)
	return nil
}

// unwatchUnder removes the watches of rel and every directory below it:
// they were moved out of the tree, or elsewhere in it (where watchSubtree
// sets them again), or removed.
func (w *watcher) unwatchUnder(rel string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for wd, p := range w.byWD {
		if p == rel || strings.HasPrefix(p, rel+"/") {
			unix.InotifyRmWatch(w.fd, uint32(wd))
			delete(w.byWD, wd)
			if w.byPath[p] == wd {
				delete(w.byPath, p)
			}
		}
	}
}

// watchDir is watch for a scan's onDir: the scan reads each directory
// after its watch is set, so an entry created meanwhile is either seen by
// the scan or reported by an event (a failed watch makes the watcher
// broken: the next publish scans the whole tree again).
func (w *watcher) watchDir(rel string) { _ = w.watch(rel) }
