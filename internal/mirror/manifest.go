// Package mirror owns revisions of the mirrored code tree: scanning and hashing
// the source on the controller, the immutable manifests and the content store,
// the wire format between controller and web nodes, and on web nodes the
// release store, verified fetch and the atomic switch of mirror.target.
//
// It knows nothing of gossip, HTTP routing or configuration files: the agent
// tells it what to publish or which revision to apply.
package mirror

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	sha256 "github.com/minio/sha256-simd"
)

// Hash is a SHA-256 digest. Its text form is lowercase hex.
type Hash [32]byte

// ParseHash parses 64 hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("hash %q: want 64 hex digits", s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash %q: %w", s, err)
	}
	return h, nil
}

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero hash (no content).
func (h Hash) IsZero() bool { return h == Hash{} }

func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// Type is the kind of a manifest entry.
type Type string

const (
	TypeFile    Type = "file"
	TypeDir     Type = "dir"
	TypeSymlink Type = "symlink"
)

// ModeMask keeps the permission, setuid, setgid and sticky bits.
const ModeMask = 0o7777

// Entry is one path of a tree. Paths are slash-separated, relative to the tree
// root, clean, and never "." or "..".
type Entry struct {
	Path   string `json:"path"`
	Type   Type   `json:"type"`
	Mode   uint32 `json:"mode"`             // unix bits, ModeMask
	Size   int64  `json:"size,omitzero"`    // files
	SHA256 Hash   `json:"sha256,omitzero"`  // files
	Target string `json:"target,omitempty"` // symlinks
}

// Manifest is a whole tree: entries sorted by path (byte order), unique.
type Manifest struct {
	Entries []Entry
}

// ManifestVersion is the version of the canonical encoding.
const ManifestVersion = 1

// Encode returns the canonical bytes of m: the bytes whose SHA-256 is the
// revision id. One entry per line, each the encoding/json form of Entry
// (HTML not escaped), so manifests diff and read well. See encode.go.
func (m *Manifest) Encode() []byte { return encodeManifest(m).data }

// ID returns the hex SHA-256 of the canonical encoding.
func (m *Manifest) ID() string {
	sum := sha256.Sum256(m.Encode())
	return hex.EncodeToString(sum[:])
}

// ErrBadManifest is returned for manifests that do not match their id or
// break a rule of Validate.
var ErrBadManifest = errors.New("bad manifest")

// DecodeManifest parses canonical manifest bytes, checks that they hash to
// id (when id is not empty) and validates every entry.
func DecodeManifest(data []byte, id string) (*Manifest, error) {
	m, _, err := decodeManifest(data, id, true)
	return m, err
}

// decodeManifest is DecodeManifest, without Validate when validate is
// false: for manifests this node validated before it stored them, whose
// bytes the id check still proves unchanged.
// It also returns where each entry is in data, when data has the layout
// the encoder writes (nil otherwise): the base that encodeFrom splices a
// changed manifest's bytes from.
func decodeManifest(data []byte, id string, validate bool) (*Manifest, *encoding, error) {
	if id != "" {
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != id {
			return nil, nil, fmt.Errorf("%w: content hashes to %s, want %s", ErrBadManifest, got, id)
		}
	}
	m, enc, ok := decodeCanonical(data)
	if !ok {
		version, jm, err := decodeManifestJSON(data)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrBadManifest, err)
		}
		if version != ManifestVersion {
			return nil, nil, fmt.Errorf("%w: version %d, want %d", ErrBadManifest, version, ManifestVersion)
		}
		m = jm
	}
	if !validate {
		return m, enc, nil
	}
	if err := m.Validate(); err != nil {
		return nil, nil, err
	}
	return m, enc, nil
}

// decodeManifestJSON parses a manifest document entry by entry, so that
// the decoder never buffers the whole document (a manifest of a large tree
// is tens of megabytes), into a slice sized by the line count of the
// canonical layout. Unknown fields and trailing data are errors.
func decodeManifestJSON(data []byte) (version int, m *Manifest, err error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := expectDelim(dec, '{'); err != nil {
		return 0, nil, err
	}
	m = &Manifest{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return 0, nil, err
		}
		key, _ := tok.(string)
		if seen[key] {
			return 0, nil, fmt.Errorf("repeated field %q", key)
		}
		seen[key] = true
		switch key {
		case "version":
			err = dec.Decode(&version)
		case "entries":
			m.Entries, err = decodeEntries(dec, bytes.Count(data, []byte{'\n'}))
		default:
			err = fmt.Errorf("unknown field %q", key)
		}
		if err != nil {
			return 0, nil, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return 0, nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return 0, nil, errors.New("data after the manifest")
	}
	return version, m, nil
}

