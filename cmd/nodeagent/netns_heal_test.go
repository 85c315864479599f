package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// nft runs nft in node's namespace.
func (l *netLab) nft(node string, args ...string) {
	l.t.Helper()
	full := append([]string{"netns", "exec", l.Node(node).NS, "nft"}, args...)
	if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
		l.t.Fatalf("nft %s in %s: %v %s", strings.Join(args, " "), node, err, out)
	}
}

// dropOut drops what node sends that matches expr (an nft match such as
// "ip daddr 10.1.2.3" or "numgen random mod 10 0"), until restore.
func (l *netLab) dropOut(node, expr string) {
	l.t.Helper()
	l.nft(node, "add", "table", "inet", "lab")
	l.nft(node, "add", "chain", "inet", "lab", "out", "{ type filter hook output priority 0 ; }")
	l.nft(node, append([]string{"add", "rule", "inet", "lab", "out"}, append(strings.Fields(expr), "drop")...)...)
}

// restore removes every rule dropOut added on node.
func (l *netLab) restore(node string) {
	l.t.Helper()
	l.nft(node, "delete", "table", "inet", "lab")
}

// delay adds delay to what node sends, if the kernel has netem; it reports
// whether it could.
func (l *netLab) delay(node string, d time.Duration) bool {
	l.t.Helper()
	args := []string{"netns", "exec", l.Node(node).NS, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", d.String()}
	return exec.Command("ip", args...).Run() == nil
}

// startCluster starts every node of the lab: "controller" as the
// controller, the others as web nodes joining it.
func (l *netLab) startCluster(pc *procCluster) {
	l.t.Helper()
	for _, node := range l.Names() {
		role, ctl := "web", "controller"
		if node == "controller" {
			role, ctl = "controller", ""
		}
		l.writeConfig(pc, node, role, ctl)
		l.start(pc, node)
	}
}

// nodeStatus returns node's /v1/status and member states.
func (l *netLab) nodeStatus(pc *procCluster, node string) (api.Status, map[string]string, error) {
	out, err := l.cli(pc, node, "status", "-json")
	if err != nil {
		return api.Status{}, nil, fmt.Errorf("status on %s: %v %s", node, err, out)
	}
	var st struct {
		Node api.Status `json:"node"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return api.Status{}, nil, fmt.Errorf("status -json on %s: %v", node, err)
	}
	states, err := memberStates(out)
	return st.Node, states, err
}

// waitWhole waits until every node sees every node alive and returns how
// long that took.
func (l *netLab) waitWhole(pc *procCluster, nodes []string, timeout time.Duration) time.Duration {
	l.t.Helper()
	start := time.Now()
	poll(l.t, timeout, 250*time.Millisecond, func() error {
		for _, viewer := range nodes {
			_, states, err := l.nodeStatus(pc, viewer)
			if err != nil {
				return err
			}
			for _, n := range nodes {
				if states[n] != gossip.StateAlive {
					return fmt.Errorf("%s sees %s as %q", viewer, n, states[n])
				}
			}
		}
		return nil
	})
	return time.Since(start)
}

// TestNetnsSplitVisibleAndHealed runs 1 controller and 2 web agents in
// their own network namespaces with the default gossip timing, and breaks
// the network three ways:
//   - the controller cut off for longer than the split threshold: both web
//     nodes report it (gossip:controller), and after the cable is back the
//     cluster is whole again by itself;
//   - one-way loss: everything the controller sends to web-1 is dropped for
//     20 s; memberlist's indirect probes through web-2 must keep everyone
//     alive in everyone's view;
//   - 10% loss on every node's packets (and 100 ms delay when the kernel
//     has netem): a publish still reaches both web nodes, and the cluster is
//     whole at the end.
func TestNetnsSplitVisibleAndHealed(t *testing.T) {
	t.Parallel()
	nodes := []string{"controller", "web-1", "web-2"}
	lab := newNetLab(t, nodes...)
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nft (nftables) is missing")
		}
		t.Skip("nft (nftables) is missing")
	}
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 100, 5000, 21)
	lab.startCluster(pc)
	begin := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(begin).Seconds(), what) }
	lab.waitWhole(pc, nodes, 60*time.Second)
	poll(t, 20*time.Second, 250*time.Millisecond, func() error {
		_, err := lab.cli(pc, "controller", "publish", "-m", "first")
		return err
	})
	pc.converged("web-1", "web-2")
	step("cluster formed, seq 1 everywhere")

	// 1. The controller cut off: a split the web nodes report.
	lab.cut("controller")
	step("controller cut")
	for _, web := range []string{"web-1", "web-2"} {
		poll(t, 90*time.Second, 500*time.Millisecond, func() error {
			st, _, err := lab.nodeStatus(pc, web)
			if err != nil {
				return err
			}
			if c := st.Gossip.Controller; c == nil || !c.Missing || c.Name != "controller" {
				return fmt.Errorf("%s: gossip status %+v, want the controller missing", web, st.Gossip)
			}
			return nil
		})
	}
	step("both web nodes report the controller missing")
	if out, err := lab.cli(pc, "web-1", "status"); err != nil || !strings.Contains(out, "WARNING: no live controller seen for") {
		t.Errorf("status on web-1 during the split: %v\n%s", err, out)
	}
	lab.heal("controller")
	took := lab.waitWhole(pc, nodes, 60*time.Second)
	step(fmt.Sprintf("cable back: whole again after %.1fs", took.Seconds()))
	for _, web := range []string{"web-1", "web-2"} {
		poll(t, 10*time.Second, 250*time.Millisecond, func() error {
			if st, _, err := lab.nodeStatus(pc, web); err != nil || st.Gossip.Controller.Missing {
				return fmt.Errorf("%s still reports the controller missing (%v)", web, err)
			}
			return nil
		})
	}

	// 2. One-way loss between the controller and web-1.
	lab.dropOut("controller", "ip daddr "+lab.Addr("web-1"))
	step("controller -> web-1 dropped")
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, viewer := range nodes {
			_, states, err := lab.nodeStatus(pc, viewer)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range nodes {
				if states[n] != gossip.StateAlive {
					t.Fatalf("%s sees %s as %q during a one-way loss", viewer, n, states[n])
				}
			}
		}
		time.Sleep(500 * time.Millisecond) // sampling a steady state, not waiting for one
	}
	lab.restore("controller")
	step("one-way loss over: nobody was ever seen dead")

	// 3. 10% loss everywhere (and 100 ms delay with netem).
	delayed := true
	for _, n := range nodes {
		lab.dropOut(n, "numgen random mod 10 0")
		delayed = lab.delay(n, 100*time.Millisecond) && delayed
	}
	step(fmt.Sprintf("10%% loss on every node (100 ms delay: %v)", delayed))
	writeFile(t, filepath.Join(pc.source, "mod01/sub1/file0001.php"), "<?php // lossy", 0o644)
	poll(t, 30*time.Second, 500*time.Millisecond, func() error {
		out, err := lab.cli(pc, "controller", "publish", "-m", "lossy")
		if err != nil {
			return fmt.Errorf("publish: %v %s", err, out)
		}
		return nil
	})
	pc.converged("web-1", "web-2")
	step("publish under loss reached both web nodes")
	for _, n := range nodes {
		lab.restore(n)
	}
	took = lab.waitWhole(pc, nodes, 30*time.Second)
	step(fmt.Sprintf("loss over: whole after %.1fs", took.Seconds()))
}
