package mirror

import (
	"fmt"
	"io"

	"github.com/minio/sha256-simd"
)

// Entry returns the entry at path p of kept revision id; ok is false when
// the revision has no such path.
func (s *Store) Entry(id, p string) (e Entry, ok bool, err error) {
	m, err := s.manifest(id)
	if err != nil {
		return Entry{}, false, err
	}
	e, ok = m.Lookup(p)
	return e, ok, nil
}

// ReadFile returns the content of the regular file at path p of kept
// revision id, verified against its SHA-256. It reads at most limit
// bytes: a larger file is an error, as is a path that is not a file.
func (s *Store) ReadFile(id, p string, limit int64) ([]byte, error) {
	e, ok, err := s.Entry(id, p)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("revision %s has no %s: %w", id, p, ErrNotFound)
	case e.Type != TypeFile:
		return nil, fmt.Errorf("%s in revision %s is a %s, not a file", p, id, e.Type)
	case e.Size > limit:
		return nil, fmt.Errorf("%s in revision %s is %d bytes, more than %d", p, id, e.Size, limit)
	}
	locs, missing := s.locate([]Hash{e.SHA256})
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s in revision %s: content %s missing from the store", p, id, missing[0])
	}
	l := locs[0]
	defer l.p.release()
	stored := make([]byte, l.size)
	if _, err := io.ReadFull(io.NewSectionReader(l.p.f, l.off, l.size), stored); err != nil {
		return nil, fmt.Errorf("read %s of revision %s: %w", p, id, err)
	}
	data, err := decodeObject(nil, stored, l.codec, l.raw)
	if err != nil || int64(len(data)) != e.Size {
		return nil, fmt.Errorf("read %s of revision %s: %v", p, id, err)
	}
	if sha256.Sum256(data) != e.SHA256 {
		return nil, fmt.Errorf("%s of revision %s does not match its SHA-256", p, id)
	}
	return data, nil
}
