package mirror

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// fileID is the identity of a source file as fstat sees it. Any write,
// truncation, replacement or chmod changes it (ctime cannot be set by
// users), so an unchanged identity means unchanged content.
type fileID struct {
	Size    int64
	MtimeNs int64
	CtimeNs int64
	Ino     uint64
	Dev     uint64
	Mode    uint32 // ModeBits
}

func fileIDOf(st *unix.Stat_t) fileID {
	return fileID{
		Size:    st.Size,
		MtimeNs: st.Mtim.Nano(),
		CtimeNs: st.Ctim.Nano(),
		Ino:     st.Ino,
		Dev:     uint64(st.Dev),
		Mode:    unixModeBits(st.Mode),
	}
}

// unixModeBits keeps the bits of a st_mode that a manifest records.
func unixModeBits(m uint32) uint32 { return m & ModeMask }

// scanEntry is one path found by a scan.
type scanEntry struct {
	path   string
	typ    Type
	id     fileID // files; Mode for every type
	target string // symlinks
	hash   Hash   // files, once known
	// cached is what the identity cache knows of a file. The scan does not
	// stat a file the cache does not know (unstatted) when the directory
	// tells its type: capture stats it when it opens it.
	cached    *cacheEntry
	unstatted bool
}

// openRoot opens the source root, following symlinks in its own path (the
// configured path may be one); everything inside is opened beneath it.
func openRoot(root string) (int, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("scan %s: %w", root, err)
	}
	return fd, nil
}

// scanTree walks the tree open as rootFD (at root, for messages) and
// returns its entries sorted by path.
// Directories are read in parallel; every entry is stat'ed relative to its
// directory's descriptor. Excluded paths are left out, and special files
// (sockets, fifos, devices) are skipped with a warning. onFile is called,
// from several goroutines, with each file as soon as it is found; the
// entry stays at that address, so the callee may fill it in later. lookup
// returns what the identity cache knows of a file: regular files it does
// not know are not stat'ed, where the directory tells their type, since
// they will be opened anyway.
func scanTree(ctx context.Context, root string, rootFD int, ex *excluder, log *slog.Logger, lookup func(path string) *cacheEntry, onFile func(*scanEntry)) ([]*scanEntry, error) {
	return scanSubtree(ctx, root, rootFD, "", ex, log, lookup, onFile, nil)
}

// scanSubtree is scanTree of the directory base of the tree open as
// rootFD: the entries below base, with paths relative to the root. onDir,
// if set, is called with each directory (relative to the root) before it
// is read.
func scanSubtree(ctx context.Context, root string, rootFD int, base string, ex *excluder, log *slog.Logger, lookup func(path string) *cacheEntry, onFile func(*scanEntry), onDir func(rel string)) ([]*scanEntry, error) {
	w := &walker{ctx: ctx, root: strings.TrimRight(root, "/"), rootFD: rootFD, base: base, ex: ex, log: log,
		lookup: lookup, onFile: onFile, onDir: onDir}
	if w.root == "" {
		w.root = "/"
	}
	w.sem = make(chan struct{}, runtime.NumCPU()-1)
	w.walkRoot()
	w.wg.Wait()
	if w.err != nil {
		return nil, w.err
	}
	n := 0
	for _, part := range w.parts {
		n += len(part)
	}
	all := make([]*scanEntry, 0, n)
	for _, part := range w.parts {
		for i := range part {
			all = append(all, &part[i])
		}
	}
	slices.SortFunc(all, func(a, b *scanEntry) int { return strings.Compare(a.path, b.path) })
	return all, nil
}

type walker struct {
	ctx    context.Context
	lookup func(path string) *cacheEntry
	onFile func(*scanEntry)
	onDir  func(rel string)
	root   string
	rootFD int
	base   string // the directory walked, relative to the root; "" for the root
	ex     *excluder
	log    *slog.Logger
	sem    chan struct{} // a slot per extra goroutine
	wg     sync.WaitGroup

	mu    sync.Mutex
	parts [][]scanEntry
	err   error
}

// walkerDirentBuffer is the getdents buffer of each walking goroutine.
const walkerDirentBuffer = 32 << 10

