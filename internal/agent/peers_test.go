package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/clustertls"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// bigTree adds n files of distinct content to the cluster's source, so a
// sync has something to spread over sources.
func (c *cluster) bigTree(n int) {
	files := map[string]string{}
	for i := range n {
		files[fmt.Sprintf("mod/m%02d/f%04d.php", i%20, i)] = fmt.Sprintf("<?php // %d %s", i, strings.Repeat("x", 1000+i))
	}
	writeTree(c.t, c.source, files)
}

// refuseHost fails the agent-to-agent calls to one address: the node
// still gossips with it but cannot fetch from it.
type refuseHost struct {
	host *atomic.Value // string
	next http.RoundTripper
}

func (r refuseHost) RoundTrip(req *http.Request) (*http.Response, error) {
	if h, _ := r.host.Load().(string); h != "" && req.URL.Host == h {
		return nil, errors.New("test: refused")
	}
	return r.next.RoundTrip(req)
}

// sources returns a web node's sync sources as its /v1/status shows them.
func sources(t *testing.T, a *agent.Agent) map[string]mirror.SourceCount {
	t.Helper()
	st := status(t, a)
	if st.Sync == nil {
		t.Fatalf("%s: no sync in status", st.Node)
	}
	out := map[string]mirror.SourceCount{}
	for _, s := range st.Sync.Sources {
		out[s.Name] = s
	}
	return out
}

func TestWebSyncsFromAPeerWhenTheControllerIsCutOff(t *testing.T) {
	c := newCluster(t)
	c.bigTree(300)
	c.addWeb("web-1")
	c.publish("first")
	c.converged("web-1")

	// web-2 joins after the publish and cannot reach the controller's
	// cluster API: everything comes from web-1.
	var ctlAPI atomic.Value
	ctlAPI.Store(c.ctl.ClusterAddr())
	web2 := c.open(c.config("web-2", "web"), c.key, func(o *agent.Options) {
		o.WrapPeerTransport = func(rt http.RoundTripper) http.RoundTripper { return refuseHost{&ctlAPI, rt} }
	})
	c.webs["web-2"] = web2
	c.converged("web-2")

	got := sources(t, web2)
	if w1 := got["web-1"]; w1.Kind != mirror.KindPeer || w1.Objects < 300 || w1.Bytes < 300_000 {
		t.Errorf("web-1 gave %+v; want the whole tree", w1)
	}
	if ctl := got["controller"]; ctl.Bytes != 0 {
		t.Errorf("the controller gave %+v while cut off", ctl)
	}
	st1 := status(t, c.webs["web-1"])
	if st1.PeerUpload == nil || st1.PeerUpload.Bytes < 300_000 || st1.PeerUpload.Concurrency != 4 {
		t.Errorf("web-1's peer_upload status: %+v", st1.PeerUpload)
	}
}

func TestWebBansAPeerThatSendsCorruptBytes(t *testing.T) {
	c := newCluster(t)
	c.bigTree(200)
	c.publish("first")
	target := status(t, c.ctl).Revision.Target

	// web-evil is a member with the cluster's key that says it serves
	// the target, and answers every content request with the
	// controller's bytes altered.
	evil := newEvilPeer(t, c)
	evil.join(t, c, target)

	web1 := c.addWeb("web-1")
	c.converged("web-1")
	if evil.corrupted.Load() == 0 {
		t.Fatal("web-1 never asked web-evil: the test proves nothing")
	}
	got := sources(t, web1)
	if e := got["web-evil"]; e.State != mirror.SourceBanned || e.Failures == 0 {
		t.Errorf("web-evil after bad bytes: %+v; want banned", e)
	}
	if ctl := got["controller"]; ctl.Objects == 0 {
		t.Errorf("the controller gave %+v; want what web-evil did not", ctl)
	}
	// Never a partial switch: web-1 serves the published tree only.
	if st := status(t, web1); st.Revision.Applied == nil || st.Revision.Applied.ID != target.ID {
		t.Errorf("web-1 applied %+v", st.Revision.Applied)
	}
}

// evilPeer is a fake web node holding the cluster key: a gossip member and
// a cluster API that corrupts the content it relays from the controller.
type evilPeer struct {
	srv       *httptest.Server
	gossip    *gossip.Gossip
	corrupted atomic.Int64
}

func newEvilPeer(t *testing.T, c *cluster) *evilPeer {
	t.Helper()
	key := clustertls.Key{Name: gossip.Fingerprint(c.key), Secret: c.key}
	id, err := clustertls.New(clustertls.Config{Node: "web-evil"}, []clustertls.Key{key})
	if err != nil {
		t.Fatal(err)
	}
	e := &evilPeer{}
	up, _ := url.Parse("https://" + c.ctl.ClusterAddr())
	proxy := httputil.NewSingleHostReverseProxy(up)
	proxy.Transport = id.HTTPClient(nil).Transport
	proxy.ModifyResponse = func(resp *http.Response) error {
		if strings.HasSuffix(resp.Request.URL.Path, "/objects") && resp.StatusCode == http.StatusOK {
			resp.Body = &flipAfter{rc: resp.Body, at: mirror.FrameHeaderSize + 3, n: &e.corrupted}
		}
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cluster/v1/mirror/have/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"complete":true,"from":0}`)
	})
	mux.Handle("/", proxy)
	e.srv = httptest.NewUnstartedServer(mux)
	e.srv.TLS = id.ServerConfig()
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

// join makes web-evil a gossip member that serves target.
func (e *evilPeer) join(t *testing.T, c *cluster, target *api.RevRef) {
	t.Helper()
	addr := e.srv.Listener.Addr().(*net.TCPAddr)
	e.gossip = gossip.New(gossip.Config{
		Name: "web-evil", Bind: "127.0.0.1:0", Join: []string{c.ctl.GossipAddr()}, Key: c.key,
		Timing: gossip.TestTiming(), StateFile: c.dir + "/evil-gossip.json",
		Meta: gossip.NodeMeta{Role: "web", API: addr.String(), Seq: target.Seq, Rev: target.ID, Ready: true},
	})
	if err := e.gossip.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.gossip.Close() })
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, m := range c.ctl.Members() {
			if m.Name == "web-evil" && m.State == gossip.StateAlive {
				return nil
			}
		}
		return errors.New("web-evil has not joined")
	})
}

// flipAfter alters the byte at offset at of a body.
type flipAfter struct {
	rc  io.ReadCloser
	at  int64
	off int64
	n   *atomic.Int64
}

func (f *flipAfter) Read(p []byte) (int, error) {
	n, err := f.rc.Read(p)
	if f.at >= f.off && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 0x20
		f.n.Add(1)
	}
	f.off += int64(n)
	return n, err
}

func (f *flipAfter) Close() error { return f.rc.Close() }
