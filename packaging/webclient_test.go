package packaging_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/testutil"
)

// response is what a request got.
type response struct {
	path   string
	status int
	header http.Header
	body   string
}

// executed checks that script ran and answered status, and returns what
// it printed as KEY=value pairs.
func (r response) executed(tb testing.TB, status int, script string) map[string]string {
	tb.Helper()
	if r.status != status || !strings.Contains(r.body, executedMarker+script+"\n") {
		tb.Fatalf("%s: %d, want %d from running %s:\n%s", r.path, r.status, status, script, r.body)
	}
	if strings.Contains(r.body, sourceMarker) {
		tb.Fatalf("%s: source handed out:\n%s", r.path, r.body)
	}
	kv := map[string]string{}
	for line := range strings.Lines(r.body) {
		if k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "="); ok {
			kv[k] = v
		}
	}
	return kv
}

func (s *webStack) get(tb testing.TB, path string) response {
	tb.Helper()
	return s.do(tb, http.MethodGet, path, nil, nil)
}

func (s *webStack) do(tb testing.TB, method, path string, body io.Reader, h http.Header) response {
	tb.Helper()
	return request(tb, http.DefaultTransport, method, "http://"+s.addr, path, "moodle.test", body, h)
}

// request sends a request with send, failing the test on an error.
func request(tb testing.TB, rt http.RoundTripper, method, base, path, host string, body io.Reader, h http.Header) response {
	tb.Helper()
	r, err := send(rt, method, base, path, host, body, h)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// send sends path exactly as written (no cleaning, no re-encoding), never
// following redirects, and reads the whole answer.
func send(rt http.RoundTripper, method, base, path, host string, body io.Reader, h http.Header) (response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base, body)
	if err != nil {
		return response{}, err
	}
	rawPath, query, _ := strings.Cut(path, "?")
	req.URL.Opaque, req.URL.RawQuery = rawPath, query
	req.Host = host
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return response{path: path, status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

// waitLogged polls the access log until a line holds s.
func (s *webStack) waitLogged(tb testing.TB, substr string) {
	tb.Helper()
	testutil.Eventually(tb, 10*time.Second, func() error {
		if s.logLine(tb, substr) == "" {
			return fmt.Errorf("no access log line with %q", substr)
		}
		return nil
	})
}

// logLine returns the first access log line holding substr, or "".
func (s *webStack) logLine(tb testing.TB, substr string) string {
	tb.Helper()
	for line := range strings.Lines(readFile(tb, s.accessLog)) {
		if strings.Contains(line, substr) {
			return line
		}
	}
	return ""
}