func decodeEntries(dec *json.Decoder, sizeHint int) ([]Entry, error) {
	if err := expectDelim(dec, '['); err != nil {
		return nil, err
	}
	entries := make([]Entry, 0, sizeHint)
	for dec.More() {
		entries = append(entries, Entry{})
		if err := dec.Decode(&entries[len(entries)-1]); err != nil {
			return nil, err
		}
	}
	return entries, expectDelim(dec, ']')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q, got %v", want, tok)
	}
	return nil
}

// Validate checks every rule a received manifest must follow: clean relative
// paths without "..", sorted and unique, parents that are directories, types
// with their fields, and symlinks that stay inside the tree.
func (m *Manifest) Validate() error {
	types := make(map[string]Type, len(m.Entries))
	prev := ""
	for i := range m.Entries {
		e := &m.Entries[i]
		if err := ValidPath(e.Path); err != nil {
			return fmt.Errorf("%w: %v", ErrBadManifest, err)
		}
		if i > 0 && e.Path <= prev {
			return fmt.Errorf("%w: %q is out of order or repeated", ErrBadManifest, e.Path)
		}
		prev = e.Path
		if dir := path.Dir(e.Path); dir != "." && types[dir] != TypeDir {
			return fmt.Errorf("%w: %q: parent is not a directory of the tree", ErrBadManifest, e.Path)
		}
		if err := e.validFields(); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrBadManifest, e.Path, err)
		}
		types[e.Path] = e.Type
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != TypeSymlink {
			continue
		}
		if err := checkLink(e.Path, e.Target, m.lookup); err != nil {
			return fmt.Errorf("%w: %v", ErrBadManifest, err)
		}
	}
	return nil
}

func (e *Entry) validFields() error {
	if e.Mode&^ModeMask != 0 {
		return fmt.Errorf("mode %o has bits outside %o", e.Mode, ModeMask)
	}
	switch e.Type {
	case TypeFile:
		if e.Size < 0 || e.Target != "" {
			return errors.New("file with a negative size or a link target")
		}
	case TypeDir:
		if e.Size != 0 || !e.SHA256.IsZero() || e.Target != "" {
			return errors.New("directory with a size, hash or link target")
		}
	case TypeSymlink:
		if e.Size != 0 || !e.SHA256.IsZero() || e.Target == "" || strings.ContainsRune(e.Target, 0) {
			return errors.New("symlink with a size, hash or no target")
		}
	default:
		return fmt.Errorf("unknown type %q", e.Type)
	}
	return nil
}

