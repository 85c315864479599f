package mirror

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// On-disk layout under the mirror directory (data_dir/mirror), shared by
// both roles:
//
//	manifests/<id>.json   canonical manifest bytes of a kept revision
//	revisions/<id>.json   Revision metadata (seq, created, message, counts)
//	objects/              controller: content packs (pack-*.dat, pack-*.idx)
//	releases/<id>/        web: a complete release tree
//
// Temporary names start with tmpPrefix and are removed at Open.
const (
	manifestsDir = "manifests"
	revisionsDir = "revisions"
	tmpPrefix    = ".tmp-"
)

// writeFileAtomic writes data to name through a temporary file in the same
// directory, fsyncs it, renames it into place and fsyncs the directory.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	return writeFile(name, data, perm, true)
}

// writeFileRenamed is writeFileAtomic without the fsyncs, for a file that a
// later syncfs of its filesystem makes durable before anything relies on it.
func writeFileRenamed(name string, data []byte, perm os.FileMode) error {
	return writeFile(name, data, perm, false)
}

func writeFile(name string, data []byte, perm os.FileMode, durable bool) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, tmpPrefix+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return syncDir(dir)
}

// writeJSONAtomic is writeFileAtomic for a JSON document.
func writeJSONAtomic(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(name, append(data, '\n'), 0o644)
}

// syncDir fsyncs a directory so that renames and creations in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// syncFS flushes the whole filesystem holding dir: one syncfs(2) instead of
// one fsync per file when a release of thousands of files is made durable.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// removeTemps removes every entry of dir whose name starts with tmpPrefix:
// leftovers of a crash. Read-only directories are made writable first.
func removeTemps(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeTree removes a tree even if some of its directories are read-only.
func removeTree(p string) error {
	if err := os.RemoveAll(p); err == nil {
		return nil
	}
	_ = filepath.WalkDir(p, func(q string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}
