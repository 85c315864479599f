package faults_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	sha256 "github.com/minio/sha256-simd"

	"github.com/nodeagent/nodeagent/internal/faults"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// TestResumableSync: a web agent killed with SIGKILL in the middle of a
// large fetch, in a build that started from its warm spare, keeps what it
// had fetched and verified. Started again, it
// fetches only the content its partial release lacks (counted on the wire
// by the agent's own metric), and the release is exactly the manifest.
// Then a large leftover of a crash does not delay the next start: the
// agent serves first and removes it in the background, with a log line.
func TestResumableSync(t *testing.T) {
	requireLab(t)
	c, err := startCluster(t, faults.Options{Webs: 1, Dir: t.TempDir()})
	closeCluster(t, &c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const web = "web-1"
	old, err := c.Status(ctx, web)
	if err != nil {
		t.Fatal(err)
	}

	spare := waitSpare(ctx, t, c, web)

	// 64 MiB of new content through a 100 Mbit/s link: about 6 s.
	if err := c.Lab().LimitRate(faults.Controller, "100mbit"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBlobs(64, 1<<20, 1); err != nil {
		t.Fatal(err)
	}
	rev, err := c.Publish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killedAt := killMidFetch(ctx, t, c, web, rev.ID)

	m, err := c.Manifest(rev.ID)
	if err != nil {
		t.Fatal(err)
	}
	before, err := c.Manifest(old.Revision.Applied.ID)
	if err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(c.DataDir(web), "mirror", "releases", ".partial")
	have := map[mirror.Hash]bool{}
	if _, err := os.Stat(partial); err != nil {
		t.Errorf("no partial release after the kill: %v", err)
	} else {
		have = validContent(t, partial, m)
		if fi, err := os.Stat(partial); err != nil || !os.SameFile(spare, fi) {
			t.Errorf("the build did not start from the warm spare (%v)", err)
		}
	}
	missing, total := missingBytes(m, before, have)
	t.Logf("killed: the partial release holds %d objects; %d of %d new bytes missing", len(have), missing, total)

	if err := c.StartAgent(web); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitServing(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	received, err := c.Metric(ctx, web, "nodeagent_sync_received_bytes_total")
	if err != nil {
		t.Fatal(err)
	}
	// The manifest, TLS records and HTTP framing come on top of the
	// content: 256 KiB and 2%.
	slack := 256<<10 + missing/50
	t.Logf("after the restart the agent received %.0f bytes for %d missing", received, missing)
	if int64(received) > missing+slack {
		t.Errorf("received %.0f bytes after the restart; only %d were missing (+%d slack)", received, missing, slack)
	}
	// Most of what came before the kill (a few verified objects may still
	// have been queued for writing) is not fetched again.
	if int64(received) > total-killedAt/2+slack {
		t.Errorf("received %.0f of %d bytes after the restart: what came before the kill (%d) was fetched again",
			received, total, killedAt)
	}
	if err := c.VerifyTarget(web); err != nil {
		t.Error(err)
	}
	checkLeftoverCleanup(ctx, t, c, web)
}

// waitSpare waits until web has made its warm spare (it exists and the
// sync phase is no longer spare) and returns it.
func waitSpare(ctx context.Context, t *testing.T, c *faults.Cluster, web string) os.FileInfo {
	t.Helper()
	p := filepath.Join(c.DataDir(web), "mirror", "releases", ".spare")
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		fi, err := os.Stat(p)
		if err == nil {
			if st, err := c.Status(ctx, web); err == nil && st.Sync != nil && st.Sync.Phase == mirror.PhaseIdle {
				return fi
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s made no warm spare", web)
	return nil
}

// killMidFetch kills web with SIGKILL once it has fetched between 30% and
// 70% of the bytes of revision id, and returns how many it had.
func killMidFetch(ctx context.Context, t *testing.T, c *faults.Cluster, web, id string) int64 {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		st, err := c.Status(ctx, web)
		if err == nil && st.Sync != nil && st.Sync.Revision.ID == id && st.Sync.Phase == mirror.PhaseFetch &&
			st.Sync.Bytes > 0 && st.Sync.BytesDone*10 >= st.Sync.Bytes*3 {
			if st.Sync.BytesDone*10 > st.Sync.Bytes*7 {
				t.Fatalf("the fetch went too fast to be killed in the middle: %+v", st.Sync)
			}
			if err := c.Stop(web, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			t.Logf("killed %s at %d of %d bytes", web, st.Sync.BytesDone, st.Sync.Bytes)
			return st.Sync.BytesDone
		}
		if err == nil && st.Revision.Applied != nil && st.Revision.Applied.ID == id {
			t.Fatal("the sync finished before it could be killed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the sync never reached the middle of its fetch")
	return 0
}

// validContent returns the hashes of the files under dir whose content is
// what m says at their path.
func validContent(t *testing.T, dir string, m *mirror.Manifest) map[mirror.Hash]bool {
	t.Helper()
	have := map[mirror.Hash]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		e, ok := m.Lookup(filepath.ToSlash(rel))
		if !ok {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		if mirror.Hash(h.Sum(nil)) == e.SHA256 {
			have[e.SHA256] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the partial release: %v", err)
	}
	return have
}

// missingBytes sums the content of m that neither the release of before nor
// have holds, and all of m's content before lacks.
func missingBytes(m, before *mirror.Manifest, have map[mirror.Hash]bool) (missing, total int64) {
	old := map[mirror.Hash]bool{}
	for _, e := range before.Entries {
		old[e.SHA256] = true
	}
	seen := map[mirror.Hash]bool{}
	for _, e := range m.Entries {
		if e.Type != mirror.TypeFile || seen[e.SHA256] || old[e.SHA256] {
			continue
		}
		seen[e.SHA256] = true
		total += e.Size
		if !have[e.SHA256] {
			missing += e.Size
		}
	}
	return missing, total
}

// checkLeftoverCleanup plants the leftover of an older agent's interrupted
// build (20,000 files) and restarts web: the agent starts and serves, and
// removes the leftover afterwards, logging what, how much and how long.
func checkLeftoverCleanup(ctx context.Context, t *testing.T, c *faults.Cluster, web string) {
	t.Helper()
	if err := c.Stop(web, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(c.DataDir(web), "mirror", "releases", ".tmp-"+strings.Repeat("5a", 32))
	for d := range 100 {
		dir := filepath.Join(left, fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 200 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.php", f)), []byte("<?php // left\n"), 0o444); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := c.StartAgent(web); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		log := c.LogTail(web, 1<<20)
		log = log[strings.LastIndex(log, "=== faults: start"):]
		// The warm spare of the run before is set aside and cleaned up too.
		started := strings.Index(log, `msg="agent started"`)
		cleaned := strings.Index(log, `msg="cleanup done" node=`+web+` what="interrupted build or removal"`)
		if cleaned >= 0 {
			line := log[cleaned:]
			line = line[:strings.IndexByte(line, '\n')]
			t.Logf("cleanup: %s", line)
			if started < 0 || started > cleaned {
				t.Errorf("the leftover was removed before the agent started")
			}
			for _, want := range []string{"files=20000 ", "bytes=280000 ", "what=", "duration="} {
				if !strings.Contains(line, want) {
					t.Errorf("the cleanup line lacks %q", want)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cleanup line in the log of %s after its start", web)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Lstat(left); err == nil {
		t.Error("the leftover is still there")
	}
	if _, err := c.WaitServing(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
}
