package edge_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/edge"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// With the backend down, clients get a 502 HTML page that leaks nothing,
// and the cause is logged, once rather than once per request.
func TestBackendDown(t *testing.T) {
	pki := newTestPKI(t)
	down := "http://" + testutil.FreeAddr(t)
	var log logBuffer
	e := startEdge(t, pki, down, func(c *edge.Config) { c.Logger = slog.New(slog.NewTextHandler(&log, nil)) })

	c := pki.client(t, "")
	resp := get(t, c, e, "/course/view.php?id=3", nil)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("got %d %q, want 502 text/html", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(body, "502 Bad Gateway") || strings.Contains(body, "refused") || strings.Contains(body, "127.0.0.1") {
		t.Errorf("page:\n%s", body)
	}
	if l := log.String(); !strings.Contains(l, "backend request failed") || !strings.Contains(l, "connection refused") || !strings.Contains(l, "/course/view.php") {
		t.Errorf("log does not name the failure:\n%s", l)
	}
	for range 5 {
		if resp := get(t, c, e, "/", nil); resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
	}
	if n := strings.Count(log.String(), "backend request failed"); n != 1 {
		t.Errorf("%d log lines for 6 failures in a row, want 1 (at most one per 10 s)", n)
	}
}

// CheckBackend: any HTTP answer is up (even an error status), a refused
// or silent backend is down.
func TestCheckBackend(t *testing.T) {
	pki := newTestPKI(t)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "php-fpm down", http.StatusBadGateway)
	}))
	defer failing.Close()
	ok, _ := recordingBackend(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	for _, tt := range []struct {
		name, backend string
		up            bool
	}{
		{"answering", ok.URL, true},
		{"answering with an error", failing.URL, true},
		{"refusing", "http://" + testutil.FreeAddr(t), false},
		{"silent", "http://" + silent.Addr().String(), false},
	} {
		e, err := edge.New(edge.Config{HTTPS: "127.0.0.1:0", Backend: mustURL(t, tt.backend), TLS: pki.server})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = e.CheckBackend(ctx)
		cancel()
		if up := err == nil; up != tt.up {
			t.Errorf("%s: CheckBackend = %v, want up=%v", tt.name, err, tt.up)
		}
		e.Close()
	}
}
