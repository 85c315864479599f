package mirror_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
	"golang.org/x/sys/unix"
)

// stWrite writes files (relative path → content) under root with mode
// 0644, creating parent directories.
func stWrite(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stOpen opens a store on cfg (Dir defaults to a new temporary directory)
// and closes it at the end of the test.
func stOpen(t testing.TB, cfg mirror.StoreConfig) *mirror.Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	st := mirror.NewStore(cfg)
	if err := st.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func stPublish(t testing.TB, st *mirror.Store) (mirror.Revision, bool) {
	t.Helper()
	rev, created, err := st.Publish(context.Background(), "test")
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	st.WaitCollected() // what the publish made garbage is gone
	return rev, created
}

// stServe serves the store's handler under /mirror on 127.0.0.1 and returns
// the base URL.
func stServe(t testing.TB, st *mirror.Store) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/mirror/", http.StripPrefix("/mirror", st.Handler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/mirror"
}

// stGet fetches url without transparent decompression.
func stGet(t testing.TB, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func stManifest(t testing.TB, base, id string) *mirror.Manifest {
	t.Helper()
	resp, body := stGet(t, base+"/manifests/"+id)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest %s: %s %s", id, resp.Status, body)
	}
	m, err := mirror.DecodeManifest(body, id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type stFrame struct {
	hash mirror.Hash
	data []byte
}

// stPostObjects posts an objects request and returns the response.
func stPostObjects(t testing.TB, base string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(base+"/objects", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// stObjects fetches hashes and parses the object stream.
func stObjects(t testing.TB, base string, hashes []mirror.Hash) []stFrame {
	t.Helper()
	body, _ := json.Marshal(mirror.ObjectsRequest{Objects: hashes})
	resp, data := stPostObjects(t, base, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST objects: %s %s", resp.Status, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != mirror.ObjectsContentType {
		t.Fatalf("content type %q", ct)
	}
	if resp.ContentLength != int64(len(data)) {
		t.Fatalf("Content-Length %d, body %d bytes", resp.ContentLength, len(data))
	}
	r := bytes.NewReader(data)
	var frames []stFrame
	for {
		h, size, err := mirror.ReadFrameHeader(r)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatalf("object %s: %v", h, err)
		}
		frames = append(frames, stFrame{hash: h, data: b})
	}
	return frames
}

// stCheckServes checks that revision id is served with exactly the files
// want (path → content), byte for byte.
func stCheckServes(t testing.TB, base, id string, want map[string]string) {
	t.Helper()
	m := stManifest(t, base, id)
	got := map[string]mirror.Entry{}
	var hashes []mirror.Hash
	for _, e := range m.Entries {
		if e.Type == mirror.TypeFile {
			got[e.Path] = e
			hashes = append(hashes, e.SHA256)
		}
	}
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
		t.Fatalf("revision %.8s files %v, want %v", id, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	frames := stObjects(t, base, hashes)
	if len(frames) != len(hashes) {
		t.Fatalf("%d frames for %d objects", len(frames), len(hashes))
	}
	content := map[mirror.Hash][]byte{}
	for i, f := range frames {
		if f.hash != hashes[i] {
			t.Fatalf("frame %d is %s, want %s", i, f.hash, hashes[i])
		}
		content[f.hash] = f.data
	}
	for p, e := range got {
		if string(content[e.SHA256]) != want[p] {
			t.Errorf("revision %.8s serves %s as %q, want %q", id, p, trunc(content[e.SHA256]), trunc([]byte(want[p])))
		}
		if e.Size != int64(len(want[p])) {
			t.Errorf("%s: size %d, want %d", p, e.Size, len(want[p]))
		}
	}
}

func trunc(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

func bigContent(seed string, n int) string {
	unit := seed + " 0123456789abcdefghijklmnopqrstuvwxyz\n"
	return strings.Repeat(unit, n/len(unit)+1)[:n]
}

func TestStorePublishServesEveryObjectByteForByte(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"index.php":            "<?php echo 'hi';\n",
		"config.php":           "<?php $CFG->dbpass = 'secret';\n",
		"empty.txt":            "",
		"lib/a.php":            "same content",
		"lib/b.php":            "same content", // duplicate content
		"lib/deep/x/y/z.js":    "var z = 1;",
		"theme/big.bin":        bigContent("big", 3<<20+17), // several reads and pack flushes
		"theme/medium.css":     bigContent("medium", 300<<10),
		"name with spaces.txt": "spaces",
		"üñíçødé.txt":          "unicode name",
	}
	stWrite(t, src, files)
	st := stOpen(t, mirror.StoreConfig{Source: src})
	rev, created := stPublish(t, st)
	if !created || rev.Seq != 1 || rev.Files != len(files) || rev.Changed != len(files) || rev.Message != "test" {
		t.Fatalf("publish: created %v, %+v", created, rev)
	}
	var total int64
	for _, c := range files {
		total += int64(len(c))
	}
	if rev.Bytes != total {
		t.Errorf("Bytes %d, want %d", rev.Bytes, total)
	}
	if p := st.Progress(); p.Phase != "done" || p.Files != len(files) || p.FilesDone != len(files) || p.Bytes != total || p.BytesDone != total {
		t.Errorf("progress %+v", p)
	}
	base := stServe(t, st)
	stCheckServes(t, base, rev.ID, files)
	if latest, ok := st.Latest(); !ok || latest != rev {
		t.Errorf("Latest %+v %v", latest, ok)
	}
}

func TestStorePublishUnchangedTreeCreatesNothing(t *testing.T) {
	src := t.TempDir()
	stWrite(t, src, map[string]string{"a.php": "a", "d/b.php": "b"})
	dir := t.TempDir()
	st := stOpen(t, mirror.StoreConfig{Dir: dir, Source: src})
	first, _ := stPublish(t, st)
	before := listTree(t, dir)
	rev, created := stPublish(t, st)
	if created || rev != first {
		t.Fatalf("second publish: created %v, %+v, want %+v", created, rev, first)
	}
	if after := listTree(t, dir); !slices.Equal(before, after) {
		t.Errorf("store changed:\n%v\n%v", before, after)
	}
	if n := len(st.Revisions()); n != 1 {
		t.Errorf("%d revisions", n)
	}
	if temps, _ := filepath.Glob(filepath.Join(dir, "objects", ".tmp-*")); len(temps) != 0 {
		t.Errorf("failed publish left %v", temps)
	}
}

// listTree lists the files of dir with their sizes.
func listTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			out = append(out, fmt.Sprintf("%s %d", rel, fi.Size()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// packBytes is the total size of the store's pack data.
func packBytes(t testing.TB, dir string) (n int64, packs int) {
	t.Helper()
	ents, err := filepath.Glob(filepath.Join(dir, "objects", "pack-*.dat"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ents {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n, len(ents)
}

func TestStorePublishOneChangeStoresOnlyItsContent(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"a.php": bigContent("a", 5000), "b.php": bigContent("b", 7000), "c/d.php": "d"}
	stWrite(t, src, files)
	dir := t.TempDir()
	st := stOpen(t, mirror.StoreConfig{Dir: dir, Source: src})
	mirror.SetRacyMargin(st, 0)
	stPublish(t, st)
	before, _ := packBytes(t, dir)
	files["b.php"] = "changed"
	stWrite(t, src, map[string]string{"b.php": files["b.php"]})
	rev, created := stPublish(t, st)
	if !created || rev.Seq != 2 || rev.Changed != 1 || rev.Files != 3 {
		t.Fatalf("publish: created %v, %+v", created, rev)
	}
	if p := st.Progress(); p.Files != 1 {
		t.Errorf("read %d files, want only the changed one", p.Files)
	}
	after, _ := packBytes(t, dir)
	if after-before != int64(len("changed")) {
		t.Errorf("packs grew by %d bytes, want %d", after-before, len("changed"))
	}
	stCheckServes(t, stServe(t, st), rev.ID, files)
}

func TestStorePublishedRevisionSurvivesSourceChanges(t *testing.T) {
	src := t.TempDir()
	orig := map[string]string{
		"edit.php":     "original content",
		"truncate.php": bigContent("trunc", 10000),
		"delete.php":   "to be deleted",
		"keep.php":     "kept",
	}
	stWrite(t, src, orig)
	st := stOpen(t, mirror.StoreConfig{Source: src, Keep: 5})
	mirror.SetRacyMargin(st, 0)
	rev1, _ := stPublish(t, st)

	// Edit in place with the same size and mtime: only ctime tells.
	p := filepath.Join(src, "edit.php")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("ORIGINAL"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(src, "truncate.php"), 10); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(src, "delete.php")); err != nil {
		t.Fatal(err)
	}

	base := stServe(t, st)
	stCheckServes(t, base, rev1.ID, orig)
	rev2, created := stPublish(t, st)
	if !created || rev2.Changed != 2 {
		t.Fatalf("second publish: created %v, %+v", created, rev2)
	}
	stCheckServes(t, base, rev2.ID, map[string]string{
		"edit.php":     "ORIGINAL content",
		"truncate.php": orig["truncate.php"][:10],
		"keep.php":     "kept",
	})
	stCheckServes(t, base, rev1.ID, orig)
}

func TestStoreExclude(t *testing.T) {
	src := t.TempDir()
	stWrite(t, src, map[string]string{
		"index.php":               "i",
		"config.php":              "c",
		"sub/config.php":          "sc",
		"error.log":               "l",
		"deep/er/debug.log":       "l",
		"cache/x.php":             "x",
		"lib/cache/y.php":         "y",
		"lib/cache.php":           "cache file, not a directory",
		"admin/tool/a/index.php":  "a",
		"admin/tool/b/index.php":  "b",
		"admin/index.php":         "ai",
		".git/objects/pack/p.dat": "git",
	})
	st := stOpen(t, mirror.StoreConfig{Source: src, Exclude: []string{
		"*.log", "cache/", "/config.php", "admin/tool/a", ".git",
	}})
	rev, _ := stPublish(t, st)
	m := stManifest(t, stServe(t, st), rev.ID)
	var got []string
	for _, e := range m.Entries {
		got = append(got, e.Path)
	}
	want := []string{"admin", "admin/index.php", "admin/tool", "admin/tool/b", "admin/tool/b/index.php",
		"deep", "deep/er", "index.php", "lib", "lib/cache.php", "sub", "sub/config.php"}
	if !slices.Equal(got, want) {
		t.Errorf("entries\n%v\nwant\n%v", got, want)
	}
}

func TestStoreBadExcludePatternFailsOpen(t *testing.T) {
	st := mirror.NewStore(mirror.StoreConfig{Dir: t.TempDir(), Source: t.TempDir(), Exclude: []string{"[a-"}})
	if err := st.Open(context.Background()); err == nil || !strings.Contains(err.Error(), "[a-") {
		t.Fatalf("Open: %v, want an error naming the pattern", err)
	}
}

func TestStoreManifestRecordsModesDirsAndSymlinks(t *testing.T) {
	src := t.TempDir()
	stWrite(t, src, map[string]string{"bin/run.sh": "#!/bin/sh\n", "secret.php": "s", "lib/x.php": "x"})
	mustDo(t, os.Chmod(filepath.Join(src, "bin/run.sh"), 0o755))
	mustDo(t, os.Chmod(filepath.Join(src, "secret.php"), 0o600))
	mustDo(t, os.MkdirAll(filepath.Join(src, "empty/nested"), 0o750))
	mustDo(t, os.Chmod(filepath.Join(src, "empty/nested"), os.ModeSetgid|0o750))
	mustDo(t, os.Symlink("lib/x.php", filepath.Join(src, "link.php")))
	mustDo(t, os.Symlink("../lib", filepath.Join(src, "bin/lib")))
	mustDo(t, os.Symlink("bin/lib/x.php", filepath.Join(src, "chain.php")))
	mustDo(t, os.Symlink("missing.php", filepath.Join(src, "dangling.php")))
	mustDo(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o644))

	st := stOpen(t, mirror.StoreConfig{Source: src})
	rev, _ := stPublish(t, st)
	m := stManifest(t, stServe(t, st), rev.ID)
	want := map[string]struct {
		typ    mirror.Type
		mode   uint32
		target string
	}{
		"bin":          {mirror.TypeDir, 0o755, ""},
		"bin/lib":      {mirror.TypeSymlink, 0o777, "../lib"},
		"bin/run.sh":   {mirror.TypeFile, 0o755, ""},
		"chain.php":    {mirror.TypeSymlink, 0o777, "bin/lib/x.php"},
		"dangling.php": {mirror.TypeSymlink, 0o777, "missing.php"},
		"empty":        {mirror.TypeDir, 0o750, ""},
		"empty/nested": {mirror.TypeDir, 0o2750, ""},
		"lib":          {mirror.TypeDir, 0o755, ""},
		"lib/x.php":    {mirror.TypeFile, 0o644, ""},
		"link.php":     {mirror.TypeSymlink, 0o777, "lib/x.php"},
		"secret.php":   {mirror.TypeFile, 0o600, ""},
	}
	if len(m.Entries) != len(want) {
		t.Errorf("%d entries, want %d (the fifo skipped): %+v", len(m.Entries), len(want), m.Entries)
	}
	for _, e := range m.Entries {
		w, ok := want[e.Path]
		if !ok || e.Type != w.typ || e.Mode != w.mode || e.Target != w.target {
			t.Errorf("entry %+v, want %+v", e, w)
		}
	}
}

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestStoreSymlinkOutOfTreeFailsPublish(t *testing.T) {
	for _, tc := range []struct{ link, target string }{
		{"up.php", "../outside.php"},
		{"sub/up.php", "../../etc/passwd"},
		{"abs.php", "/etc/passwd"},
		{"sub/via.php", "hop/../../../x"},
	} {
		t.Run(tc.link, func(t *testing.T) {
			src := t.TempDir()
			stWrite(t, src, map[string]string{"a.php": "a", "sub/b.php": "b"})
			mustDo(t, os.Symlink(tc.target, filepath.Join(src, tc.link)))
			dir := t.TempDir()
			st := stOpen(t, mirror.StoreConfig{Dir: dir, Source: src})
			_, _, err := st.Publish(context.Background(), "bad")
			if err == nil || !strings.Contains(err.Error(), tc.link) {
				t.Fatalf("publish: %v, want an error naming %s", err, tc.link)
			}
			if len(st.Revisions()) != 0 {
				t.Error("a revision was recorded")
			}
			if left := listTree(t, filepath.Join(dir, "objects")); len(left) != 0 {
				t.Errorf("objects left: %v", left)
			}
		})
	}
}

func TestStoreRestartKeepsRevisionsAndIdentityCache(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"a.php": "a", "b/c.php": "c", "b/d.php": "d"}
	stWrite(t, src, files)
	dir := t.TempDir()
	st := mirror.NewStore(mirror.StoreConfig{Dir: dir, Source: src})
	mustDo(t, st.Open(context.Background()))
	mirror.SetRacyMargin(st, 0)
	rev1, _ := stPublish(t, st)
	stWrite(t, src, map[string]string{"a.php": "a2"})
	rev2, _ := stPublish(t, st)
	mustDo(t, st.Close())
	mustDo(t, st.Close()) // idempotent

	st = stOpen(t, mirror.StoreConfig{Dir: dir, Source: src})
	mirror.SetRacyMargin(st, 0)
	if got := st.Revisions(); !slices.EqualFunc(got, []mirror.Revision{rev1, rev2}, sameRevision) {
		t.Fatalf("revisions after restart %+v", got)
	}
	rev, created := stPublish(t, st)
	if created || rev.ID != rev2.ID {
		t.Fatalf("publish after restart: created %v %+v", created, rev)
	}
	if p := st.Progress(); p.Files != 0 {
		t.Errorf("publish after restart read %d files, want 0 (identity cache lost)", p.Files)
	}
	stWrite(t, src, map[string]string{"b/d.php": "d2"})
	rev3, created := stPublish(t, st)
	if !created || rev3.Seq != 3 || rev3.Changed != 1 || st.Progress().Files != 1 {
		t.Fatalf("publish: %v %+v %+v", created, rev3, st.Progress())
	}
	files["a.php"], files["b/d.php"] = "a2", "d2"
	base := stServe(t, st)
	stCheckServes(t, base, rev3.ID, files)
	stCheckServes(t, base, rev1.ID, map[string]string{"a.php": "a", "b/c.php": "c", "b/d.php": "d"})
}

// sameRevision compares revisions; Created loses its monotonic reading on
// disk.
func sameRevision(a, b mirror.Revision) bool {
	return a.Created.Equal(b.Created) && a.Seq == b.Seq && a.ID == b.ID && a.Message == b.Message &&
		a.Files == b.Files && a.Bytes == b.Bytes && a.Changed == b.Changed
}

func TestStoreRecentlyChangedFilesAreReadAgain(t *testing.T) {
	src := t.TempDir()
	stWrite(t, src, map[string]string{"a.php": "a", "b.php": "b"})
	// Without the watcher, which sees every write, whatever the timestamps.
	st := stOpen(t, mirror.StoreConfig{Source: src, FullScanEvery: -1})
	mirror.SetRacyMargin(st, time.Hour) // however slow the machine
	stPublish(t, st)
	// Written just now: the same timestamp tick could hide another write,
	// so the cache must not trust them yet.
	if _, created := stPublish(t, st); created {
		t.Fatal("unchanged tree published")
	}
	if p := st.Progress(); p.Files != 2 {
		t.Errorf("read %d files, want 2", p.Files)
	}
}

func TestStoreGarbageCollectionKeepsNewestAndPinned(t *testing.T) {
	src := t.TempDir()
	dir := t.TempDir()
	st := stOpen(t, mirror.StoreConfig{Dir: dir, Source: src, Keep: 2})
	base := stServe(t, st)
	var revs []mirror.Revision
	trees := []map[string]string{}
	for i := range 4 {
		tree := map[string]string{"common.php": "shared", "v.php": fmt.Sprintf("version %d", i)}
		mustDo(t, os.RemoveAll(filepath.Join(src, "v.php")))
		stWrite(t, src, tree)
		rev, _ := stPublish(t, st)
		revs = append(revs, rev)
		trees = append(trees, tree)
		if i == 0 {
			st.Pin(rev.ID)
		}
	}
	got := st.Revisions()
	if want := []mirror.Revision{revs[0], revs[2], revs[3]}; !slices.Equal(got, want) {
		t.Fatalf("kept %v, want seqs 1, 3, 4", seqs(got))
	}
	stCheckServes(t, base, revs[0].ID, trees[0])
	stCheckServes(t, base, revs[3].ID, trees[3])
	if resp, _ := stGet(t, base+"/manifests/"+revs[1].ID); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GC'd manifest: %s", resp.Status)
	}
	if _, err := os.Stat(filepath.Join(dir, "revisions", revs[1].ID+".json")); !os.IsNotExist(err) {
		t.Errorf("GC'd revision file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "manifests", revs[1].ID+".json")); !os.IsNotExist(err) {
		t.Errorf("GC'd manifest file: %v", err)
	}
	if code := objectStatus(t, base, "version 1"); code != http.StatusNotFound {
		t.Errorf("content of the GC'd revision: %d", code)
	}

	st.Pin("")
	stWrite(t, src, map[string]string{"v.php": "version 4"})
	stPublish(t, st)
	if got := seqs(st.Revisions()); !slices.Equal(got, []uint64{4, 5}) {
		t.Errorf("kept %v after unpinning", got)
	}
	if code := objectStatus(t, base, "version 0"); code != http.StatusNotFound {
		t.Errorf("content of the unpinned revision: %d", code)
	}
	if code := objectStatus(t, base, "shared"); code != http.StatusOK {
		t.Errorf("shared content: %d", code)
	}
	// Only "shared", "version 3" and "version 4" are left.
	if n, _ := packBytes(t, dir); n != int64(len("shared")+2*len("version 3")) {
		t.Errorf("packs hold %d bytes", n)
	}
}

func seqs(revs []mirror.Revision) []uint64 {
	var out []uint64
	for _, r := range revs {
		out = append(out, r.Seq)
	}
	return out
}

// objectStatus asks for the object with this content.
func objectStatus(t testing.TB, base, content string) int {
	t.Helper()
	body, _ := json.Marshal(mirror.ObjectsRequest{Objects: []mirror.Hash{hashOf(content)}})
	resp, _ := stPostObjects(t, base, body)
	return resp.StatusCode
}

func hashOf(content string) mirror.Hash { return sha256.Sum256([]byte(content)) }

func TestStoreRepackRewritesMostlyDeadPacks(t *testing.T) {
	src := t.TempDir()
	dir := t.TempDir()
	// Random content: stored raw, so pack sizes are content sizes.
	rnd := func(seed string, n int) string { return string(mirrortest.Content(nil, seed, n)) }
	big := map[string]string{
		"a.bin": rnd("a", 200<<10), "b.bin": rnd("b", 200<<10),
		"c.bin": rnd("c", 200<<10), "d.bin": rnd("d", 100<<10),
	}
	stWrite(t, src, big)
	st := stOpen(t, mirror.StoreConfig{Dir: dir, Source: src, Keep: 1})
	stPublish(t, st)
	for _, p := range []string{"a.bin", "b.bin", "c.bin"} {
		mustDo(t, os.Remove(filepath.Join(src, p)))
	}
	rev, _ := stPublish(t, st)
	// Every pack that held d.bin was at most 1/3 live: rewritten to d.bin.
	if n, packs := packBytes(t, dir); n != 100<<10 || packs != 1 {
		t.Errorf("%d packs of %d bytes, want one of %d", packs, n, 100<<10)
	}
	stCheckServes(t, stServe(t, st), rev.ID, map[string]string{"d.bin": big["d.bin"]})

	// The repacked store reopens whole.
	mustDo(t, st.Close())
	st = stOpen(t, mirror.StoreConfig{Dir: dir, Source: src, Keep: 1})
	stCheckServes(t, stServe(t, st), rev.ID, map[string]string{"d.bin": big["d.bin"]})
}

func TestStoreOpenRemovesCrashLeftovers(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"a.php": "a"}
	stWrite(t, src, files)
	dir := t.TempDir()
	st := mirror.NewStore(mirror.StoreConfig{Dir: dir, Source: src})
	mustDo(t, st.Open(context.Background()))
	rev1, _ := stPublish(t, st)
	stWrite(t, src, map[string]string{"b.php": "b"})
	rev2, _ := stPublish(t, st)
	mustDo(t, st.Close())

	// A crash before rev2's commit point: its revision file never made it.
	mustDo(t, os.Remove(filepath.Join(dir, "revisions", rev2.ID+".json")))
	// A pack being written, and one renamed without its index.
	leftovers := []string{
		filepath.Join(dir, "objects", ".tmp-pack-90.dat"),
		filepath.Join(dir, "objects", ".tmp-pack-90.idx"),
		filepath.Join(dir, "objects", "pack-91.dat"),
		filepath.Join(dir, "manifests", ".tmp-x.json-123"),
		filepath.Join(dir, "revisions", ".tmp-y.json-456"),
		filepath.Join(dir, ".tmp-scan-cache-789"),
	}
	for _, p := range leftovers {
		mustDo(t, os.WriteFile(p, []byte("partial"), 0o600))
	}
	st = stOpen(t, mirror.StoreConfig{Dir: dir, Source: src})
	for _, p := range leftovers {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "manifests", rev2.ID+".json")); !os.IsNotExist(err) {
		t.Errorf("manifest of the uncommitted revision left: %v", err)
	}
	if got := st.Revisions(); len(got) != 1 || got[0].ID != rev1.ID {
		t.Fatalf("revisions %+v", got)
	}
	rev, created := stPublish(t, st)
	if !created || rev.Seq != 2 || rev.ID != rev2.ID {
		t.Errorf("publish again: %v %+v", created, rev)
	}
	stCheckServes(t, stServe(t, st), rev.ID, map[string]string{"a.php": "a", "b.php": "b"})
}

func TestStoreCorruptPackIndexIsSetAsideAndHealed(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"a.php": "a", "b.php": "b"}
	stWrite(t, src, files)
	dir := t.TempDir()
	st := mirror.NewStore(mirror.StoreConfig{Dir: dir, Source: src})
	mustDo(t, st.Open(context.Background()))
	mirror.SetRacyMargin(st, 0)
	rev, _ := stPublish(t, st)
	mustDo(t, st.Close())
	idxs, _ := filepath.Glob(filepath.Join(dir, "objects", "pack-*.idx"))
	for _, p := range idxs {
		data, err := os.ReadFile(p)
		mustDo(t, err)
		data[len(data)/2] ^= 0xff
		mustDo(t, os.WriteFile(p, data, 0o600))
	}
	st = stOpen(t, mirror.StoreConfig{Dir: dir, Source: src})
	mirror.SetRacyMargin(st, 0)
	base := stServe(t, st)
	if code := objectStatus(t, base, "a"); code != http.StatusNotFound {
		t.Fatalf("object of a corrupt pack: %d", code)
	}
	// The next publish of the same tree stores the lost content again,
	// though the identity cache knows every file.
	if got, created := stPublish(t, st); created || got.ID != rev.ID {
		t.Fatalf("publish: %v %+v", created, got)
	}
	if p := st.Progress(); p.Files != 2 {
		t.Errorf("read %d files, want the 2 whose content was lost", p.Files)
	}
	stCheckServes(t, base, rev.ID, files)
}

func TestStoreFind(t *testing.T) {
	// Two one-file trees whose ids share their first 4 hex digits.
	a, b := collidingContents(t, 4)
	src := t.TempDir()
	st := stOpen(t, mirror.StoreConfig{Source: src})
	var revs []mirror.Revision
	for _, c := range []string{a, b, "third"} {
		stWrite(t, src, map[string]string{"f": c})
		rev, _ := stPublish(t, st)
		revs = append(revs, rev)
	}
	for _, tc := range []struct {
		ref  string
		want mirror.Revision
		err  error
	}{
		{"1", revs[0], nil},
		{"3", revs[2], nil},
		{revs[1].ID, revs[1], nil},
		{revs[2].ID[:6], revs[2], nil},
		{strings.ToUpper(revs[2].ID[:8]), revs[2], nil},
		{revs[0].ID[:4], mirror.Revision{}, mirror.ErrAmbiguous},
		{revs[2].ID[:3], mirror.Revision{}, mirror.ErrNotFound},
		{"9", mirror.Revision{}, mirror.ErrNotFound},
		{"zzzzzz", mirror.Revision{}, mirror.ErrNotFound},
		{"", mirror.Revision{}, mirror.ErrNotFound},
	} {
		got, err := st.Find(tc.ref)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("Find(%q) = %d, %v; want %d, %v", tc.ref, got.Seq, err, tc.want.Seq, tc.err)
		}
	}
}

// collidingContents finds two file contents whose one-file trees ("f",
// mode 0644) have ids sharing n hex digits.
func collidingContents(t testing.TB, n int) (string, string) {
	t.Helper()
	seen := map[string]string{}
	for i := range 1 << 20 {
		c := fmt.Sprintf("content %d", i)
		m := mirror.Manifest{Entries: []mirror.Entry{{Path: "f", Type: mirror.TypeFile, Mode: 0o644,
			Size: int64(len(c)), SHA256: hashOf(c)}}}
		id := m.ID()
		if prev, ok := seen[id[:n]]; ok {
			return prev, c
		}
		seen[id[:n]] = c
	}
	t.Fatal("no collision")
	return "", ""
}

func TestStorePublishCanceled(t *testing.T) {
	src := t.TempDir()
	stWrite(t, src, map[string]string{"a.php": "a", "b/c.php": "c"})
	dir := t.TempDir()
	st := stOpen(t, mirror.StoreConfig{Dir: dir, Source: src})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := st.Publish(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("publish: %v", err)
	}
	if len(st.Revisions()) != 0 {
		t.Error("revision recorded")
	}
	if got := listTree(t, filepath.Join(dir, "objects")); len(got) != 0 {
		t.Errorf("objects left: %v", got)
	}
}

func TestStorePublishMissingSource(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	st := stOpen(t, mirror.StoreConfig{Source: missing})
	if _, _, err := st.Publish(context.Background(), ""); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("publish: %v", err)
	}
}

