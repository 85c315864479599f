package mirror

import (
	"bytes"
	"encoding/hex"
	"strconv"
)

// decodeCanonical parses the canonical layout encodeManifest writes, by
// hand: a web node reads the manifest of its current release back before
// every sync, and encoding/json takes about half a second for 50k entries.
// ok is false for anything else (escaped strings, other layouts), and the
// caller then uses encoding/json. Re-encoding the result and comparing it
// with data makes the fast path exact: it accepts only the bytes
// encodeManifest writes for the manifest it returns.
func decodeCanonical(data []byte) (m *Manifest, ok bool) {
	p := parser{b: data}
	if !p.lit(`{"version":` + strconv.Itoa(ManifestVersion) + `,"entries":[`) {
		return nil, false
	}
	m = &Manifest{Entries: make([]Entry, 0, bytes.Count(data, []byte{'\n'}))}
	for !p.lit("\n]}\n") {
		if len(m.Entries) > 0 && !p.lit(",") {
			return nil, false
		}
		e, ok := p.entry()
		if !ok {
			return nil, false
		}
		m.Entries = append(m.Entries, e)
	}
	if p.i != len(data) || !bytes.Equal(encodeManifest(m), data) {
		return nil, false
	}
	return m, true
}

// parser is a cursor over a canonical manifest.
type parser struct {
	b []byte
	i int
}

// lit consumes s if the input continues with it.
func (p *parser) lit(s string) bool {
	if !bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		return false
	}
	p.i += len(s)
	return true
}

// str consumes a string up to its closing quote; escapes are refused.
func (p *parser) str() (string, bool) {
	j := bytes.IndexByte(p.b[p.i:], '"')
	if j < 0 {
		return "", false
	}
	s := p.b[p.i : p.i+j]
	if !plainJSON(string(s)) {
		return "", false
	}
	p.i += j + 1
	return string(s), true
}

// num consumes decimal digits.
func (p *parser) num() (uint64, bool) {
	j := p.i
	for j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9' {
		j++
	}
	n, err := strconv.ParseUint(string(p.b[p.i:j]), 10, 63)
	p.i = j
	return n, err == nil
}

// entry consumes one line: {"path":…,"type":…,"mode":…[,"size":…][,"sha256":…][,"target":…]}.
func (p *parser) entry() (e Entry, ok bool) {
	if !p.lit("\n{\"path\":\"") {
		return e, false
	}
	if e.Path, ok = p.str(); !ok || !p.lit(`,"type":"`) {
		return e, false
	}
	t, ok := p.str()
	if !ok || !p.lit(`,"mode":`) {
		return e, false
	}
	e.Type = Type(t)
	mode, ok := p.num()
	if !ok || mode > 1<<32-1 {
		return e, false
	}
	e.Mode = uint32(mode)
	if p.lit(`,"size":`) {
		size, ok := p.num()
		if !ok {
			return e, false
		}
		e.Size = int64(size)
	}
	if p.lit(`,"sha256":"`) {
		h, ok := p.str()
		if !ok || len(h) != 2*len(e.SHA256) {
			return e, false
		}
		if _, err := hex.Decode(e.SHA256[:], []byte(h)); err != nil {
			return e, false
		}
	}
	if p.lit(`,"target":"`) {
		if e.Target, ok = p.str(); !ok {
			return e, false
		}
	}
	return e, p.lit("}")
}
