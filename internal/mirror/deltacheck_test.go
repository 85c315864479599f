package mirror_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// ValidateDelta must accept exactly what Validate accepts of a delta's
// result, for a valid base: random deltas over a small tree, many of them
// broken on purpose (orphans, a directory turned file with children left,
// links out of the tree or redirected through a changed link, bad paths,
// repeated entries).
func TestValidateDeltaAgreesWithValidate(t *testing.T) {
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 5))
	names := []string{"a", "a/b", "a/b/c", "a/d", "e", "e/f", "g", "../x", "a//b", "h"}
	targets := []string{"b", "..", "../..", "d/..", "c", "/etc", "f/../../.."}
	randomEntry := func() mirror.Entry {
		e := mirror.Entry{Path: names[r.IntN(len(names))], Mode: 0o755}
		switch r.IntN(3) {
		case 0:
			e.Type, e.Size, e.SHA256 = mirror.TypeFile, 3, mirror.Hash{byte(r.IntN(3) + 1)}
		case 1:
			e.Type = mirror.TypeDir
		default:
			e.Type, e.Target = mirror.TypeSymlink, targets[r.IntN(len(targets))]
		}
		return e
	}
	agreed, rejected := 0, 0
	for range 20000 {
		// A valid base: random entries until Validate accepts.
		var base *mirror.Manifest
		for base == nil {
			var ents []mirror.Entry
			for range r.IntN(6) {
				ents = append(ents, randomEntry())
			}
			slices.SortFunc(ents, func(a, b mirror.Entry) int { return cmpString(a.Path, b.Path) })
			ents = slices.CompactFunc(ents, func(a, b mirror.Entry) bool { return a.Path == b.Path })
			if m := (&mirror.Manifest{Entries: ents}); m.Validate() == nil {
				base = m
			}
		}
		d := &mirror.Delta{Upsert: []mirror.Entry{}, Removed: []string{}}
		for range r.IntN(3) {
			d.Upsert = append(d.Upsert, randomEntry())
		}
		slices.SortFunc(d.Upsert, func(a, b mirror.Entry) int { return cmpString(a.Path, b.Path) })
		for _, e := range base.Entries {
			if r.IntN(4) == 0 {
				d.Removed = append(d.Removed, e.Path)
			}
		}
		m, err := d.Apply(base)
		if err != nil {
			continue
		}
		full, quick := m.Validate(), mirror.ValidateDelta(base, d, m)
		if (full == nil) != (quick == nil) {
			t.Fatalf("seed %d: base %v, delta %+v: Validate says %v, ValidateDelta says %v",
				seed, base.Entries, *d, full, quick)
		}
		agreed++
		if full != nil {
			rejected++
		}
	}
	if rejected == 0 || rejected == agreed {
		t.Fatalf("%d of %d deltas rejected: the cases do not cover both outcomes", rejected, agreed)
	}
	t.Logf("seed %d: %d deltas, %d rejected by both", seed, agreed, rejected)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
