package edge_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/edge"
)

// While maintenance is on, a client outside allow gets 503, Retry-After and
// the page with the message escaped; an allowed client (by its resolved
// address) reaches the backend; when it ends (or its until passes) everyone
// does.
func TestMaintenance(t *testing.T) {
	pki := newTestPKI(t)
	backend, _ := recordingBackend(t)
	var state atomic.Pointer[edge.Maintenance]
	state.Store(&edge.Maintenance{})
	e := startEdge(t, pki, backend.URL, func(c *edge.Config) {
		c.TrustedProxies = mustPrefixes(t, "127.0.0.1/32")
		c.Maintenance = func() edge.Maintenance { return *state.Load() }
	})
	lb, direct := pki.client(t, "127.0.0.1"), pki.client(t, "127.0.0.2")
	staff := http.Header{"X-Forwarded-For": {"10.1.2.3"}}
	outsider := http.Header{"X-Forwarded-For": {"203.0.113.7"}}

	expectBackend := func(name string, c *http.Client, h http.Header) {
		t.Helper()
		if resp := get(t, c, e, "/", h); resp.StatusCode != http.StatusOK || readBody(t, resp) != "backend" {
			t.Errorf("%s: status %d, want the backend's 200", name, resp.StatusCode)
		}
	}
	expectPage := func(name string, c *http.Client, h http.Header, retryMin, retryMax int, body string) {
		t.Helper()
		resp := get(t, c, e, "/course/view.php?id=3", h)
		got := readBody(t, resp)
		retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		switch {
		case resp.StatusCode != http.StatusServiceUnavailable:
			t.Errorf("%s: status %d, want 503", name, resp.StatusCode)
		case err != nil || retry < retryMin || retry > retryMax:
			t.Errorf("%s: Retry-After %q, want %d..%d", name, resp.Header.Get("Retry-After"), retryMin, retryMax)
		case !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || resp.Header.Get("Cache-Control") != "no-store":
			t.Errorf("%s: Content-Type %q, Cache-Control %q", name, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
		case !strings.Contains(got, body):
			t.Errorf("%s: page does not contain %q:\n%s", name, body, got)
		}
	}

	expectBackend("maintenance off", direct, outsider)

	state.Store(&edge.Maintenance{Active: true, Message: `Upgrade to 4.5 <until 18:00> & "back"`, Allow: mustPrefixes(t, "10.0.0.0/8")})
	escaped := `Upgrade to 4.5 &lt;until 18:00&gt; &amp; &#34;back&#34;`
	expectPage("outside client", lb, outsider, 300, 300, escaped)
	expectPage("client spoofing an allowed address", direct, staff, 300, 300, escaped)
	expectBackend("allowed client behind the load balancer", lb, staff)

	state.Store(&edge.Maintenance{Active: true, Message: "soon", Until: time.Now().Add(90 * time.Second)})
	expectPage("with until", lb, outsider, 1, 90, "soon")

	state.Store(&edge.Maintenance{Active: true, Message: "late", Until: time.Now().Add(-time.Second)})
	expectBackend("until passed before the agent's next update", direct, outsider)

	state.Store(&edge.Maintenance{})
	expectBackend("maintenance over", direct, outsider)
}

// edge.maintenance_page replaces the built-in page; {{message}} is the
// escaped message.
func TestMaintenancePageFile(t *testing.T) {
	pki := newTestPKI(t)
	backend, _ := recordingBackend(t)
	page := filepath.Join(t.TempDir(), "maintenance.html")
	if err := os.WriteFile(page, []byte("<html><body><h1>Moodle Uni</h1><p>{{message}}</p></body></html>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startEdge(t, pki, backend.URL, func(c *edge.Config) {
		c.MaintenancePage = page
		c.Maintenance = func() edge.Maintenance { return edge.Maintenance{Active: true, Message: "<b>back at 6</b>"} }
	})
	resp := get(t, pki.client(t, ""), e, "/", nil)
	want := "<html><body><h1>Moodle Uni</h1><p>&lt;b&gt;back at 6&lt;/b&gt;</p></body></html>\n"
	if got := readBody(t, resp); resp.StatusCode != http.StatusServiceUnavailable || got != want {
		t.Errorf("got %d %q, want 503 %q", resp.StatusCode, got, want)
	}
}
