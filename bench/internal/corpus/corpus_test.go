package corpus_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nodeagent/nodeagent/bench/internal/corpus"
)

func TestGenerateIsDeterministicAndByClass(t *testing.T) {
	c := &corpus.Cache{Dir: t.TempDir()}
	for _, cl := range corpus.Classes {
		var files [][]byte
		for j := range 4 {
			files = append(files, fmt.Appendf(nil, "[%s %d]", cl, j))
		}
		if err := c.WritePool(cl, files); err != nil {
			t.Fatal(err)
		}
	}
	pools, err := c.Load()
	if err != nil {
		t.Fatal(err)
	}
	tsv := filepath.Join(t.TempDir(), "tree.tsv")
	os.WriteFile(tsv, []byte("30\ta/lib.php\n7\ta/x.js\n12\tpix/i.png\n25\tb/readme\n30\tc/lib.php\n"), 0o644)
	gen := func(seed uint64) string {
		dir := filepath.Join(t.TempDir(), "t")
		if err := corpus.Generate(dir, tsv, 2, seed, pools); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	one, two, other := gen(1), gen(1), gen(2)
	same, differs := true, false
	for _, rel := range []string{"a/a/lib.php", "a/a/x.js", "b/pix/i.png", "a/b/readme", "b/c/lib.php"} {
		d1, err := os.ReadFile(filepath.Join(one, rel))
		if err != nil {
			t.Fatal(err)
		}
		d2, _ := os.ReadFile(filepath.Join(two, rel))
		d3, _ := os.ReadFile(filepath.Join(other, rel))
		same = same && bytes.Equal(d1, d2)
		differs = differs || !bytes.Equal(d1, d3)
		want := map[string]corpus.Class{".php": corpus.PHP, ".js": corpus.JS, ".png": corpus.Image, "": corpus.Text}[filepath.Ext(rel)]
		if !bytes.HasPrefix(d1, []byte("["+string(want)+" ")) {
			t.Errorf("%s = %q, want content of the %s pool", rel, d1, want)
		}
	}
	if !same {
		t.Error("the same seed gave two different trees")
	}
	if !differs {
		t.Error("another seed gave the same tree")
	}
	// Two files of one size and class get different bytes while the pool
	// has other starts.
	a, _ := os.ReadFile(filepath.Join(one, "a/a/lib.php"))
	b, _ := os.ReadFile(filepath.Join(one, "a/c/lib.php"))
	if bytes.Equal(a, b) {
		t.Errorf("two files share their content %q", a)
	}
}
