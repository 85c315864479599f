package main_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
)

// TestProcessForget: after a scale-in (web-2's agent stopped for good),
// `nodeagent forget` refuses the live web-1 (exit 1, naming why, nothing
// changed), forgets web-2 (exit 0, printing what it forgot), and status no
// longer lists it; forgetting it again names it as unknown (exit 1).
func TestProcessForget(t *testing.T) {
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 20, 2000, 10)
	for _, n := range []struct{ node, role string }{{"controller", "controller"}, {"web-1", "web"}, {"web-2", "web"}} {
		pc.writeConfig(n.node, n.role)
		pc.start(n.node)
	}
	pc.publish("first")
	pc.converged("web-1", "web-2")
	pc.wholeCluster(30*time.Second, "web-1", "web-2")
	pc.stop("web-2", syscall.SIGTERM)
	poll(t, 30*time.Second, 100*time.Millisecond, func() error {
		out, err := pc.cli("status", "-json")
		if err != nil {
			return fmt.Errorf("status: %v %s", err, out)
		}
		states, err := memberStates(out)
		if err != nil || states["web-2"] != gossip.StateLeft {
			return fmt.Errorf("the controller sees web-2 as %q (%v)", states["web-2"], err)
		}
		return nil
	})

	out, err := pc.cli("forget", "web-1", "web-2")
	if exitCode(err) != 1 || !strings.Contains(out, "web-1: not forgotten: web-1 is alive: stop its agent first (409)") ||
		!strings.Contains(out, "web-2: forgotten (web, left at 127.0.0.1:") || !strings.Contains(out, "1 of 2 not forgotten") {
		t.Fatalf("forget web-1 web-2: exit %d\n%s", exitCode(err), out)
	}
	out, err = pc.cli("status", "-json")
	states, serr := memberStates(out)
	if err != nil || serr != nil || states["web-1"] != gossip.StateAlive || states["web-2"] != "" {
		t.Fatalf("status after the forget: %v %v %v", err, serr, states)
	}
	out, err = pc.cli("forget", "web-2")
	if exitCode(err) != 1 || !strings.Contains(out, "web-2 is not a member this node lists (404)") {
		t.Fatalf("forget web-2 again: exit %d\n%s", exitCode(err), out)
	}
}
