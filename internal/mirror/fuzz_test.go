package mirror_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// Fuzz targets of what a web node or a controller decodes from the other:
// manifests (both decoders), deltas, object streams, gzipped manifests and
// the controller's wire handler. Seeds are in testdata/fuzz/<target>;
// .ci/run runs each target for a few seconds, bench/fuzz for longer.

// seedManifest is a small tree with every entry type and a name that needs
// JSON escaping.
func seedManifest() *mirror.Manifest {
	return &mirror.Manifest{Entries: []mirror.Entry{
		{Path: "a", Type: mirror.TypeDir, Mode: 0o755},
		{Path: "a/empty", Type: mirror.TypeFile, Mode: 0o600},
		{Path: "a/index.php", Type: mirror.TypeFile, Mode: 0o644, Size: 12, SHA256: hashOf("x")},
		{Path: "a/link", Type: mirror.TypeSymlink, Mode: 0o777, Target: "index.php"},
		{Path: "a/quote\"d", Type: mirror.TypeFile, Mode: 0o4755, Size: 3, SHA256: hashOf("y")},
		{Path: "b", Type: mirror.TypeDir, Mode: 0o2775},
	}}
}

// FuzzDecodeManifest: the hand-written decoder of the canonical layout
// agrees with encoding/json or refuses, and accepts only the bytes the
// encoder writes; whatever DecodeManifest accepts re-encodes to a manifest
// that decodes to itself.
func FuzzDecodeManifest(f *testing.F) {
	m := seedManifest()
	f.Add(m.Encode())
	f.Add((&mirror.Manifest{}).Encode())
	f.Add([]byte("{\"version\":1,\"entries\":[\n{\"type\":\"dir\",\"path\":\"a\",\"mode\":493}\n]}\n"))
	f.Add([]byte(`{"entries":[],"version":1}`))
	f.Add([]byte("{\"version\":1,\"entries\":[\n{\"path\":\"a\",\"type\":\"file\",\"mode\":0,\"size\":0}\n]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := mirror.DecodeCanonical(data)
		version, slow, err := mirror.DecodeManifestJSON(data)
		if ok {
			if err != nil || version != mirror.ManifestVersion {
				t.Fatalf("fast path accepted what encoding/json refuses (version %d, %v)", version, err)
			}
			if !slices.Equal(fast.Entries, slow.Entries) {
				t.Fatalf("decoders disagree:\nfast %+v\njson %+v", fast.Entries, slow.Entries)
			}
			if !bytes.Equal(fast.Encode(), data) {
				t.Fatalf("fast path accepted bytes the encoder does not write")
			}
			if _, want := mirror.EncodeFrom(&mirror.Manifest{})(fast); !slices.Equal(mirror.EntryOffsets(data), want) {
				t.Fatalf("entry offsets %v, want %v", mirror.EntryOffsets(data), want)
			}
		}
		got, err := mirror.DecodeManifest(data, "")
		if err != nil {
			if !errors.Is(err, mirror.ErrBadManifest) {
				t.Fatalf("error %v is not ErrBadManifest", err)
			}
			return
		}
		again, err := mirror.DecodeManifest(got.Encode(), got.ID())
		if err != nil || !slices.Equal(again.Entries, got.Entries) {
			t.Fatalf("accepted manifest does not survive its own encoding: %v", err)
		}
	})
}

// fuzzManifest builds a manifest from fuzz input: one entry per
// '|'-separated name, sorted by path; kinds choose each entry's type (a
// fourth kind is unknown) and whether its mode keeps only ModeMask bits.
func fuzzManifest(names string, kinds []byte, size int64, mode uint32) *mirror.Manifest {
	parts := strings.Split(names, "|")
	var m mirror.Manifest
	for i, p := range parts {
		k := byte(i)
		if len(kinds) > 0 {
			k = kinds[i%len(kinds)]
		}
		e := mirror.Entry{Path: p, Mode: mode}
		if k&4 == 0 {
			e.Mode &= mirror.ModeMask
		}
		switch k % 4 {
		case 0:
			e.Type, e.Size, e.SHA256 = mirror.TypeFile, size>>(i%64), hashOf(p)
		case 1:
			e.Type = mirror.TypeDir
		case 2:
			e.Type, e.Target = mirror.TypeSymlink, parts[(i+1)%len(parts)]
		default:
			e.Type = mirror.Type(p)
		}
		m.Entries = append(m.Entries, e)
	}
	slices.SortStableFunc(m.Entries, func(a, b mirror.Entry) int { return strings.Compare(a.Path, b.Path) })
	return &m
}

func validUTF8(m *mirror.Manifest) bool {
	for _, e := range m.Entries {
		if !utf8.ValidString(e.Path) || !utf8.ValidString(string(e.Type)) || !utf8.ValidString(e.Target) {
			return false
		}
	}
	return true
}

