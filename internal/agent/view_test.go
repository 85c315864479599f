package agent_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// TestNodeReportsFromEveryMember: any node's GET /v1/nodes carries every
// live member's own status and readiness, asked over the cluster API.
func TestNodeReportsFromEveryMember(t *testing.T) {
	c := newCluster(t)
	var cut atomic.Value // a cluster API address web-1 cannot reach
	cut.Store("")
	web1 := c.open(c.config("web-1", "web"), c.key, func(o *agent.Options) {
		o.WrapPeerTransport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.URL.Host == cut.Load() {
					return nil, errors.New("network unreachable")
				}
				return rt.RoundTrip(r)
			})
		}
	})
	web2 := c.addWeb("web-2")
	c.publish("first")
	c.converged("web-1", "web-2")
	if err := web2.SetDrain(true); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		var r api.NodeReports
		getJSON(t, web1, "/v1/nodes", &r)
		if len(r.Nodes) != 3 {
			return fmt.Errorf("%d reports: %+v", len(r.Nodes), r.Nodes)
		}
		for _, n := range r.Nodes {
			if n.Error != "" || n.Status == nil || n.Health == nil || n.Status.Node != n.Name {
				return fmt.Errorf("report of %s: %+v", n.Name, n)
			}
		}
		ctl, w2 := r.Nodes[0], r.Nodes[2]
		if ctl.Name != "controller" || ctl.Status.Role != "controller" || w2.Name != "web-2" {
			return fmt.Errorf("order or roles: %+v", r.Nodes)
		}
		if !w2.Status.Drained || w2.Health.Status != api.StatusFail || w2.Health.Checks["node:drain"][0].Status != api.StatusFail {
			return fmt.Errorf("web-2's own readiness not reported: %+v %+v", w2.Status, w2.Health)
		}
		if !w2.Status.Revision.InSync || w2.Status.Sync == nil {
			return fmt.Errorf("web-2's sync state not reported: %+v", w2.Status)
		}
		return nil
	})
	// A live member that cannot be reached is listed with the reason.
	cut.Store(web2.ClusterAddr())
	testutil.Eventually(t, 15*time.Second, func() error {
		var r api.NodeReports
		getJSON(t, web1, "/v1/nodes", &r)
		if len(r.Nodes) != 3 || r.Nodes[2].Status != nil || !strings.Contains(r.Nodes[2].Error, "network unreachable") ||
			r.Nodes[0].Error != "" {
			return fmt.Errorf("reports with web-2 cut off: %+v", r.Nodes)
		}
		return nil
	})
	// A member that left is not asked.
	web2.Close()
	testutil.Eventually(t, 15*time.Second, func() error {
		var r api.NodeReports
		getJSON(t, web1, "/v1/nodes", &r)
		for _, n := range r.Nodes {
			if n.Name == "web-2" {
				return fmt.Errorf("web-2 still asked after it left: %+v", n)
			}
		}
		return nil
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestHistoryRecordsSyncsAndTargets: every agent records the target's
// changes (publish, rollback) and each web node's switch to them.
func TestHistoryRecordsSyncsAndTargets(t *testing.T) {
	c := newCluster(t)
	c.addWeb("web-1")
	web2 := c.addWeb("web-2")
	// A switch seen at the first sight of a member is not recorded: the
	// controller must have seen both web nodes before the first publish.
	testutil.Eventually(t, 20*time.Second, func() error {
		var h api.History
		getJSON(t, c.ctl, "/v1/history", &h)
		if len(h.Lag) == 0 || h.Lag[len(h.Lag)-1].Web != 2 {
			return fmt.Errorf("controller sees web nodes: %+v", h.Lag)
		}
		return nil
	})
	c.publish("first")
	c.converged("web-1", "web-2")
	// Gossip carries a node's newest revision only: wait until the first
	// switches were carried before the next publish can overtake them.
	waitHistory(t, []*agent.Agent{c.ctl}, "1 publish by controller", "[1]")
	writeTree(t, c.source, map[string]string{"lib/a.php": "a2"})
	c.publish("second")
	c.converged("web-1", "web-2")
	// The files are there; wait until gossip carried the switch too, or the
	// rollback could come before any node heard of revision 2.
	waitHistory(t, []*agent.Agent{c.ctl, web2}, "1 publish by controller, 2 publish by controller", "[1 2]")
	if code, _, body := call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/rollback", testToken, map[string]string{"revision": "1"}); code != 200 {
		t.Fatalf("rollback: %d %s", code, body)
	}
	waitHistory(t, []*agent.Agent{c.ctl, web2}, "1 publish by controller, 2 publish by controller, 1 rollback by controller", "[1 2 1]")
}

// waitHistory waits until each agent's history shows the target changes
// and, for both web nodes, the revisions they switched to.
func waitHistory(t *testing.T, agents []*agent.Agent, targets, syncs string) {
	t.Helper()
	for _, a := range agents {
		testutil.Eventually(t, 20*time.Second, func() error {
			var h api.History
			getJSON(t, a, "/v1/history", &h)
			var kinds []string
			for _, tc := range h.Targets {
				kinds = append(kinds, fmt.Sprintf("%d %s by %s", tc.Seq, tc.Kind, tc.SetBy))
			}
			if got := strings.Join(kinds, ", "); got != targets {
				return fmt.Errorf("%s: targets %s, want %s", a.Status().Node, got, targets)
			}
			synced := map[string][]uint64{}
			for _, s := range h.Syncs {
				if s.Seconds < 0 || s.Finished.Before(s.Started) || s.ID == "" {
					return fmt.Errorf("sync record %+v", s)
				}
				synced[s.Node] = append(synced[s.Node], s.Seq)
			}
			for _, n := range []string{"web-1", "web-2"} {
				if fmt.Sprint(synced[n]) != syncs {
					return fmt.Errorf("%s: syncs of %s %v, want %s", a.Status().Node, n, synced[n], syncs)
				}
			}
			if len(h.Lag) == 0 || h.Lag[len(h.Lag)-1].Web != 2 || h.Lag[len(h.Lag)-1].Behind != 0 {
				return fmt.Errorf("lag samples %+v", h.Lag)
			}
			return nil
		})
	}
}

// TestNodeDrainThroughAnotherNode: an operator drains a web node through
// the controller's API; the web node checks the token itself, so a node
// with another token refuses (403, not a 401 that would drop a good token).
func TestNodeDrainThroughAnotherNode(t *testing.T) {
	c := newCluster(t)
	web1 := c.addWeb("web-1")
	other := c.open(c.config("web-9", "web"), c.key, func(o *agent.Options) { o.Token = "another-token-0123456789" })
	base := "http://" + c.ctl.LocalAddr() + "/v1/nodes/"
	testutil.Eventually(t, 10*time.Second, func() error {
		if code, _, body := call(t, "PUT", base+"web-1/drain", testToken, nil); code != 200 {
			return fmt.Errorf("drain web-1: %d %s", code, body)
		}
		return nil
	})
	if !web1.Status().Drained {
		t.Fatal("web-1 not drained")
	}
	if code, _, body := call(t, "DELETE", base+"web-1/drain", testToken, nil); code != 200 || web1.Status().Drained {
		t.Fatalf("undrain web-1: %d %s, drained %v", code, body, web1.Status().Drained)
	}
	if code, _, body := call(t, "PUT", base+"web-1/drain", "wrong-token", nil); code != 401 || web1.Status().Drained {
		t.Fatalf("drain with a wrong token: %d %s", code, body)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		code, _, body := call(t, "PUT", base+"web-9/drain", testToken, nil)
		if code != http.StatusForbidden || !strings.Contains(string(body), "web-9 answered") {
			return fmt.Errorf("drain web-9 with another token: %d %s", code, body)
		}
		return nil
	})
	if other.Status().Drained {
		t.Fatal("web-9 drained with a token it does not accept")
	}
	if code, _, body := call(t, "PUT", base+"nobody/drain", testToken, nil); code != 404 {
		t.Fatalf("unknown node: %d %s", code, body)
	}
	if code, _, _ := call(t, "PUT", base+"controller/drain", testToken, nil); code != 200 || !c.ctl.Status().Drained {
		t.Fatalf("drain the node asked: %d", code)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "web-1", "data", "drain.json")); err != nil {
		t.Fatalf("web-1's drain flag not persisted: %v", err)
	}
}

