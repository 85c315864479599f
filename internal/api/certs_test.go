package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/certs"
)

// fakeCerts is an api.CertService whose answers the test sets.
type fakeCerts struct {
	state  certs.State
	reload func(context.Context) error
}

func (f *fakeCerts) State() certs.State               { return f.state }
func (f *fakeCerts) Reload(ctx context.Context) error { return f.reload(ctx) }

func TestCertificatesEndpoints(t *testing.T) {
	fc := &fakeCerts{state: certs.State{Source: certs.SourceManual, Names: []string{"moodle.test"}, Serial: "1f"}}
	srv := httptest.NewServer(api.New(api.Config{Node: &fakeNode{}, Token: token, Certs: fc}).LocalHandler())
	defer srv.Close()

	resp, body := do(t, "GET", srv.URL+"/v1/certificates", "", "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without token: %d", resp.StatusCode)
	}
	resp, body = do(t, "GET", srv.URL+"/v1/certificates", token, "")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"source":"manual"`) || !strings.Contains(string(body), `"serial":"1f"`) {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
	fc.reload = func(context.Context) error {
		return errors.New("nginx.crt: tls: private key does not match public key")
	}
	resp, body = do(t, "POST", srv.URL+"/v1/certificates/reload", token, "")
	if resp.StatusCode != http.StatusUnprocessableEntity || resp.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(body), "does not match") {
		t.Fatalf("refused reload: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	fc.reload = func(context.Context) error { return nil }
	if resp, body = do(t, "POST", srv.URL+"/v1/certificates/reload", token, ""); resp.StatusCode != 200 {
		t.Fatalf("reload: %d %s", resp.StatusCode, body)
	}

	// Without an edge: 404 problems.
	none := serve(t, &fakeNode{})
	for _, m := range []string{"GET /v1/certificates", "POST /v1/certificates/reload"} {
		method, path, _ := strings.Cut(m, " ")
		if resp, body := do(t, method, none.URL+path, token, ""); resp.StatusCode != 404 || !strings.Contains(string(body), "no edge") {
			t.Fatalf("%s without edge: %d %s", m, resp.StatusCode, body)
		}
	}
}
