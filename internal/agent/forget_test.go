package agent_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// forget calls DELETE /v1/members/{name} on a's local API.
func forget(t *testing.T, a *agent.Agent, name, token string) (int, []byte) {
	t.Helper()
	code, _, body := call(t, "DELETE", "http://"+a.LocalAddr()+"/v1/members/"+name, token, nil)
	return code, body
}

// lists reports whether a lists member name, and its state.
func lists(a *agent.Agent, name string) (string, bool) {
	for _, m := range a.Members() {
		if m.Name == name {
			return m.State, true
		}
	}
	return "", false
}

// waitGone waits until none of the agents lists member name.
func waitGone(t *testing.T, name string, agents ...*agent.Agent) {
	t.Helper()
	for _, a := range agents {
		testutil.Eventually(t, 20*time.Second, func() error {
			if state, ok := lists(a, name); ok {
				return fmt.Errorf("%s still lists %s (%s)", a.Status().Node, name, state)
			}
			return nil
		})
	}
}

// TestForgetAfterScaleIn: a web node stopped for good makes the deploy
// barrier refuse and the controller report it missing. Forgetting an alive
// node is refused (409) and changes nothing; forgetting the stopped one
// lets the next deploy succeed with the remaining web node, clears the
// controller's report (status, metric, one log line) and drops the node
// from /v1/members on every agent.
func TestForgetAfterScaleIn(t *testing.T) {
	defer agent.SetMissingWait(time.Second)()
	rec := &testutil.LogRecorder{}
	c := newCluster(t)
	ctlCfg := c.config("controller", "controller")
	ctlCfg.Mirror.Source = c.source
	c.ctl.Close()
	c.ctl = c.open(ctlCfg, c.key, withLogger(rec))
	web1 := c.addWeb("web-1")
	web2 := c.addWeb("web-2")
	c.publish("first")
	c.converged("web-1", "web-2")
	if err := web2.Close(); err != nil { // the scale-in deletes its VM
		t.Fatal(err)
	}
	testutil.Eventually(t, splitAfter+20*time.Second, func() error {
		if st := c.ctl.Status().Gossip; len(st.MissingWeb) != 1 {
			return fmt.Errorf("missing web nodes %+v", st.MissingWeb)
		}
		return nil
	})
	writeTree(t, c.source, map[string]string{"version.php": "<?php $version = 2;"})
	d := runDeploy(t, c.ctl, map[string]any{"run": "true"})
	if d.Status != api.DeployFailed {
		t.Fatalf("deploy with web-2 gone: %+v", d)
	}
	containsAll(t, "wait step", step(d, "wait for web nodes").Detail, "only 1 of 2 web nodes", "missing: web-2 (left",
		"-allow-missing", "nodeagent forget NODE")

	for _, tc := range []struct {
		name, token string
		code        int
		detail      string
	}{
		{"web-1", testToken, http.StatusConflict, "web-1 is alive: stop its agent first"},
		{"controller", testToken, http.StatusBadRequest, "controller is this node"},
		{"web-9", testToken, http.StatusNotFound, "web-9 is not a member this node lists"},
		{"web-2", "", http.StatusUnauthorized, "token"},
	} {
		code, body := forget(t, c.ctl, tc.name, tc.token)
		if code != tc.code || !strings.Contains(string(body), tc.detail) {
			t.Errorf("forget %s: %d %s, want %d naming %q", tc.name, code, body, tc.code, tc.detail)
		}
	}
	if state, _ := lists(web1, "web-1"); state != gossip.StateAlive {
		t.Errorf("web-1 sees itself %q after a refused forget", state)
	}
	if state, _ := lists(c.ctl, "web-1"); state != gossip.StateAlive {
		t.Errorf("the controller sees web-1 %q after a refused forget", state)
	}
	if st := c.ctl.Status().Gossip; len(st.MissingWeb) != 1 {
		t.Errorf("refused forgets changed the missing web nodes: %+v", st.MissingWeb)
	}

	code, body := forget(t, c.ctl, "web-2", testToken)
	var res api.ForgetResponse
	if err := json.Unmarshal(body, &res); code != http.StatusOK || err != nil ||
		res.Forgotten.Name != "web-2" || res.Forgotten.State != gossip.StateLeft || res.Forgotten.Role != "web" {
		t.Fatalf("forget web-2: %d %s", code, body)
	}
	waitGone(t, "web-2", c.ctl, web1)
	var ms api.MemberList
	getJSON(t, c.ctl, "/v1/members", &ms)
	for _, m := range ms.Members {
		if m.Name == "web-2" {
			t.Errorf("/v1/members lists web-2 after the forget: %+v", m)
		}
	}
	if st := c.ctl.Status().Gossip; len(st.MissingWeb) != 0 {
		t.Errorf("missing web nodes after the forget: %+v", st.MissingWeb)
	}
	if v, ok := series(scrape(t, c.ctl), "nodeagent_gossip_web_missing", map[string]string{"state": "left"}); !ok || v != 0 {
		t.Errorf(`nodeagent_gossip_web_missing{state="left"} = %v (present %v), want 0`, v, ok)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := rec.Lines(slog.LevelInfo, "every web node seen in the last hour is alive again"); n != 1 {
			return fmt.Errorf("%d lines about the missing web nodes clearing, want 1", n)
		}
		return nil
	})
	if n := rec.Lines(slog.LevelInfo, "gossip member forgotten"); n != 1 {
		t.Errorf("the controller logged %d lines about forgetting web-2, want 1", n)
	}

	d = runDeploy(t, c.ctl, map[string]any{"run": "true"})
	wait := step(d, "wait for web nodes").Detail
	if d.Status != api.DeploySucceeded || strings.Contains(wait, "web-2") {
		t.Fatalf("deploy after the forget: %+v", d)
	}
	containsAll(t, "wait step", wait, "1 web nodes serve revision 2; waited for: web-1")
}

