package main_test

// Edge certificates with real processes: ACME from an embedded Pebble with
// the validation sent to the node that did not order, and manual files
// replaced under a running agent.

import (
	"context"
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
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/certs"
	"github.com/nodeagent/nodeagent/internal/certs/certstest"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// edgeNode is a web node's edge addresses.
type edgeNode struct {
	https, http, api string
}

// writeEdgeConfig writes a web node's config with an edge section (extra
// lines go under edge:) and returns its addresses.
func (pc *procCluster) writeEdgeConfig(node, backend string, extra ...string) edgeNode {
	pc.t.Helper()
	path := pc.writeConfig(node, "web")
	en := edgeNode{
		https: fmt.Sprintf("127.0.0.1:%d", freePort(pc.t)),
		http:  fmt.Sprintf("127.0.0.1:%d", freePort(pc.t)),
	}
	b, err := os.ReadFile(path)
	if err != nil {
		pc.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "api: {listen: "); ok {
			en.api = strings.SplitN(rest, ",", 2)[0]
		}
	}
	cfg := fmt.Sprintf("%sedge:\n  https: %s\n  http: %s\n  backend: %s\n", b, en.https, en.http, backend)
	for _, l := range extra {
		cfg += "  " + l + "\n"
	}
	writeFile(pc.t, path, cfg, 0o644)
	return en
}

// nodeCLI runs a CLI command against node's local API.
func (pc *procCluster) nodeCLI(api string, args ...string) (string, error) {
	full := append([]string{args[0], "-addr", "http://" + api, "-token-file", pc.token, "-config", "/nonexistent"}, args[1:]...)
	out, err := exec.Command(binary, full...).CombinedOutput()
	return string(out), err
}

func (pc *procCluster) certState(api string) (certs.State, error) {
	out, err := pc.nodeCLI(api, "certs", "-json")
	if err != nil {
		return certs.State{}, fmt.Errorf("certs: %v %s", err, out)
	}
	var st certs.State
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("certs -json: %v: %s", err, out)
	}
	return st, nil
}

// served returns the leaf the edge at addr presents for name, verified
// against roots.
func served(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func sha256hex(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// gatedForwarder accepts TCP connections and, once open is closed, pipes
// each to target (or closes it when target is ""). It counts the
// connections it accepted.
type gatedForwarder struct {
	ln       net.Listener
	target   string
	open     chan struct{}
	accepted atomic.Int64
	first    chan struct{}
}

func newGatedForwarder(t *testing.T, target string) *gatedForwarder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &gatedForwarder{ln: ln, target: target, open: make(chan struct{}), first: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if f.accepted.Add(1) == 1 {
				close(f.first)
			}
			go f.pipe(c)
		}
	}()
	return f
}

func (f *gatedForwarder) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *gatedForwarder) pipe(c net.Conn) {
	defer c.Close()
	<-f.open
	if f.target == "" {
		return
	}
	b, err := net.DialTimeout("tcp", f.target, 5*time.Second)
	if err != nil {
		return
	}
	defer b.Close()
	go io.Copy(b, c)
	io.Copy(c, b)
}

// TestProcessACMEDistributedChallenge: web-1 and web-2 share the cluster
// certificate storage through the controller. Only web-1 runs when the
// order is placed; Pebble's validation requests (HTTP-01 and TLS-ALPN-01
// ports) go only to web-2, which answers from the shared storage; the
// certificate is issued and both nodes serve it.
func TestProcessACMEDistributedChallenge(t *testing.T) {
	// TLS-ALPN-01 validations are refused, so the order succeeds only
	// through HTTP-01 (acmez falls back to it if it tried TLS-ALPN first).
	t.Run("http-01", func(t *testing.T) { testDistributedChallenge(t, true) })
	// Without edge.http the only challenge left is TLS-ALPN-01, answered
	// in the TLS handshake on edge.https.
	t.Run("tls-alpn-01", func(t *testing.T) { testDistributedChallenge(t, false) })
}

