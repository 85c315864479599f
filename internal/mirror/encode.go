package mirror

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strconv"
)

// encodeManifest writes the canonical manifest encoding: entries whose
// strings need no JSON escaping, nearly all of them, are written by hand
// (six times faster than encoding/json on the Moodle tree: a publish encodes
// its whole manifest every time); the others go through encoding/json.
// TestEncodeMatchesEncodingJSON holds it to the encoding/json form.
func encodeManifest(m *Manifest) []byte {
	b := make([]byte, 0, len(m.Entries)*140+64)
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, ManifestVersion, 10)
	b = append(b, `,"entries":[`...)
	var slow *json.Encoder
	var slowBuf bytes.Buffer
	for i := range m.Entries {
		e := &m.Entries[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '\n')
		if !plainJSON(e.Path) || !plainJSON(string(e.Type)) || !plainJSON(e.Target) {
			if slow == nil {
				slow = json.NewEncoder(&slowBuf)
				slow.SetEscapeHTML(false)
			}
			slowBuf.Reset()
			_ = slow.Encode(e) // cannot fail: plain struct
			b = append(b, bytes.TrimSuffix(slowBuf.Bytes(), []byte("\n"))...)
			continue
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
		b = append(b, '}')
	}
	return append(b, "\n]}\n"...)
}

// plainJSON reports whether s is printable ASCII that JSON encodes as is.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
