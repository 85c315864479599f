package mirrortest

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// DiffTrees compares the tree at src with the tree that dst resolves to (dst
// may be a symlink to a release): same paths, types, file bytes, symlink
// targets, and modes except the write bits (releases are read-only). It
// returns the first few differences, or nil when the trees match.
func DiffTrees(src, dst string) []string {
	a, errA := walkTree(src)
	b, errB := walkTree(dst)
	if errA != nil || errB != nil {
		return []string{fmt.Sprintf("walk: %v %v", errA, errB)}
	}
	var diffs []string
	add := func(format string, args ...any) bool {
		diffs = append(diffs, fmt.Sprintf(format, args...))
		return len(diffs) < 10
	}
	for _, p := range sortedKeys(a, b) {
		ea, okA := a[p]
		eb, okB := b[p]
		switch {
		case !okA:
			if !add("%s: only in %s", p, dst) {
				return diffs
			}
		case !okB:
			if !add("%s: missing from %s", p, dst) {
				return diffs
			}
		case ea.kind != eb.kind:
			add("%s: type %s vs %s", p, ea.kind, eb.kind)
		case ea.mode&^0o222 != eb.mode&^0o222:
			add("%s: mode %o vs %o", p, ea.mode, eb.mode)
		case ea.target != eb.target:
			add("%s: link target %q vs %q", p, ea.target, eb.target)
		case ea.kind == "file" && !sameContent(filepath.Join(src, p), filepath.Join(dst, p)):
			add("%s: content differs", p)
		}
		if len(diffs) >= 10 {
			return diffs
		}
	}
	return diffs
}

type treeEntry struct {
	kind   string
	mode   fs.FileMode
	target string
}

func walkTree(root string) (map[string]treeEntry, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	out := map[string]treeEntry{}
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == real {
			return err
		}
		rel, _ := filepath.Rel(real, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := treeEntry{mode: info.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			e.kind = "symlink"
			e.target, _ = os.Readlink(p)
			e.mode = 0
		case d.IsDir():
			e.kind = "dir"
		case d.Type().IsRegular():
			e.kind = "file"
		default:
			e.kind = "other"
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	return out, err
}

func sortedKeys(a, b map[string]treeEntry) []string {
	seen := map[string]bool{}
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sameContent(a, b string) bool {
	x, errA := os.ReadFile(a)
	y, errB := os.ReadFile(b)
	return errA == nil && errB == nil && bytes.Equal(x, y)
}
