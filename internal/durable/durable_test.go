package durable_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nodeagent/nodeagent/internal/durable"
)

func TestWriteFileReplacesWithMode(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "state.json")
	for i, perm := range []os.FileMode{0o600, 0o644} {
		body := fmt.Sprintf("version %d\n", i)
		if err := durable.WriteFile(name, []byte(body), perm); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		fi, _ := os.Stat(name)
		if err != nil || string(got) != body || fi.Mode().Perm() != perm {
			t.Fatalf("after write %d: %q %v, mode %v", i, got, err, fi.Mode())
		}
	}
	assertNoTemps(t, dir)
}

// TestWriteFileConcurrent: writers of one file at once never collide on a
// temporary name (the climaintenance.html race of issue 11): every call
// succeeds and the file holds one whole version.
func TestWriteFileConcurrent(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "climaintenance.html")
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				errs <- durable.WriteFile(name, []byte(strings.Repeat(fmt.Sprint(w), 4096)), 0o644)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(name)
	if len(got) != 4096 || strings.Count(string(got), string(got[:1])) != 4096 {
		t.Fatalf("torn file: %d bytes", len(got))
	}
	assertNoTemps(t, dir)
}

func TestReplaceFileKeepsModeAndOwner(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "config.php")
	if err := os.WriteFile(name, []byte("<?php // old"), 0o640); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(name, 33, 33); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.Stat(name)
	if err := durable.ReplaceFile(name, []byte("<?php // new")); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(name)
	if after.Mode() != before.Mode() {
		t.Fatalf("mode %v, want %v", after.Mode(), before.Mode())
	}
	if owner(after) != owner(before) {
		t.Fatalf("owner %s, want %s", owner(after), owner(before))
	}
	if err := durable.ReplaceFile(filepath.Join(dir, "missing.php"), nil); !os.IsNotExist(err) {
		t.Fatalf("replace of a missing file: %v", err)
	}
	assertNoTemps(t, dir)
}

func TestWriteFileFailureLeavesOldContent(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "f")
	if err := durable.WriteFile(name, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory in the way of the rename: the write fails, the temporary
	// file is gone, nothing else changed.
	if err := durable.WriteFile(filepath.Join(dir, "missing-dir", "f"), []byte("x"), 0o644); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := durable.WriteFile(filepath.Join(dir, "d"), []byte("new"), 0o644); err == nil {
		t.Fatal("rename over a non-empty directory succeeded")
	}
	if b, _ := os.ReadFile(name); string(b) != "old" {
		t.Fatalf("content %q", b)
	}
	assertNoTemps(t, dir)
}

func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), durable.TempPrefix) {
			t.Fatalf("temporary file left: %s", e.Name())
		}
	}
}

func owner(fi os.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
	}
	return "?"
}

// TestRemoveLeftovers: the temporary copies a crash left of one file go,
// nothing else does.
func TestRemoveLeftovers(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "config.php")
	keep := []string{"config.php", durable.TempPrefix + "other.php-1", "x" + durable.TempPrefix + "config.php-1"}
	for _, n := range append([]string{durable.TempPrefix + "config.php-123", durable.TempPrefix + "config.php-9"}, keep...) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("<?php $CFG->dbpass = 'x';"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := durable.RemoveLeftovers(name); err != nil {
		t.Fatal(err)
	}
	var got []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join([]string{".tmp-other.php-1", "config.php", "x.tmp-config.php-1"}, " ") {
		t.Fatalf("left: %q", got)
	}
}
