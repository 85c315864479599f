package mirror

import (
	"context"
	"errors"
	"fmt"
	"hash"

	sha256 "github.com/minio/sha256-simd"
	"golang.org/x/sys/unix"
)

// hashChecker reads release files and compares their SHA-256 with the
// manifest, in one goroutine (at most one core), opening each beneath the
// release root without following symlinks.
type hashChecker struct {
	root int // the release directory
	h    hash.Hash
	buf  []byte
}

// hashCheckBuffer is the read size of content checks.
const hashCheckBuffer = 256 << 10

func newHashChecker(dir string) (*hashChecker, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", dir, err)
	}
	return &hashChecker{root: fd, h: sha256.New(), buf: make([]byte, hashCheckBuffer)}, nil
}

func (c *hashChecker) close() { unix.Close(c.root) }

// check hashes the files of m at the indexes [from, to) and returns those
// whose content differs. Files that are missing or not regular are left
// to the inspection, which reports them.
func (c *hashChecker) check(ctx context.Context, m *Manifest, from, to int) ([]finding, error) {
	var out []finding
	for i := from; i < to; i++ {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		e := &m.Entries[i]
		if e.Type != TypeFile {
			continue
		}
		sum, n, err := c.file(e.Path)
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, errPathChanged), errors.Is(err, errNotRegular),
			errors.Is(err, unix.EACCES):
			continue
		case err != nil:
			return out, fmt.Errorf("check %s: %w", e.Path, err)
		case sum != e.SHA256 || n != e.Size:
			out = append(out, finding{Difference{Path: e.Path, Kind: KindTampered,
				Detail: fmt.Sprintf("content sha256 %.12s…, want %.12s…", sum, e.SHA256)}, i})
		}
	}
	return out, nil
}

var errNotRegular = errors.New("not a regular file")

// file returns the SHA-256 and size of the file at rel.
func (c *hashChecker) file(rel string) (Hash, int64, error) {
	var sum Hash
	fd, err := openBeneath(c.root, rel, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK)
	if err != nil {
		return sum, 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return sum, 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return sum, 0, errNotRegular
	}
	c.h.Reset()
	var n int64
	for {
		k, err := readRetry(fd, c.buf)
		if err != nil {
			return sum, n, err
		}
		if k == 0 {
			break
		}
		c.h.Write(c.buf[:k])
		n += int64(k)
	}
	c.h.Sum(sum[:0])
	return sum, n, nil
}
