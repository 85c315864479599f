package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

func getJSON(t *testing.T, a *agent.Agent, path string, v any) {
	t.Helper()
	code, _, body := call(t, "GET", "http://"+a.LocalAddr()+path, testToken, nil)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func status(t *testing.T, a *agent.Agent) api.Status {
	var st api.Status
	getJSON(t, a, "/v1/status", &st)
	return st
}

// maintenanceEverywhere waits until every agent applies maintenance active.
func maintenanceEverywhere(t *testing.T, active bool, agents ...*agent.Agent) {
	t.Helper()
	for _, a := range agents {
		testutil.Eventually(t, 10*time.Second, func() error {
			st := status(t, a)
			if st.Maintenance.Active != active || !st.Maintenance.Applied {
				return fmt.Errorf("%s: maintenance %+v", st.Node, st.Maintenance)
			}
			return nil
		})
	}
}

func TestMaintenanceSpreadsPersistsAndExpires(t *testing.T) {
	c := newCluster(t)
	dataroot := c.withDataroot(nil)
	w1, w2 := c.addWeb("web-1"), c.addWeb("web-2")
	page := filepath.Join(dataroot, "climaintenance.html")

	// Site maintenance alone leaves Moodle working: no climaintenance.html.
	code, _, body := call(t, "PUT", "http://"+w1.LocalAddr()+"/v1/maintenance", testToken,
		map[string]any{"enabled": true, "message": "Site only"})
	if code != 200 {
		t.Fatalf("PUT maintenance: %d %s", code, body)
	}
	maintenanceEverywhere(t, true, c.ctl, w1, w2)
	if _, err := os.Stat(page); !os.IsNotExist(err) {
		t.Fatalf("site maintenance wrote climaintenance.html: %v", err)
	}

	// The Moodle hold set on a web node: reaches every node, and the
	// controller writes Moodle's CLI maintenance page.
	code, _, body = call(t, "PUT", "http://"+w1.LocalAddr()+"/v1/maintenance", testToken,
		map[string]any{"enabled": true, "moodle": true, "message": "Upgrading <now>", "allow": []string{"10.0.0.0/8"}})
	if code != 200 {
		t.Fatalf("PUT maintenance: %d %s", code, body)
	}
	// Site maintenance is on already: wait for the Moodle level itself.
	for _, a := range []*agent.Agent{c.ctl, w1, w2} {
		testutil.Eventually(t, 10*time.Second, func() error {
			st := status(t, a)
			if !st.Maintenance.MoodleActive || !st.Maintenance.Applied {
				return fmt.Errorf("%s: maintenance %+v", st.Node, st.Maintenance)
			}
			return nil
		})
	}
	html, err := os.ReadFile(page)
	if err != nil || !strings.Contains(string(html), "Upgrading &lt;now&gt;") {
		t.Fatalf("climaintenance.html: %v %q", err, html)
	}

	// It survives a restart of an agent.
	w2.Close()
	w2 = c.addWeb("web-2")
	maintenanceEverywhere(t, true, w2)

	// Off from another node: the page goes away.
	code, _, body = call(t, "PUT", "http://"+w2.LocalAddr()+"/v1/maintenance", testToken, map[string]any{"enabled": false})
	if code != 200 {
		t.Fatalf("PUT maintenance off: %d %s", code, body)
	}
	maintenanceEverywhere(t, false, c.ctl, w1, w2)
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, err := os.Stat(page); !os.IsNotExist(err) {
			return fmt.Errorf("climaintenance.html still there: %v", err)
		}
		return nil
	})

	// With until, it ends by itself.
	until := time.Now().Add(4 * time.Second).UTC() // long enough to see it on, on a loaded machine
	code, _, body = call(t, "PUT", "http://"+c.ctl.LocalAddr()+"/v1/maintenance", testToken,
		map[string]any{"enabled": true, "moodle": true, "until": until})
	if code != 200 {
		t.Fatalf("PUT maintenance until: %d %s", code, body)
	}
	maintenanceEverywhere(t, true, c.ctl, w1, w2)
	if _, err := os.Stat(page); err != nil {
		t.Fatalf("the Moodle hold until %s: %v", until, err)
	}
	maintenanceEverywhere(t, false, c.ctl, w1, w2)
	if time.Now().Before(until) {
		t.Fatal("maintenance ended before until")
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, err := os.Stat(page); !os.IsNotExist(err) {
			return fmt.Errorf("climaintenance.html still there after until: %v", err)
		}
		return nil
	})
}

