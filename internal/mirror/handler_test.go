package mirror_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

type problem struct {
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Status  int      `json:"status"`
	Detail  string   `json:"detail"`
	Missing []string `json:"missing"`
}

// checkProblem checks that a response is a problem document with status.
func checkProblem(t testing.TB, resp *http.Response, body []byte, status int) problem {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %s, want %d: %s", resp.Status, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q", ct)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Status != status || p.Title == "" || p.Type == "" || p.Detail == "" {
		t.Fatalf("problem %+v", p)
	}
	return p
}

// twoRevisions publishes two revisions of a tree and serves the store.
func twoRevisions(t testing.TB) (st *mirror.Store, base string, rev1, rev2 mirror.Revision) {
	t.Helper()
	src := t.TempDir()
	tree := map[string]string{}
	for i := range 60 {
		tree[fmt.Sprintf("lib/module%02d/version.php", i)] = fmt.Sprintf("<?php $plugin->version = %d;", i)
	}
	stWrite(t, src, tree)
	st = stOpen(t, mirror.StoreConfig{Source: src})
	rev1, _ = stPublish(t, st)
	stWrite(t, src, map[string]string{"lib/module07/version.php": "changed", "new/file.php": "new"})
	mustDo(t, os.Remove(filepath.Join(src, "lib/module09/version.php")))
	rev2, _ = stPublish(t, st)
	return st, stServe(t, st), rev1, rev2
}

func TestHandlerRevisions(t *testing.T) {
	_, base, rev1, rev2 := twoRevisions(t)
	resp, body := stGet(t, base+"/revisions")
	var revs []mirror.Revision
	if err := json.Unmarshal(body, &revs); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /revisions: %s %v %s", resp.Status, err, body)
	}
	if len(revs) != 2 || !sameRevision(revs[0], rev1) || !sameRevision(revs[1], rev2) {
		t.Fatalf("revisions %+v", revs)
	}
	resp, body = stGet(t, base+"/revisions/"+rev2.ID)
	var one mirror.Revision
	if err := json.Unmarshal(body, &one); err != nil || resp.StatusCode != http.StatusOK || !sameRevision(one, rev2) {
		t.Fatalf("GET /revisions/{id}: %s %v %s", resp.Status, err, body)
	}
	resp, body = stGet(t, base+"/revisions/"+strings.Repeat("0", 64))
	checkProblem(t, resp, body, http.StatusNotFound)

	empty := stServe(t, stOpen(t, mirror.StoreConfig{Source: t.TempDir()}))
	if _, body := stGet(t, empty+"/revisions"); strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("empty store lists %s", body)
	}
}

func TestHandlerManifest(t *testing.T) {
	_, base, _, rev2 := twoRevisions(t)
	resp, plain := stGet(t, base+"/manifests/"+rev2.ID)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(plain)) || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("plain: %s, length %d of %d, encoding %q", resp.Status, resp.ContentLength, len(plain), resp.Header.Get("Content-Encoding"))
	}
	if _, err := mirror.DecodeManifest(plain, rev2.ID); err != nil {
		t.Fatal(err)
	}

	resp, gz := stGet(t, base+"/manifests/"+rev2.ID, "Accept-Encoding", "deflate, gzip;q=0.8")
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.ContentLength != int64(len(gz)) || len(gz) >= len(plain)/2 {
		t.Fatalf("gzip: encoding %q, length %d of %d, plain %d", resp.Header.Get("Content-Encoding"), resp.ContentLength, len(gz), len(plain))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	mustDo(t, err)
	unzipped, err := io.ReadAll(zr)
	mustDo(t, err)
	if !bytes.Equal(unzipped, plain) {
		t.Fatal("gzipped manifest differs")
	}
	resp, _ = stGet(t, base+"/manifests/"+rev2.ID, "Accept-Encoding", "gzip;q=0")
	if resp.Header.Get("Content-Encoding") != "" {
		t.Error("gzip sent though refused")
	}

	// Go's transport negotiates and decompresses by itself.
	hresp, err := http.Get(base + "/manifests/" + rev2.ID)
	mustDo(t, err)
	body, err := io.ReadAll(hresp.Body)
	hresp.Body.Close()
	mustDo(t, err)
	if !hresp.Uncompressed || !bytes.Equal(body, plain) {
		t.Errorf("transport: uncompressed %v, equal %v", hresp.Uncompressed, bytes.Equal(body, plain))
	}

	resp, _ = stGet(t, base+"/manifests/"+rev2.ID, "If-None-Match", `"`+rev2.ID+`"`)
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %s", resp.Status)
	}

	resp, body = stGet(t, base+"/manifests/"+strings.Repeat("ab", 32))
	checkProblem(t, resp, body, http.StatusNotFound)
}

