// Package corpus builds the realistic benchmark tree: the shape of a tree
// description (one "size<TAB>path" a line, as mirrortest.GenerateTree reads)
// filled with real PHP, JavaScript, CSS, SVG, text and image content taken
// from Debian's php-* library packages, so that compression and hashing see
// what a real Moodle tree holds rather than random bytes.
//
// The packages are fetched with `apt-get download` and unpacked with
// `dpkg-deb -x` into a cache directory outside the repository (nothing is
// installed); the content of each class is then concatenated once into a
// pool file. A file of the tree takes its bytes from the pool of its class,
// starting at the beginning of a pool file chosen from the seed and the
// path, for exactly its size: the same cache and seed give the same tree.
package corpus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
)

// Class is a kind of content with its own pool.
type Class string

const (
	PHP     Class = "php"
	JS      Class = "js"
	CSS     Class = "css"
	SVG     Class = "svg"
	Text    Class = "text"
	Image   Class = "image"   // raster images: already compressed
	Archive Class = "archive" // archives, fonts, binaries: already compressed
)

// Classes lists every class, in pool order.
var Classes = []Class{PHP, JS, CSS, SVG, Text, Image, Archive}

var extClass = map[string]Class{
	"php": PHP, "inc": PHP, "phtml": PHP,
	"js": JS, "mjs": JS, "json": JS,
	"css": CSS, "less": CSS, "scss": CSS,
	"svg": SVG,
	"png": Image, "gif": Image, "jpg": Image, "jpeg": Image, "ico": Image, "psd": Image, "webp": Image,
	"zip": Archive, "gz": Archive, "tgz": Archive, "bz2": Archive, "xz": Archive, "z": Archive,
	"mbz": Archive, "woff": Archive, "woff2": Archive, "ttf": Archive, "otf": Archive, "eot": Archive,
	"mov": Archive, "mp4": Archive, "mp3": Archive, "exe": Archive, "jar": Archive, "phar": Archive,
	"darwin": Archive, "linux": Archive, "freebsd": Archive, "swf": Archive, "pdf": Archive,
}

// ClassOf is the class of a path, by its extension; text when unknown.
func ClassOf(p string) Class {
	ext := strings.ToLower(strings.TrimPrefix(path.Ext(p), "."))
	if c, ok := extClass[ext]; ok {
		return c
	}
	return Text
}

// Cache is the directory holding the downloaded packages (debs/), their
// unpacked trees (x/) and the pools (pools/).
type Cache struct {
	Dir string
	Log func(format string, args ...any)
}

func (c *Cache) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(format, args...)
	}
}

// DefaultDir is the cache directory used when none is given:
// $XDG_CACHE_HOME/nodeagent-corpus, else ~/.cache/nodeagent-corpus.
func DefaultDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "nodeagent-corpus")
	}
	return filepath.Join(os.TempDir(), "nodeagent-corpus")
}

// Prepare makes sure the pools exist: it lists the php-* packages of
// architecture "all", downloads those not in the cache, unpacks them and
// writes the pools. Each step is skipped when its result is there.
func (c *Cache) Prepare(ctx context.Context) error {
	if _, err := os.Stat(c.poolPath(Archive) + ".idx"); err == nil {
		return nil
	}
	pkgs, err := phpPackages(ctx)
	if err != nil {
		return err
	}
	if err := c.download(ctx, pkgs); err != nil {
		return err
	}
	if err := c.unpack(ctx); err != nil {
		return err
	}
	return c.writePools()
}

// phpPackages lists the php-* packages of architecture "all" (PHP code,
// not compiled extensions) that apt knows.
func phpPackages(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "pkgnames", "php-").Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache pkgnames: %w", err)
	}
	names := strings.Fields(string(out))
	if len(names) == 0 {
		return nil, errors.New("apt knows no php-* package: run apt-get update")
	}
	slices.Sort(names)
	args := append([]string{"show", "--no-all-versions"}, names...)
	out, err = exec.CommandContext(ctx, "apt-cache", args...).Output()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("apt-cache show: %w", err)
	}
	var pkgs []string
	pkg := ""
	for line := range strings.SplitSeq(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Package: "); ok {
			pkg = v
		}
		if v, ok := strings.CutPrefix(line, "Architecture: "); ok && v == "all" {
			pkgs = append(pkgs, pkg)
		}
	}
	slices.Sort(pkgs)
	return slices.Compact(pkgs), nil
}

// download fetches the packages whose .deb is not in debs/ yet.
func (c *Cache) download(ctx context.Context, pkgs []string) error {
	debs := filepath.Join(c.Dir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	have := map[string]bool{}
	ents, _ := os.ReadDir(debs)
	for _, e := range ents {
		if name, _, ok := strings.Cut(e.Name(), "_"); ok && strings.HasSuffix(e.Name(), ".deb") {
			have[name] = true
		}
	}
	var need []string
	for _, p := range pkgs {
		if !have[p] {
			need = append(need, p)
		}
	}
	if len(need) == 0 {
		return nil
	}
	c.logf("downloading %d php-* packages into %s", len(need), debs)
	for len(need) > 0 {
		batch := need[:min(len(need), 100)]
		need = need[len(batch):]
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download", "-q"}, batch...)...)
		cmd.Dir = debs
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get download: %w: %s", err, lastLine(out))
		}
	}
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// unpack extracts every .deb of debs/ into x/<package>, once.
func (c *Cache) unpack(ctx context.Context) error {
	debs := filepath.Join(c.Dir, "debs")
	ents, err := os.ReadDir(debs)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "x"), 0o755); err != nil {
		return err
	}
	for _, e := range ents {
		name, _, ok := strings.Cut(e.Name(), "_")
		if !ok || !strings.HasSuffix(e.Name(), ".deb") {
			continue
		}
		dst := filepath.Join(c.Dir, "x", name)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		tmp := dst + ".tmp"
		os.RemoveAll(tmp)
		cmd := exec.CommandContext(ctx, "dpkg-deb", "-x", filepath.Join(debs, e.Name()), tmp)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %w: %s", e.Name(), err, lastLine(out))
		}
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
	}
	return nil
}