func testDistributedChallenge(t *testing.T, plainHTTP bool) {
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 5, 100, 4)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "moodle") }))
	defer backend.Close()

	// web-2's ports are known before Pebble starts: the forwarders point
	// at them.
	pc.writeConfig("controller", "controller")
	acmeLines := func(p *certstest.Pebble, root string) []string {
		return []string{"domains: [moodle.test]", fmt.Sprintf("acme: {email: admin@moodle.test, ca: %q, ca_root: %s}", p.Directory, root)}
	}
	// Placeholder configs give the ports; rewritten below with the CA.
	web2 := pc.writeEdgeConfig("web-2", backend.URL)
	fwdHTTP := newGatedForwarder(t, web2.http)
	tlsTarget := web2.https
	if plainHTTP {
		tlsTarget = ""
	}
	fwdTLS := newGatedForwarder(t, tlsTarget)
	p := certstest.Start(t, certstest.Options{HTTPPort: fwdHTTP.port(), TLSPort: fwdTLS.port()})
	root := filepath.Join(pc.dir, "pebble-root.pem")
	writeFile(t, root, string(p.ServerRootPEM), 0o644)
	web1 := pc.writeEdgeConfig("web-1", backend.URL)
	if !plainHTTP {
		web1.http, web2.http = "", ""
	}
	web1 = pc.writeEdgeConfigAt("web-1", web1, backend.URL, acmeLines(p, root)...)
	web2 = pc.writeEdgeConfigAt("web-2", web2, backend.URL, acmeLines(p, root)...)

	pc.start("controller")
	pc.start("web-1")
	select {
	case <-fwdHTTP.first:
	case <-fwdTLS.first:
	case <-time.After(60 * time.Second):
		log, _ := os.ReadFile(filepath.Join(pc.dir, "web-1.log"))
		t.Fatalf("no validation request within 60s; web-1 log:\n%s", tail(string(log), 4000))
	}
	// The order is web-1's: web-2 is not even running. Start it, wait until
	// it sees the controller (the storage), then let the validation in.
	pc.start("web-2")
	testutil.Eventually(t, 30*time.Second, func() error {
		out, err := pc.nodeCLI(web2.api, "status", "-json")
		if err != nil || !strings.Contains(out, `"controller"`) {
			return fmt.Errorf("web-2 does not see the controller yet: %v", err)
		}
		return nil
	})
	close(fwdHTTP.open)
	close(fwdTLS.open)

	var fp string
	testutil.Eventually(t, 90*time.Second, func() error {
		leaf, err := served(web1.https, "moodle.test", p.Roots)
		if err != nil {
			return fmt.Errorf("web-1: %v", err)
		}
		fp = sha256hex(leaf)
		return nil
	})
	testutil.Eventually(t, 30*time.Second, func() error {
		leaf, err := served(web2.https, "moodle.test", p.Roots)
		if err != nil {
			return fmt.Errorf("web-2: %v", err)
		}
		if got := sha256hex(leaf); got != fp {
			return fmt.Errorf("web-2 serves %s, web-1 %s", got, fp)
		}
		return nil
	})
	t.Logf("validation connections reaching web-2: http %d, tls %d", fwdHTTP.accepted.Load(), fwdTLS.accepted.Load())
	if plainHTTP && fwdHTTP.accepted.Load() == 0 {
		t.Fatal("no HTTP-01 validation reached web-2")
	}
	if !plainHTTP && fwdTLS.accepted.Load() == 0 {
		t.Fatal("no TLS-ALPN-01 validation reached web-2")
	}
	for _, n := range []edgeNode{web1, web2} {
		st, err := pc.certState(n.api)
		if err != nil {
			t.Fatal(err)
		}
		if st.Source != certs.SourceACME || st.Pending || st.Fingerprint != fp || st.Names[0] != "moodle.test" {
			t.Fatalf("%s: certificate state %+v", n.api, st)
		}
	}
	// The edge proxies with the issued certificate.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Roots, ServerName: "moodle.test"}}}
	resp, err := client.Get("https://" + web2.https + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "moodle" {
		t.Fatalf("through the edge: %q", body)
	}
}

