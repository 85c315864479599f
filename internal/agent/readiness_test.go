package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// cutTransport fails every agent-to-agent call while cut is set: the node
// still gossips but cannot reach the controller's content.
type cutTransport struct {
	cut  *atomic.Bool
	next http.RoundTripper
}

func (c cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.cut.Load() {
		return nil, errors.New("test: cut off from the controller")
	}
	return c.next.RoundTrip(r)
}

// addCuttableWeb starts a web node with a short max_lag whose content
// fetches can be cut.
func (c *cluster) addCuttableWeb(node string, cut *atomic.Bool) *agent.Agent {
	c.t.Helper()
	cfg := c.config(node, "web")
	cfg.Mirror.MaxLag = config.Duration(time.Second)
	a := agent.New(cfg, agent.Options{
		Key: c.key, Token: testToken, GossipTiming: gossip.TestTiming(),
		SyncRetryMin: 50 * time.Millisecond, SyncRetryMax: 200 * time.Millisecond,
		WrapPeerTransport: func(rt http.RoundTripper) http.RoundTripper { return cutTransport{cut, rt} },
	})
	if err := a.Open(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { a.Close() })
	c.webs[node] = a
	return a
}

func readyCode(t *testing.T, a *agent.Agent) int {
	code, _, _ := call(t, "GET", "http://"+a.LocalAddr()+"/readyz", "", nil)
	return code
}

func waitReady(t *testing.T, a *agent.Agent, want int, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, timeout, func() error {
		if got := readyCode(t, a); got != want {
			return fmt.Errorf("readyz %d, want %d", got, want)
		}
		return nil
	})
}

// stays asserts readyz keeps answering want for d.
func stays(t *testing.T, a *agent.Agent, want int, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if got := readyCode(t, a); got != want {
			t.Fatalf("readyz %d, want %d", got, want)
		}
	}
}

// twoCuttableWebs starts a controller and two cuttable web nodes, publishes
// and waits until both serve it and are ready.
func twoCuttableWebs(t *testing.T) (c *cluster, w1, w2 *agent.Agent, cut1, cut2 *atomic.Bool) {
	c = newCluster(t)
	cut1, cut2 = new(atomic.Bool), new(atomic.Bool)
	w1 = c.addCuttableWeb("web-1", cut1)
	w2 = c.addCuttableWeb("web-2", cut2)
	c.publish("first")
	c.converged("web-1", "web-2")
	waitReady(t, w1, 200, 5*time.Second)
	waitReady(t, w2, 200, 5*time.Second)
	return c, w1, w2, cut1, cut2
}

func TestReadinessBehindTarget(t *testing.T) {
	c, w1, w2, cut1, cut2 := twoCuttableWebs(t)

	// web-2 is cut off; web-1 serves the new target: web-2 stays ready for
	// max_lag, then drops out.
	cut2.Store(true)
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 2;"})
	start := time.Now()
	c.publish("second")
	c.converged("web-1")
	if time.Since(start) < 900*time.Millisecond && readyCode(t, w2) != 200 {
		t.Fatal("web-2 dropped out before max_lag")
	}
	waitReady(t, w2, 503, 10*time.Second)
	if time.Since(start) < time.Second {
		t.Fatal("web-2 dropped out before max_lag")
	}
	waitReady(t, w1, 200, time.Second)

	// Both cut off from a new target: nobody serves it, so nobody drops out.
	cut1.Store(true)
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 3;"})
	c.publish("third")
	stays(t, w1, 200, 2500*time.Millisecond)
	if got := readyCode(t, w2); got != 200 {
		t.Fatalf("web-2 behind with every node behind: readyz %d", got)
	}

	// The cut heals: both converge and are ready.
	cut1.Store(false)
	cut2.Store(false)
	c.converged("web-1", "web-2")
	waitReady(t, w1, 200, 5*time.Second)
	waitReady(t, w2, 200, 5*time.Second)
}

// TestReadinessPeerOutOfBalancer: a peer that serves the target but takes
// no traffic (drained, or not ready) does not make a node that is behind
// drop out: that could leave the load balancer with no node at all.
func TestReadinessPeerOutOfBalancer(t *testing.T) {
	c, w1, w2, _, cut2 := twoCuttableWebs(t)

	if code, _, body := call(t, "PUT", "http://"+w1.LocalAddr()+"/v1/drain", testToken, nil); code != 200 {
		t.Fatalf("drain web-1: %d %s", code, body)
	}
	cut2.Store(true)
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 2;"})
	c.publish("second")
	c.converged("web-1")
	stays(t, w2, 200, 2500*time.Millisecond) // well past max_lag (1s)

	// web-1 back in the load balancer: now web-2, still behind, drops out.
	if code, _, body := call(t, "DELETE", "http://"+w1.LocalAddr()+"/v1/drain", testToken, nil); code != 200 {
		t.Fatalf("undrain web-1: %d %s", code, body)
	}
	waitReady(t, w2, 503, 10*time.Second)
}