// ValidPath reports whether p is a clean, relative, slash-separated path
// without "." or ".." elements.
func ValidPath(p string) error {
	switch {
	case p == "" || p == "." || p == "..":
		return fmt.Errorf("path %q is not allowed", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is absolute", p)
	case strings.ContainsRune(p, 0) || strings.ContainsRune(p, '\\'):
		return fmt.Errorf("path %q has a NUL or backslash", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean", p)
	case p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.."):
		return fmt.Errorf("path %q leaves the tree", p)
	}
	return nil
}

// lookup returns the entry at p (binary search).
func (m *Manifest) lookup(p string) (*Entry, bool) {
	i := sort.Search(len(m.Entries), func(i int) bool { return m.Entries[i].Path >= p })
	if i < len(m.Entries) && m.Entries[i].Path == p {
		return &m.Entries[i], true
	}
	return nil, false
}

// Lookup returns the entry at path p.
func (m *Manifest) Lookup(p string) (Entry, bool) {
	e, ok := m.lookup(p)
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// maxLinkHops bounds symlink resolution, as the kernel's ELOOP does.
const maxLinkHops = 40

// checkLink resolves the symlink at p with target, following other symlinks
// of the tree, and fails if any step leaves the tree root.
func checkLink(p, target string, lookup func(string) (*Entry, bool)) error {
	if strings.HasPrefix(target, "/") {
		return fmt.Errorf("symlink %q -> %q is absolute", p, target)
	}
	hops := 0
	var resolve func(dir []string, rest []string) error
	resolve = func(dir []string, rest []string) error {
		for len(rest) > 0 {
			el := rest[0]
			rest = rest[1:]
			switch el {
			case "", ".":
				continue
			case "..":
				if len(dir) == 0 {
					return fmt.Errorf("symlink %q -> %q leads out of the tree", p, target)
				}
				dir = dir[:len(dir)-1]
				continue
			}
			cur := append(append([]string(nil), dir...), el)
			e, ok := lookup(strings.Join(cur, "/"))
			if ok && e.Type == TypeSymlink {
				if hops++; hops > maxLinkHops {
					return fmt.Errorf("symlink %q -> %q: too many levels of links", p, target)
				}
				if strings.HasPrefix(e.Target, "/") {
					return fmt.Errorf("symlink %q -> %q leads out of the tree", p, target)
				}
				next := append(strings.Split(e.Target, "/"), rest...)
				return resolve(dir, next)
			}
			dir = cur
		}
		return nil
	}
	return resolve(strings.Split(path.Dir(p), "/")[:dirDepth(p)], strings.Split(target, "/"))
}

func dirDepth(p string) int {
	if path.Dir(p) == "." {
		return 0
	}
	return strings.Count(p, "/")
}

// Delta turns base into another manifest: entries to add or replace, and paths
// to remove. It lets a web node fetch a small change of a large tree.
type Delta struct {
	Base    string   `json:"base"`
	Upsert  []Entry  `json:"upsert"`
	Removed []string `json:"removed"`
}

// Diff returns the delta from base (whose id is baseID) to m.
func Diff(baseID string, base, m *Manifest) *Delta {
	d := &Delta{Base: baseID, Upsert: []Entry{}, Removed: []string{}}
	i, j := 0, 0
	for i < len(base.Entries) || j < len(m.Entries) {
		switch {
		case j == len(m.Entries) || (i < len(base.Entries) && base.Entries[i].Path < m.Entries[j].Path):
			d.Removed = append(d.Removed, base.Entries[i].Path)
			i++
		case i == len(base.Entries) || m.Entries[j].Path < base.Entries[i].Path:
			d.Upsert = append(d.Upsert, m.Entries[j])
			j++
		default:
			if base.Entries[i] != m.Entries[j] {
				d.Upsert = append(d.Upsert, m.Entries[j])
			}
			i++
			j++
		}
	}
	return d
}

// Apply returns the manifest that d makes of base. The result is not
// validated: callers check it against the expected id.
func (d *Delta) Apply(base *Manifest) (*Manifest, error) {
	if !sort.SliceIsSorted(d.Upsert, func(a, b int) bool { return d.Upsert[a].Path < d.Upsert[b].Path }) ||
		!sort.StringsAreSorted(d.Removed) {
		return nil, fmt.Errorf("%w: delta is not sorted", ErrBadManifest)
	}
	out := make([]Entry, 0, len(base.Entries)+len(d.Upsert))
	removed := d.Removed
	up := d.Upsert
	for _, e := range base.Entries {
		for len(up) > 0 && up[0].Path < e.Path {
			out = append(out, up[0])
			up = up[1:]
		}
		for len(removed) > 0 && removed[0] < e.Path {
			removed = removed[1:]
		}
		if len(removed) > 0 && removed[0] == e.Path {
			removed = removed[1:]
			continue
		}
		if len(up) > 0 && up[0].Path == e.Path {
			out = append(out, up[0])
			up = up[1:]
			continue
		}
		out = append(out, e)
	}
	out = append(out, up...)
	return &Manifest{Entries: out}, nil
}

// Files returns the number of file entries and their total size.
func (m *Manifest) Files() (n int, bytes int64) {
	for i := range m.Entries {
		if m.Entries[i].Type == TypeFile {
			n++
			bytes += m.Entries[i].Size
		}
	}
	return n, bytes
}

// FileMode converts the manifest mode bits to an fs.FileMode.
func FileMode(bits uint32) fs.FileMode {
	m := fs.FileMode(bits & 0o777)
	if bits&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if bits&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if bits&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// ModeBits converts an fs.FileMode to manifest mode bits.
func ModeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}
