package edge

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// CheckBackend asks the backend for "OPTIONS *", which a web server answers
// itself without running the application (no PHP, no Moodle session). Any
// HTTP answer means the backend is up; a refused connection or a timeout
// (5 s unless ctx ends sooner) means it is down.
func (e *Edge) CheckBackend(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, backendCheckTimeout)
	defer cancel()
	b := e.cfg.Backend
	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, b.Scheme+"://"+b.Host, nil)
	if err != nil {
		return fmt.Errorf("backend %s: %w", b.Host, err)
	}
	req.URL = &url.URL{Scheme: b.Scheme, Host: b.Host, Opaque: "*"}
	resp, err := e.transport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("backend %s: %w", b.Host, err)
	}
	resp.Body.Close()
	return nil
}
