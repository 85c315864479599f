package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
)

// editConfig rewrites node's config file with edit.
func editConfig(t *testing.T, pc *procCluster, node string, edit func(string) string) {
	t.Helper()
	p := filepath.Join(pc.dir, node+".yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, edit(string(data)), 0o644)
}

// peerConfig gives a web node's config a peer upload limit and more
// members to join than the controller.
func (l *netLab) peerConfig(pc *procCluster, node, upload string, join ...string) {
	l.t.Helper()
	editConfig(l.t, pc, node, func(s string) string {
		s = strings.Replace(s, "  keep: 3\n", "  keep: 3\n  peer_upload: "+upload+"\n", 1)
		for _, j := range join {
			s = strings.Replace(s, ":7946]", ":7946, "+l.Addr(j)+":7946]", 1)
		}
		return s
	})
}

// sourceBytes returns what each source gave to node's current or last
// sync.
func (l *netLab) sourceBytes(pc *procCluster, node string) (map[string]mirror.SourceCount, error) {
	st, _, err := l.nodeStatus(pc, node)
	if err != nil {
		return nil, err
	}
	got := map[string]mirror.SourceCount{}
	if st.Sync != nil {
		for _, s := range st.Sync.Sources {
			got[s.Name] = s
		}
	}
	return got, nil
}

// neverPartial watches node's mirror.target until the returned stop is
// called: whenever it exists, it must be the whole source tree (the source
// does not change meanwhile). A partial switch fails the test.
func neverPartial(t *testing.T, pc *procCluster, node string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	checks := 0
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := os.Lstat(pc.target(node)); err != nil {
				continue
			}
			checks++
			if d := mirrortest.DiffTrees(pc.source, pc.target(node)); d != nil {
				t.Errorf("%s serves a tree that is not the published one: %s", node, strings.Join(d[:min(len(d), 5)], "; "))
				return
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		t.Logf("%s: the served tree checked %d times while it synced", node, checks)
	}
}

// TestNetnsPeers: web agents as processes in their own network namespaces.
// A web node that joins while the controller's cable is pulled gets the
// whole tree from a peer that serves it; a web node syncing from two peers
// whose upload is bounded still gets the right tree when one of them is
// killed mid-transfer. Neither ever serves a partial tree.
func TestNetnsPeers(t *testing.T) {
	t.Parallel()
	nodes := []string{"controller", "web-1", "web-2", "web-3"}
	lab := newNetLab(t, nodes...)
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 1500, 8000, 21)
	lab.writeConfig(pc, "controller", "controller", "")
	for _, n := range nodes[1:] {
		lab.writeConfig(pc, n, "web", "controller")
	}
	lab.peerConfig(pc, "web-1", "{rate: 2MB/s, concurrency: 4}")
	lab.peerConfig(pc, "web-2", "{rate: 2MB/s, concurrency: 4}", "web-1")
	lab.peerConfig(pc, "web-3", "{rate: 2MB/s, concurrency: 4}", "web-1", "web-2")
	begin := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(begin).Seconds(), what) }

	lab.start(pc, "controller")
	lab.start(pc, "web-1")
	lab.waitState(pc, "controller", "web-1", gossip.StateAlive, 30*time.Second)
	poll(t, 10*time.Second, 250*time.Millisecond, func() error {
		out, err := lab.cli(pc, "controller", "publish", "-m", "first")
		if err != nil {
			return fmt.Errorf("publish: %v %s", err, out)
		}
		return nil
	})
	pc.converged("web-1")
	step("published seq 1; web-1 serves it")

	// Peers only: the controller's cable is pulled after the publish.
	lab.cut("controller")
	lab.waitState(pc, "web-1", "controller", gossip.StateDead, 40*time.Second)
	stop := neverPartial(t, pc, "web-2")
	lab.start(pc, "web-2")
	pc.converged("web-2")
	stop()
	step("web-2 joined with the controller cut off and serves seq 1")
	got, err := lab.sourceBytes(pc, "web-2")
	if err != nil {
		t.Fatal(err)
	}
	if w1 := got["web-1"]; w1.Objects < 1500 || len(got) != 1 {
		t.Errorf("web-2's sources: %+v; want every object from web-1 alone", got)
	}
	out, err := lab.cli(pc, "web-1", "status")
	if err != nil || !strings.Contains(out, "sent to peers:") || !strings.Contains(out, "limit 2MB/s, 4 at once") {
		t.Errorf("status on web-1 does not show what it sent to peers: %v\n%s", err, out)
	}

	// A peer that dies mid-transfer: web-3 fetches a larger tree from
	// web-1 and web-2 (2 MB/s each), and web-1 is killed while it sends.
	lab.heal("controller")
	lab.waitState(pc, "controller", "web-2", gossip.StateAlive, 75*time.Second)
	writeRandomTree(t, filepath.Join(pc.source, "more"), 1500, 8000, 22)
	out, err = lab.cli(pc, "controller", "publish", "-m", "second")
	if err != nil || !strings.Contains(out, "published: seq 2") {
		t.Fatalf("publish: %v %s", err, out)
	}
	pc.converged("web-1", "web-2")
	step("published seq 2; web-1 and web-2 serve it")
	stop = neverPartial(t, pc, "web-3")
	lab.start(pc, "web-3")
	poll(t, 60*time.Second, 100*time.Millisecond, func() error {
		got, err := lab.sourceBytes(pc, "web-3")
		if err != nil {
			return err
		}
		if got["web-1"].Bytes < 1<<20 {
			return fmt.Errorf("web-1 sent web-3 %d bytes so far", got["web-1"].Bytes)
		}
		return nil
	})
	out, _ = lab.cli(pc, "web-3", "status")
	pc.kill("web-1")
	step("web-1 killed while web-3 fetched from it")
	if !strings.Contains(out, "syncing (content by source):") || !strings.Contains(out, "web-1 (peer)") {
		t.Errorf("status on web-3 while it synced does not say where from:\n%s", out)
	}
	pc.converged("web-3")
	stop()
	step("web-3 serves seq 2")
	got, err = lab.sourceBytes(pc, "web-3")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("web-3's sources: %+v", got)
	if w1 := got["web-1"]; w1.Failures == 0 {
		t.Errorf("web-1 died under web-3's requests, yet no failure counted: %+v", w1)
	}
	if got["web-2"].Bytes == 0 {
		t.Errorf("web-2 sent nothing: %+v", got)
	}
}
