package clustertls_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/clustertls"
)

var (
	k1 = clustertls.Key{Name: "k1", Secret: bytes.Repeat([]byte{7}, 32)}
	k2 = clustertls.Key{Name: "k2", Secret: bytes.Repeat([]byte{8}, 32)}
	k3 = clustertls.Key{Name: "k3", Secret: bytes.Repeat([]byte{9}, 32)}
)

func mustIdentity(tb testing.TB, node string, keys ...clustertls.Key) *clustertls.Identity {
	tb.Helper()
	id, err := clustertls.New(clustertls.Config{Node: node}, keys)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func mustSetKeys(tb testing.TB, id *clustertls.Identity, keys ...clustertls.Key) {
	tb.Helper()
	if err := id.SetKeys(keys); err != nil {
		tb.Fatal(err)
	}
}

// newServer serves "secret" to verified cluster clients, with the remote
// address so tests can tell connections apart.
func newServer(tb testing.TB, id *clustertls.Identity) *httptest.Server {
	tb.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !id.Verified(r) {
			http.Error(w, "unverified "+r.RemoteAddr, http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "secret from "+r.RemoteAddr)
	}))
	srv.TLS = id.ServerConfig()
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	return srv
}

// get returns the status and body of a GET, or fails the test.
func get(tb testing.TB, c *http.Client, url string) (int, string) {
	tb.Helper()
	resp, err := c.Get(url)
	if err != nil {
		tb.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func refused(tb testing.TB, c *http.Client, url, why string) {
	tb.Helper()
	if resp, err := c.Get(url); err == nil {
		resp.Body.Close()
		tb.Fatalf("%s: got %d, want the TLS handshake refused", why, resp.StatusCode)
	}
}

func TestSameKeyTrustsEachOther(t *testing.T) {
	srv := newServer(t, mustIdentity(t, "controller", k1))
	client := mustIdentity(t, "web-1", k1).HTTPClient(nil)
	if code, body := get(t, client, srv.URL); code != 200 || !strings.HasPrefix(body, "secret") {
		t.Fatalf("got %d %q", code, body)
	}
}

func TestOtherKeyIsRefused(t *testing.T) {
	srv := newServer(t, mustIdentity(t, "controller", k1))
	refused(t, mustIdentity(t, "intruder", k2).HTTPClient(nil), srv.URL, "client of another key")

	// A client that skips server verification but has no cluster client
	// certificate (like a load balancer probe) gets through TLS but is not
	// verified.
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if code, _ := get(t, probe, srv.URL); code != http.StatusUnauthorized {
		t.Fatalf("unverified client got %d", code)
	}

	// A client certificate from another key is refused during the handshake.
	cfg := mustIdentity(t, "intruder", k3).ClientConfig()
	cfg.VerifyConnection = nil
	bad := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	refused(t, bad, srv.URL, "client certificate of another key")
}

// TestRotation follows the keyring procedure on a server and two clients:
// install, use, remove. Every step keeps the rotated nodes talking; at the
// end a client holding only the removed key is refused.
func TestRotation(t *testing.T) {
	server := mustIdentity(t, "controller", k1)
	srv := newServer(t, server)
	rotated := mustIdentity(t, "web-1", k1)
	stale := mustIdentity(t, "web-2", k1)
	rc, sc := rotated.HTTPClient(nil), stale.HTTPClient(nil)
	ok := func(c *http.Client, step string) {
		t.Helper()
		if code, _ := get(t, c, srv.URL); code != 200 {
			t.Fatalf("%s: got %d", step, code)
		}
	}
	ok(rc, "before")
	// install
	mustSetKeys(t, server, k1, k2)
	mustSetKeys(t, rotated, k1, k2)
	ok(rc, "install")
	ok(sc, "install, stale")
	// use: the client first, then the server (the cluster applies it in any order)
	mustSetKeys(t, rotated, k2, k1)
	if got := rotated.Leaf().Issuer; got != "k2" {
		t.Fatalf("leaf issued by %s after use k2", got)
	}
	ok(rc, "use on the client")
	mustSetKeys(t, server, k2, k1)
	ok(rc, "use on both")
	ok(sc, "use, stale") // still installed: k1 is trusted until removed
	// remove
	mustSetKeys(t, server, k2)
	mustSetKeys(t, rotated, k2)
	ok(rc, "remove")
	// The stale client's open connection carries no further request, and a
	// new one is refused at the handshake.
	if code, body := get(t, sc, srv.URL); code != http.StatusUnauthorized {
		t.Fatalf("stale client on its open connection: %d %q", code, body)
	}
	sc.CloseIdleConnections()
	refused(t, sc, srv.URL, "a client holding only the removed key")
	refused(t, rc, newServer(t, mustIdentity(t, "old-controller", k1)).URL, "a server holding only the removed key")
}

// TestRemovedKeyStopsOpenConnections: a connection opened with a
// certificate of a key that is then removed carries no further request.
func TestRemovedKeyStopsOpenConnections(t *testing.T) {
	server := mustIdentity(t, "controller", k2, k1)
	srv := newServer(t, server)
	client := mustIdentity(t, "web-1", k1, k2).HTTPClient(nil) // a leaf of k1
	code, first := get(t, client, srv.URL)
	if code != 200 {
		t.Fatalf("before: %d", code)
	}
	mustSetKeys(t, server, k2)
	code, body := get(t, client, srv.URL)
	if code != http.StatusUnauthorized {
		t.Fatalf("after removing k1: %d %q, want 401", code, body)
	}
	// Refused on the connection opened before, not by a new handshake.
	if addr := strings.TrimPrefix(first, "secret from "); !strings.HasSuffix(strings.TrimSpace(body), addr) {
		t.Fatalf("a new connection (%q), want the one of %q", body, first)
	}
}

// TestRenewal: a leaf is renewed before it expires, and a cluster whose
// leaves live a second or two keeps talking across several lifetimes.
func TestRenewal(t *testing.T) {
	const lifetime = 2 * time.Second
	open := func(node string) *clustertls.Identity {
		id, err := clustertls.New(clustertls.Config{Node: node, Lifetime: lifetime}, []clustertls.Key{k1})
		if err != nil {
			t.Fatal(err)
		}
		if err := id.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { id.Close() })
		return id
	}
	server, client := open("controller"), open("web-1")
	srv := newServer(t, server)
	hc := client.HTTPClient(nil)
	if d := time.Until(server.Leaf().NotAfter); d > lifetime {
		t.Fatalf("leaf lives %s, want at most %s", d, lifetime)
	}
	// Both ends renew; every request of three lifetimes succeeds, and each
	// leaf is issued before the one it replaces expires.
	renewals := 0
	last := server.Leaf()
	start := time.Now()
	for time.Since(start) < 3*lifetime {
		code, body := get(t, hc, srv.URL)
		if code != 200 {
			t.Fatalf("%s into the test: %d %q", time.Since(start), code, body)
		}
		if leaf := server.Leaf(); !leaf.Issued.Equal(last.Issued) {
			if !leaf.Issued.Before(last.NotAfter) {
				t.Fatalf("leaf issued at %s, after the previous one expired at %s", leaf.Issued, last.NotAfter)
			}
			renewals++
			last = leaf
		}
		time.Sleep(20 * time.Millisecond)
	}
	if renewals < 2 {
		t.Fatalf("%d renewals in three lifetimes", renewals)
	}
}

func TestShortKeyRejected(t *testing.T) {
	if _, err := clustertls.New(clustertls.Config{Node: "x"}, []clustertls.Key{{Name: "short", Secret: make([]byte, 16)}}); err == nil {
		t.Fatal("16-byte key accepted")
	}
	if _, err := clustertls.New(clustertls.Config{Node: "x"}, nil); err == nil {
		t.Fatal("no key accepted")
	}
}
