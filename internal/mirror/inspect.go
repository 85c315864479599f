package mirror

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// An inspection compares a release tree with its manifest without reading
// content: every directory is listed (an entry the manifest lacks is extra)
// and every entry stat'ed through its directory's descriptor (never by a
// path a symlink could redirect): type, owner, mode, symlink target, and
// for files size and, when recorded, identity. It runs in one goroutine
// (the audit: at most one core) or, to rebuild a release sooner, in
// several, a directory each.
type inspection struct {
	ctx   context.Context
	m     *Manifest
	ids   identities    // nil: none recorded
	state []uint8       // by entry of m: unseen, found (with its type), reported
	sem   chan struct{} // a slot per extra goroutine
	wg    sync.WaitGroup

	mu       sync.Mutex
	findings []finding
	err      error
}

// Entry states of an inspection.
const (
	unseen uint8 = iota
	found
	reported
)

// finding is a Difference with the index of its manifest entry (-1 for an
// extra entry, rootEntry for the release directory).
type finding struct {
	Difference
	entry int
}

// inspectTree inspects the release tree at dir against m and ids, in
// workers goroutines.
func inspectTree(ctx context.Context, dir string, m *Manifest, ids identities, workers int) ([]finding, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", dir, err)
	}
	in := &inspection{ctx: ctx, m: m, ids: ids, state: make([]uint8, len(m.Entries)),
		sem: make(chan struct{}, max(0, workers-1))}
	if err := in.root(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inspect %s: %w", dir, err)
	}
	in.fail(in.dir(fd, "", make([]byte, walkerDirentBuffer)))
	in.wg.Wait()
	if in.err != nil {
		return nil, fmt.Errorf("inspect %s: %w", dir, in.err)
	}
	in.missing()
	slices.SortFunc(in.findings, func(a, b finding) int { return strings.Compare(a.Path, b.Path) })
	return in.findings, nil
}

// rootEntry stands for the release directory itself in a finding.
const rootEntry = -2

// root checks the release directory itself: the agent's, mode 0755.
func (in *inspection) root(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Uid != agentUID {
		in.add(rootEntry, ".", KindOwner, fmt.Sprintf("owner uid %d, want %d", st.Uid, agentUID))
	}
	if got := st.Mode & ModeMask; got != releaseRootMode {
		in.add(rootEntry, ".", KindMode, fmt.Sprintf("mode %04o, want %04o", got, releaseRootMode))
	}
	return nil
}

func (in *inspection) add(entry int, p, kind, detail string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.findings = append(in.findings, finding{Difference{Path: p, Kind: kind, Detail: detail}, entry})
}

func (in *inspection) fail(err error) {
	if err == nil {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.err == nil {
		in.err = err
	}
}

func (in *inspection) failed() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.err != nil
}

// dir inspects the entries of the directory open as fd (at rel) and
// descends into the expected subdirectories: in this goroutine, or in a
// new one while a slot is free. It closes fd.
func (in *inspection) dir(fd int, rel string, buf []byte) error {
	defer unix.Close(fd)
	if err := in.ctx.Err(); err != nil || in.failed() {
		return err
	}
	des, err := readDirents(fd, rel, buf)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	var subdirs []dirent
	for _, de := range des {
		ok, err := in.entry(fd, de)
		if err != nil {
			return err
		}
		if ok {
			subdirs = append(subdirs, de)
		}
	}
	for _, de := range subdirs {
		cfd, err := unix.Openat(fd, de.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				i := in.index(de.path)
				in.state[i] = reported
				in.add(i, de.path, KindType, "changed while inspected")
				continue
			}
			return fmt.Errorf("%s: %w", de.path, err)
		}
		select {
		case in.sem <- struct{}{}:
			in.wg.Go(func() {
				in.fail(in.dir(cfd, de.path, make([]byte, walkerDirentBuffer)))
				<-in.sem
			})
		default:
			if err := in.dir(cfd, de.path, buf); err != nil {
				return err
			}
		}
	}
	return nil
}

func (in *inspection) index(p string) int { return in.m.index(p) }

// index returns the index of the entry at p, or -1.
func (m *Manifest) index(p string) int {
	i := sort.Search(len(m.Entries), func(i int) bool { return m.Entries[i].Path >= p })
	if i < len(m.Entries) && m.Entries[i].Path == p {
		return i
	}
	return -1
}

// entry inspects one directory entry; it reports whether it is an
// expected directory to descend into.
func (in *inspection) entry(dirfd int, de dirent) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, de.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil // gone meanwhile: missing, if expected
		}
		return false, fmt.Errorf("%s: %w", de.path, err)
	}
	i := in.index(de.path)
	if i < 0 {
		in.add(-1, de.path, KindExtra, extraDetail(&st))
		return false, nil
	}
	e := &in.m.Entries[i]
	if got := typeOf(st.Mode); got != e.Type {
		in.state[i] = reported
		in.add(i, e.Path, KindType, fmt.Sprintf("%s, want %s", typeName(st.Mode), e.Type))
		return false, nil
	}
	in.state[i] = found
	switch e.Type {
	case TypeDir:
		in.dirProblems(i, e, &st)
		return true, nil
	case TypeSymlink:
		return false, in.symlink(dirfd, de.name, i, e)
	}
	var want *fileIdentity
	if in.ids != nil {
		want = &in.ids[i]
	}
	if kind, detail := fileProblem(&st, e, want); kind != "" {
		in.add(i, e.Path, kind, detail)
	}
	return false, nil
}

func (in *inspection) dirProblems(i int, e *Entry, st *unix.Stat_t) {
	if st.Uid != agentUID {
		in.add(i, e.Path, KindOwner, fmt.Sprintf("owner uid %d, want %d", st.Uid, agentUID))
	}
	if got, want := st.Mode&ModeMask, releaseBits(e); got != want {
		in.add(i, e.Path, KindMode, fmt.Sprintf("mode %04o, want %04o", got, want))
	}
}

func (in *inspection) symlink(dirfd int, name string, i int, e *Entry) error {
	var link [4096]byte
	n, err := unix.Readlinkat(dirfd, name, link[:])
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	if got := string(link[:n]); got != e.Target {
		in.add(i, e.Path, KindTampered, fmt.Sprintf("symlink to %q, want %q", got, e.Target))
	}
	return nil
}

// missing adds the entries not found whose parent is in place (under a
// directory missing or of another type, that one difference says it).
func (in *inspection) missing() {
	for i := range in.m.Entries {
		e := &in.m.Entries[i]
		if in.state[i] != unseen {
			continue
		}
		if dir := path.Dir(e.Path); dir != "." {
			if j := in.index(dir); j < 0 || in.state[j] != found {
				continue
			}
		}
		in.add(i, e.Path, KindMissing, string(e.Type))
	}
}

func extraDetail(st *unix.Stat_t) string {
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		return fmt.Sprintf("file, %d bytes, uid %d", st.Size, st.Uid)
	}
	return fmt.Sprintf("%s, uid %d", typeName(st.Mode), st.Uid)
}
