package ui_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nodeagent/nodeagent/internal/ui"
)

// TestStatusPageReadsAgreedMembersShape: the page reads GET /v1/members in
// the shape agreed between the branches ({"members":[{"name", "address",
// "state", "since", "role", "api", "revision", "drained", "ready",
// "maintenance", "behind_since", "version", "certificate_not_after"}]}),
// served here from fixtures; the real agents of the other tests still
// answer with the older Go field names, which the page reads too.
func TestStatusPageReadsAgreedMembersShape(t *testing.T) {
	now := time.Now().UTC()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	id := func(c string) string { return strings.Repeat(c, 32) }
	members := fmt.Sprintf(`{"members":[
		{"name":"controller","address":"10.0.0.4:7946","state":"alive","since":%q,"role":"controller","api":"10.0.0.4:7947",
		 "revision":{"seq":7,"id":%q},"drained":false,"ready":true,"maintenance":{"clock":0,"active":false},
		 "behind_since":null,"version":"1.4.0","certificate_not_after":null},
		{"name":"web-1","address":"10.0.0.5:7946","state":"alive","since":%q,"role":"web","api":"10.0.0.5:7947",
		 "revision":{"seq":7,"id":%q},"drained":false,"ready":true,"maintenance":{"clock":0,"active":false},
		 "behind_since":null,"version":"1.4.0","certificate_not_after":%q},
		{"name":"web-2","address":"10.0.0.6:7946","state":"alive","since":%q,"role":"web","api":"10.0.0.6:7947",
		 "revision":{"seq":6,"id":%q},"drained":true,"ready":false,"maintenance":{"clock":0,"active":false},
		 "behind_since":%q,"version":"1.3.9","certificate_not_after":%q},
		{"name":"web-3","address":"10.0.0.7:7946","state":"dead","since":%q,"role":"web","api":"10.0.0.7:7947",
		 "revision":null,"drained":false,"ready":false,"maintenance":{"clock":0,"active":false},
		 "behind_since":null,"version":"1.4.0","certificate_not_after":null}]}`,
		ts(-time.Hour), id("ab"), ts(-time.Hour), id("ab"), ts(10*24*time.Hour+time.Hour),
		ts(-time.Hour), id("cd"), ts(-90*time.Second), ts(40*24*time.Hour+time.Hour), ts(-5*time.Minute))
	fixtures := map[string]string{
		"/v1/members": members,
		"/v1/status": fmt.Sprintf(`{"node":"controller","role":"controller","version":"1.4.0","revision":{"applied":{"seq":7,"id":%q},
			"target":{"seq":7,"id":%q},"in_sync":true,"lag_seconds":0},"drained":false,"maintenance":{"enabled":false,"active":false,"applied":true},
			"transfer":{"rx_bytes":0,"tx_bytes":0}}`, id("ab"), id("ab")),
		"/v1/nodes":       fmt.Sprintf(`{"asked":%q,"nodes":[]}`, ts(0)),
		"/v1/revisions":   fmt.Sprintf(`{"revisions":[{"seq":7,"id":%q,"created":%q,"files":10,"bytes":100,"changed":1,"target":true}],"target":{"seq":7,"id":%q}}`, id("ab"), ts(-time.Hour), id("ab")),
		"/v1/maintenance": `{"enabled":false,"active":false}`,
		"/v1/deploys":     `{"deploys":[]}`,
		"/v1/history":     fmt.Sprintf(`{"since":%q,"lag":[],"syncs":[],"targets":[]}`, ts(-time.Hour)),
	}
	page := http.StripPrefix("/ui", ui.Handler())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch body, ok := fixtures[r.URL.Path]; {
		case r.URL.Path == "/ui/session":
			json.NewEncoder(w).Encode(map[string]string{"api": "local", "read_token": "fixture-read-token"})
		case ok && r.Header.Get("Authorization") == "Bearer fixture-read-token":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body)
		case ok:
			http.Error(w, `{"status":401,"detail":"missing or wrong bearer token"}`, http.StatusUnauthorized)
		default:
			page.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)

	b := newBrowser(t)
	b.do(chromedp.Navigate(srv.URL + "/ui/"))
	b.waitFor(20*time.Second, "four nodes", `document.querySelectorAll('#nodes tbody tr').length === 4`)
	r := b.nodeRows()
	for _, c := range []struct {
		node string
		col  int
		want string
	}{
		{"controller", 3, "7 (abababababab)"},
		{"web-1", 1, "web"},
		{"web-1", 3, "7 (abababababab)"},
		{"web-1", 4, "yes"},
		{"web-1", 6, "no"},
		{"web-1", 8, "10 days"},
		{"web-2", 3, "6 (cdcdcdcdcdcd)"},
		{"web-2", 4, "no"},
		{"web-2", 5, "1 min 3"},
		{"web-2", 6, "drained"},
		{"web-2", 8, "40 days"},
		{"web-2", 9, "1.3.9"},
		{"web-3", 2, "dead for 5 min"},
		{"web-3", 3, "none"},
		{"web-3", 7, "unknown (dead)"},
	} {
		if cells := r[c.node]; len(cells) <= c.col || !strings.HasPrefix(cells[c.col], c.want) {
			t.Errorf("%s column %d: %q, want %q…", c.node, c.col, cells, c.want)
		}
	}
	if got := b.str(`document.querySelector('tr[data-node="web-1"] td:nth-child(9) .badge').className`); got != "badge warn" {
		t.Errorf("certificate ending in 10 days shown as %q, want a warning", got)
	}
	if got := b.str(`document.getElementById('summary').innerText`); !strings.Contains(got, "1 of 2") {
		t.Errorf("summary %q: want 1 of 2 live web nodes serving the target", got)
	}
}
