package edge_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/edge"
)

// The backend sees the original Host, the client's address in
// X-Forwarded-For and X-Real-IP, https in X-Forwarded-Proto; client-set
// forwarding headers count only from a trusted proxy.
func TestForwardedHeaders(t *testing.T) {
	pki := newTestPKI(t)
	backend, seen := recordingBackend(t)
	// 127.0.0.1 plays the load balancer; a client dialing from 127.0.0.2
	// is an ordinary (untrusted) peer.
	e := startEdge(t, pki, backend.URL, func(c *edge.Config) {
		c.TrustedProxies = mustPrefixes(t, "127.0.0.1/32", "10.0.0.0/8")
	})
	spoof := http.Header{
		"X-Forwarded-For":   {"198.51.100.1"},
		"X-Forwarded-Proto": {"http"},
		"X-Forwarded-Host":  {"evil.example"},
		"Forwarded":         {"for=198.51.100.1;proto=http"},
		"X-Real-Ip":         {"198.51.100.1"},
		"Client-Ip":         {"198.51.100.1"},
	}
	tests := []struct {
		name   string
		from   string // local address of the client
		header http.Header
		want   map[string]string // "" = absent
	}{
		{"direct client", "127.0.0.2", nil, map[string]string{
			"X-Forwarded-For": "127.0.0.2", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "moodle.test",
			"X-Real-Ip": "127.0.0.2", "Forwarded": "", "Client-Ip": "",
		}},
		{"spoofing client is not believed", "127.0.0.2", spoof, map[string]string{
			"X-Forwarded-For": "127.0.0.2", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "moodle.test",
			"X-Real-Ip": "127.0.0.2", "Forwarded": "", "Client-Ip": "",
		}},
		{"trusted proxy without headers", "127.0.0.1", nil, map[string]string{
			"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "moodle.test",
			"X-Real-Ip": "127.0.0.1",
		}},
		{"trusted proxy is believed, appended to", "127.0.0.1", http.Header{
			// the client claims 192.0.2.66; the untrusted 203.0.113.7
			// reached a trusted internal hop (10.0.0.9), then the LB
			"X-Forwarded-For":   {"192.0.2.66, 203.0.113.7", "10.0.0.9"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"www.moodle.test"},
			"Forwarded":         {"for=203.0.113.7"},
			"Client-Ip":         {"192.0.2.66"},
		}, map[string]string{
			"X-Forwarded-For":   "192.0.2.66, 203.0.113.7, 10.0.0.9, 127.0.0.1",
			"X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.moodle.test",
			"X-Real-Ip": "203.0.113.7", "Forwarded": "for=203.0.113.7", "Client-Ip": "",
		}},
		{"trusted proxy adding a port", "127.0.0.1", http.Header{"X-Forwarded-For": {"203.0.113.7:50123"}},
			map[string]string{"X-Real-Ip": "203.0.113.7"}},
		{"trusted proxy with garbage before its hop", "127.0.0.1", http.Header{"X-Forwarded-For": {"junk, 10.0.0.9"}},
			map[string]string{"X-Real-Ip": "10.0.0.9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := get(t, pki.client(t, tt.from), e, "/login/index.php?x=1", tt.header)
			if resp.StatusCode != http.StatusOK || readBody(t, resp) != "backend" {
				t.Fatalf("status %d, want 200 from the backend", resp.StatusCode)
			}
			r := receive(t, seen)
			if r.Host != "moodle.test" || r.URL.RequestURI() != "/login/index.php?x=1" {
				t.Errorf("backend got Host %q, URI %q", r.Host, r.URL.RequestURI())
			}
			for k, want := range tt.want {
				if got := r.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
				if n := len(r.Header.Values(k)); n > 1 {
					t.Errorf("%s sent %d times", k, n)
				}
			}
		})
	}
}

func receive[T any](tb testing.TB, ch <-chan T) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		tb.Fatal("timed out waiting")
		panic("unreachable")
	}
}
