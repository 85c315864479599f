package edge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"
)

// newTransport is the connection pool to the backend. The backend is one
// local host, so idle connections are kept per host generously; no
// environment proxy; no transparent gzip (the proxy passes bodies as they
// are).
func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: backendDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       backendIdleTimeout,
		ResponseHeaderTimeout: backendHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// newProxy returns the reverse proxy to the backend. Bodies stream both
// ways through 32 KiB pooled buffers, and what the backend sent is passed
// on at once (FlushInterval -1), as nginx does: without it a response of
// known length keeps a partial read (up to the server's 4 KiB write
// buffer) until the backend sends more, so a download whose backend pauses
// stalls short of what was sent. Upgrades (WebSocket) are passed through.
func (e *Edge) newProxy() http.Handler {
	return &httputil.ReverseProxy{
		Rewrite:       e.rewrite,
		Transport:     e.transport,
		BufferPool:    &bufferPool{},
		FlushInterval: -1,
		ErrorHandler:  e.proxyError,
		ErrorLog:      slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
}

// rewrite addresses the backend and sets the client headers. The original
// Host is kept (Moodle checks it against wwwroot). X-Forwarded-For,
// -Proto, -Host and Forwarded from the client are believed only from a
// trusted proxy (ReverseProxy has removed them from pr.Out); X-Real-IP is
// the resolved client; Client-IP (which Moodle reads first) is never
// passed on.
func (e *Edge) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(e.cfg.Backend)
	in, h := pr.In, pr.Out.Header
	pr.Out.Host = in.Host
	client, trusted := e.clientAddr(in)
	peer := peerAddr(in).String()
	v := make([]string, 4) // one allocation for the four header values
	v[0], v[1], v[2], v[3] = peer, "http", in.Host, peer
	if in.TLS != nil {
		v[1] = "https"
	}
	if trusted {
		if prior := in.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			v[0] = strings.Join(prior, ", ") + ", " + peer
		}
		if p := in.Header.Get("X-Forwarded-Proto"); p != "" {
			v[1] = p
		}
		if host := in.Header.Get("X-Forwarded-Host"); host != "" {
			v[2] = host
		}
		if f := in.Header.Values("Forwarded"); len(f) > 0 {
			h["Forwarded"] = f
		}
		v[3] = client.String()
	}
	h["X-Forwarded-For"] = v[0:1:1]
	h["X-Forwarded-Proto"] = v[1:2:2]
	h["X-Forwarded-Host"] = v[2:3:3]
	h["X-Real-Ip"] = v[3:4:4]
	h.Del("Client-Ip")
}

// proxyError answers a failed backend request with the 502 page (504 when
// the backend did not answer in time) and logs the cause, at most once per
// failureLogInterval; the client sees no internals. A client that went
// away is not an error.
func (e *Edge) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		e.log.Debug("client went away", "method", r.Method, "path", r.URL.Path)
		return
	}
	status := http.StatusBadGateway
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status = http.StatusGatewayTimeout
	}
	if ok, dropped := e.failures.allow(time.Now(), failureLogInterval); ok {
		e.log.Warn("backend request failed", "status", status, "method", r.Method, "path", r.URL.Path, "err", err,
			"failures_not_logged", dropped)
	}
	writePage(w, r, status, errorPage(status))
}

// bufferPool recycles the proxy's copy buffers.
type bufferPool struct{ pool sync.Pool }

const copyBufferSize = 32 << 10

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, copyBufferSize)
}

func (p *bufferPool) Put(b []byte) {
	if cap(b) == copyBufferSize {
		p.pool.Put(&b)
	}
}