// TestDeployList: GET /v1/deploys lists the controller's deploys, newest
// first, with their steps.
func TestDeployList(t *testing.T) {
	c := newCluster(t)
	c.addWeb("web-1")
	c.publish("first")
	c.converged("web-1")
	var ids []string
	for i := range 2 {
		writeTree(t, c.source, map[string]string{"index.php": fmt.Sprintf("<?php echo %d;", i+10)})
		var d api.Deploy
		code, _, body := call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/deploys", testToken, api.DeployRequest{Message: fmt.Sprint("deploy ", i)})
		if code != http.StatusAccepted || json.Unmarshal(body, &d) != nil {
			t.Fatalf("start deploy: %d %s", code, body)
		}
		ids = append([]string{d.ID}, ids...)
		testutil.Eventually(t, 20*time.Second, func() error {
			if got, _ := c.ctl.Deploy(d.ID); got.Status != api.DeploySucceeded {
				return fmt.Errorf("deploy %s: %s %s", d.ID, got.Status, got.Error)
			}
			return nil
		})
	}
	var l api.DeployList
	getJSON(t, c.ctl, "/v1/deploys", &l)
	if len(l.Deploys) != 2 || l.Deploys[0].ID != ids[0] || l.Deploys[1].ID != ids[1] || len(l.Deploys[0].Steps) != 2 ||
		l.Deploys[0].Steps[0].Status != api.DeployOK || l.Deploys[0].Request.Message != "deploy 1" {
		t.Fatalf("deploys %+v, want %v newest first", l.Deploys, ids)
	}
	var w api.DeployList
	getJSON(t, c.webs["web-1"], "/v1/deploys", &w)
	if len(w.Deploys) != 0 {
		t.Fatalf("web node lists deploys: %+v", w.Deploys)
	}
}
