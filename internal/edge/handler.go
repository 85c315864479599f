package edge

import (
	"net"
	"net/http"
	"strings"
	"time"
)

// secureHandler serves the TLS listener: the maintenance gate, then the
// proxy.
func (e *Edge) secureHandler() http.Handler {
	if e.cfg.Maintenance == nil {
		return e.proxy
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := e.cfg.Maintenance(); m.Active && m.on(time.Now()) {
			if client, _ := e.clientAddr(r); !allowed(m.Allow, client) {
				e.serveMaintenance(w, r, m)
				return
			}
		}
		e.proxy.ServeHTTP(w, r)
	})
}

// plainHandler serves the plain-HTTP listener: ACME HTTP-01 challenges
// (through cfg.ACME), then a 308 to https for everything else. A request
// a trusted proxy marks as X-Forwarded-Proto: https (a load balancer that
// terminates TLS and forwards to :80) is proxied instead of redirected, so
// it cannot loop.
func (e *Edge) plainHandler() http.Handler {
	secure := e.secureHandler()
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Forwarded-Proto") == "https" && e.isTrusted(peerAddr(r)) {
			secure.ServeHTTP(w, r)
			return
		}
		e.redirect(w, r)
	})
	if e.cfg.ACME != nil {
		h = e.cfg.ACME(h)
	}
	return h
}

// redirect sends a client to the same host and path over https (308 keeps
// the method and body), on the TLS listener's port when it is not 443.
func (e *Edge) redirect(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if host == "" {
		http.Error(w, "missing Host header", http.StatusBadRequest)
		return
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if port := e.redirectPort(); port != "443" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// redirectPort is the port of the TLS listener, "443" when it is off.
func (e *Edge) redirectPort() string {
	if _, port, err := net.SplitHostPort(e.HTTPSAddr()); err == nil {
		return port
	}
	return "443"
}
