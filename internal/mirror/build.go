package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// fsWorkers is how many goroutines make directories, links and files in
// parallel: on a busy filesystem these calls wait more than they compute,
// and on a small change linking the unchanged files is most of the work.
const fsWorkers = 4

// contentKey identifies a file body and its mode: files sharing both can
// share an inode.
type contentKey struct {
	hash Hash
	mode uint32
}

// fileLink is an entry of the new release made locally: a symlink, or a
// file hard-linked from a kept release.
type fileLink struct {
	entry int    // index in the manifest
	src   string // files: the path in the kept release
	// want is the identity the agent recorded for src (nil: none, the
	// content is checked instead).
	want *fileIdentity
}

// fetchObject is content to download and the files that carry it.
type fetchObject struct {
	hash    Hash
	size    int64
	entries []int // manifest indexes; the first one is written from the stream
	done    bool
}

// buildTree makes the tree of m under dir: directories, then symlinks and
// files linked from kept releases, then the missing content fetched from
// src. Files are read-only; directory modes are set last.
func (r *Releases) buildTree(ctx context.Context, dir string, m *Manifest, src Source) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	var dirs, place []int
	for i := range m.Entries {
		if m.Entries[i].Type == TypeDir {
			dirs = append(dirs, i)
		} else {
			place = append(place, i)
		}
	}
	if err := makeDirs(ctx, dir, m, dirs); err != nil {
		return err
	}
	if err := r.placeEntries(ctx, dir, m, place, src); err != nil {
		return err
	}
	return setDirModes(dir, m, dirs)
}

// updateTree turns dir, a recycled release holding the tree of old (with
// identities oldIDs), into the tree of m: it takes out what does not match
// old (see reconcile.go), removes what m lacks or has changed, deepest
// first, then makes what is new. Files are never written in place, as
// other releases may share them: a changed file is unlinked and placed
// anew.
func (r *Releases) updateTree(ctx context.Context, dir string, old *Manifest, oldIDs identities, m *Manifest, src Source) error {
	plan, err := r.inspectRecycled(ctx, dir, old, oldIDs)
	if err != nil {
		return err
	}
	return r.updateTreePlanned(ctx, dir, old, oldIDs, plan, m, src)
}

// updateTreePlanned is updateTree once dir was inspected into plan.
func (r *Releases) updateTreePlanned(ctx context.Context, dir string, old *Manifest, oldIDs identities, plan *recycledPlan, m *Manifest, src Source) error {
	// Directories the agent may not write to (without root's override)
	// are opened up until setDirModes.
	var chmods []int
	for i := range old.Entries {
		if e := &old.Entries[i]; e.Type == TypeDir && e.Mode&0o700 != 0o700 {
			if err := os.Chmod(entryPath(dir, e), 0o700); err != nil {
				return err
			}
		}
	}
	if err := plan.apply(r.newQuarantine(filepath.Base(dir)), dir); err != nil {
		return err
	}
	toOld, toNew := pairEntries(old, m)
	if err := removeChanged(dir, old, m, toNew); err != nil {
		return err
	}
	var mkdirs, place []int
	for i := range m.Entries {
		e := &m.Entries[i]
		oi := toOld[i]
		existed := oi >= 0 && !plan.gone[e.Path]
		var o *Entry
		if existed {
			o = &old.Entries[oi]
		}
		if existed && *o == *e && (e.Type != TypeDir || e.Mode&0o700 == 0o700 && !plan.fixDirs[e.Path]) {
			r.building[i] = oldIDs[oi] // checked by the inspection
			continue                   // unchanged, and its mode was never relaxed
		}
		switch {
		case e.Type != TypeDir:
			place = append(place, i)
		case !existed || o.Type != TypeDir:
			mkdirs = append(mkdirs, i)
			chmods = append(chmods, i)
		default:
			chmods = append(chmods, i)
		}
	}
	r.countUnchanged(m, place)
	if err := makeDirs(ctx, dir, m, mkdirs); err != nil {
		return err
	}
	if err := r.placeEntries(ctx, dir, m, place, src); err != nil {
		return err
	}
	return setDirModes(dir, m, chmods)
}

// pairEntries matches the entries of old and m by path, in one pass over
// both (sorted): toOld[j] is the index in old of m's entry j, toNew[i]
// that in m of old's entry i; -1 where the other has no such path.
func pairEntries(old, m *Manifest) (toOld, toNew []int) {
	toOld, toNew = make([]int, len(m.Entries)), make([]int, len(old.Entries))
	for i := range toNew {
		toNew[i] = -1
	}
	i := 0
	for j := range m.Entries {
		p := m.Entries[j].Path
		for i < len(old.Entries) && old.Entries[i].Path < p {
			i++
		}
		toOld[j] = -1
		if i < len(old.Entries) && old.Entries[i].Path == p {
			toOld[j], toNew[i] = i, j
		}
	}
	return toOld, toNew
}

