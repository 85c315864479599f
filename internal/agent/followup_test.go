package agent_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// waitRun polls a deploy or follow-up at path until it ends.
func waitRun(t *testing.T, c *cluster, path string) api.Deploy {
	t.Helper()
	var d api.Deploy
	testutil.Eventually(t, 30*time.Second, func() error {
		getJSON(t, c.ctl, path, &d)
		if d.Status == api.DeployRunning {
			return fmt.Errorf("still running: %+v", d.Steps)
		}
		return nil
	})
	return d
}

// TestAfterAllOncePerCluster: deploy.after_all (e.g. Moodle's cache purge)
// runs once on the controller, in the source tree, after every web node
// serves the new revision: as the follow-up of a plain publish and of a
// rollback, and as a step of a deploy. A newer publish supersedes a
// follow-up still waiting.
func TestAfterAllOncePerCluster(t *testing.T) {
	c := newCluster(t)
	c.addWeb("web-1")
	cut := new(atomic.Bool)
	c.addCuttableWeb("web-2", cut)
	c.publish("first")
	c.converged("web-1", "web-2")
	log := filepath.Join(c.dir, "after-all.log")
	// Records, each time it runs, whether both web nodes already served
	// the source's index.php.
	script := fmt.Sprintf(`if cmp -s index.php %s && cmp -s index.php %s; then echo served; else echo early; fi >> %s`,
		filepath.Join(c.target("web-1"), "index.php"), filepath.Join(c.target("web-2"), "index.php"), log)
	c.ctl.Close()
	cfg := c.config("controller", "controller")
	cfg.Mirror.Source, cfg.Gossip.Join = c.source, []string{c.webs["web-1"].GossipAddr()}
	cfg.Deploy.AfterAll = []string{"/bin/sh", "-c", script}
	c.ctl = c.open(cfg, c.key)
	testutil.Eventually(t, 10*time.Second, func() error {
		alive := 0
		for _, m := range c.ctl.Members() {
			if m.State == "alive" && m.Meta.Role == "web" {
				alive++
			}
		}
		if alive != 2 {
			return fmt.Errorf("the restarted controller sees %d live web nodes", alive)
		}
		return nil
	})
	runs := func() string {
		b, _ := os.ReadFile(log)
		return strings.TrimSpace(string(b))
	}

	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 2;"})
	code, _, body := call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/revisions", testToken, api.PublishRequest{Message: "second"})
	var pub api.PublishResponse
	if err := json.Unmarshal(body, &pub); code != 201 || err != nil || pub.FollowUp == "" {
		t.Fatalf("publish: %d %s", code, body)
	}
	d := waitRun(t, c, pub.FollowUp)
	if d.Status != api.DeploySucceeded || d.Kind != "publish" || !strings.Contains(step(d, "wait for web nodes").Detail, "2 web nodes serve revision 2") {
		t.Fatalf("follow-up of the publish: %+v", d)
	}
	if got := runs(); got != "served" {
		t.Fatalf("after_all runs after the publish: %q, want one, after both web nodes served it", got)
	}

	// An unchanged publish has nothing to follow up.
	code, _, body = call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/revisions", testToken, api.PublishRequest{})
	if code != 200 || strings.Contains(string(body), "follow_up") {
		t.Fatalf("unchanged publish: %d %s", code, body)
	}

	code, _, body = call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/rollback", testToken, api.RollbackRequest{Revision: "1"})
	var rb api.RollbackResponse
	if err := json.Unmarshal(body, &rb); code != 200 || err != nil || rb.FollowUp == "" {
		t.Fatalf("rollback: %d %s", code, body)
	}
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 1;"}) // what revision 1 holds: cmp compares the served tree
	if d := waitRun(t, c, rb.FollowUp); d.Status != api.DeploySucceeded || d.Kind != "rollback" {
		t.Fatalf("follow-up of the rollback: %+v", d)
	}
	if got := runs(); got != "served\nserved" {
		t.Fatalf("after_all runs after the rollback: %q", got)
	}

	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 3;"})
	d = runDeploy(t, c.ctl, map[string]any{"run": "true"})
	if d.Status != api.DeploySucceeded || step(d, "after all").Status != api.DeployOK || d.Steps[len(d.Steps)-1].Name != "after all" {
		t.Fatalf("deploy: %+v", d)
	}
	if got := runs(); got != "served\nserved\nserved" {
		t.Fatalf("after_all runs after the deploy: %q", got)
	}

	// A follow-up still waiting (a web node cut off) is superseded by the
	// next publish; only the newest revision's after_all runs.
	cut.Store(true)
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 4;"})
	first := publishFollowUp(t, c)
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 5;"})
	second := publishFollowUp(t, c)
	if d := waitRun(t, c, first); d.Status != api.DeployFailed || !strings.Contains(d.Error, "superseded by the publish of revision 5") {
		t.Fatalf("superseded follow-up: %+v", d)
	}
	cut.Store(false)
	if d := waitRun(t, c, second); d.Status != api.DeploySucceeded {
		t.Fatalf("the newest follow-up: %+v", d)
	}
	if got := runs(); got != "served\nserved\nserved\nserved" {
		t.Fatalf("after_all runs after two quick publishes: %q, want one more", got)
	}
}