// TestForgetReachesEveryAgentAndLasts: the controller forgets a web node
// while another web node is down. The controller, restarted, does not list
// it again from its state file; the web node that was down drops it once
// it is back, and a deploy counts on it alone. The forgotten node, started
// again under its name, is listed and counted again.
func TestForgetReachesEveryAgentAndLasts(t *testing.T) {
	defer agent.SetMissingWait(time.Second)()
	c := newCluster(t)
	ctlCfg := c.config("controller", "controller")
	ctlCfg.Mirror.Source = c.source
	ctlCfg.Gossip.Bind = c.ctl.GossipAddr() // the web nodes' join address
	web1Cfg := c.config("web-1", "web")
	web1 := c.open(web1Cfg, c.key)
	web2Cfg := c.config("web-2", "web")
	web2 := c.open(web2Cfg, c.key)
	c.publish("first")
	c.converged("web-1", "web-2")

	if err := web2.Close(); err != nil { // gone for good
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		if state, _ := lists(web1, "web-2"); state != gossip.StateLeft {
			return fmt.Errorf("web-1 sees web-2 %q", state)
		}
		return nil
	})
	if err := web1.Close(); err != nil { // down for a while
		t.Fatal(err)
	}
	if code, body := forget(t, c.ctl, "web-2", testToken); code != http.StatusOK {
		t.Fatalf("forget web-2: %d %s", code, body)
	}
	if err := c.ctl.Close(); err != nil {
		t.Fatal(err)
	}
	c.ctl = c.open(ctlCfg, c.key)
	if state, ok := lists(c.ctl, "web-2"); ok {
		t.Fatalf("the restarted controller lists web-2 (%s) from its state file", state)
	}
	if _, ok := lists(c.ctl, "web-1"); !ok {
		t.Fatal("the restarted controller does not list web-1, which it remembers")
	}

	rec := &testutil.LogRecorder{}
	web1 = c.open(web1Cfg, c.key, withLogger(rec))
	waitGone(t, "web-2", web1)
	if n := rec.Lines(slog.LevelInfo, "gossip member forgotten"); n != 1 {
		t.Errorf("web-1 logged %d lines about forgetting web-2, want 1", n)
	}
	if state, ok := lists(c.ctl, "web-2"); ok {
		t.Errorf("the controller lists web-2 (%s) again after web-1 came back", state)
	}
	writeTree(t, c.source, map[string]string{"version.php": "<?php $version = 2;"})
	d := runDeploy(t, c.ctl, map[string]any{"run": "true"})
	if wait := step(d, "wait for web nodes").Detail; d.Status != api.DeploySucceeded || strings.Contains(wait, "web-2") {
		t.Fatalf("deploy after the forget, web-1 back: %+v", d)
	}

	web2 = c.open(web2Cfg, c.key) // a new VM under the old name
	testutil.Eventually(t, 20*time.Second, func() error {
		for _, a := range []*agent.Agent{c.ctl, web1} {
			if state, _ := lists(a, "web-2"); state != gossip.StateAlive {
				return fmt.Errorf("%s sees web-2 %q", a.Status().Node, state)
			}
		}
		return nil
	})
	c.converged("web-2")
	if err := web2.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		if state, _ := lists(c.ctl, "web-2"); state != gossip.StateLeft {
			return fmt.Errorf("the controller sees web-2 %q", state)
		}
		return nil
	})
	writeTree(t, c.source, map[string]string{"version.php": "<?php $version = 3;"})
	d = runDeploy(t, c.ctl, map[string]any{"run": "true"})
	if d.Status != api.DeployFailed {
		t.Fatalf("deploy with web-2's new life gone: %+v", d)
	}
	containsAll(t, "wait step", step(d, "wait for web nodes").Detail, "only 1 of 2 web nodes", "missing: web-2 (left")
}