func TestStoreFileChangingWhileRead(t *testing.T) {
	src := t.TempDir()
	stWrite(t, src, map[string]string{"hot.log.php": "v0", "cold.php": "cold"})
	hot := filepath.Join(src, "hot.log.php")
	dir := t.TempDir()
	st := stOpen(t, mirror.StoreConfig{Dir: dir, Source: src})
	var mu sync.Mutex
	writes := 0
	change := func(limit int) func(string) {
		return func(p string) {
			mu.Lock()
			defer mu.Unlock()
			if p == hot && writes < limit {
				writes++
				mustDo(t, os.WriteFile(hot, []byte(fmt.Sprintf("version %d", writes)), 0o644))
			}
		}
	}

	// Changed during the first two reads: the third one is stable.
	mirror.SetReadHook(st, change(2))
	rev, _ := stPublish(t, st)
	stCheckServes(t, stServe(t, st), rev.ID, map[string]string{"hot.log.php": "version 2", "cold.php": "cold"})

	// Changed during every read: the publish fails and names the file.
	mirror.SetReadHook(st, change(1<<30))
	_, _, err := st.Publish(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), hot) || !strings.Contains(err.Error(), "changed while read") {
		t.Fatalf("publish: %v", err)
	}
	if n := len(st.Revisions()); n != 1 {
		t.Errorf("%d revisions", n)
	}
	if temps, _ := filepath.Glob(filepath.Join(dir, "objects", ".tmp-*")); len(temps) != 0 {
		t.Errorf("failed publish left %v", temps)
	}
}