func publishFollowUp(t *testing.T, c *cluster) string {
	t.Helper()
	code, _, body := call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/revisions", testToken, api.PublishRequest{})
	var pub api.PublishResponse
	if err := json.Unmarshal(body, &pub); code != 201 || err != nil || pub.FollowUp == "" {
		t.Fatalf("publish: %d %s", code, body)
	}
	return pub.FollowUp
}

// TestAfterAllFollowUpSurvivesRestart: a controller restarted (an upgrade,
// a crash) while the follow-up of a publish waits for a web node runs
// deploy.after_all once that node serves the revision. Before, the
// follow-up died with the process and nothing ever ran after_all for that
// revision: a publish of the unchanged tree follows nothing up.
func TestAfterAllFollowUpSurvivesRestart(t *testing.T) {
	c := newCluster(t)
	cut := new(atomic.Bool)
	web := c.addCuttableWeb("web-1", cut)
	c.publish("first")
	c.converged("web-1")
	log := filepath.Join(c.dir, "after-all.log")
	script := fmt.Sprintf(`if cmp -s index.php %s; then echo served; else echo early; fi >> %s`,
		filepath.Join(c.target("web-1"), "index.php"), log)
	c.ctl.Close()
	cfg := c.config("controller", "controller")
	cfg.Mirror.Source, cfg.Gossip.Join = c.source, []string{web.GossipAddr()}
	cfg.Deploy.AfterAll = []string{"/bin/sh", "-c", script}
	c.ctl = c.open(cfg, c.key)

	cut.Store(true)
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 2;"})
	path := publishFollowUp(t, c)
	var d api.Deploy
	getJSON(t, c.ctl, path, &d)
	if d.Status != api.DeployRunning {
		t.Fatalf("the follow-up does not wait for the cut-off web node: %+v", d)
	}
	c.ctl.Close()
	c.ctl = c.open(cfg, c.key)
	cut.Store(false)
	testutil.Eventually(t, 60*time.Second, func() error {
		if b, _ := os.ReadFile(log); strings.TrimSpace(string(b)) != "served" {
			return fmt.Errorf("after_all ran: %q, want once, once web-1 served revision 2", b)
		}
		return nil
	})
	// The command wrote its line; its step ends when it exits.
	var list api.DeployList
	testutil.Eventually(t, 10*time.Second, func() error {
		getJSON(t, c.ctl, "/v1/deploys", &list)
		if len(list.Deploys) != 1 || list.Deploys[0].Kind != "publish" || list.Deploys[0].Status != api.DeploySucceeded ||
			list.Deploys[0].Revision == nil || list.Deploys[0].Revision.Seq != 2 {
			return fmt.Errorf("deploys after the restart: %+v", list.Deploys)
		}
		return nil
	})
	// Done: the next start has nothing to follow up.
	c.ctl.Close()
	c.ctl = c.open(cfg, c.key)
	getJSON(t, c.ctl, "/v1/deploys", &list)
	if len(list.Deploys) != 0 {
		t.Fatalf("a finished follow-up ran again at the next start: %+v", list.Deploys)
	}
}