func TestHandlerDelta(t *testing.T) {
	_, base, rev1, rev2 := twoRevisions(t)
	m1 := stManifest(t, base, rev1.ID)
	resp, body := stGet(t, base+"/manifests/"+rev2.ID+"?base="+rev1.ID)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("delta: %s %s", resp.Status, body)
	}
	var d mirror.Delta
	mustDo(t, json.Unmarshal(body, &d))
	if d.Base != rev1.ID || len(d.Removed) != 1 || len(d.Upsert) != 3 { // changed file, new dir, new file
		t.Errorf("delta %+v", d)
	}
	m2, err := d.Apply(m1)
	mustDo(t, err)
	if m2.ID() != rev2.ID {
		t.Errorf("delta applied gives %s, want %s", m2.ID(), rev2.ID)
	}

	unknown := strings.Repeat("0", 64)
	resp, body = stGet(t, base+"/manifests/"+rev2.ID+"?base="+unknown)
	if p := checkProblem(t, resp, body, http.StatusNotFound); !strings.Contains(p.Detail, unknown) {
		t.Errorf("problem %+v does not name the base", p)
	}
	resp, body = stGet(t, base+"/manifests/"+unknown+"?base="+rev1.ID)
	checkProblem(t, resp, body, http.StatusNotFound)
}

func TestHandlerObjectsFraming(t *testing.T) {
	src := t.TempDir()
	big := bigContent("big", 2<<20+3)
	stWrite(t, src, map[string]string{"a": "alpha", "empty": "", "big": big})
	st := stOpen(t, mirror.StoreConfig{Source: src})
	stPublish(t, st)
	base := stServe(t, st)
	want := []string{"alpha", "", big, "alpha"} // order kept, duplicates repeated
	var hashes []mirror.Hash
	for _, c := range want {
		hashes = append(hashes, hashOf(c))
	}
	frames := stObjects(t, base, hashes)
	if len(frames) != len(want) {
		t.Fatalf("%d frames, want %d", len(frames), len(want))
	}
	for i, f := range frames {
		if f.hash != hashes[i] || string(f.data) != want[i] {
			t.Errorf("frame %d: %s %q", i, f.hash, trunc(f.data))
		}
	}
	if frames := stObjects(t, base, nil); len(frames) != 0 {
		t.Errorf("%d frames for no object", len(frames))
	}
}

func TestHandlerObjectsErrors(t *testing.T) {
	src := t.TempDir()
	stWrite(t, src, map[string]string{"a": "alpha"})
	st := stOpen(t, mirror.StoreConfig{Source: src})
	stPublish(t, st)
	base := stServe(t, st)

	hashes := []mirror.Hash{hashOf("alpha")}
	for i := range 12 {
		hashes = append(hashes, hashOf(fmt.Sprint("unknown", i)))
	}
	body, _ := json.Marshal(mirror.ObjectsRequest{Objects: hashes})
	resp, data := stPostObjects(t, base, body)
	p := checkProblem(t, resp, data, http.StatusNotFound)
	if len(p.Missing) != 10 || p.Missing[0] != hashes[1].String() || !strings.Contains(p.Detail, "12") {
		t.Errorf("problem %+v", p)
	}

	body, _ = json.Marshal(mirror.ObjectsRequest{Objects: make([]mirror.Hash, mirror.MaxObjectsPerRequest+1)})
	resp, data = stPostObjects(t, base, body)
	checkProblem(t, resp, data, http.StatusRequestEntityTooLarge)

	resp, data = stPostObjects(t, base, []byte(`{"objects": ["nothex"]}`))
	checkProblem(t, resp, data, http.StatusBadRequest)

	resp, data = stPostObjects(t, base, bytes.Repeat([]byte(" "), 3<<20))
	checkProblem(t, resp, data, http.StatusRequestEntityTooLarge)

	if resp, _ := stGet(t, base+"/objects"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /objects: %s", resp.Status)
	}
}

