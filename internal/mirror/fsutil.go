package mirror

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nodeagent/nodeagent/internal/durable"
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
	tmpPrefix    = durable.TempPrefix
)

// writeFileAtomic and syncDir are the one durable write of the agent.
var (
	writeFileAtomic = durable.WriteFile
	syncDir         = durable.SyncDir
)

// writeFileRenamed writes data to name through a temporary file renamed
// into place, without the fsyncs of writeFileAtomic: for a file that a
// later syncfs of its filesystem makes durable before anything relies on
// it.
func writeFileRenamed(name string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), tmpPrefix+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err := errors.Join(err, f.Close()); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// writeJSONAtomic is writeFileAtomic for a JSON document.
func writeJSONAtomic(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(name, append(data, '\n'), 0o644)
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
