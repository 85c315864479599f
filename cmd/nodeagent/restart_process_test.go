package main_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/loadtest"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// restartCluster is a controller and one web node with an edge in front of
// a loadtest backend, the web node in sync.
type restartCluster struct {
	*procCluster
	edge    edgeNode
	cluster string // web-1's cluster API
}

func newRestartCluster(t *testing.T, store *fdStore) *restartCluster {
	t.Helper()
	backend := httptest.NewServer(loadtest.Backend())
	t.Cleanup(backend.Close)
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 20, 1000, 3)
	pc.writeConfig("controller", "controller")
	rc := &restartCluster{procCluster: pc, edge: pc.writeEdgeConfig("web-1", backend.URL)}
	rc.cluster = configValue(t, filepath.Join(pc.dir, "web-1.yaml"), "cluster: {listen: ", "}")
	pc.start("controller")
	pc.publish("first")
	if store != nil {
		store.start(pc, "web-1")
	} else {
		pc.start("web-1")
	}
	pc.converged("web-1")
	c := insecureClient()
	testutil.Eventually(t, 60*time.Second, func() error { return get200(c, rc.readyz()) })
	return rc
}

func (rc *restartCluster) readyz() string { return "https://" + rc.cluster + "/readyz" }

func (rc *restartCluster) load() *loadtest.Load {
	return loadtest.Start(loadtest.Config{
		Edge: "https://" + rc.edge.https, Probe: rc.readyz(), Workers: 4, Slow: 1500 * time.Millisecond,
	})
}

// configValue returns what follows prefix up to end on a line of a config
// file.
func configValue(t *testing.T, path, prefix, end string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			v, _, _ := strings.Cut(rest, end)
			return v
		}
	}
	t.Fatalf("%s: no line starting %q", path, prefix)
	return ""
}

func insecureClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

func get200(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// progressed waits until the load has answered more fast and slow
// requests than in before.
func progressed(t *testing.T, l *loadtest.Load, before loadtest.Result) loadtest.Result {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, func() error {
		now := l.Snapshot()
		if now.OK < before.OK+20 || now.SlowOK <= before.SlowOK || now.ProbeOK <= before.ProbeOK {
			return fmt.Errorf("no progress since the restart: %+v", now)
		}
		return nil
	})
	return l.Snapshot()
}

// exited signals node's process and waits for it to exit, with status 0
// unless it was killed.
func (rc *restartCluster) exited(t *testing.T, node string, sig syscall.Signal) {
	t.Helper()
	cmd := rc.procs[node]
	cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil && sig != syscall.SIGKILL {
			t.Fatalf("%s after %s: %v", node, sig, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s still running 60s after %s", node, sig)
	}
	delete(rc.procs, node)
}

func checkLoad(t *testing.T, res loadtest.Result) {
	t.Helper()
	t.Logf("answered %d, slow %d, probes %d; failed %d (refused %d), slow failed %d, probes failed %d",
		res.OK, res.SlowOK, res.ProbeOK, res.Failed, res.Refused, res.SlowFailed, res.ProbeFailed)
	if res.Failed > 0 || res.SlowFailed > 0 || res.ProbeFailed > 0 {
		t.Errorf("clients saw failures across the restarts:\n%s", strings.Join(res.Errors, "\n"))
	}
}

// TestProcessRestartUnderSystemd: a web agent under a stand-in for
// systemd's fd store restarts (SIGINT, then a new process, as `systemctl
// restart` and a package upgrade do) and re-executes itself (SIGUSR2)
// while clients keep sending GETs and POSTs through the edge, a slow
// request is always in flight and a load balancer probes /readyz: no
// connection is refused, no request fails, every slow request completes,
// /readyz stays 200, and the agent's four sockets are stored once each.
func TestProcessRestartUnderSystemd(t *testing.T) {
	store := newFDStore(t)
	rc := newRestartCluster(t, store)
	store.waitState("READY=1")
	load := rc.load()
	defer load.Stop()
	res := progressed(t, load, loadtest.Result{})
	for i := range 3 {
		store.forget()
		rc.exited(t, "web-1", syscall.SIGINT)
		store.start(rc.procCluster, "web-1")
		store.waitState("READY=1")
		res = progressed(t, load, res)
		t.Logf("restart %d: %+v", i+1, res)
	}
	for i := range 2 {
		pid := rc.procs["web-1"].Process.Pid
		store.forget()
		rc.procs["web-1"].Process.Signal(syscall.SIGUSR2)
		store.waitState("RELOADING=1")
		store.waitState("READY=1")
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("re-exec %d: the agent's PID %d is gone: %v", i+1, pid, err)
		}
		res = progressed(t, load, res)
		t.Logf("re-exec %d: %+v", i+1, res)
	}
	checkLoad(t, load.Stop())
	names := store.names()
	slices.Sort(names)
	if want := []string{"api.listen", "cluster.listen", "edge.http", "edge.https"}; !slices.Equal(names, want) {
		t.Errorf("fd store holds %v, want %v", names, want)
	}
}