// A request streaming from a pack finishes intact even if the pack is
// garbage-collected meanwhile.
func TestHandlerStreamsWhileGarbageCollected(t *testing.T) {
	src := t.TempDir()
	big := bigContent("big", 8<<20)
	stWrite(t, src, map[string]string{"big": big})
	dir := t.TempDir()
	st := stOpen(t, mirror.StoreConfig{Dir: dir, Source: src, Keep: 1})
	stPublish(t, st)
	base := stServe(t, st)

	body, _ := json.Marshal(mirror.ObjectsRequest{Objects: []mirror.Hash{hashOf(big)}})
	resp, err := http.Post(base+"/objects", "application/json", bytes.NewReader(body))
	mustDo(t, err)
	defer resp.Body.Close()
	h, size, err := mirror.ReadFrameHeader(resp.Body)
	if err != nil || h != hashOf(big) || size != int64(len(big)) {
		t.Fatalf("header %s %d %v", h, size, err)
	}

	mustDo(t, os.Remove(filepath.Join(src, "big")))
	stWrite(t, src, map[string]string{"small": "small"})
	stPublish(t, st)
	if n, _ := packBytes(t, dir); n != int64(len("small")) {
		t.Fatalf("packs hold %d bytes: the big one was not collected", n)
	}

	got, err := io.ReadAll(resp.Body)
	mustDo(t, err)
	if string(got) != big {
		t.Fatalf("streamed %d bytes, want the %d of the collected object", len(got), len(big))
	}
}

// The web side's Client reads what the handler serves.
func TestHandlerServesClient(t *testing.T) {
	_, base, rev1, rev2 := twoRevisions(t)
	c := mirror.NewClient(base, nil)
	ctx := context.Background()
	data, err := c.Manifest(ctx, rev2.ID)
	mustDo(t, err)
	m2, err := mirror.DecodeManifest(data, rev2.ID)
	mustDo(t, err)
	d, err := c.Delta(ctx, rev2.ID, rev1.ID)
	mustDo(t, err)
	m1 := stManifest(t, base, rev1.ID)
	if applied, err := d.Apply(m1); err != nil || applied.ID() != rev2.ID {
		t.Fatalf("delta: %v", err)
	}
	var hashes []mirror.Hash
	for _, e := range m2.Entries {
		if e.Type == mirror.TypeFile {
			hashes = append(hashes, e.SHA256)
		}
	}
	n := 0
	err = c.Objects(ctx, hashes, func(h mirror.Hash, size int64, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil || hashOf(string(b)) != h || int64(len(b)) != size {
			return fmt.Errorf("object %s: %v", h, err)
		}
		n++
		return nil
	})
	if err != nil || n != len(hashes) {
		t.Fatalf("objects: %d of %d, %v", n, len(hashes), err)
	}
	if got, err := c.Revision(ctx, rev1.ID); err != nil || got.ID != rev1.ID {
		t.Fatalf("revision: %v", err)
	}
}

// referenceEncode is the canonical encoding spelt with encoding/json.
func referenceEncode(m *mirror.Manifest) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\"version\":%d,\"entries\":[", mirror.ManifestVersion)
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for i := range m.Entries {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
		enc.Encode(&m.Entries[i])
		b.Truncate(b.Len() - 1)
	}
	b.WriteString("\n]}\n")
	return b.Bytes()
}

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	names := []string{
		"plain.php", "a b", `quote"d`, `back\slash`, "tab\tnew\nline\rcr", "ctl\x01\x1f\x7f",
		"<html>&amp;", "ünïcødé", "line\u2028sep\u2029", "emoji😀", "bad\xffutf8", "\b\f",
	}
	var m mirror.Manifest
	for i, n := range names {
		dir := fmt.Sprintf("d%02d", i)
		m.Entries = append(m.Entries,
			mirror.Entry{Path: dir, Type: mirror.TypeDir, Mode: 0o2755},
			mirror.Entry{Path: dir + "/" + n, Type: mirror.TypeFile, Mode: 0o644, Size: int64(i), SHA256: hashOf(n)},
			mirror.Entry{Path: dir + "/empty", Type: mirror.TypeFile, Mode: 0o600},
			mirror.Entry{Path: dir + "/link", Type: mirror.TypeSymlink, Mode: 0o777, Target: n},
		)
	}
	if got, want := m.Encode(), referenceEncode(&m); !bytes.Equal(got, want) {
		t.Fatalf("fast encoding differs:\n%s\nwant\n%s", got, want)
	}
	empty := mirror.Manifest{}
	if got, want := empty.Encode(), referenceEncode(&empty); !bytes.Equal(got, want) {
		t.Fatalf("empty manifest: %q, want %q", got, want)
	}
}

