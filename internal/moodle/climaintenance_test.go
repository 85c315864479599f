package moodle_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/moodle"
	"github.com/nodeagent/nodeagent/internal/testutil"
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

// TestHoldKeepsAnAdminsPage: a page an admin wrote before the hold (with
// admin/cli/maintenance.php) is neither overwritten nor removed.
func TestHoldKeepsAnAdminsPage(t *testing.T) {
	d, _ := newDataroot(t)
	if err := os.WriteFile(d.Page(), []byte("admin's page"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Hold("upgrading"); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(d.Page()); err != nil || string(b) != "admin's page" {
		t.Fatalf("the admin's page after a hold and its release: %q %v", b, err)
	}
}

// holdHelperEnv makes the test binary a process that holds Moodle with a
// new message, again and again, until it is killed.
const holdHelperEnv = "NODEAGENT_TEST_HOLD_HELPER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(holdHelperEnv); dir != "" {
		d := moodle.NewDataroot(filepath.Join(dir, "moodledata"), filepath.Join(dir, "mark"), nil)
		for i := 0; ; i++ {
			if err := d.Hold(fmt.Sprintf("message %d", i)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
		}
	}
	os.Exit(m.Run())
}

// TestHoldKilledAnywhere: an agent killed (kill -9) at any moment of a
// hold leaves a page the next start's release removes: Moodle is never
// left held with nobody to release it. Before, a kill between writing the
// page and its mark left a page the agent took for someone else's.
func TestHoldKilledAnywhere(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "moodledata")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for round := range 30 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), holdHelperEnv+"="+dir)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it write a few pages, then kill it anywhere.
		testutil.Eventually(t, 30*time.Second, func() error {
			if _, err := os.Stat(filepath.Join(root, moodle.PageName)); err != nil {
				return err
			}
			return nil
		})
		time.Sleep(time.Duration(rng.IntN(20_000)) * time.Microsecond) // a random point, not a wait for state
		cmd.Process.Kill()
		if err := cmd.Wait(); stderr.Len() > 0 {
			t.Fatalf("helper: %v %s", err, stderr.String())
		}
		// The next start: check (removes temporary leftovers), release.
		d := moodle.NewDataroot(root, filepath.Join(dir, "mark"), nil)
		if err := d.Check(); err != nil {
			t.Fatal(err)
		}
		if err := d.Release(); err != nil {
			t.Fatal(err)
		}
		if ents, _ := os.ReadDir(root); len(ents) != 0 {
			t.Fatalf("round %d: after a kill and the next release, dataroot holds %v", round, ents)
		}
	}
}
