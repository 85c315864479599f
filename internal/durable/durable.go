// Package durable writes small files so that a crash at any moment leaves
// either the old content or the new one, never a mix or an empty file: the
// data goes to a temporary file in the same directory under a name unique
// to the call, is fsynced, renamed over the target, and the directory is
// fsynced so the rename itself survives a power loss.
//
// Every package that replaces a file in place (state files, the drain flag,
// Moodle's climaintenance.html and config.php, mirror metadata, self-signed
// certificates) goes through here. It knows nothing of what it writes.
package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// TempPrefix starts the name of every temporary file: a directory owner
// may remove leftovers of a crash by it.
const TempPrefix = ".tmp-"

// WriteFile replaces name with data; the file gets exactly perm (the
// umask does not apply).
func WriteFile(name string, data []byte, perm fs.FileMode) error {
	return write(name, data, func(f *os.File) error { return f.Chmod(perm) })
}

// ReplaceFile replaces the existing file name with data, keeping its mode
// and, when the process may, its owner and group (a file Moodle's web
// server reads, such as config.php). name must exist.
func ReplaceFile(name string, data []byte) error {
	fi, err := os.Stat(name)
	if err != nil {
		return err
	}
	return write(name, data, func(f *os.File) error {
		if err := f.Chmod(fi.Mode().Perm()); err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, fs.ErrPermission) {
			return err
		}
		return nil
	})
}

// write puts data into a fresh temporary file next to name, lets setMode
// adjust it, makes it durable and renames it over name.
func write(name string, data []byte, setMode func(*os.File) error) (err error) {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := setMode(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	return SyncDir(dir)
}

// RemoveLeftovers removes the temporary files a crash (kill -9, power
// loss) left behind while name was being replaced. Whoever writes a file
// in a directory it does not otherwise own (a code tree that is published,
// Moodle's dataroot) calls it before it relies on the directory's content:
// a leftover is a whole copy of the file under another name.
func RemoveLeftovers(name string) error {
	return removeTemps(filepath.Dir(name), TempPrefix+filepath.Base(name)+"-")
}

// RemoveTemps removes the temporary files of every write in dir that a
// crash interrupted. Only a process that owns dir, at its start (no write
// of its own can be running), calls it.
func RemoveTemps(dir string) error { return removeTemps(dir, TempPrefix) }

func removeTemps(dir, prefix string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SyncDir fsyncs a directory so that the renames and creations in it are
// durable.
func SyncDir(dir string) error {
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
