package mirror_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// looseTree has what Moodle and a careless chmod leave: directories 0777
// and 02777, files 0666 and 0777.
func looseTree(version string) []tnode {
	return []tnode{
		tdir("cache", 0o2777),
		tfile("cache/x.php", 0o666, "x "+version),
		tdir("lib", 0o777),
		tfile("lib/a.php", 0o666, "<?php // a\n"),
		tfile("lib/run.sh", 0o777, "#!/bin/sh\n"),
		tdir("lib/sub", 0o775),
		tfile("lib/sub/b.php", 0o644, "<?php // b "+version+"\n"),
		tlink("lib/link", "a.php"),
		tfile("version.php", 0o644, version),
	}
}

// writableEntries lists the entries under root (root included) that group
// or others may write, symlinks aside.
func writableEntries(t *testing.T, root string) []string {
	t.Helper()
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink == 0 && fi.Mode().Perm()&0o022 != 0 {
			bad = append(bad, p+" "+fi.Mode().String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

func TestNoReleaseEntryIsWritableByGroupOrOthers(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
	// v3 is made by recycling v1: its directories get their modes again.
	for _, v := range []string{"1", "2", "3"} {
		nodes := looseTree(v)
		mustApply(t, n, ctl.publish(nodes), ctl.client())
		checkTree(t, n.target, nodes)
		if bad := writableEntries(t, n.target); len(bad) > 0 {
			t.Fatalf("v%s: writable by group or others: %v", v, bad)
		}
	}
}

// tamper plants, replaces and alters entries of the release tree at dir as
// an attacker who could write there would: a new file, a file replaced by
// another inode of the same size, a directory opened to everyone with a
// file planted in it, a symlink retargeted.
func tamper(t *testing.T, dir string) {
	t.Helper()
	mustWrite(t, filepath.Join(dir, "shell.php"), "<?php system($_GET['c']);")
	p := filepath.Join(dir, "lib/a.php")
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	evil := []byte(strings.Repeat("!", len(orig)))
	mustDo(t, os.Remove(p))
	mustDo(t, os.WriteFile(p, evil, 0o444))
	mustDo(t, os.Chmod(filepath.Join(dir, "lib/sub"), 0o777))
	mustWrite(t, filepath.Join(dir, "lib/sub/planted.php"), "planted")
	mustDo(t, os.Remove(filepath.Join(dir, "lib/link")))
	mustDo(t, os.Symlink("/etc/passwd", filepath.Join(dir, "lib/link")))
}

// TestPlantedFileNeverReachesALaterRelease: what is planted in or altered
// of a kept release is found whichever way the release is reused: recycled
// into a new release, linked from into one, or served again by a rollback.
func TestPlantedFileNeverReachesALaterRelease(t *testing.T) {
	t.Run("recycled", func(t *testing.T) {
		ctl := newFakeController(t)
		n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
		v1 := ctl.publish(looseTree("1"))
		mustApply(t, n, v1, ctl.client())
		mustApply(t, n, ctl.publish(looseTree("2")), ctl.client())
		tamper(t, n.release(v1.ID))
		recycled := mustStat(t, n.release(v1.ID))
		v3 := ctl.publish(looseTree("3"))
		mustApply(t, n, v3, ctl.client())
		if !os.SameFile(recycled, mustStat(t, n.release(v3.ID))) {
			t.Fatal("v1 was not recycled into v3: the test proves nothing")
		}
		checkTree(t, n.target, looseTree("3"))
		checkQuarantined(t, n, "shell.php", "lib/sub/planted.php")
	})
	t.Run("linked", func(t *testing.T) {
		ctl := newFakeController(t)
		n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 5})
		v1 := ctl.publish(looseTree("1"))
		mustApply(t, n, v1, ctl.client())
		tamper(t, n.release(v1.ID)) // the current release: v2 links from it
		ctl.counts()
		mustApply(t, n, ctl.publish(looseTree("2")), ctl.client())
		checkTree(t, n.target, looseTree("2"))
		if c := ctl.counts(); c.objectsServed < 2 {
			t.Errorf("%d objects fetched; want the replaced lib/a.php fetched again", c.objectsServed)
		}
	})
	t.Run("rollback", func(t *testing.T) {
		ctl := newFakeController(t)
		n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 5})
		v1 := ctl.publish(looseTree("1"))
		mustApply(t, n, v1, ctl.client())
		mustApply(t, n, ctl.publish(looseTree("2")), ctl.client())
		tamper(t, n.release(v1.ID))
		mustApply(t, n, v1, ctl.client())
		checkTree(t, n.target, looseTree("1"))
		checkQuarantined(t, n, "shell.php", "lib/a.php")
	})
}

