package api

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/nodeagent/nodeagent/internal/ui"
)

// The status page (/ui/) reads the public API like any client. On the
// local API a browser on loopback reads without the admin token, like
// /metrics: GET /ui/session hands it a read token, valid for the read-only
// routes below on the local API only, and new at every start. Actions
// always need the admin token. On the cluster API the page asks for the
// admin token.

// readRoutes are the routes a read token opens: what the status page
// shows. Not the dump downloads (they hold the whole database).
var readRoutes = map[string]bool{
	"GET /v1/status":          true,
	"GET /v1/members":         true,
	"GET /v1/nodes":           true,
	"GET /v1/revisions":       true,
	"GET /v1/maintenance":     true,
	"GET /v1/history":         true,
	"GET /v1/deploys":         true,
	"GET /v1/deploys/:id":     true,
	"GET /v1/db/dumps":        true,
	"GET /v1/db/restores/:id": true,
	"GET /v1/certificates":    true,
	"GET /v1/openapi.json":    true,
}

// UISession is the body of GET /ui/session.
type UISession struct {
	API string `json:"api"` // local | cluster
	// ReadToken opens the read-only routes on the local API; given only to
	// a client on loopback that names a loopback host.
	ReadToken string `json:"read_token,omitempty"`
	// Reason says why no read token was given on the local API.
	Reason string `json:"reason,omitempty"`
}

// localKey marks the requests of the local API in the echo context.
const localKey = "nodeagent.local"

func newReadToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func markLocal(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Set(localKey, true)
		return next(c)
	}
}

func isLocal(c echo.Context) bool {
	local, _ := c.Get(localKey).(bool)
	return local
}

// uiRoutes serves the page's files and its session.
func (s *Server) uiRoutes(e *echo.Echo) {
	files := echo.WrapHandler(http.StripPrefix("/ui", ui.Handler()))
	e.GET("/ui", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/ui/") })
	e.GET("/ui/*", files)
	e.HEAD("/ui/*", files)
	e.GET("/ui/session", s.uiSession)
}

func (s *Server) uiSession(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if !isLocal(c) {
		return c.JSON(http.StatusOK, UISession{API: "cluster"})
	}
	sess := UISession{API: "local"}
	if reason := notLoopback(c.Request()); reason != "" {
		sess.Reason = reason
	} else {
		sess.ReadToken = s.readToken
	}
	return c.JSON(http.StatusOK, sess)
}

// notLoopback says why r does not come from loopback to a loopback name:
// the peer must be on this machine (an SSH tunnel's is), and the Host a
// loopback name, so that a web site whose name resolves to 127.0.0.1 (DNS
// rebinding) cannot read the page's data in the operator's browser.
func notLoopback(r *http.Request) string {
	peer, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip, perr := netip.ParseAddr(peer); err != nil || perr != nil || !ip.Unmap().IsLoopback() {
		return "the local API reads without a token only for clients on this machine (use an SSH tunnel)"
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && ip.Unmap().IsLoopback() {
		return ""
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return ""
	}
	return "the local API reads without a token only under a loopback name (127.0.0.1 or localhost), not " + host
}

// readAllowed reports whether got is this server's read token, presented
// on the local API for a read-only route.
func (s *Server) readAllowed(c echo.Context, got string) bool {
	return isLocal(c) && readRoutes[c.Request().Method+" "+c.Path()] &&
		subtle.ConstantTimeCompare([]byte(got), []byte(s.readToken)) == 1
}
