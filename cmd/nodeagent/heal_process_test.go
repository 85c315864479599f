package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
)

// stop signals node's agent and waits for it to exit.
func (pc *procCluster) stop(node string, sig os.Signal) {
	pc.t.Helper()
	cmd := pc.procs[node]
	if err := cmd.Process.Signal(sig); err != nil {
		pc.t.Fatal(err)
	}
	cmd.Wait()
	delete(pc.procs, node)
}

// wholeCluster waits until the controller sees every node alive.
func (pc *procCluster) wholeCluster(timeout time.Duration, nodes ...string) {
	pc.t.Helper()
	poll(pc.t, timeout, 100*time.Millisecond, func() error {
		out, err := pc.cli("status", "-json")
		if err != nil {
			return fmt.Errorf("status: %v %s", err, out)
		}
		states, err := memberStates(out)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if states[n] != gossip.StateAlive {
				return fmt.Errorf("the controller sees %s as %q (all: %v)", n, states[n], states)
			}
		}
		return nil
	})
}

// TestProcessControllerRestartHeals is the split of issue 10, with the
// default (LAN) gossip timing: `kill -INT` the controller agent (what
// systemd sends on a restart), start it again with the same data_dir and
// ports: the cluster is whole again and a publish reaches every web node.
// Then the same after `kill -9` and a quick restart. The controller has no
// join list; the web nodes join it.
func TestProcessControllerRestartHeals(t *testing.T) {
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 50, 2000, 5)
	pc.writeConfig("controller", "controller")
	pc.writeConfig("web-1", "web")
	pc.writeConfig("web-2", "web")
	for _, n := range []string{"controller", "web-1", "web-2"} {
		pc.start(n)
	}
	pc.publish("first")
	pc.converged("web-1", "web-2")
	pc.wholeCluster(30*time.Second, "web-1", "web-2")

	for i, sig := range []os.Signal{syscall.SIGINT, syscall.SIGKILL} {
		pc.stop("controller", sig)
		start := time.Now()
		pc.start("controller")
		pc.wholeCluster(30*time.Second, "web-1", "web-2")
		t.Logf("after %s: the controller sees both web nodes alive %.1fs after its start", sig, time.Since(start).Seconds())
		writeFile(t, filepath.Join(pc.source, "mod00/sub0/file0000.php"), fmt.Sprintf("<?php // restart %d", i), 0o644)
		pc.publish(fmt.Sprintf("after restart %d", i))
		pc.converged("web-1", "web-2")
	}
}
