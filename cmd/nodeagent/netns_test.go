package main_test

// A multi-host test: every agent runs in its own network namespace, wired to
// the others by veth pairs on a bridge in a hub namespace, so a partition is a
// link going down, not a killed process.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
	"github.com/nodeagent/nodeagent/internal/testutil/netlab"
)

// netLab is a netlab.Lab for a test: errors fail it.
type netLab struct {
	t *testing.T
	*netlab.Lab
}

// newNetLab creates the namespaces of nodes; they are removed when the test
// ends, whatever its outcome. It skips the test when it cannot run here
// (and fails it with CI=true).
func newNetLab(t *testing.T, nodes ...string) *netLab {
	t.Helper()
	return &netLab{t: t, Lab: netlab.NewForTest(t, nodes)}
}

// cut takes node's bridge port down: its cable is pulled.
func (l *netLab) cut(node string) {
	l.t.Helper()
	if err := l.Cut(node); err != nil {
		l.t.Fatal(err)
	}
}

// heal puts node's bridge port back up.
func (l *netLab) heal(node string) {
	l.t.Helper()
	if err := l.Heal(node); err != nil {
		l.t.Fatal(err)
	}
}

// writeConfig writes node's config: gossip and cluster API on the lab
// address with the default ports, local API on the namespace's loopback.
func (l *netLab) writeConfig(pc *procCluster, node, role, controller string) {
	l.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "node: %s\nrole: %s\ndata_dir: %s\nlog: {level: debug}\n", node, role, pc.dataDir(node))
	fmt.Fprintf(&b, "gossip:\n  bind: %s:7946\n  key_file: %s\n", l.Addr(node), pc.key)
	if role == "controller" {
		fmt.Fprintf(&b, "mirror:\n  source: %s\n  keep: 3\n", pc.source)
	} else {
		fmt.Fprintf(&b, "  join: [%s:7946]\nmirror:\n  target: %s\n  keep: 3\n", l.Addr(controller), pc.target(node))
	}
	fmt.Fprintf(&b, "cluster: {listen: %s:7947}\napi: {listen: 127.0.0.1:7948, token_file: %s}\n", l.Addr(node), pc.token)
	writeFile(l.t, filepath.Join(pc.dir, node+".yaml"), b.String(), 0o644)
}

// start runs `nodeagent run` for node inside its namespace. `ip netns exec`
// execs the agent, so pc.kill and pc.stopAll signal the agent itself.
func (l *netLab) start(pc *procCluster, node string) {
	l.t.Helper()
	logf, err := os.OpenFile(filepath.Join(pc.dir, node+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	defer logf.Close()
	cmd := l.Command(node, binary, "run", "-config", filepath.Join(pc.dir, node+".yaml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	pc.procs[node] = cmd
}

// cli runs a CLI command against node's local API, inside its namespace.
func (l *netLab) cli(pc *procCluster, node string, args ...string) (string, error) {
	full := append([]string{args[0], "-addr", "http://127.0.0.1:7948", "-token-file", pc.token, "-config", "/nonexistent"}, args[1:]...)
	out, err := l.Command(node, binary, full...).CombinedOutput()
	return string(out), err
}

// memberStates returns name -> state from `nodeagent status -json` output.
func memberStates(out string) (map[string]string, error) {
	var st struct {
		Members []gossip.Member `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("status -json: %v: %s", err, out)
	}
	states := map[string]string{}
	for _, m := range st.Members {
		states[m.Name] = m.State
	}
	return states, nil
}

// waitState polls `status -json` on viewer until member is in state want.
func (l *netLab) waitState(pc *procCluster, viewer, member, want string, timeout time.Duration) {
	l.t.Helper()
	poll(l.t, timeout, 250*time.Millisecond, func() error {
		out, err := l.cli(pc, viewer, "status", "-json")
		if err != nil {
			return fmt.Errorf("status on %s: %v %s", viewer, err, out)
		}
		states, err := memberStates(out)
		if err != nil {
			return err
		}
		if got := states[member]; got != want {
			return fmt.Errorf("%s sees %s as %q, want %q (all: %v)", viewer, member, got, want, states)
		}
		return nil
	})
}

// poll is eventually with a chosen interval, for checks that spawn processes.
func poll(t *testing.T, timeout, every time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(every)
	}
}

// TestNetnsPartitionAndHeal: a web agent cut off from the others is seen as
// failed by the rest within the gossip timeouts, misses a publish, and after
// the cut heals it rejoins and converges with no operator action.
func TestNetnsPartitionAndHeal(t *testing.T) {
	t.Parallel()
	nodes := []string{"controller", "web-1", "web-2"}
	lab := newNetLab(t, nodes...)
	pc := newProcCluster(t) // its Cleanup (stop the agents) runs before the lab's
	writeRandomTree(t, pc.source, 200, 10000, 11)
	lab.startCluster(pc)
	begin := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(begin).Seconds(), what) }

	lab.waitState(pc, "controller", "web-1", gossip.StateAlive, 30*time.Second)
	lab.waitState(pc, "controller", "web-2", gossip.StateAlive, 30*time.Second)
	step("cluster formed")
	poll(t, 10*time.Second, 250*time.Millisecond, func() error {
		out, err := lab.cli(pc, "controller", "publish", "-m", "first")
		if err == nil && !strings.Contains(out, "published: seq 1") {
			t.Fatalf("publish output: %s", out)
		}
		if err != nil {
			return fmt.Errorf("publish: %v %s", err, out)
		}
		return nil
	})
	pc.converged("web-1", "web-2")
	step("published seq 1, both web nodes converged")

	lab.cut("web-2")
	step("web-2 cut")
	// LAN gossip: probe every 1 s, suspicion 4 s and up; allow plenty.
	lab.waitState(pc, "controller", "web-2", gossip.StateDead, 40*time.Second)
	step("controller sees web-2 dead")
	lab.waitState(pc, "web-1", "web-2", gossip.StateDead, 20*time.Second)
	step("web-1 sees web-2 dead")

	writeFile(t, filepath.Join(pc.source, "mod03/sub3/file0003.php"), "<?php // while web-2 is cut", 0o644)
	out, err := lab.cli(pc, "controller", "publish", "-m", "second")
	if err != nil || !strings.Contains(out, "published: seq 2") {
		t.Fatalf("publish while cut: %v %s", err, out)
	}
	pc.converged("web-1")
	step("published seq 2, web-1 converged")
	if d := mirrortest.DiffTrees(pc.source, pc.target("web-2")); d == nil {
		t.Fatal("web-2 got revision 2 while cut off")
	}
	// The partition is web-2's alone: the controller still sees web-1 alive.
	lab.waitState(pc, "controller", "web-1", gossip.StateAlive, 5*time.Second)

	lab.heal("web-2")
	step("web-2 healed")
	// The reconnect loop retries missing members every 2 s (LAN default).
	lab.waitState(pc, "controller", "web-2", gossip.StateAlive, 30*time.Second)
	step("controller sees web-2 alive again")
	lab.waitState(pc, "web-2", "controller", gossip.StateAlive, 30*time.Second)
	lab.waitState(pc, "web-2", "web-1", gossip.StateAlive, 30*time.Second)
	pc.converged("web-2")
	step("web-2 converged to seq 2")
}