// removeChanged removes from dir the entries of old that m (whose entry
// at the same path is toNew's) does not have, or has with another type,
// content or target, deepest first. A directory that stays a directory
// stays, whatever happens inside it.
func removeChanged(dir string, old, m *Manifest, toNew []int) error {
	for i := len(old.Entries) - 1; i >= 0; i-- {
		o := &old.Entries[i]
		if j := toNew[i]; j >= 0 {
			if e := &m.Entries[j]; *e == *o || (e.Type == TypeDir && o.Type == TypeDir) {
				continue
			}
		}
		p := entryPath(dir, o)
		err := os.Remove(p)
		if err != nil && o.Type == TypeDir {
			err = removeTree(p) // not empty: something foreign inside
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// countUnchanged counts the files of m outside place as done.
func (r *Releases) countUnchanged(m *Manifest, place []int) {
	files, bytes := m.Files()
	for _, i := range place {
		if e := &m.Entries[i]; e.Type == TypeFile {
			files--
			bytes -= e.Size
		}
	}
	r.filesDone.Add(int64(files))
	r.bytesDone.Add(bytes)
}

// placeEntries makes the symlinks and files of m at the indexes place:
// links from kept releases where they hold the content, else fetched.
func (r *Releases) placeEntries(ctx context.Context, dir string, m *Manifest, place []int, src Source) error {
	links, objects := r.planFiles(m, place)
	lost, err := r.placeLocal(ctx, dir, m, links)
	if err != nil {
		return err
	}
	objects = addObjects(objects, m, lost)
	if len(objects) > 0 {
		r.setPhase(PhaseFetch)
		if err := r.fetchObjects(ctx, dir, m, objects, src); err != nil {
			return err
		}
	}
	return nil
}

// makeDirs creates the directories of m at the indexes dirs (in manifest
// order) under dir, mode 0700 until setDirModes, one level of depth at a
// time, each level in parallel.
func makeDirs(ctx context.Context, dir string, m *Manifest, dirs []int) error {
	var levels [][]int
	for _, i := range dirs {
		d := strings.Count(m.Entries[i].Path, "/")
		for len(levels) <= d {
			levels = append(levels, nil)
		}
		levels[d] = append(levels[d], i)
	}
	for _, level := range levels {
		err := parallel(ctx, len(level), func(k int) error {
			return os.Mkdir(entryPath(dir, &m.Entries[level[k]]), 0o700)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// parallel calls fn(0..n-1) from fsWorkers goroutines and returns the first
// error; after an error or cancellation the remaining items are skipped.
// Workers take runs of consecutive items: neighbours in a manifest share a
// directory, whose lock the workers would otherwise contend for.
func parallel(ctx context.Context, n int, fn func(i int) error) error {
	chunk := int64(max(1, min(32, n/(4*fsWorkers))))
	var next atomic.Int64
	var stop atomic.Bool
	errs := make([]error, fsWorkers)
	var wg sync.WaitGroup
	for w := range min(fsWorkers, n) {
		wg.Go(func() {
			for !stop.Load() {
				start := int(next.Add(chunk) - chunk)
				if start >= n {
					return
				}
				if err := ctx.Err(); err != nil {
					errs[w] = err
					stop.Store(true)
					return
				}
				for i := start; i < min(start+int(chunk), n); i++ {
					if err := fn(i); err != nil {
						errs[w] = err
						stop.Store(true)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func entryPath(dir string, e *Entry) string { return filepath.Join(dir, filepath.FromSlash(e.Path)) }

// olderSearchBytes: the kept releases other than the current one are
// searched for content only when at least this much is still missing, as
// reading a manifest of a large tree costs about as much as downloading
// tens of megabytes.
const olderSearchBytes = 32 << 20

// planFiles finds, for every file of m at the indexes place, a kept release
// holding the same content and mode: the current release, then, if much is
// still missing, the others newest first. The rest is to be fetched,
// grouped by hash. Symlinks at place are made locally too.
func (r *Releases) planFiles(m *Manifest, place []int) ([]fileLink, []*fetchObject) {
	type source struct {
		path string // in a kept release; "" while missing
		size int64
		want *fileIdentity
	}
	want := make(map[contentKey]*source, len(place))
	missing, missingBytes := 0, int64(0)
	for _, i := range place {
		if e := &m.Entries[i]; e.Type == TypeFile {
			k := contentKey{e.SHA256, e.Mode}
			if want[k] == nil {
				want[k] = &source{size: e.Size}
				missing++
				missingBytes += e.Size
			}
		}
	}
	resolve := func(id string, km *Manifest) {
		root := filepath.Join(r.relDir, id)
		ids, err := r.loadIdentities(id, km)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("identities of a kept release unreadable; its files are checked by content", "id", id, "err", err)
		}
		for i := range km.Entries {
			e := &km.Entries[i]
			if e.Type != TypeFile {
				continue
			}
			if src := want[contentKey{e.SHA256, e.Mode}]; src != nil && src.path == "" {
				src.path = entryPath(root, e)
				if ids != nil {
					src.want = &ids[i]
				}
				missing--
				missingBytes -= src.size
			}
		}
	}
	base, baseID := r.baseManifest()
	if base != nil {
		resolve(baseID, base)
	}
	list := r.List()
	for i := len(list) - 1; i >= 0 && missingBytes >= olderSearchBytes; i-- {
		if id := list[i].ID; id != baseID {
			km, err := r.loadManifest(id)
			if err != nil {
				r.log.Warn("kept manifest unreadable", "id", id, "err", err)
				continue
			}
			resolve(id, km)
		}
	}

	links := make([]fileLink, 0, len(place)-missing)
	objects := make([]*fetchObject, 0, missing)
	byHash := make(map[Hash]*fetchObject, missing)
	for _, i := range place {
		e := &m.Entries[i]
		switch e.Type {
		case TypeSymlink:
			links = append(links, fileLink{entry: i})
		case TypeFile:
			if src := want[contentKey{e.SHA256, e.Mode}]; src.path != "" {
				links = append(links, fileLink{entry: i, src: src.path, want: src.want})
			} else {
				objects = addObject(objects, byHash, e, i)
			}
		}
	}
	return links, objects
}

func addObject(objects []*fetchObject, byHash map[Hash]*fetchObject, e *Entry, i int) []*fetchObject {
	o := byHash[e.SHA256]
	if o == nil {
		o = &fetchObject{hash: e.SHA256, size: e.Size}
		byHash[e.SHA256] = o
		objects = append(objects, o)
	}
	o.entries = append(o.entries, i)
	return objects
}

// addObjects adds the files at entries to objects.
func addObjects(objects []*fetchObject, m *Manifest, entries []int) []*fetchObject {
	if len(entries) == 0 {
		return objects
	}
	byHash := map[Hash]*fetchObject{}
	for _, o := range objects {
		byHash[o.hash] = o
	}
	for _, i := range entries {
		objects = addObject(objects, byHash, &m.Entries[i], i)
	}
	return objects
}

// placeLocal makes the symlinks and hard-links the files found in kept
// releases, in parallel, each checked to still be the file the agent
// placed (see reused). It returns the files whose kept copy has gone
// missing or is not the agent's: they are to be fetched.
func (r *Releases) placeLocal(ctx context.Context, dir string, m *Manifest, links []fileLink) ([]int, error) {
	var mu sync.Mutex
	var lost, bad []int
	err := parallel(ctx, len(links), func(k int) error {
		l := links[k]
		e := &m.Entries[l.entry]
		dst := entryPath(dir, e)
		if e.Type == TypeSymlink {
			return os.Symlink(e.Target, dst)
		}
		err := linkOrCopy(l.src, dst, e.Mode)
		if errors.Is(err, fs.ErrNotExist) {
			mu.Lock()
			lost = append(lost, l.entry)
			mu.Unlock()
			return nil
		}
		if err != nil {
			return err
		}
		ok, err := r.reused(dst, l.entry, e, l.want)
		if err != nil {
			return err
		}
		if !ok {
			mu.Lock()
			lost, bad = append(lost, l.entry), append(bad, l.entry)
			mu.Unlock()
			return nil
		}
		r.fileDone(l.entry, e.Size)
		return nil
	})
	if len(bad) > 0 {
		r.log.Warn("files of kept releases are not the ones the agent placed (replaced, planted or altered); fetching them",
			"files", len(bad), "example", m.Entries[bad[0]].Path)
	}
	if n := len(lost) - len(bad); n > 0 {
		r.log.Warn("files missing from kept releases; fetching them", "files", n,
			"example", m.Entries[lost[0]].Path)
	}
	return lost, err
}

// linkOrCopy hard-links src to dst, or copies it where a link is not
// possible (too many links, another filesystem).
func linkOrCopy(src, dst string, mode uint32) error {
	err := os.Link(src, dst)
	if errors.Is(err, syscall.EMLINK) || errors.Is(err, syscall.EXDEV) {
		return copyFile(src, dst, mode)
	}
	return err
}

// copyFile copies src to a new read-only file dst.
func copyFile(src, dst string, mode uint32) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := createReleaseFile(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return closeReleaseFile(out, mode)
}

// createReleaseFile creates a new file of a release being built.
func createReleaseFile(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
}

// releaseFileMode is the mode of a release file: the manifest's without the
// write bits (release files are shared by hard links: a write through one
// release would change the others) nor setuid and setgid (a controller
// cannot plant a program that runs as the agent's user).
func releaseFileMode(mode uint32) os.FileMode { return FileMode(mode &^ 0o6222) }

// closeReleaseFile gives a written file its release mode and closes it.
func closeReleaseFile(f *os.File, mode uint32) error {
	if err := f.Chmod(releaseFileMode(mode)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// setDirModes gives the directories of m at the indexes dirs (in manifest
// order) their modes without write for group and others (releaseDirMode),
// deepest first so that a read-only directory never blocks the ones below
// it; then the release root its own.
func setDirModes(dir string, m *Manifest, dirs []int) error {
	for k := len(dirs) - 1; k >= 0; k-- {
		e := &m.Entries[dirs[k]]
		if err := os.Chmod(entryPath(dir, e), releaseDirMode(e.Mode)); err != nil {
			return err
		}
	}
	if err := os.Chmod(dir, releaseRootMode); err != nil {
		return fmt.Errorf("chmod release: %w", err)
	}
	return nil
}