// FuzzManifestRoundTrip: the encoder writes exactly encoding/json's form of
// any manifest; a manifest of valid UTF-8 decodes back to itself exactly
// when Validate accepts it.
func FuzzManifestRoundTrip(f *testing.F) {
	f.Add("a|a/b.php|a/c|a/d", []byte{1, 0, 2, 0}, int64(1<<40), uint32(0o644))
	f.Add("lib|lib/\"q\".php|lib/\\x|lib/\u2028", []byte{1, 0, 0, 2}, int64(7), uint32(0o755))
	f.Add("x|x/../y|/abs|z\x00", []byte{1, 0, 2, 3}, int64(-1), uint32(0o100644))
	f.Add("bad\xffutf8|d|d/e", []byte{0, 1, 6}, int64(0), uint32(0o7777))
	f.Fuzz(func(t *testing.T, names string, kinds []byte, size int64, mode uint32) {
		m := fuzzManifest(names, kinds, size, mode)
		data := m.Encode()
		if want := referenceEncode(m); !bytes.Equal(data, want) {
			t.Fatalf("encoding differs from encoding/json:\n%q\nwant\n%q", data, want)
		}
		got, err := mirror.DecodeManifest(data, m.ID())
		if !validUTF8(m) {
			return // encoding/json replaces invalid UTF-8; scan refuses such names
		}
		verr := m.Validate()
		if (err == nil) != (verr == nil) {
			t.Fatalf("decode: %v, but Validate: %v", err, verr)
		}
		if err == nil && !slices.Equal(got.Entries, m.Entries) {
			t.Fatalf("round trip changed the manifest:\n%+v\nwant\n%+v", got.Entries, m.Entries)
		}
	})
}

// dedupe drops entries whose path repeats the previous one.
func dedupe(m *mirror.Manifest) *mirror.Manifest {
	m.Entries = slices.CompactFunc(m.Entries, func(a, b mirror.Entry) bool { return a.Path == b.Path })
	return m
}

// FuzzDiffApply: a delta sent as JSON turns its base into exactly the new
// manifest, for any two sorted manifests.
func FuzzDiffApply(f *testing.F) {
	f.Add("a|a/b|a/c|d", "a|a/b|a/e|f", []byte{1, 0, 0, 2})
	f.Add("", "x|y|z", []byte{0})
	f.Add("m|n|o", "", []byte{2, 1})
	f.Fuzz(func(t *testing.T, baseNames, newNames string, kinds []byte) {
		base := dedupe(fuzzManifest(strings.ToValidUTF8(baseNames, "?"), kinds, 5, 0o644))
		next := dedupe(fuzzManifest(strings.ToValidUTF8(newNames, "?"), slices.Concat([]byte{3}, kinds), 9, 0o600))
		wire, err := json.Marshal(mirror.Diff("base", base, next))
		if err != nil {
			t.Fatal(err)
		}
		var d mirror.Delta
		if err := json.Unmarshal(wire, &d); err != nil {
			t.Fatal(err)
		}
		got, err := d.Apply(base)
		if err != nil {
			t.Fatalf("apply a computed delta: %v", err)
		}
		if !slices.Equal(got.Entries, next.Entries) {
			t.Fatalf("apply(diff) differs:\n%+v\nwant\n%+v", got.Entries, next.Entries)
		}
		if spliced, _ := mirror.EncodeFrom(base)(got); !bytes.Equal(spliced, next.Encode()) {
			t.Fatalf("spliced encoding differs:\n%q\nwant\n%q", spliced, next.Encode())
		}
	})
}

