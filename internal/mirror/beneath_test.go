package mirror_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// TestPublishNeverReadsThroughASwappedDirectory: a directory of the source
// is exchanged for a symlink to a directory outside it between the scan and
// the reading of its files (what a web user who may install plugins can
// do). The outside files never enter a revision, through openat2 or the
// walk that stands in for it.
func TestPublishNeverReadsThroughASwappedDirectory(t *testing.T) {
	for _, openat2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("openat2=%v", openat2), func(t *testing.T) {
			defer mirror.UseOpenat2(openat2)()
			base := t.TempDir()
			src, outside := filepath.Join(base, "src"), filepath.Join(base, "outside")
			files := map[string]string{"index.php": "index"}
			secrets := map[string]string{}
			for i := range 20 {
				name := fmt.Sprintf("f%02d.php", i)
				files["plugin/sub/"+name] = "inside " + name
				secrets["sub/"+name] = "SECRET " + name
			}
			stWrite(t, src, files)
			stWrite(t, outside, secrets)
			link := filepath.Join(base, "link")
			mustDo(t, os.Symlink(outside, link))

			st := stOpen(t, mirror.StoreConfig{Source: src})
			var once sync.Once
			mirror.SetOpenHook(st, func(rel string) {
				if strings.HasPrefix(rel, "plugin/") {
					once.Do(func() { // plugin <-> symlink to outside, atomically
						mustDo(t, unix.Renameat2(unix.AT_FDCWD, link, unix.AT_FDCWD, filepath.Join(src, "plugin"), unix.RENAME_EXCHANGE))
					})
				}
			})
			rev, _, err := st.Publish(context.Background(), "race")
			if err == nil {
				checkNoSecret(t, st, rev.ID, secrets)
				t.Fatalf("publish succeeded while a directory was swapped for a symlink")
			}
			if !strings.Contains(err.Error(), "plugin/sub/") || !strings.Contains(err.Error(), "tree changed") {
				t.Fatalf("publish error does not say which path changed: %v", err)
			}
			if len(st.Revisions()) != 0 {
				t.Fatalf("a revision was recorded: %+v", st.Revisions())
			}
		})
	}
}

// checkNoSecret fails if the manifest of id has the content of a secret.
func checkNoSecret(t *testing.T, st *mirror.Store, id string, secrets map[string]string) {
	t.Helper()
	bad := map[mirror.Hash]string{}
	for p, s := range secrets {
		bad[hashOf(s)] = p
	}
	m := stManifest(t, stServe(t, st), id)
	for _, e := range m.Entries {
		if p, ok := bad[e.SHA256]; ok && e.Type == mirror.TypeFile {
			t.Errorf("%s holds the outside file %s", e.Path, p)
		}
	}
}
