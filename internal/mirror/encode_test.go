package mirror_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// TestEncodeFromSplicesExactly: a manifest encoded by copying the lines
// it shares with a base is byte for byte its canonical encoding, and the
// entry offsets are those the decoder finds in it, for random edits
// (changed, added, removed, escaped entries; runs at both ends).
func TestEncodeFromSplicesExactly(t *testing.T) {
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 13))
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h", `q"uote`, "tab\t", "ü"}
	random := func(p string) mirror.Entry {
		switch r.IntN(3) {
		case 0:
			return mirror.Entry{Path: p, Type: mirror.TypeFile, Mode: 0o644, Size: int64(r.IntN(3)), SHA256: mirror.Hash{byte(r.IntN(3))}}
		case 1:
			return mirror.Entry{Path: p, Type: mirror.TypeDir, Mode: uint32(r.IntN(2)) * 0o755}
		}
		return mirror.Entry{Path: p, Type: mirror.TypeSymlink, Mode: 0o777, Target: names[r.IntN(len(names))]}
	}
	randomManifest := func() *mirror.Manifest {
		var m mirror.Manifest
		for _, n := range names {
			if r.IntN(3) > 0 {
				m.Entries = append(m.Entries, random(n))
			}
		}
		slices.SortFunc(m.Entries, func(a, b mirror.Entry) int { return strings.Compare(a.Path, b.Path) })
		return &m
	}
	for range 5000 {
		base := randomManifest()
		next := &mirror.Manifest{}
		for _, e := range base.Entries {
			switch r.IntN(5) {
			case 0: // removed
			case 1:
				next.Entries = append(next.Entries, random(e.Path))
			default:
				next.Entries = append(next.Entries, e)
			}
		}
		for _, e := range randomManifest().Entries {
			if _, ok := base.Lookup(e.Path); !ok && r.IntN(2) == 0 {
				next.Entries = append(next.Entries, e)
			}
		}
		slices.SortFunc(next.Entries, func(a, b mirror.Entry) int { return strings.Compare(a.Path, b.Path) })
		got, off := mirror.EncodeFrom(base)(next)
		want := next.Encode()
		if !bytes.Equal(got, want) {
			t.Fatalf("seed %d: base %+v, next %+v:\nspliced %q\nwant    %q", seed, base.Entries, next.Entries, got, want)
		}
		_, wantOff := mirror.EncodeFrom(&mirror.Manifest{})(next)
		if decoded := mirror.EntryOffsets(want); decoded != nil {
			wantOff = decoded
		}
		if !slices.Equal(off, wantOff) || len(off) != len(next.Entries) {
			t.Fatalf("seed %d: offsets %v, want %v", seed, off, wantOff)
		}
	}
}

// BenchmarkManifestFromDelta: the canonical bytes of a 52k-entry manifest
// after a one-entry change, spliced from the base's or encoded whole.
func BenchmarkManifestFromDelta(b *testing.B) {
	base := benchManifest()
	next := &mirror.Manifest{Entries: slices.Clone(base.Entries)}
	next.Entries[len(next.Entries)/2].Size++
	splice := mirror.EncodeFrom(base)
	b.Run("splice", func(b *testing.B) {
		for b.Loop() {
			splice(next)
		}
	})
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			next.Encode()
		}
	})
}