// walkRoot walks the tree from its root in this goroutine and helpers.
func (w *walker) walkRoot() {
	dir, fd, err := w.root, -1, error(nil)
	if w.base == "" {
		fd, err = unix.Openat(w.rootFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	} else {
		dir += "/" + w.base
		fd, err = openBeneath(w.rootFD, w.base, unix.O_RDONLY|unix.O_DIRECTORY)
	}
	if err != nil {
		w.fail(fmt.Errorf("scan %s: %w", dir, err))
		return
	}
	w.fail(w.walk(fd, w.base, make([]byte, walkerDirentBuffer)))
}

func (w *walker) fail(err error) {
	if err == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

func (w *walker) failed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err != nil
}

// walk reads the directory open as fd (at rel, "" for the root), then walks
// its subdirectories, opened relative to it: depth first in this goroutine,
// or in a new one while a CPU has none. It closes fd.
func (w *walker) walk(fd int, rel string, buf []byte) error {
	if w.onDir != nil {
		w.onDir(rel)
	}
	ents, subdirs, err := w.readDir(fd, rel, buf)
	if err != nil || w.ctx.Err() != nil || w.failed() {
		unix.Close(fd)
		return cmp.Or(err, w.ctx.Err())
	}
	w.mu.Lock()
	w.parts = append(w.parts, ents)
	w.mu.Unlock()
	for i := range ents {
		if ents[i].typ == TypeFile {
			w.onFile(&ents[i])
		}
	}
	defer unix.Close(fd)
	for _, sd := range subdirs {
		cfd, err := unix.Openat(fd, path.Base(sd), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fmt.Errorf("scan %s/%s: %w", w.root, sd, err)
		}
		select {
		case w.sem <- struct{}{}:
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				w.fail(w.walk(cfd, sd, make([]byte, walkerDirentBuffer)))
				<-w.sem
			}()
		default:
			if err := w.walk(cfd, sd, buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// readDir lists and stats the entries of the directory open as fd.
func (w *walker) readDir(fd int, rel string, buf []byte) (ents []scanEntry, subdirs []string, err error) {
	des, err := readDirents(fd, rel, buf)
	if err != nil {
		return nil, nil, fmt.Errorf("scan %s/%s: %w", w.root, rel, err)
	}
	ents = make([]scanEntry, 0, len(des))
	for _, de := range des {
		p := de.path
		if !utf8.ValidString(p) {
			return nil, nil, fmt.Errorf("scan %s: %q is not valid UTF-8", w.root, p)
		}
		var e scanEntry
		var cached *cacheEntry
		if de.typ == unix.DT_REG || de.typ == unix.DT_UNKNOWN {
			cached = w.lookup(p)
		}
		if de.typ == unix.DT_REG && cached == nil {
			e = scanEntry{path: p, typ: TypeFile, unstatted: true}
		} else {
			var ok bool
			if e, ok, err = w.stat(fd, de.name, p); err != nil {
				return nil, nil, err
			}
			if !ok {
				continue
			}
			e.cached = cached
		}
		if w.ex.excluded(p, de.name, e.typ == TypeDir) {
			continue
		}
		if e.typ == TypeDir {
			subdirs = append(subdirs, p)
		}
		ents = append(ents, e)
	}
	return ents, subdirs, nil
}

// stat describes the entry name of directory fd, at path p. ok is false for
// what a tree does not record: special files, and entries gone meanwhile.
func (w *walker) stat(fd int, name, p string) (e scanEntry, ok bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return e, false, nil // removed since readdir
		}
		return e, false, fmt.Errorf("scan %s/%s: %w", w.root, p, err)
	}
	e = scanEntry{path: p, id: fileIDOf(&st)}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.typ = TypeFile
	case unix.S_IFDIR:
		e.typ = TypeDir
		e.id = fileID{Mode: e.id.Mode}
	case unix.S_IFLNK:
		e.typ = TypeSymlink
		var link [4096]byte
		n, err := unix.Readlinkat(fd, name, link[:])
		if err != nil {
			return e, false, fmt.Errorf("scan %s/%s: %w", w.root, p, err)
		}
		e.target = string(link[:n])
		e.id = fileID{Mode: e.id.Mode}
	default:
		w.log.Warn("skipping special file", "path", p, "mode", fmt.Sprintf("%o", st.Mode))
		return e, false, nil
	}
	return e, true, nil
}

// readDirents lists the directory open as fd (at rel, relative to the
// tree root), "." and ".." left out.
func readDirents(fd int, rel string, buf []byte) ([]dirent, error) {
	var des []dirent
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return des, nil
		}
		des = appendDirents(des, buf[:n], rel)
	}
}

// dirent is a directory entry as getdents returns it, with its path.
type dirent struct {
	path string // relative to the tree root
	name string // base name, the end of path
	typ  uint8  // unix.DT_*
}

// appendDirents parses linux_dirent64 records (ino, off, reclen, type,
// name) of directory rel, leaving out "." and "..".
func appendDirents(des []dirent, buf []byte, rel string) []dirent {
	const nameOff = 19
	var p []byte
	for len(buf) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < nameOff || reclen > len(buf) {
			break
		}
		name := buf[nameOff:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if n := string(name); n != "." && n != ".." { // no allocation
			p = p[:0]
			if rel != "" {
				p = append(append(p, rel...), '/')
			}
			path := string(append(p, name...))
			des = append(des, dirent{path: path, name: path[len(path)-len(name):], typ: buf[18]})
		}
		buf = buf[reclen:]
	}
	return des
}
