package moodle_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nodeagent/nodeagent/internal/moodle"
)

func newDataroot(t *testing.T) (*moodle.Dataroot, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "moodledata")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return moodle.NewDataroot(root, filepath.Join(dir, "mark"), nil), root
}

func TestHoldAndRelease(t *testing.T) {
	d, root := newDataroot(t)
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
	if err := d.Hold("Upgrading <now>"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, moodle.PageName))
	if err != nil || !strings.Contains(string(b), "Upgrading &lt;now&gt;") {
		t.Fatalf("page: %v %q", err, b)
	}
	if err := d.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Page()); !os.IsNotExist(err) {
		t.Fatalf("page still there: %v", err)
	}
	// A release with nothing held, and a page an admin wrote: left alone.
	if err := d.Release(); err != nil {
		t.Fatal(err)
	}
	if err := d.Hold(""); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.Page(), []byte("admin's page"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(d.Page()); string(b) != "admin's page" {
		t.Fatalf("an admin's page was touched: %q", b)
	}
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 {
		t.Fatalf("dataroot holds %d entries, want only the page", len(ents))
	}
}

// TestConcurrentHoldRelease: callers at once never fail and the page ends
// as the last call left it.
func TestConcurrentHoldRelease(t *testing.T) {
	d, root := newDataroot(t)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				var err error
				if (i+w)%2 == 0 {
					err = d.Hold("m")
				} else {
					err = d.Release()
				}
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := d.Release(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("after the last release dataroot holds %v", ents)
	}
}

func TestCheckUnwritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes anywhere")
	}
	d := moodle.NewDataroot("/proc", filepath.Join(t.TempDir(), "mark"), nil)
	if err := d.Check(); err == nil {
		t.Fatal("an unwritable dataroot passed the check")
	}
}
