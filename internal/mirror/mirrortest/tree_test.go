package mirrortest_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
)

func TestGenerateTree(t *testing.T) {
	tsv := filepath.Join(t.TempDir(), "tree.tsv")
	if err := os.WriteFile(tsv, []byte("10\tindex.php\n0\tempty.txt\n70000\tlib/big.js\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := mirrortest.GenerateTree(dir, tsv, 2); err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{"index.php": 10, "empty.txt": 0, "lib/big.js": 70000}
	for _, copy := range []string{"a", "b"} {
		for p, size := range sizes {
			fi, err := os.Stat(filepath.Join(dir, copy, p))
			if err != nil || fi.Size() != size {
				t.Fatalf("%s/%s: %v, size %d want %d", copy, p, err, fi.Size(), size)
			}
		}
	}
	a, _ := os.ReadFile(filepath.Join(dir, "a/lib/big.js"))
	b, _ := os.ReadFile(filepath.Join(dir, "b/lib/big.js"))
	if bytes.Equal(a, b) {
		t.Error("copies share their content")
	}
	again := t.TempDir()
	if err := mirrortest.GenerateTree(again, tsv, 2); err != nil {
		t.Fatal(err)
	}
	if a2, _ := os.ReadFile(filepath.Join(again, "a/lib/big.js")); !bytes.Equal(a, a2) {
		t.Error("content is not deterministic")
	}
	if err := os.WriteFile(tsv, []byte("x\tbad\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := mirrortest.GenerateTree(t.TempDir(), tsv, 1); err == nil {
		t.Error("bad line accepted")
	}
}
