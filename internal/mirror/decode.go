package mirror

import (
	"bytes"
	"strconv"
)

// decodeCanonical parses the canonical layout encodeManifest writes, by
// hand: a web node reads the manifest of its current release back before
// every sync, and encoding/json takes about half a second for 50k entries.
// ok is false for anything else (escaped strings, other layouts), and the
// caller then uses encoding/json. The parser is strict where the encoder
// has a single form (field order, numbers without leading zeros, fields
// written exactly when not zero, lower-case hex), so it accepts only the
// bytes encodeManifest writes for the manifest it returns, without
// encoding it again; FuzzDecodeManifest holds it to that.
func decodeCanonical(data []byte) (m *Manifest, enc *encoding, ok bool) {
	p := parser{b: data}
	if !p.lit(manifestHead) {
		return nil, nil, false
	}
	lines := bytes.Count(data, []byte{'\n'})
	m = &Manifest{Entries: make([]Entry, 0, lines)}
	enc = &encoding{data: data, off: make([]int, 0, lines)}
	for !p.lit(manifestTail) {
		if len(m.Entries) > 0 && !p.lit(",") {
			return nil, nil, false
		}
		enc.off = append(enc.off, p.i)
		e, ok := p.entry()
		if !ok {
			return nil, nil, false
		}
		m.Entries = append(m.Entries, e)
	}
	if p.i != len(data) {
		return nil, nil, false
	}
	return m, enc, true
}

// parser is a cursor over a canonical manifest.
type parser struct {
	b []byte
	i int
}

// lit consumes s if the input continues with it.
func (p *parser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// raw consumes a string up to its closing quote and returns its bytes;
// escapes and other characters encoding/json would escape are refused.
func (p *parser) raw() ([]byte, bool) {
	j := bytes.IndexByte(p.b[p.i:], '"')
	if j < 0 {
		return nil, false
	}
	s := p.b[p.i : p.i+j]
	if !plainJSON(s) {
		return nil, false
	}
	p.i += j + 1
	return s, true
}

// str is raw as a string.
func (p *parser) str() (string, bool) {
	s, ok := p.raw()
	return string(s), ok
}

// num consumes a decimal number as strconv.AppendUint writes it: digits,
// no leading zero but for zero itself.
func (p *parser) num() (uint64, bool) {
	j := p.i
	for j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9' {
		j++
	}
	digits := p.b[p.i:j]
	if len(digits) > 1 && digits[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(digits), 10, 63)
	p.i = j
	return n, err == nil
}

// typeOfName returns the Type named s, sharing the constants' strings.
func typeOfName(s []byte) Type {
	switch string(s) {
	case string(TypeFile):
		return TypeFile
	case string(TypeDir):
		return TypeDir
	case string(TypeSymlink):
		return TypeSymlink
	}
	return Type(s) // refused by Validate
}

// entry consumes one line: {"path":…,"type":…,"mode":…[,"size":…][,"sha256":…][,"target":…]}.
func (p *parser) entry() (e Entry, ok bool) {
	if !p.lit("\n{\"path\":\"") {
		return e, false
	}
	if e.Path, ok = p.str(); !ok || !p.lit(`,"type":"`) {
		return e, false
	}
	t, ok := p.raw()
	if !ok || !p.lit(`,"mode":`) {
		return e, false
	}
	e.Type = typeOfName(t)
	mode, ok := p.num()
	if !ok || mode > 1<<32-1 {
		return e, false
	}
	e.Mode = uint32(mode)
	if p.lit(`,"size":`) {
		size, ok := p.num()
		if !ok || size == 0 {
			return e, false
		}
		e.Size = int64(size)
	}
	if p.lit(`,"sha256":"`) {
		h, ok := p.raw()
		if !ok || !decodeLowerHex(e.SHA256[:], h) || e.SHA256.IsZero() {
			return e, false
		}
	}
	if p.lit(`,"target":"`) {
		if e.Target, ok = p.str(); !ok || e.Target == "" {
			return e, false
		}
	}
	return e, p.lit("}")
}

// decodeLowerHex decodes s, exactly 2*len(dst) lower-case hex digits as
// hex.AppendEncode writes them, into dst.
func decodeLowerHex(dst, s []byte) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, lo := hexValue[s[2*i]], hexValue[s[2*i+1]]
		if hi|lo > 0xf {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

// hexValue maps a lower-case hex digit to its value, anything else to 0xff.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	return t
}()