// checkQuarantined fails unless each path is in some quarantine directory.
func checkQuarantined(t *testing.T, n *testNode, paths ...string) {
	t.Helper()
	for _, p := range paths {
		m, _ := filepath.Glob(filepath.Join(n.dir, "quarantine", "*", p))
		if len(m) == 0 {
			t.Errorf("%s is not in the quarantine", p)
		}
	}
}

func kinds(diffs []mirror.Difference) []string {
	var out []string
	for _, d := range diffs {
		out = append(out, d.Kind+" "+d.Path)
	}
	slices.Sort(out)
	return out
}

// TestVerifyNamesEveryDifferenceAndRepairs: a tampered, a missing and an
// extra file, directories opened to everyone (the release's own too), a
// retargeted symlink and a file written in place are named; repair puts the release back without a
// switch, never leaves a path missing, and never writes through the hard
// links the release shares with kept releases.
func TestVerifyNamesEveryDifferenceAndRepairs(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 5})
	v1 := ctl.publish(looseTree("1"))
	mustApply(t, n, v1, ctl.client())
	v2 := ctl.publish(looseTree("2"))
	mustApply(t, n, v2, ctl.client())
	cur := n.release(v2.ID)
	sharedBefore := mustStat(t, filepath.Join(n.release(v1.ID), "lib/a.php"))
	if !os.SameFile(sharedBefore, mustStat(t, filepath.Join(cur, "lib/a.php"))) {
		t.Fatal("lib/a.php is not shared between v1 and v2: the test proves nothing")
	}

	rep, err := n.rels.Verify(context.Background(), false, ctl.client())
	if err != nil || len(rep.Differences) != 0 || rep.Release.ID != v2.ID || !rep.Content {
		t.Fatalf("intact release: %+v %v", rep, err)
	}

	tamper(t, cur)
	mustDo(t, os.Chmod(cur, 0o777))
	mustDo(t, os.Remove(filepath.Join(cur, "version.php")))
	f, err := os.OpenFile(filepath.Join(cur, "cache/x.php"), os.O_WRONLY, 0) // in place: root may
	mustDo(t, err)
	_, err = f.WriteAt([]byte("y"), 0)
	mustDo(t, err)
	mustDo(t, f.Close())

	rep, err = n.rels.Verify(context.Background(), false, ctl.client())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"extra lib/sub/planted.php", "extra shell.php", "missing version.php", "mode .", "mode lib/sub",
		"tampered cache/x.php", "tampered lib/a.php", "tampered lib/link"}
	if got := kinds(rep.Differences); !slices.Equal(got, want) {
		t.Fatalf("differences:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Repair, while a reader keeps opening lib/a.php.
	var missing atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := os.Lstat(filepath.Join(n.target, "lib/a.php")); errors.Is(err, fs.ErrNotExist) {
				missing.Add(1)
			}
		}
	}()
	rep, err = n.rels.Verify(context.Background(), true, ctl.client())
	close(stop)
	<-done
	if err != nil || len(rep.Differences) != 0 {
		t.Fatalf("after repair: %v %v", rep.Differences, err)
	}
	if got := kinds(rep.Repaired); !slices.Equal(got, want) {
		t.Fatalf("repaired:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if missing.Load() > 0 {
		t.Errorf("a reader found lib/a.php missing %d times during the repair", missing.Load())
	}
	checkTree(t, n.target, looseTree("2"))
	if cur, _ := n.rels.Current(); cur.ID != v2.ID {
		t.Fatalf("current is %s after repair; want %s (no switch)", cur.ID, v2.ID)
	}
	// v1 keeps its own inode of lib/a.php, untouched.
	if !os.SameFile(sharedBefore, mustStat(t, filepath.Join(n.release(v1.ID), "lib/a.php"))) {
		t.Error("the repair changed v1's lib/a.php")
	}
	checkQuarantined(t, n, "shell.php", "lib/a.php", "lib/sub/planted.php")
	if rep, err := n.rels.Verify(context.Background(), false, ctl.client()); err != nil || len(rep.Differences) != 0 {
		t.Fatalf("verify after repair: %v %v", rep.Differences, err)
	}
}

