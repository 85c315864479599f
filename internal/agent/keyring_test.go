package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// flapLog is a log handler that keeps, once armed, every line showing a
// member suspected, failed or gone, or a gossip packet no key decrypts.
type flapLog struct {
	armed *atomic.Bool
	mu    *sync.Mutex
	lines *[]string
	attrs string
}

var flapRE = regexp.MustCompile(`(?i)suspect|as failed|decrypt|gossip member (dead|left|suspect)`)

func newFlapLog() flapLog {
	return flapLog{armed: new(atomic.Bool), mu: new(sync.Mutex), lines: new([]string)}
}

func (l flapLog) Enabled(context.Context, slog.Level) bool { return true }
func (l flapLog) WithGroup(string) slog.Handler            { return l }

func (l flapLog) WithAttrs(as []slog.Attr) slog.Handler {
	for _, a := range as {
		l.attrs += " " + a.String()
	}
	return l
}

func (l flapLog) Handle(_ context.Context, r slog.Record) error {
	if !l.armed.Load() {
		return nil
	}
	line := r.Message + l.attrs
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	if flapRE.MatchString(line) && !strings.Contains(line, "web-5") { // web-5 left before
		l.mu.Lock()
		*l.lines = append(*l.lines, line)
		l.mu.Unlock()
	}
	return nil
}

func (l flapLog) seen() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(*l.lines)
}

// flapWatch polls every agent's member list and keeps any sighting of one
// of the watched members not alive, or alive since a later time than at
// the start (a flap between two polls).
type flapWatch struct {
	stop chan struct{}
	done chan struct{}
	seen []string
}

