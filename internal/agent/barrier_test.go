package agent_test

import (
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
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// runDeploy starts a deploy on the controller with body and waits until
// it ends.
func runDeploy(t *testing.T, ctl *agent.Agent, body map[string]any) api.Deploy {
	t.Helper()
	code, _, resp := call(t, "POST", "http://"+ctl.LocalAddr()+"/v1/deploys", testToken, body)
	if code != http.StatusAccepted {
		t.Fatalf("deploy: %d %s", code, resp)
	}
	var d api.Deploy
	json.Unmarshal(resp, &d)
	testutil.Eventually(t, 60*time.Second, func() error {
		getJSON(t, ctl, "/v1/deploys/"+d.ID, &d)
		if d.Status == api.DeployRunning {
			return fmt.Errorf("still running: %+v", d.Steps)
		}
		return nil
	})
	return d
}

// containsAll fails the test for each of wants that s lacks.
func containsAll(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s %q lacks %q", what, s, w)
		}
	}
}

func step(d api.Deploy, name string) api.DeployStep {
	for _, s := range d.Steps {
		if s.Name == name {
			return s
		}
	}
	return api.DeployStep{}
}

// TestDeployStopsWhenTheWebNodesAreGone is the split of issue 10: the
// controller sees none of the web nodes it had (here: the only one left).
// The wait step fails naming the node, and the -run command never runs.
// Before the honest barrier it printed "0 web nodes serve revision 2" and
// ran the command.
func TestDeployStopsWhenTheWebNodesAreGone(t *testing.T) {
	defer agent.SetMissingWait(time.Second)()
	c := newCluster(t)
	web := c.addWeb("web-1")
	c.publish("first")
	c.converged("web-1")
	web.Close()
	writeTree(t, c.source, map[string]string{"version.php": "<?php $version = 2;"})
	marker := filepath.Join(c.dir, "ran")
	d := runDeploy(t, c.ctl, map[string]any{"message": "upgrade", "run": "touch " + marker})
	wait := step(d, "wait for web nodes")
	if d.Status != api.DeployFailed || wait.Status != api.DeployFailed || step(d, "run").Status != api.DeployPending {
		t.Fatalf("deploy with its only web node gone: %+v", d)
	}
	containsAll(t, "wait step", wait.Detail, "only 0 of 1 web nodes serve revision 2", "web-1 (left", "-allow-missing")
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("the -run command ran after a failed wait")
	}
}

// TestDeployWebNodeMissing: one of two web nodes is gone. The deploy stops
// at the wait naming both (waited for, missing); with allow_missing it
// goes on and says whom it went on without.
func TestDeployWebNodeMissing(t *testing.T) {
	defer agent.SetMissingWait(time.Second)()
	c := newCluster(t)
	c.addWeb("web-1")
	web2 := c.addWeb("web-2")
	c.publish("first")
	c.converged("web-1", "web-2")
	web2.Close()
	writeTree(t, c.source, map[string]string{"version.php": "<?php $version = 2;"})
	d := runDeploy(t, c.ctl, map[string]any{"run": "true"})
	wait := step(d, "wait for web nodes")
	if d.Status != api.DeployFailed || wait.Status != api.DeployFailed || step(d, "run").Status != api.DeployPending {
		t.Fatalf("deploy with web-2 gone: %+v", d)
	}
	containsAll(t, "wait step", wait.Detail, "only 1 of 2 web nodes serve revision 2", "waited for: web-1", "missing: web-2 (left, last seen")
	c.converged("web-1") // the publish reached web-1 all the same

	writeTree(t, c.source, map[string]string{"version.php": "<?php $version = 3;"})
	d = runDeploy(t, c.ctl, map[string]any{"run": "true", "allow_missing": true})
	wait = step(d, "wait for web nodes")
	if d.Status != api.DeploySucceeded || step(d, "run").Status != api.DeployOK {
		t.Fatalf("deploy -allow-missing: %+v", d)
	}
	containsAll(t, "wait step", wait.Detail, "1 web nodes serve revision 3; not waited for: web-2 (left); waited for: web-1", "-allow-missing")
}

// TestDeployMinWeb: deploy.min_web counts even web nodes the cluster never
// had: a cluster with no web node yet does not deploy by default, nor one
// with fewer than min_web.
func TestDeployMinWeb(t *testing.T) {
	defer agent.SetMissingWait(time.Second)()
	c := newCluster(t)
	d := runDeploy(t, c.ctl, map[string]any{})
	if wait := step(d, "wait for web nodes"); d.Status != api.DeployFailed ||
		!strings.Contains(wait.Detail, "only 0 of 1 web nodes serve revision 1") || !strings.Contains(wait.Detail, "deploy.min_web 1") {
		t.Fatalf("deploy without any web node: %+v", d)
	}
	if d = runDeploy(t, c.ctl, map[string]any{"allow_missing": true}); d.Status != api.DeploySucceeded {
		t.Fatalf("deploy -allow-missing without any web node: %+v", d)
	}
	// Nothing changed since: the publish step says so, with no count of
	// the revision's own changes (it printed revision 1's before).
	d = runDeploy(t, c.ctl, map[string]any{"allow_missing": true})
	if pub := step(d, "publish").Detail; d.Status != api.DeploySucceeded || !strings.Contains(pub, "revision 1") ||
		!strings.Contains(pub, "unchanged") || strings.Contains(pub, "files changed") {
		t.Fatalf("deploy of an unchanged tree: %+v", d)
	}

	c.ctl.Close()
	cfg := c.config("controller", "controller")
	cfg.Mirror.Source = c.source
	cfg.Deploy.MinWeb = 2
	c.ctl = c.open(cfg, c.key)
	c.addWeb("web-1")
	c.converged("web-1")
	writeTree(t, c.source, map[string]string{"version.php": "<?php $version = 2;"})
	d = runDeploy(t, c.ctl, map[string]any{})
	if wait := step(d, "wait for web nodes"); d.Status != api.DeployFailed ||
		!strings.Contains(wait.Detail, "only 1 of 2 web nodes serve revision 2") || !strings.Contains(wait.Detail, "waited for: web-1; missing: none") {
		t.Fatalf("deploy below deploy.min_web: %+v", d)
	}
}

var jsonUnmarshal = json.Unmarshal
