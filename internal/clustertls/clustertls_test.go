package clustertls_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nodeagent/nodeagent/internal/clustertls"
)

func mustIdentity(tb testing.TB, key []byte, node string) *clustertls.Identity {
	tb.Helper()
	id, err := clustertls.New(key, node)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func newServer(tb testing.TB, id *clustertls.Identity) *httptest.Server {
	tb.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !clustertls.Verified(r) {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "secret")
	}))
	srv.TLS = id.ServerConfig()
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	return srv
}

func TestSameKeyTrustsEachOther(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	srv := newServer(t, mustIdentity(t, key, "controller"))
	client := mustIdentity(t, key, "web-1").HTTPClient()
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "secret" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

func TestOtherKeyIsRefused(t *testing.T) {
	srv := newServer(t, mustIdentity(t, bytes.Repeat([]byte{7}, 32), "controller"))
	client := mustIdentity(t, bytes.Repeat([]byte{8}, 32), "intruder").HTTPClient()
	if resp, err := client.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Fatal("a client with another key reached the server")
	}

	// A client that skips server verification but has no cluster client
	// certificate (like a load balancer probe) gets through TLS but is not
	// verified.
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := probe.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unverified client got %d", resp.StatusCode)
	}

	// A client certificate from another key is refused during the handshake.
	other := mustIdentity(t, bytes.Repeat([]byte{9}, 32), "intruder")
	cfg := other.ClientConfig()
	cfg.InsecureSkipVerify = true
	bad := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	if resp, err := bad.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Fatalf("client certificate from another key accepted: %d", resp.StatusCode)
	}
}

func TestShortKeyRejected(t *testing.T) {
	if _, err := clustertls.New(make([]byte, 16), "x"); err == nil {
		t.Fatal("16-byte key accepted")
	}
}