func TestStoreInsideSourceIsNotPublished(t *testing.T) {
	src := t.TempDir()
	stWrite(t, src, map[string]string{"index.php": "i"})
	st := stOpen(t, mirror.StoreConfig{Dir: filepath.Join(src, "data", "mirror"), Source: src})
	rev, _ := stPublish(t, st)
	m := stManifest(t, stServe(t, st), rev.ID)
	var paths []string
	for _, e := range m.Entries {
		paths = append(paths, e.Path)
	}
	if !slices.Equal(paths, []string{"data", "index.php"}) {
		t.Errorf("entries %v", paths)
	}
	same := mirror.NewStore(mirror.StoreConfig{Dir: src, Source: src})
	if err := same.Open(context.Background()); err == nil {
		same.Close()
		t.Error("a store in its own source opened")
	}
}

func TestStoreCloseSavesIdentityCacheOfUnchangedPublish(t *testing.T) {
	src := t.TempDir()
	stWrite(t, src, map[string]string{"a.php": "a", "b.php": "b"})
	dir := t.TempDir()
	st := mirror.NewStore(mirror.StoreConfig{Dir: dir, Source: src})
	mustDo(t, st.Open(context.Background()))
	mirror.SetRacyMargin(st, 0)
	stPublish(t, st)
	// Rewritten with the same content: read again, nothing to publish.
	stWrite(t, src, map[string]string{"a.php": "a"})
	if _, created := stPublish(t, st); created || st.Progress().Files != 1 {
		t.Fatalf("publish: created %v, read %d files", created, st.Progress().Files)
	}
	mustDo(t, st.Close())

	st = stOpen(t, mirror.StoreConfig{Dir: dir, Source: src})
	if _, created := stPublish(t, st); created || st.Progress().Files != 0 {
		t.Errorf("publish after restart: created %v, read %d files, want 0", created, st.Progress().Files)
	}
}