// TestDecodeCanonical: the hand-written decoder of the canonical layout
// gives what encoding/json gives, takes only bytes encodeManifest writes,
// and leaves everything else (escaped strings, other layouts) to
// encoding/json.
func TestDecodeCanonical(t *testing.T) {
	plain := mirror.Manifest{Entries: []mirror.Entry{
		{Path: "a", Type: mirror.TypeDir, Mode: 0o755},
		{Path: "a/empty", Type: mirror.TypeFile, Mode: 0o600},
		{Path: "a/index.php", Type: mirror.TypeFile, Mode: 0o644, Size: 1 << 40, SHA256: hashOf("x")},
		{Path: "a/link", Type: mirror.TypeSymlink, Mode: 0o777, Target: "index.php"},
		{Path: "b c", Type: mirror.TypeFile, Mode: 0o4755, Size: 3, SHA256: hashOf("y")},
	}}
	got, ok := mirror.DecodeCanonical(plain.Encode())
	if !ok || !reflect.DeepEqual(got, &plain) {
		t.Fatalf("fast path: %v %+v, want %+v", ok, got, plain)
	}
	if got, ok := mirror.DecodeCanonical((&mirror.Manifest{}).Encode()); !ok || len(got.Entries) != 0 {
		t.Fatalf("empty manifest: %v %+v", ok, got)
	}
	x := hashOf("x")
	xHex := hex.EncodeToString(x[:])
	escaped := mirror.Manifest{Entries: []mirror.Entry{{Path: `quote"d`, Type: mirror.TypeFile, Mode: 0o644}}}
	for name, data := range map[string][]byte{
		"escaped path":    escaped.Encode(),
		"leading zero":    bytes.Replace(plain.Encode(), []byte(`"mode":493`), []byte(`"mode":0493`), 1),
		"spaces":          bytes.Replace(plain.Encode(), []byte(`,"type"`), []byte(`, "type"`), 1),
		"field order":     []byte("{\"version\":1,\"entries\":[\n{\"type\":\"dir\",\"path\":\"a\",\"mode\":493}\n]}\n"),
		"upper-case hash": bytes.Replace(plain.Encode(), []byte(xHex), []byte(strings.ToUpper(xHex)), 1),
		"zero mode twice": bytes.Replace(plain.Encode(), []byte(`"mode":420`), []byte(`"mode":00`), 1),
		"size zero":       bytes.Replace(plain.Encode(), []byte(`"mode":384}`), []byte(`"mode":384,"size":0}`), 1),
		"size with zero":  bytes.Replace(plain.Encode(), []byte(`"size":3,`), []byte(`"size":03,`), 1),
		"zero hash":       bytes.Replace(plain.Encode(), []byte(`"mode":384}`), []byte(`"mode":384,"sha256":"`+strings.Repeat("0", 64)+`"}`), 1),
		"empty target":    bytes.Replace(plain.Encode(), []byte(`"mode":384}`), []byte(`"mode":384,"target":""}`), 1),
		"short hash":      bytes.Replace(plain.Encode(), []byte(xHex), []byte(xHex[:62]), 1),
		"trailing data":   append(plain.Encode(), ' '),
		"truncated":       plain.Encode()[:60],
	} {
		if _, ok := mirror.DecodeCanonical(data); ok {
			t.Errorf("%s: fast path accepted %q", name, data)
		}
	}
	// DecodeManifest falls back to encoding/json for what the fast path
	// refuses, and gets the same manifest either way.
	for _, m := range []mirror.Manifest{plain, escaped} {
		got, err := mirror.DecodeManifest(m.Encode(), m.ID())
		if err != nil || !reflect.DeepEqual(got, &m) {
			t.Fatalf("DecodeManifest: %+v %v, want %+v", got, err, m)
		}
	}
}

// benchManifest is a manifest of the 3x tree's size: 52,275 files.
func benchManifest() *mirror.Manifest {
	var m mirror.Manifest
	for i := range 52275 {
		m.Entries = append(m.Entries, mirror.Entry{
			Path: fmt.Sprintf("lib-some-module-d%03d-file-%05d.php", i/1000, i), Type: mirror.TypeFile,
			Mode: 0o644, Size: int64(i + 1), SHA256: hashOf(fmt.Sprint(i)),
		})
	}
	slices.SortFunc(m.Entries, func(a, b mirror.Entry) int { return strings.Compare(a.Path, b.Path) })
	return &m
}

// BenchmarkDecodeManifest decodes a manifest the size of the 3x tree
// (52k entries): the fast path against encoding/json (an escaped last
// entry forces the fallback).
func BenchmarkDecodeManifest(b *testing.B) {
	m := *benchManifest()
	escaped := mirror.Manifest{Entries: append(slices.Clone(m.Entries), mirror.Entry{Path: "zz\"q", Type: mirror.TypeFile, Mode: 0o644})}
	for name, mm := range map[string]*mirror.Manifest{"canonical": &m, "encoding-json": &escaped} {
		data := mm.Encode()
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := mirror.DecodeManifest(data, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