// applyByMap is the meaning of a delta, written the slow and obvious way.
func applyByMap(base *mirror.Manifest, d *mirror.Delta) []mirror.Entry {
	m := map[string]mirror.Entry{}
	for _, e := range base.Entries {
		m[e.Path] = e
	}
	for _, p := range d.Removed {
		delete(m, p)
	}
	for _, e := range d.Upsert {
		m[e.Path] = e
	}
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b mirror.Entry) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// FuzzDeltaJSON: a delta as a controller could send it: Apply never
// panics, refuses an unsorted delta, and whatever valid manifest it makes
// is the one the delta means.
func FuzzDeltaJSON(f *testing.F) {
	base := seedManifest()
	next := &mirror.Manifest{Entries: slices.Clone(base.Entries[:4])}
	next.Entries = append(next.Entries, mirror.Entry{Path: "c", Type: mirror.TypeFile, Mode: 0o644, Size: 1, SHA256: hashOf("c")})
	seed, _ := json.Marshal(mirror.Diff(base.ID(), base, next))
	f.Add(seed)
	f.Add([]byte(`{"base":"x","upsert":[{"path":"a","type":"dir","mode":493},{"path":"a","type":"dir","mode":448}],"removed":["b"]}`))
	f.Add([]byte(`{"upsert":null,"removed":["z","a"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d mirror.Delta
		if json.Unmarshal(data, &d) != nil {
			return
		}
		got, err := d.Apply(base)
		sorted := slices.IsSortedFunc(d.Upsert, func(a, b mirror.Entry) int { return strings.Compare(a.Path, b.Path) }) &&
			slices.IsSorted(d.Removed)
		if (err == nil) != sorted {
			t.Fatalf("apply: %v, delta sorted: %v", err, sorted)
		}
		if err != nil || got.Validate() != nil {
			return
		}
		if want := applyByMap(base, &d); !slices.Equal(got.Entries, want) {
			t.Fatalf("apply made\n%+v\nthe delta means\n%+v", got.Entries, want)
		}
	})
}

// writeFrames encodes objects as an object stream.
func writeFrames(tb testing.TB, objects [][]byte) []byte {
	var b bytes.Buffer
	for _, o := range objects {
		if err := mirror.WriteFrameHeader(&b, sha256.Sum256(o), int64(len(o))); err != nil {
			tb.Fatal(err)
		}
		b.Write(o)
	}
	return b.Bytes()
}

// FuzzObjectStream: any byte stream read as a response of want objects
// either fails or hands over exactly want frames that account for every
// byte; objects written as a stream come back unchanged.
func FuzzObjectStream(f *testing.F) {
	f.Add(writeFrames(f, [][]byte{[]byte("<?php"), {}, []byte("body{}")}), uint8(3), true)
	f.Add(writeFrames(f, [][]byte{[]byte("x")})[:30], uint8(1), false)
	f.Add(append(writeFrames(f, [][]byte{[]byte("x")}), 1, 2, 3), uint8(1), true)
	f.Fuzz(func(t *testing.T, stream []byte, want uint8, readAll bool) {
		frames, total := 0, int64(0)
		err := mirror.ReadFrames(bytes.NewReader(stream), int(want), func(h mirror.Hash, size int64, r io.Reader) error {
			frames++
			total += mirror.FrameHeaderSize + size
			if !readAll {
				_, err := io.CopyN(io.Discard, r, size/2)
				return err
			}
			n, err := io.Copy(io.Discard, r)
			if err == nil && n != size {
				t.Fatalf("frame of %d bytes gave %d", size, n)
			}
			return err
		})
		if err == nil && (frames != int(want) || total != int64(len(stream))) {
			t.Fatalf("accepted %d frames (%d bytes) of %d asked, stream of %d bytes", frames, total, want, len(stream))
		}

		objects := bytes.Split(stream, []byte{0xff})
		var got [][]byte
		err = mirror.ReadFrames(bytes.NewReader(writeFrames(t, objects)), len(objects), func(h mirror.Hash, size int64, r io.Reader) error {
			b, err := io.ReadAll(r)
			if h != sha256.Sum256(b) {
				t.Fatalf("frame %d: hash does not match its content", len(got))
			}
			got = append(got, b)
			return err
		})
		if err != nil || !slices.EqualFunc(got, objects, bytes.Equal) {
			t.Fatalf("round trip: %v, %d of %d objects", err, len(got), len(objects))
		}
	})
}

// gzipWriter is reused: a new one allocates its compressor (about a
// megabyte), which would make the fuzz target mostly garbage collection.
var gzipWriter = gzip.NewWriter(io.Discard)

// gzipBytes compresses data as the controller does.
func gzipBytes(data []byte) []byte {
	var b bytes.Buffer
	gzipWriter.Reset(&b)
	gzipWriter.Write(data)
	gzipWriter.Close()
	return b.Bytes()
}

// FuzzGunzip: a gzipped manifest as a controller could send it (well
// formed, with a lying size trailer, with data appended, or any bytes) is
// either refused or decompressed to exactly its content, within the limit.
func FuzzGunzip(f *testing.F) {
	gz := gzipBytes(seedManifest().Encode())
	f.Add(seedManifest().Encode(), []byte(nil), uint32(0), uint8(0))
	f.Add(seedManifest().Encode(), []byte(nil), uint32(10), uint8(1))
	f.Add(seedManifest().Encode(), gz, uint32(0), uint8(3))
	f.Add([]byte(nil), gz[:len(gz)-4], uint32(0), uint8(2))
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, content, raw []byte, isize uint32, mode uint8) {
		var in []byte
		switch mode % 4 {
		case 0:
			in = gzipBytes(content)
		case 1: // the size trailer lies
			in = gzipBytes(content)
			binary.LittleEndian.PutUint32(in[len(in)-4:], isize)
		case 2:
			in, content = raw, nil
		case 3: // a second member or garbage after the first
			in = slices.Concat(gzipBytes(content), raw)
		}
		out, err := mirror.GunzipLimited(in, limit)
		if err != nil {
			return
		}
		if len(out) > limit {
			t.Fatalf("%d bytes, above the limit", len(out))
		}
		if content == nil {
			zr, err := gzip.NewReader(bytes.NewReader(in))
			if err != nil {
				t.Fatalf("accepted what gzip refuses: %v", err)
			}
			if content, err = io.ReadAll(io.LimitReader(zr, 2*limit)); err != nil {
				t.Fatalf("accepted what gzip refuses: %v", err)
			}
		}
		if !bytes.Equal(out, content) {
			t.Fatalf("decompressed %d bytes, the content is %d", len(out), len(content))
		}
	})
}

// FuzzHandler sends the controller's wire handler arbitrary requests: it
// never fails with a 5xx, every refusal is a problem document, an object
// stream carries exactly the objects asked with their content, and a delta
// turns its base into the manifest asked for.
func FuzzHandler(f *testing.F) {
	st, _, rev1, rev2 := twoRevisions(f)
	h := st.Handler()
	manifests := map[string]*mirror.Manifest{}
	for _, id := range []string{rev1.ID, rev2.ID} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/manifests/"+id, nil))
		m, err := mirror.DecodeManifest(rec.Body.Bytes(), id)
		if err != nil {
			f.Fatal(err)
		}
		manifests[id] = m
	}
	some := manifests[rev2.ID].Entries[1].SHA256
	f.Add(false, "revisions", "", []byte(nil), false)
	f.Add(false, "revisions/"+rev1.ID, "", []byte(nil), true)
	f.Add(false, "manifests/"+rev2.ID, "", []byte(nil), true)
	f.Add(false, "manifests/"+rev2.ID, "base="+rev1.ID, []byte(nil), false)
	f.Add(true, "objects", "", []byte(`{"objects":["`+some.String()+`","`+some.String()+`"]}`), false)
	f.Add(true, "objects", "", []byte(`{"objects":["00"]}`), false)
	f.Fuzz(func(t *testing.T, post bool, path, query string, body []byte, gz bool) {
		method := http.MethodGet
		if post {
			method = http.MethodPost
		}
		req := httptest.NewRequest(method, "/", bytes.NewReader(body))
		req.URL = &url.URL{Path: "/" + path, RawQuery: query}
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		resp := rec.Result()
		switch {
		case resp.StatusCode >= 500:
			t.Fatalf("%s %s?%s: %d %s", method, path, query, resp.StatusCode, rec.Body)
		case resp.StatusCode >= 400 && resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotFound ||
			resp.Header.Get("Content-Type") == "application/problem+json":
			var p struct{ Status int }
			if json.Unmarshal(rec.Body.Bytes(), &p) != nil || p.Status != resp.StatusCode {
				t.Fatalf("%d without a problem document: %q", resp.StatusCode, rec.Body)
			}
		case resp.StatusCode == http.StatusOK && method == http.MethodPost:
			checkObjects(t, body, rec.Body.Bytes())
		case resp.StatusCode == http.StatusOK && strings.HasPrefix(path, "manifests/") && req.URL.Query().Get("base") != "":
			checkDelta(t, manifests, strings.TrimPrefix(path, "manifests/"), req.URL.Query().Get("base"), rec)
		}
	})
}

// checkObjects checks an object stream against the request that got it.
func checkObjects(t *testing.T, reqBody, stream []byte) {
	var req mirror.ObjectsRequest
	if err := json.NewDecoder(bytes.NewReader(reqBody)).Decode(&req); err != nil {
		t.Fatalf("200 for a request that does not decode: %v", err)
	}
	i := 0
	err := mirror.ReadFrames(bytes.NewReader(stream), len(req.Objects), func(h mirror.Hash, size int64, r io.Reader) error {
		b, err := io.ReadAll(r)
		if h != req.Objects[i] || sha256.Sum256(b) != h {
			t.Fatalf("frame %d is not object %s", i, req.Objects[i])
		}
		i++
		return err
	})
	if err != nil {
		t.Fatalf("object stream: %v", err)
	}
}

// checkDelta checks a served delta against the manifests it joins.
func checkDelta(t *testing.T, manifests map[string]*mirror.Manifest, id, base string, rec *httptest.ResponseRecorder) {
	body := rec.Body.Bytes()
	if rec.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	var d mirror.Delta
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("delta: %v", err)
	}
	got, err := d.Apply(manifests[base])
	if err != nil || got.ID() != id {
		t.Fatalf("delta %s..%s does not make %s: %v", base, id, id, err)
	}
}
