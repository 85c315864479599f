// Package edge owns the web node's public front: the TLS listener
// (edge.https, HTTP/2 and HTTP/1.1), the plain-HTTP listener (edge.http:
// ACME HTTP-01 answers through a handler the certs package supplies,
// everything else redirected to https), the reverse proxy to the local web
// server (edge.backend), the client-address headers, and the maintenance
// page.
//
// It does not obtain or choose certificates (internal/certs hands it a
// tls.Config), does not read cluster state (the agent hands it a func that
// reports maintenance) and does not touch the config file.
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"
)

// Maintenance is the cluster maintenance state as the edge applies it.
type Maintenance struct {
	Active  bool
	Message string         // shown on the page, HTML-escaped
	Allow   []netip.Prefix // clients let through (by the resolved client address)
	Until   time.Time      // zero: open-ended; sets Retry-After; once past, maintenance is over
}

// on reports whether maintenance applies at now: Active and not past Until
// (so it ends on time even before the agent's next update).
func (m *Maintenance) on(now time.Time) bool {
	return m.Active && (m.Until.IsZero() || now.Before(m.Until))
}

// Config configures an Edge.
type Config struct {
	HTTPS, HTTP string // listen addresses; "" = that listener off
	Backend     *url.URL

	// TLS comes from internal/certs (GetCertificate etc.). The edge works on
	// a copy: it puts "h2" and "http/1.1" first in NextProtos (keeping
	// others such as "acme-tls/1") and raises MinVersion to TLS 1.2.
	TLS *tls.Config

	// ACME wraps the plain-HTTP handler so HTTP-01 challenges are answered
	// before the redirect; nil = none.
	ACME func(http.Handler) http.Handler

	// Maintenance reports the state; it is called on every request, so it
	// must be cheap (e.g. an atomic pointer load). nil = never.
	Maintenance func() Maintenance

	// MaintenancePage is an HTML file; "" = the built-in page. Every
	// {{message}} (MessagePlaceholder) in it is replaced by the HTML-escaped
	// message. It is read once, by Listen.
	MaintenancePage string

	// TrustedProxies are the peers (e.g. the load balancer) whose
	// X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and Forwarded
	// headers are believed; from anyone else they are dropped.
	TrustedProxies []netip.Prefix

	// MaxConnsPerClient bounds the connections one client address holds
	// (0: no bound, the default: browsers behind a NAT share one address).
	// Trusted proxies are never bounded.
	MaxConnsPerClient int

	// Listen binds a listener for a config key (edge.https, edge.http) and
	// its address; nil = net.Listen. The agent passes one that reuses the
	// sockets kept across a restart (internal/handoff).
	Listen func(key, addr string) (net.Listener, error)

	Logger *slog.Logger
}

// Timeouts of the connection to the backend (the listeners' are
// internal/guard's). There is deliberately no overall read or write
// timeout: a large upload or download may take as long as it takes while
// bytes keep moving.
const (
	backendDialTimeout    = 5 * time.Second
	backendHeaderTimeout  = 5 * time.Minute // a slow Moodle admin page still answers
	backendIdleTimeout    = 90 * time.Second
	backendCheckTimeout   = 5 * time.Second
	drainTimeout          = 10 * time.Second // requests in flight when the agent stops
	defaultRetryAfterSecs = 300
)

// Edge is the TLS front of a web node. New validates; Listen binds; Serve
// starts serving; Close shuts down.
type Edge struct {
	cfg       Config
	log       *slog.Logger
	trusted   []netip.Prefix
	transport *http.Transport
	proxy     http.Handler
	page      *maintenancePage
	failures  throttle // backend failure log lines

	https, http *server

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and builds the edge. It does no I/O.
func New(cfg Config) (*Edge, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Edge{cfg: cfg, log: log.With("component", "edge"), trusted: cfg.TrustedProxies}
	e.transport = newTransport()
	e.proxy = e.newProxy()
	e.page = newMaintenancePage(cfg.MaintenancePage)
	if cfg.HTTPS != "" {
		e.https = e.newServer("edge.https", cfg.HTTPS, e.secureHandler(), tlsConfig(cfg.TLS))
	}
	if cfg.HTTP != "" {
		e.http = e.newServer("edge.http", cfg.HTTP, e.plainHandler(), nil)
	}
	return e, nil
}

func (c *Config) validate() error {
	switch {
	case c.HTTPS == "" && c.HTTP == "":
		return errors.New("edge: neither edge.https nor edge.http is set")
	case c.Backend == nil || c.Backend.Host == "":
		return errors.New("edge.backend: a URL with a host is required")
	case c.Backend.Scheme != "http" && c.Backend.Scheme != "https":
		return fmt.Errorf("edge.backend: must be an http:// or https:// URL, got %q", c.Backend)
	case c.HTTPS != "" && (c.TLS == nil || c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil && len(c.TLS.Certificates) == 0):
		return errors.New("edge.https: a TLS config with a certificate source is required")
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			return errors.New("edge.trusted_proxies: invalid prefix")
		}
	}
	return nil
}

// tlsConfig returns a copy of c fit to serve HTTPS: TLS 1.2+, and "h2"
// then "http/1.1" preferred in ALPN, other protocols (acme-tls/1) kept
// after them.
func tlsConfig(c *tls.Config) *tls.Config {
	c = c.Clone()
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	protos := []string{"h2", "http/1.1"}
	for _, p := range c.NextProtos {
		if p != "h2" && p != "http/1.1" {
			protos = append(protos, p)
		}
	}
	c.NextProtos = protos
	return c
}

// Listen reads the maintenance page file and binds the listeners. An error
// names the config key (edge.https, edge.http, edge.maintenance_page).
func (e *Edge) Listen() error {
	if err := e.page.load(); err != nil {
		return err
	}
	for _, s := range []*server{e.https, e.http} {
		if s == nil {
			continue
		}
		if err := s.bindListener(); err != nil {
			e.closeListeners()
			return err
		}
	}
	return nil
}

// Serve starts serving on the bound listeners in goroutines the Edge owns
// and returns at once. Call it after a successful Listen.
func (e *Edge) Serve() {
	for _, s := range []*server{e.https, e.http} {
		if s != nil {
			s.serve()
		}
	}
}

// HTTPSAddr returns the bound address of the TLS listener ("" if off or not
// yet bound).
func (e *Edge) HTTPSAddr() string { return e.https.addr() }

// HTTPAddr returns the bound address of the plain-HTTP listener ("" if off
// or not yet bound).
func (e *Edge) HTTPAddr() string { return e.http.addr() }

// Close drains both listeners (internal/drain): they stop accepting, requests
// in flight get up to 10 s to finish, idle keep-alive connections up to 1 s
// to bring one more request (answered with "Connection: close"), then every
// connection (WebSockets included) is closed. It is idempotent and returns
// the first error.
func (e *Edge) Close() error {
	e.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		defer cancel()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, s := range []*server{e.https, e.http} {
			if s != nil {
				wg.Go(func() { errs[i] = s.shutdown(ctx) })
			}
		}
		wg.Wait()
		e.transport.CloseIdleConnections()
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}

func (e *Edge) closeListeners() {
	for _, s := range []*server{e.https, e.http} {
		if s != nil {
			s.closeListener()
		}
	}
}

// localAddr returns the address a listener was bound to.
func localAddr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
