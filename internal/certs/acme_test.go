package certs_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/certs"
	"github.com/nodeagent/nodeagent/internal/certs/certstest"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// storeServer runs the controller's end of the cluster storage.
func storeServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(certs.StoreHandler(t.TempDir(), nil))
	t.Cleanup(srv.Close)
	return srv
}

func newStorage(t *testing.T, srv *httptest.Server, node string) *certs.ClusterStorage {
	s := certs.NewClusterStorage(func() (string, error) { return srv.URL, nil }, srv.Client(), node)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestACMEIssueShareRenew: Pebble issues a certificate for moodle.test to
// one node; a client trusting Pebble's root verifies it; a second node on
// the same cluster storage serves the same certificate without ordering;
// a renewal by the first node, announced, is served by the second at once.
func TestACMEIssueShareRenew(t *testing.T) {
	httpLn, tlsLn := listen(t), listen(t)
	p := certstest.Start(t, certstest.Options{HTTPPort: port(httpLn), TLSPort: port(tlsLn), Validity: time.Hour})
	srv := storeServer(t)

	var mu sync.Mutex
	var obtained []certs.Obtained
	acme := certs.ACME{
		Email: "admin@moodle.test", CA: p.Directory, CARoot: p.ServerRootPEM,
		HTTPPort: port(httpLn), TLSPort: port(tlsLn), ListenHost: "127.0.0.1",
		DisableARI: true,
	}
	// The first node checks renewals every second and renews when a
	// certificate is older than ~15 s.
	a1 := acme
	a1.Storage = newStorage(t, srv, "web-1")
	a1.RenewCheckInterval = time.Second
	a1.RenewalWindowRatio = 1 - 15.0/3600
	m1 := certs.New(certs.Config{Dir: t.TempDir(), Domains: []string{"moodle.test"}, ACME: &a1,
		OnObtained: func(o certs.Obtained) { mu.Lock(); obtained = append(obtained, o); mu.Unlock() }})
	if err := m1.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	plain := &http.Server{Handler: m1.HTTPChallengeHandler(http.NotFoundHandler())}
	go plain.Serve(httpLn)
	defer plain.Close()
	serveTLS(t, tlsLn, m1.TLSConfig(), http.NotFoundHandler())

	if st := m1.State(); st.Source != certs.SourceACME {
		t.Fatalf("source %q", st.Source)
	}
	var first certs.State
	testutil.Eventually(t, 60*time.Second, func() error {
		first = m1.State()
		if first.Pending {
			return fmt.Errorf("still pending; last error %q", first.LastError)
		}
		return nil
	})
	leaf, err := handshake(tlsLn.Addr().String(), "moodle.test", p.Roots)
	if err != nil {
		t.Fatalf("handshake verified against Pebble's root: %v", err)
	}
	if fp := fingerprint(leaf); fp != first.Fingerprint {
		t.Fatalf("served %s, state says %s", fp, first.Fingerprint)
	}
	mu.Lock()
	if len(obtained) != 1 || obtained[0].Fingerprint != first.Fingerprint || obtained[0].Renewal {
		t.Fatalf("obtained events %+v", obtained)
	}
	mu.Unlock()

	// The second node finds the certificate in the shared storage.
	a2 := acme
	a2.Storage = newStorage(t, srv, "web-2")
	a2.HTTPPort, a2.TLSPort = 1, 1 // never used: it must not order
	m2 := certs.New(certs.Config{Dir: t.TempDir(), Domains: []string{"moodle.test"}, ACME: &a2})
	if err := m2.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	tls2 := listen(t)
	serveTLS(t, tls2, m2.TLSConfig(), http.NotFoundHandler())
	testutil.Eventually(t, 30*time.Second, func() error {
		leaf, err := handshake(tls2.Addr().String(), "moodle.test", p.Roots)
		if err != nil {
			return err
		}
		if fingerprint(leaf) != first.Fingerprint {
			return errors.New("second node serves another certificate")
		}
		return nil
	})

	// Renewal by the first node; the second reloads when told.
	var renewed certs.Obtained
	testutil.Eventually(t, 90*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range obtained {
			if o.Renewal {
				renewed = o
				return nil
			}
		}
		return errors.New("no renewal yet")
	})
	if renewed.Fingerprint == first.Fingerprint || renewed.Fingerprint == "" {
		t.Fatalf("renewal announced %+v", renewed)
	}
	if err := m2.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	leaf, err = handshake(tls2.Addr().String(), "moodle.test", p.Roots)
	if err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(leaf); got == first.Fingerprint {
		t.Fatalf("second node still serves the first certificate after Reload")
	}
	if st := m2.State(); st.Fingerprint != fingerprint(leaf) {
		t.Fatalf("state %s, served %s", st.Fingerprint, fingerprint(leaf))
	}
}

// TestACMEConfigErrors: ACME settings that cannot work are refused at
// Open with the key named.
func TestACMEConfigErrors(t *testing.T) {
	srv := storeServer(t)
	st := newStorage(t, srv, "web-1")
	cases := map[string]struct {
		domains []string
		acme    certs.ACME
	}{
		"edge.domains":      {nil, certs.ACME{Email: "a@b.test", Storage: st}},
		"edge.acme.email":   {[]string{"moodle.test"}, certs.ACME{Storage: st}},
		"edge.acme.ca_root": {[]string{"moodle.test"}, certs.ACME{Email: "a@b.test", CARoot: []byte("not PEM"), Storage: st}},
	}
	for key, c := range cases {
		t.Run(key, func(t *testing.T) {
			m := certs.New(certs.Config{Dir: t.TempDir(), Domains: c.domains, ACME: &c.acme})
			defer m.Close()
			err := m.Open(context.Background())
			if err == nil || !strings.HasPrefix(err.Error(), key+":") {
				t.Fatalf("Open: %v, want an error naming %s", err, key)
			}
		})
	}
}
