package edge_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/edge"
)

// BenchmarkProxy is a small GET through the edge over keep-alive HTTP/1.1
// TLS, client, edge and backend in this process (allocs include all
// three). bench/edge compares the edge with Caddy and nginx.
func BenchmarkProxy(b *testing.B) {
	page := strings.Repeat("x", 1024)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, page)
	}))
	defer backend.Close()
	pki := newTestPKI(b)
	e := startEdge(b, pki, backend.URL, func(c *edge.Config) {
		c.Logger = nil
		c.Maintenance = func() edge.Maintenance { return edge.Maintenance{} }
	})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, ServerName: "moodle.test"}, MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	url := "https://" + e.HTTPSAddr() + "/"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := tr.RoundTrip(mustRequest(b, url))
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || n != int64(len(page)) {
				b.Errorf("status %d, %d bytes", resp.StatusCode, n)
				return
			}
		}
	})
}

func mustRequest(tb testing.TB, url string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}