func watchFlaps(agents map[string]*agent.Agent) *flapWatch {
	w := &flapWatch{stop: make(chan struct{}), done: make(chan struct{})}
	since := map[string]time.Time{}
	for obs, a := range agents {
		for _, m := range a.Members() {
			since[obs+">"+m.Name] = m.Since
		}
	}
	go func() {
		defer close(w.done)
		for {
			for obs, a := range agents {
				for _, m := range a.Members() {
					if agents[m.Name] == nil {
						continue
					}
					if m.State != gossip.StateAlive || !m.Since.Equal(since[obs+">"+m.Name]) {
						w.seen = append(w.seen, fmt.Sprintf("%s saw %s %s since %s", obs, m.Name, m.State, m.Since.Format(time.StampMilli)))
					}
				}
			}
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *flapWatch) end() []string {
	close(w.stop)
	<-w.done
	return w.seen
}

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// keyring sends a keyring call to an agent's local API and decodes the
// report (a problem document carries one too).
func keyring(t *testing.T, a *agent.Agent, method, path string, body any) (int, api.KeyringReport) {
	t.Helper()
	code, _, data := call(t, method, "http://"+a.LocalAddr()+"/v1/keyring"+path, testToken, body)
	var rep api.KeyringReport
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("%s /v1/keyring%s: %d %s", method, path, code, data)
	}
	return code, rep
}

// mustKeyring is a keyring call every live member must apply.
func mustKeyring(t *testing.T, a *agent.Agent, members int, method, path string, body any) api.KeyringReport {
	t.Helper()
	code, rep := keyring(t, a, method, path, body)
	if code != http.StatusOK || rep.Failed != 0 || rep.Members != members || len(rep.Nodes) != members {
		t.Fatalf("%s /v1/keyring%s: %d, %d of %d members failed: %+v", method, path, code, rep.Failed, rep.Members, rep.Nodes)
	}
	return rep
}

// checkKeys checks that every member answered with exactly keys (the
// primary first) and a cluster certificate of the primary key.
func checkKeys(t *testing.T, rep api.KeyringReport, keys ...[]byte) {
	t.Helper()
	var want []gossip.KeyInfo
	for i, k := range keys {
		want = append(want, gossip.KeyInfo{Fingerprint: gossip.Fingerprint(k), Primary: i == 0})
	}
	for _, n := range rep.Nodes {
		if !slices.Equal(n.Keys, want) {
			t.Fatalf("%s %s: keys %+v, want %+v", rep.Op, n.Node, n.Keys, want)
		}
		if n.Certificate == nil || n.Certificate.Issuer != want[0].Fingerprint {
			t.Fatalf("%s %s: cluster certificate %+v, want one issued by %s", rep.Op, n.Node, n.Certificate, want[0].Fingerprint)
		}
	}
}

func syncErrors(t *testing.T, a *agent.Agent) int {
	t.Helper()
	_, _, body := call(t, "GET", "http://"+a.LocalAddr()+"/metrics", "", nil)
	m := regexp.MustCompile(`(?m)^nodeagent_sync_errors_total (\d+)`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no nodeagent_sync_errors_total in the metrics of %s", a.Status().Node)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// publishWhile publishes a change while f runs.
func (c *cluster) publishWhile(msg string, f func()) {
	c.t.Helper()
	writeTree(c.t, c.source, map[string]string{"lib/a.php": msg})
	done := make(chan error, 1)
	go func() {
		_, _, err := c.ctl.Publish(context.Background(), msg)
		done <- err
	}()
	f()
	if err := <-done; err != nil {
		c.t.Fatalf("publish %s: %v", msg, err)
	}
}

// TestKeyringRotationWithoutDowntime rotates the gossip key of a live
// five-node cluster (real memberlist on loopback) while publishing: no
// member is ever suspected or seen failed, no packet goes undecrypted,
// every sync succeeds and every web node serves every revision. A node
// that was down during the rotation, holding only the removed key, can
// neither join nor read content until its key file gets the new key.
func TestKeyringRotationWithoutDowntime(t *testing.T) {
	flaps := newFlapLog()
	c := newCluster(t, func(o *agent.Options) {
		o.Logger = slog.New(flaps)
		// Probes as patient as on a LAN, so that a loaded test machine
		// does not suspect members by itself; gossip as fast as in tests.
		o.GossipTiming.ProbeInterval = 2 * time.Second
		o.GossipTiming.ProbeTimeout = 1500 * time.Millisecond
		o.GossipTiming.SuspicionMult = 4
	})
	live := map[string]*agent.Agent{"controller": c.ctl}
	for i := 1; i <= 4; i++ {
		name := fmt.Sprintf("web-%d", i)
		live[name] = c.addWeb(name)
	}
	stale := c.addWeb("web-5")
	c.publish("first")
	c.converged("web-1", "web-2", "web-3", "web-4", "web-5")
	stale.Close() // down during the rotation
	testutil.Eventually(t, 20*time.Second, func() error {
		for name, a := range live {
			if n := len(a.Members()); n != 6 {
				return fmt.Errorf("%s sees %d members", name, n)
			}
			for _, m := range a.Members() {
				if (m.State == gossip.StateAlive) != (m.Name != "web-5") {
					return fmt.Errorf("%s sees %s %s", name, m.Name, m.State)
				}
			}
		}
		return nil
	})

	k1, k2 := c.key, newKey(t)
	fp1, fp2 := gossip.Fingerprint(k1), gossip.Fingerprint(k2)
	webs := []string{"web-1", "web-2", "web-3", "web-4"}
	flaps.armed.Store(true)
	watch := watchFlaps(live)

	rep := mustKeyring(t, live["web-2"], 5, "GET", "", nil)
	checkKeys(t, rep, k1)
	if !slices.Equal(rep.Skipped, []string{"web-5 (left)"}) {
		t.Fatalf("skipped %v, want web-5 (left)", rep.Skipped)
	}
	c.publishWhile("second", func() {
		rep = mustKeyring(t, live["web-2"], 5, "POST", "", api.KeyRequest{Key: base64.StdEncoding.EncodeToString(k2)})
	})
	checkKeys(t, rep, k1, k2)
	c.converged(webs...)
	if code, rep := keyring(t, c.ctl, "DELETE", "/"+fp1, nil); code != http.StatusConflict || len(rep.Nodes) != 5 {
		t.Fatalf("remove the primary key: %d %+v", code, rep)
	}
	c.publishWhile("third", func() {
		rep = mustKeyring(t, c.ctl, 5, "PUT", "/primary", api.PrimaryRequest{Fingerprint: fp2})
	})
	checkKeys(t, rep, k2, k1)
	c.converged(webs...)
	c.publishWhile("fourth", func() {
		rep = mustKeyring(t, live["web-3"], 5, "DELETE", "/"+fp1, nil)
	})
	checkKeys(t, rep, k2)
	c.converged(webs...)
	writeTree(t, c.source, map[string]string{"lib/a.php": "fifth"})
	c.publish("fifth")
	c.converged(webs...)

	if seen := watch.end(); len(seen) > 0 {
		t.Fatalf("members flapped during the rotation:\n%s", strings.Join(seen, "\n"))
	}
	if lines := flaps.seen(); len(lines) > 0 {
		t.Fatalf("the log shows members failing or undecryptable packets during the rotation:\n%s", strings.Join(lines, "\n"))
	}
	flaps.armed.Store(false)
	for _, w := range webs {
		if n := syncErrors(t, live[w]); n != 0 {
			t.Fatalf("%s: %d failed syncs during the rotation", w, n)
		}
	}

	// web-5 comes back with its keyring of k1 alone: refused by gossip and
	// by the cluster API (its certificate's CA is no longer trusted).
	stale = c.addWeb("web-5")
	resp, err := agent.PeerClient(stale).Get("https://" + c.ctl.ClusterAddr() + "/cluster/v1/mirror/revisions")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a node holding only the removed key read from the cluster API: %d", resp.StatusCode)
	}
	if !strings.Contains(err.Error(), "tls") && !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("want the TLS handshake refused, got %v", err)
	}
	// The controller refuses its certificate even from a client that does
	// not check the controller's.
	cfg := agent.ClusterIdentity(stale).ClientConfig()
	cfg.VerifyConnection = nil
	blind := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	if resp, err := blind.Get("https://" + c.ctl.ClusterAddr() + "/cluster/v1/mirror/revisions"); err == nil {
		resp.Body.Close()
		t.Fatalf("the controller accepted the certificate of a removed key: %d", resp.StatusCode)
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		// It still knows the members from its snapshot, but none alive.
		for _, m := range stale.Members() {
			if m.Name != "web-5" && m.State == gossip.StateAlive {
				t.Fatalf("a node holding only the removed key sees %s alive", m.Name)
			}
		}
		for _, m := range c.ctl.Members() {
			if m.Name == "web-5" && m.State == gossip.StateAlive {
				t.Fatal("a node holding only the removed key joined")
			}
		}
	}

	// The operator writes the new key into its key file: it joins and syncs.
	stale.Close()
	c.webs["web-5"] = c.open(c.config("web-5", "web"), k2)
	c.converged("web-5")
	waitAlive(t, 6, c.ctl)
	rep = mustKeyring(t, c.ctl, 6, "GET", "", nil)
	checkKeys(t, rep, k2)
}

// waitAlive waits until each agent sees n members alive.
func waitAlive(t *testing.T, n int, agents ...*agent.Agent) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() error {
		for _, a := range agents {
			alive := 0
			for _, m := range a.Members() {
				if m.State == gossip.StateAlive {
					alive++
				}
			}
			if alive != n {
				return fmt.Errorf("%s sees %d members alive, want %d", a.Status().Node, alive, n)
			}
		}
		return nil
	})
}