// TestProcessKill9QueuesConnections: after kill -9 the stored sockets stay
// open: clients that connect while no agent runs wait in the accept queue
// and are answered once the next process starts (systemd restarts it after
// RestartSec); none is refused.
func TestProcessKill9QueuesConnections(t *testing.T) {
	store := newFDStore(t)
	rc := newRestartCluster(t, store)
	store.waitState("READY=1")
	rc.exited(t, "web-1", syscall.SIGKILL)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	c := insecureClient()
	c.Timeout = 60 * time.Second
	for _, url := range []string{"https://" + rc.edge.https + "/", "https://" + rc.edge.https + "/", rc.readyz(), "http://" + rc.edge.api + "/healthz"} {
		wg.Go(func() { errs <- get200(c, url) })
	}
	// The clients connect while no agent runs: they wait in the queues.
	testutil.Eventually(t, 30*time.Second, func() error {
		for name, want := range map[string]int{"edge.https": 2, "cluster.listen": 1, "api.listen": 1} {
			if n := store.queued(name); n < want {
				return fmt.Errorf("%s: %d connections queued, want %d", name, n, want)
			}
		}
		return nil
	})
	store.start(rc.procCluster, "web-1")
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a client that connected while the agent was down: %v", err)
		}
	}
}

// TestProcessReexecWithoutSystemd: with nothing holding its sockets (no
// systemd), SIGUSR2 re-executes the agent in place (same PID, the binary
// on disk) and the sockets survive: no failed or refused request, /readyz
// stays 200.
func TestProcessReexecWithoutSystemd(t *testing.T) {
	rc := newRestartCluster(t, nil)
	load := rc.load()
	defer load.Stop()
	res := progressed(t, load, loadtest.Result{})
	cmd := rc.procs["web-1"]
	logFile := filepath.Join(rc.dir, "web-1.log")
	for i := range 2 {
		cmd.Process.Signal(syscall.SIGUSR2)
		testutil.Eventually(t, 60*time.Second, func() error {
			b, _ := os.ReadFile(logFile)
			if n := strings.Count(string(b), "listening on the socket kept across the restart"); n < 4*(i+1) {
				return fmt.Errorf("re-exec %d: %d sockets taken over so far", i+1, n)
			}
			return nil
		})
		res = progressed(t, load, res)
	}
	if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
		t.Fatalf("the agent's PID is gone after the re-execs: %v", err)
	}
	checkLoad(t, load.Stop())
}

// TestProcessRestartPortChange: a restart after edge.https moved to
// another port and edge.http was turned off: the new port is bound, the
// kept sockets of the old port and of edge.http are closed (refused) and
// forgotten by the fd store, never both ports held.
func TestProcessRestartPortChange(t *testing.T) {
	store := newFDStore(t)
	rc := newRestartCluster(t, store)
	store.waitState("READY=1")
	old := rc.edge
	moved := edgeNode{https: fmt.Sprintf("127.0.0.1:%d", freePort(t)), http: "", api: old.api}
	rc.writeEdgeConfigAt("web-1", moved, "http://"+configValue(t, filepath.Join(rc.dir, "web-1.yaml"), "  backend: http://", "\n"))
	store.forget()
	rc.exited(t, "web-1", syscall.SIGINT)
	store.start(rc.procCluster, "web-1")
	store.waitState("READY=1")
	c := insecureClient()
	if err := get200(c, "https://"+moved.https+"/"); err != nil {
		t.Errorf("the new edge.https: %v", err)
	}
	for _, addr := range []string{old.https, old.http} {
		if err := get200(c, "http://"+addr+"/"); err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("%s (no longer in the config): %v, want connection refused", addr, err)
		}
	}
	names := store.names()
	slices.Sort(names)
	if want := []string{"api.listen", "cluster.listen", "edge.https"}; !slices.Equal(names, want) {
		t.Errorf("fd store holds %v, want %v", names, want)
	}
}
