package edge_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/edge"
)

// testPKI is a self-signed certificate for localhost, 127.0.0.1 and
// moodle.test, served through GetCertificate like internal/certs does.
type testPKI struct {
	server *tls.Config
	pool   *x509.CertPool
}

func newTestPKI(tb testing.TB) *testPKI {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "moodle.test"},
		DNSNames:              []string{"moodle.test", "localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &testPKI{
		server: &tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil },
			NextProtos:     []string{"acme-tls/1"}, // what certmagic's TLSConfig sets
		},
		pool: pool,
	}
}

// client returns an HTTPS client trusting the test certificate that
// negotiates HTTP/2, dialing from local (an address on lo) when given, and
// never following redirects.
func (p *testPKI) client(tb testing.TB, local string) *http.Client {
	tb.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	tr := &http.Transport{
		DialContext:       d.DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: p.pool, ServerName: "moodle.test"},
		ForceAttemptHTTP2: true,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// startEdge starts an edge on 127.0.0.1 port 0 (both listeners) in front of
// backend, after mutate adjusts the config, and closes it at the end.
func startEdge(tb testing.TB, pki *testPKI, backend string, mutate func(*edge.Config)) *edge.Edge {
	tb.Helper()
	cfg := edge.Config{
		HTTPS:   "127.0.0.1:0",
		HTTP:    "127.0.0.1:0",
		Backend: mustURL(tb, backend),
		TLS:     pki.server,
		Logger:  slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := edge.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.Listen(); err != nil {
		tb.Fatal(err)
	}
	e.Serve()
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Error(err)
		}
	})
	return e
}

func mustURL(tb testing.TB, s string) *url.URL {
	tb.Helper()
	u, err := url.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

func mustPrefixes(tb testing.TB, cidrs ...string) []netip.Prefix {
	tb.Helper()
	p, err := edge.ParsePrefixes(cidrs)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// tbWriter sends log lines to the test log.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// recordingBackend answers 200 "backend" and hands every request's
// headers and Host to the test.
func recordingBackend(tb testing.TB) (*httptest.Server, <-chan *http.Request) {
	tb.Helper()
	seen := make(chan *http.Request, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Clone(r.Context())
		w.Write([]byte("backend"))
	}))
	tb.Cleanup(srv.Close)
	return srv, seen
}

// get sends a GET with the given headers to the edge's HTTPS listener.
func get(tb testing.TB, c *http.Client, e *edge.Edge, path string, header http.Header) *http.Response {
	tb.Helper()
	return send(tb, c, http.MethodGet, "https://"+e.HTTPSAddr()+path, "moodle.test", header)
}

// send sends a request with a small body and the given Host and headers;
// the response body is closed at the end of the test.
func send(tb testing.TB, c *http.Client, method, rawURL, host string, header http.Header) *http.Response {
	tb.Helper()
	req, err := http.NewRequest(method, rawURL, strings.NewReader("body"))
	if err != nil {
		tb.Fatal(err)
	}
	req.Host = host
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readBody(tb testing.TB, resp *http.Response) string {
	tb.Helper()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		tb.Fatal(err)
	}
	return b.String()
}