func TestMaintenanceLeavesForeignPage(t *testing.T) {
	c := newCluster(t)
	dataroot := c.withDataroot(nil)
	page := filepath.Join(dataroot, "climaintenance.html")
	call(t, "PUT", "http://"+c.ctl.LocalAddr()+"/v1/maintenance", testToken, map[string]any{"enabled": true, "moodle": true})
	maintenanceEverywhere(t, true, c.ctl)
	if _, err := os.Stat(page); err != nil {
		t.Fatalf("the Moodle hold wrote no page: %v", err)
	}
	// An admin replaces the page by hand: ours no longer, so it stays.
	if err := os.WriteFile(page, []byte("admin's own page"), 0o644); err != nil {
		t.Fatal(err)
	}
	call(t, "PUT", "http://"+c.ctl.LocalAddr()+"/v1/maintenance", testToken, map[string]any{"enabled": false})
	maintenanceEverywhere(t, false, c.ctl)
	if b, err := os.ReadFile(page); err != nil || string(b) != "admin's own page" {
		t.Fatalf("a page the agent did not write was touched: %v %q", err, b)
	}
}

func TestConcurrentMaintenanceTogglesAgree(t *testing.T) {
	c := newCluster(t)
	w1, w2 := c.addWeb("web-1"), c.addWeb("web-2")
	for i := 0; i < 5; i++ {
		done := make(chan struct{}, 2)
		go func() {
			call(t, "PUT", "http://"+w1.LocalAddr()+"/v1/maintenance", testToken, map[string]any{"enabled": true, "message": "from web-1"})
			done <- struct{}{}
		}()
		go func() {
			call(t, "PUT", "http://"+w2.LocalAddr()+"/v1/maintenance", testToken, map[string]any{"enabled": false})
			done <- struct{}{}
		}()
		<-done
		<-done
		// Every node ends with the same state.
		testutil.Eventually(t, 10*time.Second, func() error {
			var states []string
			for _, a := range []*agent.Agent{c.ctl, w1, w2} {
				m := status(t, a).Maintenance
				states = append(states, fmt.Sprintf("%v/%d/%s", m.Active, m.Clock, m.SetBy))
			}
			if states[0] != states[1] || states[1] != states[2] {
				return fmt.Errorf("nodes disagree: %v", states)
			}
			return nil
		})
	}
}

func TestMaintenanceBadInput(t *testing.T) {
	c := newCluster(t)
	base := "http://" + c.ctl.LocalAddr()
	for name, body := range map[string]any{
		"bad CIDR":  map[string]any{"enabled": true, "allow": []string{"10.0.0/8"}},
		"past":      map[string]any{"enabled": true, "until": time.Now().Add(-time.Minute)},
		"malformed": "{",
	} {
		code, hdr, resp := call(t, "PUT", base+"/v1/maintenance", testToken, body)
		if code != 400 || hdr.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: %d %s", name, code, resp)
		}
	}
	if m := status(t, c.ctl).Maintenance; m.Active || m.Clock != 0 {
		t.Fatalf("bad input changed the state: %+v", m)
	}
}

func TestDrainFailsReadinessAndPersists(t *testing.T) {
	c := newCluster(t)
	web := c.addWeb("web-1")
	c.publish("first")
	c.converged("web-1")
	ready := func(a *agent.Agent) int {
		code, _, _ := call(t, "GET", "http://"+a.LocalAddr()+"/readyz", "", nil)
		return code
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if ready(web) != 200 {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	if code, _, body := call(t, "PUT", "http://"+web.LocalAddr()+"/v1/drain", testToken, nil); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	if ready(web) != 503 {
		t.Fatal("drained node is still ready")
	}
	web.Close()
	web = c.addWeb("web-1")
	if !status(t, web).Drained || ready(web) != 503 {
		t.Fatal("drain lost on restart")
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		for _, m := range c.ctl.Members() {
			if m.Name == "web-1" && m.Meta.Drained {
				return nil
			}
		}
		return fmt.Errorf("controller does not see web-1 drained")
	})
	call(t, "DELETE", "http://"+web.LocalAddr()+"/v1/drain", testToken, nil)
	testutil.Eventually(t, 5*time.Second, func() error {
		if ready(web) != 200 {
			return fmt.Errorf("undrained node not ready")
		}
		return nil
	})
}

func TestRollbackSwitchesWithoutDownload(t *testing.T) {
	c := newCluster(t)
	web := c.addWeb("web-1")
	c.publish("first")
	c.converged("web-1")
	first, _ := filepath.EvalSymlinks(c.target("web-1"))
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 2;"})
	c.publish("second")
	c.converged("web-1")
	rx := status(t, web).Transfer.RxBytes

	code, _, body := call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/rollback", testToken, map[string]string{"revision": "1"})
	if code != 200 {
		t.Fatalf("rollback: %d %s", code, body)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if cur, _ := filepath.EvalSymlinks(c.target("web-1")); cur != first {
			return fmt.Errorf("target is %s, want %s", cur, first)
		}
		return nil
	})
	if got := status(t, web).Transfer.RxBytes; got != rx {
		t.Fatalf("rollback downloaded %d bytes", got-rx)
	}
	// A later publish moves the target forward again.
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 3;"})
	c.publish("third")
	c.converged("web-1")

	for ref, want := range map[string]int{"99": 404, "zzzz": 404, "": 400} {
		code, _, body := call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/rollback", testToken, map[string]string{"revision": ref})
		if code != want {
			t.Fatalf("rollback %q: %d %s", ref, code, body)
		}
	}
}

