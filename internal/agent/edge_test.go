package agent_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/certs"
	"github.com/nodeagent/nodeagent/internal/certs/certstest"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	var n int
	fmt.Sscan(p, &n)
	return n
}

// servedFingerprint is the SHA-256 of the leaf the edge at addr presents
// for moodle.test, verified against roots.
func servedFingerprint(addr string, roots *x509.CertPool) (string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: "moodle.test", RootCAs: roots})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:]), nil
}

func certState(t *testing.T, a *agent.Agent) certs.State {
	t.Helper()
	code, _, body := call(t, "GET", "http://"+a.LocalAddr()+"/v1/certificates", testToken, nil)
	var st certs.State
	if err := json.Unmarshal(body, &st); code != 200 || err != nil {
		t.Fatalf("GET /v1/certificates: %d %s", code, body)
	}
	return st
}

// TestEdgeACMERenewalAnnounced: web-1 obtains a certificate from Pebble
// into the controller's storage; web-2 serves the same one; when web-1
// renews it (short renewal window, checked every second), the gossip
// announcement makes web-2 serve the new certificate at once, though
// web-2's own renewal check would not run for 10 minutes.
func TestEdgeACMERenewalAnnounced(t *testing.T) {
	c := newCluster(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "moodle") }))
	defer backend.Close()
	https1, http1 := testutil.FreeAddr(t), testutil.FreeAddr(t)
	p := certstest.Start(t, certstest.Options{HTTPPort: port(http1), TLSPort: port(https1), Validity: time.Hour})
	root := filepath.Join(c.dir, "pebble-root.pem")
	if err := os.WriteFile(root, p.ServerRootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	web := func(node, https, http string, check time.Duration) *agent.Agent {
		cfg := c.config(node, "web")
		cfg.Edge = &config.EdgeConfig{HTTPS: https, HTTP: http, Backend: backend.URL, Domains: []string{"moodle.test"},
			ACME: config.ACMEConfig{Email: "admin@moodle.test", CA: p.Directory, CARoot: root}}
		a := c.open(cfg, c.key, func(o *agent.Options) {
			// Renew a certificate older than ~15 s.
			o.ACME = agent.ACMETuning{RenewCheckInterval: check, RenewalWindowRatio: 1 - 15.0/3600, DisableARI: true}
		})
		c.webs[node] = a
		return a
	}
	w1 := web("web-1", https1, http1, time.Second)
	var first string
	testutil.Eventually(t, 60*time.Second, func() error {
		fp, err := servedFingerprint(https1, p.Roots)
		first = fp
		return err
	})
	w2 := web("web-2", "127.0.0.1:0", "", 0) // default check: every 10 minutes
	testutil.Eventually(t, 30*time.Second, func() error {
		fp, err := servedFingerprint(w2.EdgeAddr(), p.Roots)
		if err == nil && fp != first {
			err = fmt.Errorf("web-2 serves %s, web-1 %s", fp, first)
		}
		return err
	})
	if st := certState(t, w2); st.Fingerprint != first || st.Source != certs.SourceACME {
		t.Fatalf("web-2 state %+v", st)
	}

	// web-1 renews; web-2 follows the announcement.
	var renewed string
	testutil.Eventually(t, 90*time.Second, func() error {
		fp, err := servedFingerprint(https1, p.Roots)
		if err == nil && fp == first {
			err = errors.New("web-1 has not renewed yet")
		}
		renewed = fp
		return err
	})
	start := time.Now()
	testutil.Eventually(t, 15*time.Second, func() error {
		fp, err := servedFingerprint(w2.EdgeAddr(), p.Roots)
		if err == nil && fp == first {
			err = errors.New("web-2 still serves the first certificate")
		}
		return err
	})
	t.Logf("web-2 served the renewed certificate %s after web-1 did", time.Since(start).Round(time.Millisecond))
	// web-2 serves what web-1 announced (or a later renewal by web-1).
	st := certState(t, w2)
	if st.Fingerprint == first || st.Pending {
		t.Fatalf("web-2 state after renewal %+v (web-1 renewed to %s)", st, renewed)
	}
	code, _, body := call(t, "GET", "http://"+w1.LocalAddr()+"/v1/status", testToken, nil)
	if code != 200 || !strings.Contains(string(body), `"certificate":{"source":"acme"`) {
		t.Fatalf("status: %d %s", code, body)
	}
}