// TestKeyringRefusals: a key is used only once every live member has it;
// nothing changes when one does not.
func TestKeyringRefusals(t *testing.T) {
	c := newCluster(t)
	web1 := c.addWeb("web-1")
	k2, k3 := newKey(t), newKey(t)
	waitAlive(t, 2, web1)
	mustKeyring(t, web1, 2, "POST", "", api.KeyRequest{Key: base64.StdEncoding.EncodeToString(k3)})
	// web-2 joins with the cluster's key only.
	web2 := c.addWeb("web-2")
	waitAlive(t, 3, c.ctl, web2)
	code, rep := keyring(t, c.ctl, "PUT", "/primary", api.PrimaryRequest{Fingerprint: gossip.Fingerprint(k3)})
	if code != http.StatusConflict || rep.Members != 3 {
		t.Fatalf("use a key web-2 lacks: %d %+v", code, rep)
	}
	rep = mustKeyring(t, web2, 3, "GET", "", nil)
	for _, n := range rep.Nodes {
		if n.Keys[0].Fingerprint != gossip.Fingerprint(c.key) {
			t.Fatalf("%s changed its primary key after a refused use: %+v", n.Node, n.Keys)
		}
	}
	for _, tc := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"PUT", "/primary", api.PrimaryRequest{Fingerprint: gossip.Fingerprint(k2)}, http.StatusNotFound},
		{"DELETE", "/" + gossip.Fingerprint(k2), nil, http.StatusNotFound},
		{"DELETE", "/" + gossip.Fingerprint(c.key), nil, http.StatusConflict},
		{"DELETE", "/XYZ", nil, http.StatusBadRequest},
		{"POST", "", api.KeyRequest{Key: "c2hvcnQ="}, http.StatusBadRequest},
	} {
		if code, _, body := call(t, tc.method, "http://"+c.ctl.LocalAddr()+"/v1/keyring"+tc.path, testToken, tc.body); code != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.want)
		}
	}
	if code, _, _ := call(t, "GET", "http://"+c.ctl.LocalAddr()+"/v1/keyring", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("keyring without the token: %d", code)
	}
}
