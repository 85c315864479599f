package mirror

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strconv"
)

// The canonical encoding's frame around the entries (of ManifestVersion).
const (
	manifestHead = `{"version":1,"entries":[`
	manifestTail = "\n]}\n"
)

// encoding is the canonical bytes of a manifest and where each entry's
// line starts in them: what a changed manifest's bytes are spliced from.
type encoding struct {
	data []byte
	// off[i] is the offset of the newline before entry i; entry i ends
	// before the comma of the next one, or before manifestTail.
	off []int
}

// entry returns the bytes of entries i to j-1, their commas between them.
func (enc *encoding) entries(i, j int) []byte {
	end := len(enc.data) - len(manifestTail)
	if j < len(enc.off) {
		end = enc.off[j] - 1 // its comma
	}
	return enc.data[enc.off[i]:end]
}

// encodeManifest writes the canonical manifest encoding: entries whose
// strings need no JSON escaping, nearly all of them, are written by hand
// (six times faster than encoding/json on the Moodle tree); the others go
// through encoding/json. TestEncodeMatchesEncodingJSON holds it to the
// encoding/json form.
func encodeManifest(m *Manifest) *encoding {
	w := newEncodingWriter(len(m.Entries)*140, len(m.Entries))
	for i := range m.Entries {
		w.entry(&m.Entries[i])
	}
	return w.finish()
}

// encodeFrom returns the canonical encoding of m, copying the lines of
// the entries m shares with base from base's encoding be rather than
// encoding them again: a publish or a sync of a small change encodes only
// what changed. be must be base's encoding (as decodeCanonical and
// encodeManifest give it); without it m is encoded whole.
func encodeFrom(base *Manifest, be *encoding, m *Manifest) *encoding {
	if base == nil || be == nil || len(be.off) != len(base.Entries) {
		return encodeManifest(m)
	}
	w := newEncodingWriter(len(be.data)+4096, len(m.Entries))
	run, runEnd := 0, 0 // base entries [run, runEnd) not written yet
	i := 0
	for j := range m.Entries {
		e := &m.Entries[j]
		for i < len(base.Entries) && base.Entries[i].Path < e.Path {
			i++ // removed
		}
		same := i < len(base.Entries) && base.Entries[i] == *e
		if same && i == runEnd {
			runEnd++
			i++
			continue
		}
		w.copied(be, run, runEnd)
		if same {
			run, runEnd = i, i+1
			i++
			continue
		}
		if i < len(base.Entries) && base.Entries[i].Path == e.Path {
			i++ // replaced
		}
		run, runEnd = i, i
		w.entry(e)
	}
	w.copied(be, run, runEnd)
	return w.finish()
}

// encodingWriter appends entries to a canonical encoding.
type encodingWriter struct {
	enc  encoding
	slow *json.Encoder
	buf  bytes.Buffer
}

func newEncodingWriter(size, entries int) *encodingWriter {
	w := &encodingWriter{enc: encoding{data: make([]byte, 0, size+64), off: make([]int, 0, entries)}}
	w.enc.data = append(w.enc.data, manifestHead...)
	return w
}

func (w *encodingWriter) next() {
	if len(w.enc.off) > 0 {
		w.enc.data = append(w.enc.data, ',')
	}
	w.enc.off = append(w.enc.off, len(w.enc.data))
}

// copied appends the entries [i, j) of from.
func (w *encodingWriter) copied(from *encoding, i, j int) {
	if i >= j {
		return
	}
	if len(w.enc.off) > 0 {
		w.enc.data = append(w.enc.data, ',')
	}
	shift := len(w.enc.data) - from.off[i]
	for k := i; k < j; k++ {
		w.enc.off = append(w.enc.off, from.off[k]+shift)
	}
	w.enc.data = append(w.enc.data, from.entries(i, j)...)
}

// entry appends e's line.
func (w *encodingWriter) entry(e *Entry) {
	w.next()
	b := append(w.enc.data, '\n')
	if !plainJSON(e.Path) || !plainJSON(string(e.Type)) || !plainJSON(e.Target) {
		if w.slow == nil {
			w.slow = json.NewEncoder(&w.buf)
			w.slow.SetEscapeHTML(false)
		}
		w.buf.Reset()
		_ = w.slow.Encode(e) // cannot fail: plain struct
		w.enc.data = append(b, bytes.TrimSuffix(w.buf.Bytes(), []byte("\n"))...)
		return
	}
	b = append(b, `{"path":"`...)
	b = append(b, e.Path...)
	b = append(b, `","type":"`...)
	b = append(b, e.Type...)
	b = append(b, `","mode":`...)
	b = strconv.AppendUint(b, uint64(e.Mode), 10)
	if e.Size != 0 {
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, e.Size, 10)
	}
	if !e.SHA256.IsZero() {
		b = append(b, `,"sha256":"`...)
		b = hex.AppendEncode(b, e.SHA256[:])
		b = append(b, '"')
	}
	if e.Target != "" {
		b = append(b, `,"target":"`...)
		b = append(b, e.Target...)
		b = append(b, '"')
	}
	w.enc.data = append(b, '}')
}

func (w *encodingWriter) finish() *encoding {
	w.enc.data = append(w.enc.data, manifestTail...)
	return &w.enc
}

// plainJSON reports whether s is printable ASCII that JSON encodes as is.
func plainJSON[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
