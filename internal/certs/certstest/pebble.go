// Package certstest runs a real ACME server for tests: Pebble (the
// Let's Encrypt test CA) embedded in the test process, with a DNS server
// that resolves every name to 127.0.0.1, so validation requests reach the
// ports the test chooses. Only tests import it.
package certstest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Options configure Pebble.
type Options struct {
	// HTTPPort and TLSPort are where the validation authority sends HTTP-01
	// and TLS-ALPN-01 requests (on 127.0.0.1).
	HTTPPort, TLSPort int
	// Validity of issued certificates; 0 = Pebble's default (90 days).
	Validity time.Duration
}

// Pebble is a running ACME server.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// ServerRootPEM signs the ACME server's own HTTPS (edge.acme.ca_root).
	ServerRootPEM []byte
	// Roots trust the certificates Pebble issues (from /roots/0).
	Roots *x509.CertPool
}

// Start runs Pebble until the test ends. It sets the environment Pebble
// reads (no random validation sleeps, no rejected nonces), so the test
// must not be parallel.
func Start(tb testing.TB, opts Options) *Pebble {
	tb.Helper()
	if t, ok := tb.(*testing.T); ok {
		t.Setenv("PEBBLE_VA_NOSLEEP", "1")
		t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	} else {
		os.Setenv("PEBBLE_VA_NOSLEEP", "1")
		os.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	}
	logger := log.New(io.Discard, "", 0)
	if os.Getenv("PEBBLE_TEST_LOG") != "" {
		logger = log.New(os.Stderr, "pebble ", log.Ltime|log.Lmicroseconds)
	}
	dnsAddr := startDNS(tb)
	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: uint64(opts.Validity / time.Second)}}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, opts.HTTPPort, opts.TLSPort, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	acme := httptest.NewTLSServer(front.Handler())
	tb.Cleanup(acme.Close)
	mgmt := httptest.NewTLSServer(front.ManagementHandler())
	tb.Cleanup(mgmt.Close)

	p := &Pebble{
		Directory:     acme.URL + wfe.DirectoryPath,
		ServerRootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: acme.Certificate().Raw}),
		Roots:         x509.NewCertPool(),
	}
	resp, err := mgmt.Client().Get(mgmt.URL + wfe.RootCertPath + "0")
	if err != nil {
		tb.Fatalf("pebble root: %v", err)
	}
	defer resp.Body.Close()
	root, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !p.Roots.AppendCertsFromPEM(root) {
		tb.Fatalf("pebble root: %s %v %q", resp.Status, err, root)
	}
	return p
}

// startDNS serves DNS over TCP (what Pebble uses) answering A 127.0.0.1
// for every name and no AAAA, so the validation authority dials IPv4.
func startDNS(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qq := range q.Question {
			if qq.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	tb.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}
