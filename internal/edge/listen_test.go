package edge_test

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/edge"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// The TLS listener negotiates HTTP/2 even though the certificate source
// only lists "acme-tls/1", still speaks HTTP/1.1 and acme-tls/1, and
// refuses TLS 1.1.
func TestHTTPSProtocols(t *testing.T) {
	pki := newTestPKI(t)
	backend, _ := recordingBackend(t)
	var log logBuffer
	e := startEdge(t, pki, backend.URL, func(c *edge.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})

	resp := get(t, pki.client(t, ""), e, "/", nil)
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Errorf("got %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}

	for _, tt := range []struct {
		proto   string
		version uint16
		ok      bool
	}{
		{"http/1.1", tls.VersionTLS12, true},
		{"h2", tls.VersionTLS13, true},
		{"acme-tls/1", tls.VersionTLS13, true}, // TLS-ALPN-01 still reaches the certificate source
		{"http/1.1", tls.VersionTLS11, false},
	} {
		conn, err := tls.Dial("tcp", e.HTTPSAddr(), &tls.Config{
			RootCAs: pki.pool, ServerName: "moodle.test", NextProtos: []string{tt.proto},
			MinVersion: tt.version, MaxVersion: tt.version,
		})
		if !tt.ok {
			if err == nil {
				conn.Close()
				t.Errorf("TLS version %x accepted", tt.version)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s over TLS %x: %v", tt.proto, tt.version, err)
		}
		if got := conn.ConnectionState().NegotiatedProtocol; got != tt.proto {
			t.Errorf("negotiated %q, want %q", got, tt.proto)
		}
		conn.Close()
	}

	// The refused handshake is logged, at debug level: routine on a public port.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "TLS handshake error") {
		if time.Now().After(deadline) {
			t.Fatalf("failed handshake not logged:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for line := range strings.SplitSeq(log.String(), "\n") {
		if strings.Contains(line, "TLS handshake error") && !strings.Contains(line, "level=DEBUG") {
			t.Errorf("handshake failure logged above debug: %s", line)
		}
	}
}

// edge.http redirects to https with 308, keeping host, path and query and
// naming the TLS listener's port; the ACME wrapper answers challenges
// first; a request a trusted load balancer terminated TLS for is proxied.
func TestPlainHTTP(t *testing.T) {
	pki := newTestPKI(t)
	backend, seen := recordingBackend(t)
	challenges := make(chan string, 4)
	e := startEdge(t, pki, backend.URL, func(c *edge.Config) {
		c.TrustedProxies = mustPrefixes(t, "127.0.0.1/32")
		c.ACME = func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/"); ok {
					challenges <- token
					io.WriteString(w, token+".key-authorization")
					return
				}
				next.ServeHTTP(w, r)
			})
		}
	})
	_, httpsPort, _ := net.SplitHostPort(e.HTTPSAddr())
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(method, path, host string, header http.Header) *http.Response {
		t.Helper()
		return send(t, plain, method, "http://"+e.HTTPAddr()+path, host, header)
	}

	for _, tt := range []struct{ method, host, path, want string }{
		{"GET", "moodle.test", "/course/view.php?id=3", "https://moodle.test:" + httpsPort + "/course/view.php?id=3"},
		{"POST", "moodle.test:80", "/login/index.php", "https://moodle.test:" + httpsPort + "/login/index.php"},
		{"GET", "[::1]:80", "/", "https://[::1]:" + httpsPort + "/"},
	} {
		resp := send(tt.method, tt.path, tt.host, nil)
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != tt.want {
			t.Errorf("%s %s%s: %d Location %q, want 308 %q", tt.method, tt.host, tt.path, resp.StatusCode, resp.Header.Get("Location"), tt.want)
		}
	}

	resp := send("GET", "/.well-known/acme-challenge/tok123", "moodle.test", nil)
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || body != "tok123.key-authorization" {
		t.Errorf("challenge: %d %q, want the wrapper's answer", resp.StatusCode, body)
	}
	if token := receive(t, challenges); token != "tok123" {
		t.Errorf("wrapper saw token %q", token)
	}

	resp = send("GET", "/my/", "moodle.test", http.Header{"X-Forwarded-Proto": {"https"}})
	if resp.StatusCode != http.StatusOK || readBody(t, resp) != "backend" {
		t.Fatalf("TLS-terminating LB on :80: status %d, want the backend's 200", resp.StatusCode)
	}
	if r := receive(t, seen); r.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("X-Forwarded-Proto = %q", r.Header.Get("X-Forwarded-Proto"))
	}
}

// A port already taken is one clear error naming the key; a missing
// maintenance page too; nothing stays bound after a failed Listen.
func TestListenErrors(t *testing.T) {
	pki := newTestPKI(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free := testutil.FreeAddr(t)
	missing := filepath.Join(t.TempDir(), "maintenance.html")
	tests := []struct {
		name   string
		mutate func(c *edge.Config)
		want   string
	}{
		{"https port taken", func(c *edge.Config) { c.HTTPS = taken.Addr().String() }, "edge.https: listen tcp " + taken.Addr().String() + ": bind: address already in use"},
		{"http port taken", func(c *edge.Config) { c.HTTPS = free; c.HTTP = taken.Addr().String() }, "edge.http: listen tcp " + taken.Addr().String() + ": bind: address already in use"},
		{"page missing", func(c *edge.Config) { c.MaintenancePage = missing }, "edge.maintenance_page: open " + missing + ": no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := edge.Config{HTTPS: "127.0.0.1:0", HTTP: "127.0.0.1:0", Backend: mustURL(t, "http://127.0.0.1:1"), TLS: pki.server}
			tt.mutate(&cfg)
			e, err := edge.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if err := e.Listen(); err == nil || err.Error() != tt.want {
				t.Fatalf("Listen: %v, want %q", err, tt.want)
			}
		})
	}
	// The https listener bound before the http clash was released.
	ln, err := net.Listen("tcp", free)
	if err != nil {
		t.Fatalf("edge.https address still bound after a failed Listen: %v", err)
	}
	ln.Close()
}

func TestNewErrors(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name string
		cfg  edge.Config
		want string
	}{
		{"no backend", edge.Config{HTTPS: ":0", TLS: pki.server}, "edge.backend: "},
		{"backend scheme", edge.Config{HTTPS: ":0", TLS: pki.server, Backend: mustURL(t, "ftp://x")}, "edge.backend: "},
		{"no certificate", edge.Config{HTTPS: ":0", TLS: &tls.Config{}, Backend: mustURL(t, "http://x")}, "edge.https: "},
		{"no listener", edge.Config{Backend: mustURL(t, "http://x")}, "edge: "},
	}
	for _, tt := range tests {
		if _, err := edge.New(tt.cfg); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error starting %q", tt.name, err, tt.want)
		}
	}
}

// Close releases both ports, also when Serve was never called, and is
// idempotent.
func TestClose(t *testing.T) {
	pki := newTestPKI(t)
	for _, serve := range []bool{true, false} {
		e, err := edge.New(edge.Config{HTTPS: "127.0.0.1:0", HTTP: "127.0.0.1:0", Backend: mustURL(t, "http://127.0.0.1:1"), TLS: pki.server})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Listen(); err != nil {
			t.Fatal(err)
		}
		if serve {
			e.Serve()
		}
		addrs := []string{e.HTTPSAddr(), e.HTTPAddr()}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		for _, a := range addrs {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				t.Fatalf("serve=%v: %s still bound after Close: %v", serve, a, err)
			}
			ln.Close()
		}
	}
}