func openAuditor(t *testing.T, cfg mirror.AuditConfig) *mirror.Auditor {
	t.Helper()
	a := mirror.NewAuditor(cfg)
	if err := a.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// waitAudit polls the auditor until ok accepts its status.
func waitAudit(t *testing.T, a *mirror.Auditor, what string, ok func(mirror.AuditStatus) bool) mirror.AuditStatus {
	t.Helper()
	var st mirror.AuditStatus
	testutil.Eventually(t, 20*time.Second, func() error {
		if st = a.Status(); !ok(st) {
			return fmt.Errorf("%s: status %+v", what, st)
		}
		return nil
	})
	return st
}

// TestAuditFindsTampering: the inspection finds a replaced file at its next
// check; the content pass finds a file written in place whose time was set
// back (its identity unchanged); with Repair the audit puts both back.
func TestAuditFindsTampering(t *testing.T) {
	for _, repair := range []bool{false, true} {
		t.Run(fmt.Sprintf("repair=%v", repair), func(t *testing.T) {
			ctl := newFakeController(t)
			n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
			v1 := ctl.publish(looseTree("1"))
			mustApply(t, n, v1, ctl.client())
			a := openAuditor(t, mirror.AuditConfig{Releases: n.rels, CheckInterval: 50 * time.Millisecond,
				HashPeriod: 300 * time.Millisecond, Repair: repair,
				Source: func(context.Context) (mirror.Source, error) { return ctl.client(), nil }})
			waitAudit(t, a, "first pass", func(st mirror.AuditStatus) bool {
				return st.Release == v1.ID && !st.HashedAt.IsZero() && st.Count == 0
			})

			cur := n.release(v1.ID)
			mustWrite(t, filepath.Join(cur, "shell.php"), "<?php")
			// In place, with the time set back: only the content tells.
			p := filepath.Join(cur, "lib/sub/b.php")
			fi := mustStat(t, p)
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			mustDo(t, err)
			_, err = f.WriteAt([]byte("#"), 0)
			mustDo(t, err)
			mustDo(t, f.Close())
			mustDo(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))

			if !repair {
				st := waitAudit(t, a, "both found", func(st mirror.AuditStatus) bool {
					return st.Count == 2 && st.Kinds[mirror.KindExtra] == 1 && st.Kinds[mirror.KindTampered] == 1
				})
				if got := kinds(st.Differences); !slices.Equal(got, []string{"extra shell.php", "tampered lib/sub/b.php"}) {
					t.Fatalf("differences %v", got)
				}
				return
			}
			st := waitAudit(t, a, "both repaired", func(st mirror.AuditStatus) bool {
				return st.Repaired >= 2 && st.Count == 0
			})
			checkTree(t, n.target, looseTree("1"))
			t.Logf("status %+v", st)
		})
	}
}

// TestReleaseOfAnOlderVersionIsHardenedAndAdopted: a release made before
// identities were recorded (its directories left writable, as older
// versions did) has its directories fixed at Open, is checked by content by
// the first audit, which records its identities, and is watched by
// identity from then on.
func TestReleaseOfAnOlderVersionIsHardenedAndAdopted(t *testing.T) {
	ctl := newFakeController(t)
	n := mustOpenReleases(t, mirror.ReleasesConfig{Keep: 2})
	v1 := ctl.publish(looseTree("1"))
	mustApply(t, n, v1, ctl.client())
	ids := filepath.Join(n.dir, "identities", v1.ID)
	mustDo(t, os.Remove(ids))
	mustDo(t, os.Chmod(filepath.Join(n.release(v1.ID), "lib"), 0o777))

	reopened := mirror.NewReleases(mirror.ReleasesConfig{Dir: n.dir, Target: n.target, Keep: 2})
	mustDo(t, reopened.Open(context.Background()))
	if bad := writableEntries(t, n.target); len(bad) > 0 {
		t.Fatalf("after Open: writable by group or others: %v", bad)
	}
	a := openAuditor(t, mirror.AuditConfig{Releases: reopened, CheckInterval: 50 * time.Millisecond})
	waitAudit(t, a, "adopted", func(st mirror.AuditStatus) bool { return !st.CheckedAt.IsZero() && st.Count == 0 })
	if _, err := os.Stat(ids); err != nil {
		t.Fatalf("identities not recorded: %v", err)
	}
	p := filepath.Join(n.release(v1.ID), "version.php")
	mustWrite(t, p+".new", "2") // same size, another inode
	mustDo(t, os.Chmod(p+".new", 0o444))
	mustDo(t, os.Rename(p+".new", p))
	st := waitAudit(t, a, "replaced file found", func(st mirror.AuditStatus) bool { return st.Count == 1 })
	if got := kinds(st.Differences); !slices.Equal(got, []string{"tampered version.php"}) {
		t.Fatalf("differences %v", got)
	}
}