func TestDeployWithMaintenanceAndRun(t *testing.T) {
	c := newCluster(t)
	w1, w2 := c.addWeb("web-1"), c.addWeb("web-2")
	c.publish("first")
	c.converged("web-1", "web-2")
	writeTree(t, c.source, map[string]string{"version.php": "<?php $version = 2;"})
	marker := filepath.Join(c.dir, "ran")
	code, _, body := call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/deploys", testToken,
		map[string]any{"message": "upgrade", "maintenance": true, "run": "pwd > " + marker})
	if code != http.StatusAccepted {
		t.Fatalf("deploy: %d %s", code, body)
	}
	var d api.Deploy
	json.Unmarshal(body, &d)
	testutil.Eventually(t, 30*time.Second, func() error {
		getJSON(t, c.ctl, "/v1/deploys/"+d.ID, &d)
		if d.Status == api.DeployRunning {
			return fmt.Errorf("still running: %+v", d.Steps)
		}
		return nil
	})
	if d.Status != api.DeploySucceeded || len(d.Steps) != 5 {
		t.Fatalf("deploy: %+v", d)
	}
	c.converged("web-1", "web-2")
	if b, err := os.ReadFile(marker); err != nil || strings.TrimSpace(string(b)) != c.source {
		t.Fatalf("command did not run in the source tree: %v %q", err, b)
	}
	maintenanceEverywhere(t, false, c.ctl, w1, w2)

	// A failing command: the deploy fails at that step, maintenance stays on.
	writeTree(t, c.source, map[string]string{"version.php": "<?php $version = 3;"})
	code, _, body = call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/deploys", testToken,
		map[string]any{"maintenance": true, "run": "exit 3"})
	json.Unmarshal(body, &d)
	testutil.Eventually(t, 30*time.Second, func() error {
		getJSON(t, c.ctl, "/v1/deploys/"+d.ID, &d)
		if d.Status == api.DeployRunning {
			return fmt.Errorf("still running")
		}
		return nil
	})
	if d.Status != api.DeployFailed || d.Steps[3].Status != api.DeployFailed || d.Steps[4].Status != api.DeployPending {
		t.Fatalf("failed deploy: %+v", d)
	}
	maintenanceEverywhere(t, true, c.ctl, w1, w2)
	if code, _, _ := call(t, "GET", "http://"+c.ctl.LocalAddr()+"/v1/deploys/nope", testToken, nil); code != 404 {
		t.Fatalf("unknown deploy: %d", code)
	}
	if code, _, _ := call(t, "POST", "http://"+w1.LocalAddr()+"/v1/deploys", testToken, map[string]any{}); code != 409 {
		t.Fatalf("deploy on a web node: %d", code)
	}
}

// TestDeployBarrierAsksSlowNodes: a web node whose gossip metadata does not
// reach the controller is asked over the cluster API, so a deploy barrier
// still completes (here: the node drained, seen only by asking it).
func TestDeployBarrierAsksSlowNodes(t *testing.T) {
	c := newCluster(t)
	w := c.addWeb("web-1")
	c.publish("first")
	c.converged("web-1")
	w.FreezeMeta()
	if code, _, body := call(t, "PUT", "http://"+w.LocalAddr()+"/v1/drain", testToken, nil); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	drained := func(m gossip.NodeMeta) bool { return m.Drained }
	detail, err := c.ctl.WaitWebNodes(context.Background(), 20*time.Second, "drain", drained)
	if err != nil || !strings.Contains(detail, "1 web nodes drain") {
		t.Fatalf("barrier: %q, %v", detail, err)
	}
	for _, m := range c.ctl.Members() {
		if m.Name == "web-1" && m.Meta.Drained {
			t.Fatal("the drain reached the controller by gossip: the test proves nothing")
		}
	}
}