func TestStoreProgressDuringPublish(t *testing.T) {
	src := t.TempDir()
	stWrite(t, src, map[string]string{"a.php": "aaaa", "b.php": "bb"})
	st := stOpen(t, mirror.StoreConfig{Source: src})
	var mu sync.Mutex
	var seen []mirror.PublishProgress
	mirror.SetReadHook(st, func(string) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, st.Progress())
	})
	stPublish(t, st)
	if len(seen) != 2 {
		t.Fatalf("hook ran %d times", len(seen))
	}
	for _, p := range seen {
		if (p.Phase != "scan" && p.Phase != "capture") || p.Files < 1 || p.FilesDone > 1 {
			t.Errorf("progress during publish %+v", p)
		}
	}
	if p := st.Progress(); p != (mirror.PublishProgress{Phase: "done", Files: 2, FilesDone: 2, Bytes: 6, BytesDone: 6}) {
		t.Errorf("progress after publish %+v", p)
	}
}

func TestStoreSymlinkRetargetedOutOfTreeFailsPublish(t *testing.T) {
	src := t.TempDir()
	stWrite(t, src, map[string]string{"a.php": "a"})
	link := filepath.Join(src, "l.php")
	mustDo(t, os.Symlink("a.php", link))
	st := stOpen(t, mirror.StoreConfig{Source: src})
	stPublish(t, st)
	mustDo(t, os.Remove(link))
	mustDo(t, os.Symlink("../a.php", link))
	if _, _, err := st.Publish(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "l.php") {
		t.Fatalf("publish: %v", err)
	}
}