// poolFile is a file of the unpacked packages, by class.
type poolFile struct {
	path string
	size int64
}

// writePools concatenates the regular files of x/, sorted by path, into
// one pool per class: pools/<class>.bin and an index of file offsets
// (pools/<class>.bin.idx, big-endian uint64s). Documentation copies
// (usr/share/doc) and empty files are left out.
func (c *Cache) writePools() error {
	files := map[Class][]poolFile{}
	root := filepath.Join(c.Dir, "x")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "doc" && filepath.Base(filepath.Dir(p)) == "share" {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil || fi.Size() == 0 {
			return err
		}
		cl := ClassOf(p)
		files[cl] = append(files[cl], poolFile{path: p, size: fi.Size()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("list unpacked packages: %w", err)
	}
	// Archive last: its index marks the pools complete (see Prepare).
	for _, cl := range Classes {
		if err := c.writePool(cl, files[cl]); err != nil {
			return fmt.Errorf("pool %s: %w", cl, err)
		}
		c.logf("pool %s: %d files", cl, len(files[cl]))
	}
	return nil
}

func (c *Cache) poolPath(cl Class) string { return filepath.Join(c.Dir, "pools", string(cl)+".bin") }

func (c *Cache) writePool(cl Class, files []poolFile) error {
	slices.SortFunc(files, func(a, b poolFile) int { return strings.Compare(a.path, b.path) })
	contents := make([][]byte, len(files))
	for i, pf := range files {
		data, err := os.ReadFile(pf.path)
		if err != nil {
			return err
		}
		contents[i] = data
	}
	return c.WritePool(cl, contents)
}

// WritePool writes the pool of class cl from the contents of its files, in
// order. Prepare writes every pool from the packages; tests write small
// ones of their own.
func (c *Cache) WritePool(cl Class, contents [][]byte) error {
	if len(contents) == 0 {
		return errors.New("no content of this class")
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "pools"), 0o755); err != nil {
		return err
	}
	var data, idx []byte
	for _, b := range contents {
		idx = binary.BigEndian.AppendUint64(idx, uint64(len(data)))
		data = append(data, b...)
	}
	if err := os.WriteFile(c.poolPath(cl), data, 0o644); err != nil {
		return err
	}
	return os.WriteFile(c.poolPath(cl)+".idx", idx, 0o644)
}

// pool is the content of one class, in memory.
type pool struct {
	data   []byte
	starts []int // offsets of the pool files in data
}

// Pools is every class's pool, loaded.
type Pools map[Class]*pool

// Load reads the pools written by Prepare.
func (c *Cache) Load() (Pools, error) {
	ps := Pools{}
	for _, cl := range Classes {
		data, err := os.ReadFile(c.poolPath(cl))
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w (run Prepare)", cl, err)
		}
		idx, err := os.ReadFile(c.poolPath(cl) + ".idx")
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", cl, err)
		}
		p := &pool{data: data}
		for i := 0; i+8 <= len(idx); i += 8 {
			off := binary.BigEndian.Uint64(idx[i:])
			if off > uint64(len(data)) {
				return nil, fmt.Errorf("pool %s: index beyond the data", cl)
			}
			p.starts = append(p.starts, int(off))
		}
		if len(p.starts) == 0 || len(data) == 0 {
			return nil, fmt.Errorf("pool %s is empty", cl)
		}
		ps[cl] = p
	}
	return ps, nil
}

// Content appends to buf size bytes of the pool of rel's class, starting at
// a pool file chosen from seed and rel, wrapping around the pool's end.
// used remembers the (start, size) pairs given out, so that two files of a
// tree get the same bytes only when their pool has no other start left.
func (ps Pools) Content(buf []byte, seed uint64, rel string, size int, used map[[2]int]bool) []byte {
	p := ps[ClassOf(rel)]
	h := fnv.New64a()
	var sb [8]byte
	binary.BigEndian.PutUint64(sb[:], seed)
	h.Write(sb[:])
	h.Write([]byte(rel))
	k := int(h.Sum64() % uint64(len(p.starts)))
	for range len(p.starts) {
		if !used[[2]int{k, size}] {
			break
		}
		k = (k + 1) % len(p.starts)
	}
	used[[2]int{k, size}] = true
	off := p.starts[k]
	for size > 0 {
		n := min(size, len(p.data)-off)
		buf = append(buf, p.data[off:off+n]...)
		size -= n
		off = 0
	}
	return buf
}

// Generate writes under dir the tree described by tsvPath, scale times
// under a/, b/, … when scale > 1 (as mirrortest.GenerateTree), with content
// from the pools.
func Generate(dir, tsvPath string, scale int, seed uint64, ps Pools) error {
	used := map[[2]int]bool{}
	return mirrortest.GenerateTreeFunc(dir, tsvPath, scale, func(buf []byte, rel string, size int) []byte {
		return ps.Content(buf, seed, rel, size, used)
	})
}
