package ui_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

const testToken = "ui-test-token-0123456789"

var testKey = bytes.Repeat([]byte{0x15}, 32)

// cluster is a controller and web nodes in this process, on loopback, as
// internal/agent's tests run them: real gossip, real cluster TLS, real
// syncs into temporary directories.
type cluster struct {
	t      testing.TB
	dir    string
	source string
	ctl    *agent.Agent
	webs   []*agent.Agent
}

// newCluster starts 1 controller + webs web nodes and publishes a first
// revision. A rate above zero slows each web node's content downloads to
// that many bytes per second, so a sync lasts long enough to be watched.
func newCluster(t testing.TB, webs int, rate int64) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, source: filepath.Join(dir, "source")}
	c.write(map[string]int{"index.php": 200, "config.php": 100, "lib/setup.php": 4000, "theme/boost/style.css": 9000})
	cfg := c.config("controller", "controller")
	cfg.Mirror.Source = c.source
	c.ctl = c.open(cfg, 0)
	for i := 1; i <= webs; i++ {
		c.webs = append(c.webs, c.open(c.config(fmt.Sprintf("web-%d", i), "web"), rate))
	}
	c.publish("first")
	c.converged()
	return c
}

func (c *cluster) config(node, role string) *config.Config {
	cfg := config.Default()
	cfg.Node, cfg.Role = node, role
	cfg.DataDir = filepath.Join(c.dir, node, "data")
	cfg.Gossip.Bind = "127.0.0.1:0"
	cfg.Cluster.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	if c.ctl != nil {
		cfg.Gossip.Join = []string{c.ctl.GossipAddr()}
	}
	if role == "web" {
		cfg.Mirror.Target = filepath.Join(c.dir, node, "www", "moodle")
	}
	return cfg
}

func (c *cluster) open(cfg *config.Config, rate int64) *agent.Agent {
	c.t.Helper()
	if err := cfg.Validate(); err != nil {
		c.t.Fatal(err)
	}
	opts := agent.Options{
		Key: testKey, Token: testToken, GossipTiming: gossip.TestTiming(), Version: "ui-test",
		SyncRetryMin: 50 * time.Millisecond, SyncRetryMax: 500 * time.Millisecond,
	}
	if rate > 0 {
		link := &slowLink{rate: rate}
		opts.WrapPeerTransport = func(rt http.RoundTripper) http.RoundTripper { return &slowContent{rt: rt, link: link} }
	}
	a := agent.New(cfg, opts)
	if err := a.Open(context.Background()); err != nil {
		c.t.Fatalf("open %s: %v", cfg.Node, err)
	}
	c.t.Cleanup(func() { a.Close() })
	return a
}

// write adds files of the given sizes to the source tree, with content
// that does not compress.
func (c *cluster) write(files map[string]int) {
	c.t.Helper()
	for name, size := range files {
		if err := mirrortest.WriteFile(c.source, name, mirrortest.Content(nil, name+time.Now().String(), size)); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *cluster) publish(msg string) {
	c.t.Helper()
	if _, _, err := c.ctl.Publish(context.Background(), msg); err != nil {
		c.t.Fatalf("publish: %v", err)
	}
}

// converged waits until every web node serves the source tree.
func (c *cluster) converged() {
	c.t.Helper()
	for _, w := range c.webs {
		testutil.Eventually(c.t, 60*time.Second, func() error {
			target := filepath.Join(c.dir, w.Status().Node, "www", "moodle")
			if d := mirrortest.DiffTrees(c.source, target); d != nil {
				return fmt.Errorf("%s: %s", w.Status().Node, strings.Join(d, "; "))
			}
			return nil
		})
	}
}

// slowContent delivers the bodies of content downloads (the mirror's
// objects endpoint) through a slow link.
type slowContent struct {
	rt   http.RoundTripper
	link *slowLink
}

func (s *slowContent) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.rt.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/mirror/objects") {
		return resp, err
	}
	resp.Body = &slowBody{ReadCloser: resp.Body, link: s.link}
	return resp, nil
}

// slowLink is one node's link: all its downloads share rate bytes per
// second.
type slowLink struct {
	rate int64
	mu   sync.Mutex
	next time.Time // when the link is free again
}

// pass returns when n more bytes have crossed the link (a link's speed,
// not a wait for state).
func (l *slowLink) pass(n int) {
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(int64(n) * int64(time.Second) / l.rate))
	due := l.next
	l.mu.Unlock()
	time.Sleep(time.Until(due))
}

type slowBody struct {
	io.ReadCloser
	link *slowLink
}

func (b *slowBody) Read(p []byte) (int, error) {
	if len(p) > 16<<10 {
		p = p[:16<<10]
	}
	n, err := b.ReadCloser.Read(p)
	b.link.pass(n)
	return n, err
}