// TestEdgeReadiness: edge:backend fails while the backend does not answer
// and passes once it does; /v1/certificates is 404 on a node without edge.
func TestEdgeReadiness(t *testing.T) {
	c := newCluster(t)
	c.publish("first")
	backendAddr := testutil.FreeAddr(t) // nothing listens yet
	cfg := c.config("web-1", "web")
	cfg.Edge = &config.EdgeConfig{HTTPS: "127.0.0.1:0", Backend: "http://" + backendAddr}
	w := c.open(cfg, c.key)
	c.converged("web-1")
	health := func() api.Health {
		_, _, body := call(t, "GET", "http://"+w.LocalAddr()+"/readyz", "", nil)
		var h api.Health
		json.Unmarshal(body, &h)
		return h
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		h := health()
		if h.Status != api.StatusFail || h.Checks["edge:backend"][0].Status != api.StatusFail {
			return fmt.Errorf("readiness %+v", h)
		}
		return nil
	})
	ln, err := net.Listen("tcp", backendAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	go srv.Serve(ln)
	defer srv.Close()
	testutil.Eventually(t, 10*time.Second, func() error {
		if h := health(); h.Status != api.StatusPass {
			return fmt.Errorf("readiness %+v", h)
		}
		return nil
	})
	if h := health(); h.Checks["edge:certificate"][0].Status != api.StatusPass {
		t.Fatalf("certificate check %+v", h.Checks["edge:certificate"])
	}
	// Prometheus sees the expiry of the certificate served.
	_, _, body := call(t, "GET", "http://"+w.LocalAddr()+"/v1/certificates", testToken, nil)
	var cert struct {
		Names    []string  `json:"names"`
		NotAfter time.Time `json:"not_after"`
	}
	if err := json.Unmarshal(body, &cert); err != nil || len(cert.Names) == 0 {
		t.Fatalf("/v1/certificates: %s (%v)", body, err)
	}
	got, ok := series(scrape(t, w), "nodeagent_certificate_not_after_seconds", map[string]string{"name": cert.Names[0]})
	if !ok || int64(got) != cert.NotAfter.Unix() {
		t.Fatalf("nodeagent_certificate_not_after_seconds{name=%q} = %v (%v), want %d", cert.Names[0], got, ok, cert.NotAfter.Unix())
	}
	code, _, body := call(t, "GET", "http://"+c.ctl.LocalAddr()+"/v1/certificates", testToken, nil)
	if code != http.StatusNotFound || !strings.Contains(string(body), "no edge") {
		t.Fatalf("controller /v1/certificates: %d %s", code, body)
	}
	// The certificate storage is for cluster members only.
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := anon.Get("https://" + c.ctl.ClusterAddr() + "/cluster/v1/certstore/list?prefix=")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("certstore without a cluster certificate: %d", resp.StatusCode)
	}
}

// TestEdgeMaintenanceFollowsCluster: maintenance set on the controller
// reaches the web node's edge through gossip: 503 with the message and
// Retry-After, allowed clients pass, and off restores the site.
func TestEdgeMaintenanceFollowsCluster(t *testing.T) {
	c := newCluster(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "moodle") }))
	defer backend.Close()
	cfg := c.config("web-1", "web")
	cfg.Edge = &config.EdgeConfig{HTTPS: "127.0.0.1:0", Backend: backend.URL}
	w := c.open(cfg, c.key)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	expect := func(code int, body string) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() error {
			resp, err := client.Get("https://" + w.EdgeAddr() + "/course/view.php")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != code || !strings.Contains(string(b), body) {
				return fmt.Errorf("%d %q, want %d with %q", resp.StatusCode, b, code, body)
			}
			if code == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				return errors.New("no Retry-After")
			}
			return nil
		})
	}
	expect(http.StatusOK, "moodle")
	set := func(req api.MaintenanceRequest) {
		t.Helper()
		if code, _, body := call(t, "PUT", "http://"+c.ctl.LocalAddr()+"/v1/maintenance", testToken, req); code != 200 {
			t.Fatalf("PUT /v1/maintenance: %d %s", code, body)
		}
	}
	set(api.MaintenanceRequest{Enabled: true, Message: "Upgrading to 4.5"})
	expect(http.StatusServiceUnavailable, "Upgrading to 4.5")
	set(api.MaintenanceRequest{Enabled: true, Message: "Upgrading to 4.5", Allow: []string{"127.0.0.0/8"}})
	expect(http.StatusOK, "moodle")
	set(api.MaintenanceRequest{Enabled: true, Message: "Back soon"})
	expect(http.StatusServiceUnavailable, "Back soon")
	set(api.MaintenanceRequest{})
	expect(http.StatusOK, "moodle")
}
