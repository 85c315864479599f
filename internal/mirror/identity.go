package mirror

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	sha256 "github.com/minio/sha256-simd"
	"golang.org/x/sys/unix"
)

// A release's identities record, for each file the agent placed in it, the
// inode and modification time it had: with the owner, mode and size they
// tell a file the agent wrote from one replaced, planted, moved or written
// to since (an attacker without root can neither give a new file the
// agent's owner nor set the times of the agent's files; a write changes
// the time). They are what a file reused from a kept release, a recycled
// release and the background audit are checked against, without reading
// content. Files are shared by hard links between releases, so one inode
// keeps its identity in all of them.
//
//	identitiesMagic, uvarint len + release id, uvarint count, then per
//	manifest entry: uvarint inode, varint mtime (ns); 0, 0 for entries that
//	are not files; then the SHA-256 of everything before it.
const (
	identitiesDir   = "identities"
	identitiesMagic = "NAIDS001"
)

// fileIdentity is what the agent recorded of one release file.
type fileIdentity struct {
	Ino     uint64
	MtimeNs int64
}

func identityOf(st *unix.Stat_t) fileIdentity {
	return fileIdentity{Ino: st.Ino, MtimeNs: st.Mtim.Nano()}
}

// identities are the fileIdentity of each entry of a release's manifest,
// by index (zero for directories and symlinks).
type identities []fileIdentity

var errIdentities = errors.New("bad identities file")

func (ids identities) encode(id string) []byte {
	b := make([]byte, 0, 32+len(ids)*12)
	b = append(b, identitiesMagic...)
	b = appendString(b, id)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, fi := range ids {
		b = binary.AppendUvarint(b, fi.Ino)
		b = binary.AppendVarint(b, fi.MtimeNs)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// decodeIdentities parses the identities of release id, which must have n
// entries.
func decodeIdentities(data []byte, id string, n int) (identities, error) {
	if len(data) < len(identitiesMagic)+sha256.Size || string(data[:len(identitiesMagic)]) != identitiesMagic {
		return nil, fmt.Errorf("%w: bad header", errIdentities)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("%w: checksum mismatch", errIdentities)
	}
	d := cacheDecoder{b: body[len(identitiesMagic):]}
	if got := d.str(); got != id {
		return nil, fmt.Errorf("%w: of release %.12s", errIdentities, got)
	}
	if count := d.uvarint(); count != uint64(n) {
		return nil, fmt.Errorf("%w: %d entries, the manifest has %d", errIdentities, count, n)
	}
	ids := make(identities, n)
	for i := range ids {
		ids[i].Ino = d.uvarint()
		ids[i].MtimeNs = d.varint()
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", errIdentities)
	}
	return ids, nil
}

// loadIdentities reads the identities of kept release id (whose manifest
// is m). A release made before identities were recorded has none: it
// returns nil and an error wrapping fs.ErrNotExist.
func (r *Releases) loadIdentities(id string, m *Manifest) (identities, error) {
	data, err := os.ReadFile(r.identitiesFile(id))
	if err != nil {
		return nil, err
	}
	return decodeIdentities(data, id, len(m.Entries))
}

func (r *Releases) identitiesFile(id string) string {
	return filepath.Join(r.metaDir(identitiesDir), id)
}

// writeIdentities records ids for release id (durably: it is written
// before the release is named).
func (r *Releases) writeIdentities(id string, ids identities) error {
	if err := writeFileAtomic(r.identitiesFile(id), ids.encode(id), 0o600); err != nil {
		return fmt.Errorf("write identities: %w", err)
	}
	return nil
}

// recordIdentities fills in ids (by entry of m) the identity of every file
// of the tree at dir that has none yet, from the tree itself: called on a
// complete build, before the release is named, when no one else can write
// there.
func recordIdentities(dir string, m *Manifest, ids identities) error {
	return parallel(bgCtx, len(m.Entries), func(i int) error {
		e := &m.Entries[i]
		if e.Type != TypeFile || ids[i] != (fileIdentity{}) {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(entryPath(dir, e), &st); err != nil {
			return fmt.Errorf("record identity of %s: %w", e.Path, err)
		}
		ids[i] = identityOf(&st)
		return nil
	})
}

// notePlaced records the identity of the file the agent just wrote at p,
// entry i of the release being built.
func (r *Releases) notePlaced(i int, p string) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("record identity of %s: %w", p, err)
	}
	r.building[i] = identityOf(&st)
	return nil
}

// agentUID is the owner of every file and directory the agent makes.
var agentUID = uint32(os.Geteuid())

// fileProblem reports how the file st (at entry e) differs from what the
// agent placed there: the empty string when it does not. want is its
// recorded identity, nil when there is none (content then decides).
func fileProblem(st *unix.Stat_t, e *Entry, want *fileIdentity) (kind, detail string) {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return KindType, "not a regular file (" + typeName(st.Mode) + ")"
	case st.Uid != agentUID:
		return KindOwner, fmt.Sprintf("owner uid %d, want %d", st.Uid, agentUID)
	case st.Mode&ModeMask != ModeBits(releaseFileMode(e.Mode)):
		return KindMode, fmt.Sprintf("mode %04o, want %04o", st.Mode&ModeMask, ModeBits(releaseFileMode(e.Mode)))
	case st.Size != e.Size:
		return KindTampered, fmt.Sprintf("size %d, want %d", st.Size, e.Size)
	case want != nil && st.Ino != want.Ino:
		return KindTampered, "replaced (another inode than the one the agent placed)"
	case want != nil && st.Mtim.Nano() != want.MtimeNs:
		return KindTampered, "written to (modified " + formatNs(st.Mtim.Nano()) + ")"
	}
	return "", ""
}
