package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/api"
)

func uiServer(t *testing.T) (*api.Server, *httptest.Server) {
	t.Helper()
	s := api.New(api.Config{Node: &fakeNode{}, Token: token, View: &fakeView{}})
	srv := httptest.NewServer(s.LocalHandler())
	t.Cleanup(srv.Close)
	return s, srv
}

// TestUIServedWithStrictHeaders: the page and its files come with a
// Content-Security-Policy that allows no inline script and no framing, on
// both APIs; /ui redirects to /ui/.
func TestUIServedWithStrictHeaders(t *testing.T) {
	s, local := uiServer(t)
	cluster := httptest.NewTLSServer(s.ClusterHandler())
	t.Cleanup(cluster.Close)
	for _, base := range []*httptest.Server{local, cluster} {
		for path, ctype := range map[string]string{
			"/ui/":          "text/html; charset=utf-8",
			"/ui/app.js":    "text/javascript; charset=utf-8",
			"/ui/style.css": "text/css; charset=utf-8",
		} {
			resp, err := base.Client().Get(base.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			h := resp.Header
			if resp.StatusCode != 200 || h.Get("Content-Type") != ctype {
				t.Errorf("%s%s: %d %s", base.URL, path, resp.StatusCode, h.Get("Content-Type"))
			}
			csp := h.Get("Content-Security-Policy")
			for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'", "form-action 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("%s: CSP %q lacks %q", path, csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
				t.Errorf("%s: CSP allows inline code: %q", path, csp)
			}
			if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("%s: headers %v", path, h)
			}
			if h.Get("Set-Cookie") != "" || h.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%s: cookie or CORS header: %v", path, h)
			}
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(local.URL + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := do(t, "GET", local.URL+"/ui/nothing.js", "", ""); resp.StatusCode != 404 {
		t.Errorf("unknown file: %d", resp.StatusCode)
	}
}

// TestUIHTMLHasNoInlineCode: the page's markup carries no inline script,
// event handler or style, which the CSP would block anyway.
func TestUIHTMLHasNoInlineCode(t *testing.T) {
	_, srv := uiServer(t)
	_, body := do(t, "GET", srv.URL+"/ui/", "", "")
	html := string(body)
	for _, re := range []string{`\son[a-z]+\s*=`, `\sstyle\s*=`, `<style`, `javascript:`} {
		if regexp.MustCompile(`(?i)` + re).MatchString(html) {
			t.Errorf("index.html matches %s", re)
		}
	}
	for _, tag := range regexp.MustCompile(`(?i)<script[^>]*>`).FindAllString(html, -1) {
		if !strings.Contains(tag, `src="`) {
			t.Errorf("inline script tag %s", tag)
		}
	}
}

func session(t *testing.T, h http.Handler, remote, host string) api.UISession {
	t.Helper()
	req := httptest.NewRequest("GET", "/ui/session", nil)
	req.RemoteAddr, req.Host = remote, host
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var s api.UISession
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &s) != nil {
		t.Fatalf("GET /ui/session from %s as %s: %d %s", remote, host, rec.Code, rec.Body)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("session cacheable: %v", rec.Header())
	}
	return s
}

// TestUISessionReadTokenOnlyOnLoopback: the read token is given on the
// local API to a client on loopback naming a loopback host, never to
// another host name (DNS rebinding), another peer or on the cluster API.
func TestUISessionReadTokenOnlyOnLoopback(t *testing.T) {
	s := api.New(api.Config{Node: &fakeNode{}, Token: token})
	local := s.LocalHandler()
	for _, host := range []string{"127.0.0.1:7948", "localhost:7948", "[::1]:7948", "LOCALHOST", "ui.localhost:80"} {
		if got := session(t, local, "127.0.0.1:40000", host); got.API != "local" || len(got.ReadToken) != 64 {
			t.Errorf("host %s: %+v, want a read token", host, got)
		}
	}
	if got := session(t, local, "[::1]:40000", "127.0.0.1:7948"); got.ReadToken == "" {
		t.Errorf("peer ::1: %+v, want a read token", got)
	}
	for _, c := range []struct{ remote, host string }{
		{"127.0.0.1:40000", "evil.example:7948"},  // DNS rebinding
		{"127.0.0.1:40000", "127.0.0.1.nip.io"},   // a public name for loopback
		{"10.0.0.9:40000", "127.0.0.1:7948"},      // api.listen on a LAN address
		{"192.168.1.5:40000", "localhost"},        // same
		{"127.0.0.1:40000", "moodle.example.com"}, // a reverse proxy in front
	} {
		got := session(t, local, c.remote, c.host)
		if got.API != "local" || got.ReadToken != "" || got.Reason == "" {
			t.Errorf("%s as %s: %+v, want no read token and a reason", c.remote, c.host, got)
		}
	}
	if got := session(t, s.ClusterHandler(), "127.0.0.1:40000", "127.0.0.1:7947"); got.API != "cluster" || got.ReadToken != "" {
		t.Errorf("cluster API: %+v, want no read token", got)
	}
	if other := session(t, api.New(api.Config{Node: &fakeNode{}, Token: token}).LocalHandler(), "127.0.0.1:1", "localhost"); other.ReadToken == session(t, local, "127.0.0.1:1", "localhost").ReadToken {
		t.Error("two servers share a read token")
	}
}

// TestReadTokenOpensOnlyReads: the read token reads what the page shows,
// on the local API only; it changes nothing and downloads no dump.
func TestReadTokenOpensOnlyReads(t *testing.T) {
	s, srv := uiServer(t)
	read := session(t, s.LocalHandler(), "127.0.0.1:1", "127.0.0.1").ReadToken
	for _, path := range []string{"/v1/status", "/v1/nodes", "/v1/history", "/v1/deploys", "/v1/members", "/v1/openapi.json"} {
		if resp, body := do(t, "GET", srv.URL+path, read, ""); resp.StatusCode != 200 {
			t.Errorf("GET %s with the read token: %d %s", path, resp.StatusCode, body)
		}
	}
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v1/maintenance", `{"enabled":true}`},
		{"PUT", "/v1/drain", ""},
		{"PUT", "/v1/nodes/web-1/drain", ""},
		{"POST", "/v1/rollback", `{"revision":"1"}`},
		{"POST", "/v1/revisions", `{}`},
		{"POST", "/v1/deploys", `{}`},
		{"GET", "/v1/db/dumps/moodle-20260101.sql.gz", ""},
		{"POST", "/v1/certificates/reload", ""},
	} {
		resp, body := do(t, c.method, srv.URL+c.path, read, c.body)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s with the read token: %d %s, want 401", c.method, c.path, resp.StatusCode, body)
		}
	}
	cluster := httptest.NewTLSServer(s.ClusterHandler())
	t.Cleanup(cluster.Close)
	req, _ := http.NewRequest("GET", cluster.URL+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+read)
	resp, err := cluster.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("read token on the cluster API: %d, want 401", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", srv.URL+"/v1/status", token, ""); resp.StatusCode != 200 {
		t.Errorf("admin token: %d", resp.StatusCode)
	}
}
