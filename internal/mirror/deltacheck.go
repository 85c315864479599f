package mirror

import (
	"fmt"
	"path"
	"sort"
)

// ValidateDelta checks m, the result of applying d to base, a manifest that
// passed Validate, by looking only at what d changes: the rules Validate
// checks hold for m as a whole when they hold for base and for every entry
// d adds, replaces or removes. Symlinks are all resolved again when d
// touches any symlink or directory, since a change there can redirect an
// unchanged link. A web node applying a 1-file delta to a large tree
// checks one entry rather than the tree; the revision id, checked on m's
// bytes, stays the proof that m is the published manifest.
func ValidateDelta(base *Manifest, d *Delta, m *Manifest) error {
	for i := 1; i < len(d.Upsert); i++ {
		if d.Upsert[i-1].Path >= d.Upsert[i].Path {
			return fmt.Errorf("%w: delta entry %q is out of order or repeated", ErrBadManifest, d.Upsert[i].Path)
		}
	}
	relink := false
	for i := range d.Upsert {
		e := &d.Upsert[i]
		if err := ValidPath(e.Path); err != nil {
			return fmt.Errorf("%w: %v", ErrBadManifest, err)
		}
		if err := e.validFields(); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrBadManifest, e.Path, err)
		}
		if dir := path.Dir(e.Path); dir != "." {
			if p, ok := m.lookup(dir); !ok || p.Type != TypeDir {
				return fmt.Errorf("%w: %q: parent is not a directory of the tree", ErrBadManifest, e.Path)
			}
		}
		old, existed := base.lookup(e.Path)
		if e.Type == TypeSymlink || (existed && old.Type != TypeFile) || e.Type == TypeDir {
			relink = true
		}
		if e.Type != TypeDir {
			if err := noChildren(m, e.Path); err != nil {
				return err
			}
		}
	}
	for _, p := range d.Removed {
		if old, ok := base.lookup(p); ok && old.Type != TypeFile {
			relink = true
		}
		if _, ok := m.lookup(p); !ok {
			if err := noChildren(m, p); err != nil {
				return err
			}
		}
	}
	if !relink {
		return nil
	}
	for i := range m.Entries {
		if e := &m.Entries[i]; e.Type == TypeSymlink {
			if err := checkLink(e.Path, e.Target, m.lookup); err != nil {
				return fmt.Errorf("%w: %v", ErrBadManifest, err)
			}
		}
	}
	return nil
}

// noChildren fails if m has entries below p, which is not a directory of m.
func noChildren(m *Manifest, p string) error {
	prefix := p + "/"
	i := sort.Search(len(m.Entries), func(i int) bool { return m.Entries[i].Path >= prefix })
	if i < len(m.Entries) && len(m.Entries[i].Path) > len(prefix) && m.Entries[i].Path[:len(prefix)] == prefix {
		return fmt.Errorf("%w: %q: parent is not a directory of the tree", ErrBadManifest, m.Entries[i].Path)
	}
	return nil
}
