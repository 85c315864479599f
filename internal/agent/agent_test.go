package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

const testToken = "test-token-0123456789"

// testKey is the gossip key of agents outside a test cluster (benchmarks,
// which do not run in parallel); a test cluster has its own (cluster.key).
var testKey = bytes.Repeat([]byte{0x42}, 32)

// testUser is the user the tests run as.
var testUser = func() string {
	u, err := user.Current()
	if err != nil {
		panic(err)
	}
	return u.Username
}()

// cluster is a set of in-process agents sharing one temporary directory.
type cluster struct {
	t      *testing.T
	dir    string
	source string
	ctl    *agent.Agent
	webs   map[string]*agent.Agent
	adjust []func(*agent.Options) // applied to every agent opened
	// key is the cluster's gossip key, its own: tests run in parallel, and
	// an agent rejoining a departed member's address must never reach
	// another test's agent that reused the port.
	key []byte
}

func newCluster(t *testing.T, adjust ...func(*agent.Options)) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, source: filepath.Join(dir, "source"), webs: map[string]*agent.Agent{}, key: newKey(t), adjust: adjust}
	writeTree(t, c.source, map[string]string{
		"index.php":         "<?php echo 1;",
		"config.php":        "<?php $CFG->dbpass = 'secret';",
		"lib/a.php":         "a",
		"lib/b.php":         "b",
		"theme/boost/x.css": "body{}",
	})
	if err := os.Symlink("boost", filepath.Join(c.source, "theme/default")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(c.source, "cache/empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := c.config("controller", "controller")
	cfg.Mirror.Source = c.source
	c.ctl = c.open(cfg, c.key)
	return c
}

func (c *cluster) config(node, role string) *config.Config {
	cfg := config.Default()
	cfg.Node, cfg.Role = node, role
	cfg.DataDir = filepath.Join(c.dir, node, "data")
	cfg.Gossip.Bind = "127.0.0.1:0"
	cfg.Cluster.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Mirror.MaxLag = config.Duration(time.Minute)
	cfg.Deploy.RunAs = testUser // commands write into the test's private directories
	if c.ctl != nil {
		cfg.Gossip.Join = []string{c.ctl.GossipAddr()}
	}
	if role == "web" {
		cfg.Mirror.Target = c.target(node)
	}
	return cfg
}

func (c *cluster) target(node string) string { return filepath.Join(c.dir, node, "www", "moodle") }

func (c *cluster) open(cfg *config.Config, key []byte, adjust ...func(*agent.Options)) *agent.Agent {
	c.t.Helper()
	if err := cfg.Validate(); err != nil {
		c.t.Fatal(err)
	}
	opts := agent.Options{
		Key: key, Token: testToken, GossipTiming: gossip.TestTiming(),
		SyncRetryMin: 50 * time.Millisecond, SyncRetryMax: 500 * time.Millisecond,
	}
	for _, f := range slices.Concat(c.adjust, adjust) {
		f(&opts)
	}
	a := agent.New(cfg, opts)
	if err := a.Open(context.Background()); err != nil {
		c.t.Fatalf("open %s: %v", cfg.Node, err)
	}
	c.t.Cleanup(func() { a.Close() })
	return a
}

func (c *cluster) addWeb(node string) *agent.Agent {
	a := c.open(c.config(node, "web"), c.key)
	c.webs[node] = a
	return a
}

func (c *cluster) publish(msg string) {
	c.t.Helper()
	if _, _, err := c.ctl.Publish(context.Background(), msg); err != nil {
		c.t.Fatalf("publish: %v", err)
	}
}

// converged waits until every web node's target equals the source (a
// first sync after a join can take long on a loaded 2-core machine).
func (c *cluster) converged(nodes ...string) {
	c.t.Helper()
	for _, n := range nodes {
		testutil.Eventually(c.t, 60*time.Second, func() error {
			if d := mirrortest.DiffTrees(c.source, c.target(n)); d != nil {
				return fmt.Errorf("%s: %s", n, strings.Join(d, "; "))
			}
			return nil
		})
	}
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func call(t *testing.T, method, url, token string, body any) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data
}

func TestPublishReachesEveryWebNode(t *testing.T) {
	c := newCluster(t)
	c.addWeb("web-1")
	c.addWeb("web-2")
	c.publish("first")
	c.converged("web-1", "web-2")

	// A second publish of a small change: edit, add, delete together.
	writeTree(t, c.source, map[string]string{"lib/a.php": "a2", "lib/new.php": "new"})
	if err := os.Remove(filepath.Join(c.source, "lib/b.php")); err != nil {
		t.Fatal(err)
	}
	c.publish("second")
	c.converged("web-1", "web-2")

	for _, w := range c.webs {
		// The target switches a moment before the node records it.
		testutil.Eventually(t, 10*time.Second, func() error {
			code, _, body := call(t, "GET", "http://"+w.LocalAddr()+"/v1/status", testToken, nil)
			var st struct {
				Revision struct {
					InSync  bool `json:"in_sync"`
					Applied struct{ Seq uint64 }
				}
			}
			if err := json.Unmarshal(body, &st); code != 200 || err != nil {
				return fmt.Errorf("status %d %s", code, body)
			}
			if !st.Revision.InSync || st.Revision.Applied.Seq != 2 {
				return fmt.Errorf("status after second publish: %s", body)
			}
			return nil
		})
	}
}

func TestUnchangedPublishCreatesNothing(t *testing.T) {
	c := newCluster(t)
	c.publish("first")
	code, _, body := call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/revisions", testToken, map[string]string{"message": "again"})
	if code != http.StatusOK || !strings.Contains(string(body), `"unchanged":true`) {
		t.Fatalf("re-publish of an unchanged tree: %d %s", code, body)
	}
	writeTree(t, c.source, map[string]string{"index.php": "<?php echo 2;"})
	code, _, body = call(t, "POST", "http://"+c.ctl.LocalAddr()+"/v1/revisions", testToken, map[string]string{"message": "changed"})
	if code != http.StatusCreated || !strings.Contains(string(body), `"seq":2`) {
		t.Fatalf("publish of a change: %d %s", code, body)
	}
}

func TestLateAndRestartedNodesCatchUp(t *testing.T) {
	c := newCluster(t)
	web1 := c.addWeb("web-1")
	c.publish("first")
	c.converged("web-1")

	// web-1 is down during two publishes.
	web1.Close()
	writeTree(t, c.source, map[string]string{"lib/a.php": "second"})
	c.publish("second")
	writeTree(t, c.source, map[string]string{"lib/a.php": "third"})
	c.publish("third")

	c.addWeb("web-1") // same data dir: a restart
	c.addWeb("web-2") // joins late, never saw any announcement
	c.converged("web-1", "web-2")
}

func TestReadiness(t *testing.T) {
	c := newCluster(t)
	web := c.addWeb("web-1")
	url := "http://" + web.LocalAddr() + "/readyz"
	code, hdr, body := call(t, "GET", url, "", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "mirror:revision") {
		t.Fatalf("readyz before the first sync: %d %s", code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/health+json" {
		t.Fatalf("readyz content type %q", ct)
	}
	c.publish("first")
	c.converged("web-1")
	testutil.Eventually(t, 5*time.Second, func() error {
		if code, _, body := call(t, "GET", url, "", nil); code != 200 {
			return fmt.Errorf("readyz after sync: %d %s", code, body)
		}
		return nil
	})
}

func TestAPIAuthAndRoles(t *testing.T) {
	c := newCluster(t)
	web := c.addWeb("web-1")
	base := "http://" + c.ctl.LocalAddr()
	for _, tok := range []string{"", "wrong-token"} {
		code, hdr, body := call(t, "GET", base+"/v1/status", tok, nil)
		if code != http.StatusUnauthorized || hdr.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("token %q: %d %s %s", tok, code, hdr.Get("Content-Type"), body)
		}
	}
	if code, _, _ := call(t, "GET", base+"/healthz", "", nil); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	code, _, body := call(t, "POST", "http://"+web.LocalAddr()+"/v1/revisions", testToken, nil)
	if code != http.StatusConflict {
		t.Fatalf("publish on a web node: %d %s", code, body)
	}
	code, _, body = call(t, "POST", base+"/v1/revisions", testToken, "not an object")
	if code != http.StatusBadRequest {
		t.Fatalf("malformed body: %d %s", code, body)
	}
}

func TestOtherGossipKeyCannotJoin(t *testing.T) {
	c := newCluster(t)
	c.addWeb("web-1")
	intruder := c.open(c.config("intruder", "web"), bytes.Repeat([]byte{0x13}, 32))
	c.publish("first")
	c.converged("web-1")
	// The legitimate members converge among themselves; the intruder never
	// becomes a member and never receives the tree.
	for i := 0; i < 10; i++ {
		for _, m := range c.ctl.Members() {
			if m.Name == "intruder" {
				t.Fatalf("intruder became a member: %+v", m)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(intruder.Members()) != 1 {
		t.Fatalf("intruder sees %d members", len(intruder.Members()))
	}
	if _, err := os.Stat(filepath.Join(c.target("intruder"), "config.php")); err == nil {
		t.Fatal("intruder received the tree")
	}
}