// writeEdgeConfigAt rewrites node's config keeping the addresses of en.
func (pc *procCluster) writeEdgeConfigAt(node string, en edgeNode, backend string, extra ...string) edgeNode {
	pc.t.Helper()
	path := filepath.Join(pc.dir, node+".yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		pc.t.Fatal(err)
	}
	base, _, _ := strings.Cut(string(b), "edge:\n")
	cfg := fmt.Sprintf("%sedge:\n  https: %s\n  http: %q\n  backend: %s\n", base, en.https, en.http, backend)
	for _, l := range extra {
		cfg += "  " + l + "\n"
	}
	writeFile(pc.t, path, cfg, 0o644)
	return en
}

// TestProcessManualCertificateReplace: a web agent serving edge.cert_file
// picks up a replaced pair without a restart; a bad pair is refused, the
// old one served, and the error is in `nodeagent certs`.
func TestProcessManualCertificateReplace(t *testing.T) {
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 5, 100, 5)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }))
	defer backend.Close()
	ca := certstest.NewCA(t)
	certFile, keyFile := filepath.Join(pc.dir, "nginx.crt"), filepath.Join(pc.dir, "nginx.key")
	c1, k1 := ca.Leaf(t, "moodle.test", 501)
	writeFile(t, certFile, string(c1), 0o644)
	writeFile(t, keyFile, string(k1), 0o600)
	pc.writeConfig("controller", "controller")
	web := pc.writeEdgeConfig("web-1", backend.URL, "cert_file: "+certFile, "key_file: "+keyFile)
	pc.start("controller")
	pc.start("web-1")

	// An HTTP/2 connection through the edge, opened before the replacement.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, ServerName: "moodle.test"}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var conns atomic.Int64
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	get := func() int64 {
		t.Helper()
		resp, err := client.Get("https://" + web.https + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.Proto != "HTTP/2.0" {
			t.Fatalf("proto %s", resp.Proto)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		_, err := served(web.https, "moodle.test", ca.Pool)
		return err
	})
	if s := get(); s != 501 {
		t.Fatalf("serial %d", s)
	}

	c2, k2 := ca.Leaf(t, "moodle.test", 502)
	certstest.ReplaceFile(t, certFile, c2)
	certstest.ReplaceFile(t, keyFile, k2)
	testutil.Eventually(t, 10*time.Second, func() error {
		leaf, err := served(web.https, "moodle.test", ca.Pool)
		if err != nil || leaf.SerialNumber.Int64() != 502 {
			return fmt.Errorf("serial %v %v", leaf.SerialNumber, err)
		}
		return nil
	})
	if s := get(); s != 501 || conns.Load() != 1 {
		t.Fatalf("open connection: serial %d after %d dials, want 501 on the one connection", s, conns.Load())
	}

	// A certificate whose key does not match.
	c3, _ := ca.Leaf(t, "moodle.test", 503)
	certstest.ReplaceFile(t, certFile, c3)
	var st certs.State
	testutil.Eventually(t, 10*time.Second, func() error {
		var err error
		if st, err = pc.certState(web.api); err != nil {
			return err
		}
		if st.LastError == "" {
			return errors.New("no error reported yet")
		}
		return nil
	})
	if st.Serial != fmt.Sprintf("%x", 502) || !strings.Contains(st.LastError, "does not match") {
		t.Fatalf("state %+v", st)
	}
	if leaf, err := served(web.https, "moodle.test", ca.Pool); err != nil || leaf.SerialNumber.Int64() != 502 {
		t.Fatalf("after a bad pair: %v %v", leaf, err)
	}
	out, err := pc.nodeCLI(web.api, "certs", "reload")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out, "does not match") {
		t.Fatalf("certs reload of a bad pair: %v\n%s", err, out)
	}
	out, err = pc.nodeCLI(web.api, "certs")
	if err != nil || !strings.Contains(out, "does not match") || !strings.Contains(out, "manual") {
		t.Fatalf("certs: %v\n%s", err, out)
	}

	// SIGHUP reloads (and reports the refusal) instead of ending the agent.
	if err := pc.procs["web-1"].Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		log, _ := os.ReadFile(filepath.Join(pc.dir, "web-1.log"))
		if !strings.Contains(string(log), "SIGHUP: certificate reload") {
			return errors.New("no reload logged after SIGHUP")
		}
		return nil
	})
	if _, err := pc.certState(web.api); err != nil {
		t.Fatalf("agent after SIGHUP: %v", err)
	}
}
