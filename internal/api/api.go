// Package api serves nodeagent's REST API with echo: the local API (plain
// HTTP on loopback, for the CLI and curl) and the cluster API (TLS, for load
// balancer probes, admin calls and agent-to-agent traffic). It owns routing,
// authentication, problem+json errors and request limits; what the answers
// say comes from the Node the agent hands it. It opens no listener.
package api

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// Node is the agent as the API sees it.
type Node interface {
	Status() Status
	Members() []gossip.Member
	Revisions() RevisionList
	// PublishRevision publishes the source tree (controller only); the
	// answer's Seconds is the API's to fill.
	PublishRevision(ctx context.Context, req PublishRequest) (PublishResponse, error)
	Health() Health
	Operations
}

// Config configures the API.
type Config struct {
	Node  Node
	Token string // bearer token for /v1/
	// Mirror serves the agent-to-agent mirror endpoints (controller only).
	Mirror http.Handler
	// Meta returns the metadata this node advertises by gossip, served to
	// other agents at GET /cluster/v1/meta: a deploy barrier asks a node
	// directly when its gossip is slow to arrive.
	Meta func() gossip.NodeMeta
	// Dumps serves /v1/db/ (controller with a db section; nil otherwise).
	Dumps  DumpService
	Logger *slog.Logger
	// Metrics serves GET /metrics on the local API (nil: no endpoint).
	Metrics http.Handler
	// ObserveRequest, when set, is told about every request (metrics).
	ObserveRequest RequestObserver

	// Certs is the edge's certificate manager (nil: no edge on this node).
	Certs CertService
	// CertStore serves the cluster certificate storage (controller only).
	CertStore http.Handler
	// Integrity checks the served release (web nodes; nil otherwise).
	Integrity IntegrityService

	// VerifyPeer reports whether a request on the cluster API carries a
	// cluster client certificate (clustertls.Identity.Verified); nil
	// refuses every agent-to-agent call.
	VerifyPeer func(*http.Request) bool
	// Keyring runs the gossip keyring operations (nil: no /v1/keyring).
	Keyring KeyringService
	// View serves the cluster-wide reads of the status page (nil: none).
	View ClusterView
	// Forget forgets members gone for good (nil: none can be).
	Forget MemberForgetter
}

// Server builds the two HTTP handlers of an agent.
type Server struct {
	cfg       Config
	log       *slog.Logger
	readToken string // see ui.go
}

// New returns a Server. It does no I/O.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, readToken: newReadToken()}
}

// Body size limits: admin calls carry small JSON; an objects request carries
// up to mirror.MaxObjectsPerRequest hashes.
const (
	adminBodyLimit   = "1M"
	clusterBodyLimit = "4M"
)

// LocalHandler is the handler of the local API.
func (s *Server) LocalHandler() http.Handler {
	e := s.newEcho("local")
	e.Use(markLocal)
	s.routes(e)
	s.metricsRoute(e)
	return e
}

// ClusterHandler is the handler of the cluster API: the same routes, plus the
// agent-to-agent endpoints that require a cluster client certificate.
func (s *Server) ClusterHandler() http.Handler {
	e := s.newEcho("cluster")
	s.routes(e)
	c := e.Group("/cluster/v1", middleware.BodyLimit(clusterBodyLimit), s.requireClusterCert)
	if s.cfg.Mirror != nil {
		h := echo.WrapHandler(http.StripPrefix("/cluster/v1/mirror", s.cfg.Mirror))
		c.Any("/mirror/*", h)
	}
	if s.cfg.Meta != nil {
		c.GET("/meta", func(c echo.Context) error { return c.JSON(http.StatusOK, s.cfg.Meta()) })
	}
	s.certStoreRoutes(c)
	s.keyringClusterRoutes(c)
	s.reportRoute(c)
	return e
}

func (s *Server) newEcho(name string) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError
	if s.cfg.ObserveRequest != nil {
		e.Use(s.observe(name))
	}
	e.Use(middleware.Recover())
	e.Use(middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogURI: true, LogMethod: true, LogLatency: true, HandleError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			s.log.Debug("http request", "method", v.Method, "uri", v.URI, "status", v.Status, "latency", v.Latency)
			return nil
		},
	}))
	return e
}

func (s *Server) routes(e *echo.Echo) {
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	s.uiRoutes(e)
	v1 := e.Group("/v1", middleware.BodyLimit(adminBodyLimit), s.requireToken)
	v1.GET("/status", s.status)
	v1.GET("/members", s.members)
	v1.DELETE("/members/:name", s.forgetMember)
	v1.GET("/revisions", s.revisions)
	v1.POST("/revisions", s.publish)
	v1.GET("/openapi.json", s.openapi)
	s.opsRoutes(v1)
	s.certRoutes(v1)
	s.dbRoutes(v1)
	s.integrityRoutes(v1)
	s.keyringRoutes(v1)
	s.viewRoutes(v1)
}

// requireToken checks the bearer token in constant time.
func (s *Server) requireToken(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		got, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
		if ok && s.readAllowed(c, strings.TrimSpace(got)) {
			return next(c)
		}
		if !ok || s.cfg.Token == "" || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.cfg.Token)) != 1 {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="nodeagent"`)
			return problem(http.StatusUnauthorized, "missing or wrong bearer token")
		}
		return next(c)
	}
}

func (s *Server) requireClusterCert(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.cfg.VerifyPeer == nil || !s.cfg.VerifyPeer(c.Request()) {
			return problem(http.StatusUnauthorized, "agent endpoints need a cluster client certificate")
		}
		return next(c)
	}
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "pass"})
}

func (s *Server) readyz(c echo.Context) error {
	h := s.cfg.Node.Health()
	code := http.StatusOK
	if h.Status == StatusFail {
		code = http.StatusServiceUnavailable
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return jsonAs(c, code, "application/health+json", h)
}

func (s *Server) status(c echo.Context) error {
	return c.JSON(http.StatusOK, s.nodeStatus())
}

func (s *Server) revisions(c echo.Context) error {
	return c.JSON(http.StatusOK, s.cfg.Node.Revisions())
}

// PublishRequest is the body of POST /v1/revisions.
type PublishRequest struct {
	Message string `json:"message"`
	// AllowMissing lets deploy.after_all run when fewer web nodes serve
	// the new revision than the cluster had.
	AllowMissing bool `json:"allow_missing,omitempty"`
}

// PublishResponse is the answer of POST /v1/revisions.
type PublishResponse struct {
	mirror.Revision
	Unchanged bool    `json:"unchanged"`
	Seconds   float64 `json:"seconds"`
	// FollowUp is the run (GET it) that waits for every web node to serve
	// the new revision, then runs deploy.after_all; only when that is set.
	FollowUp string `json:"follow_up,omitempty"`
}

func (s *Server) publish(c echo.Context) error {
	var req PublishRequest
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	start := time.Now()
	res, err := s.cfg.Node.PublishRevision(c.Request().Context(), req)
	if err != nil {
		return err
	}
	res.Seconds = time.Since(start).Seconds()
	code := http.StatusOK
	if !res.Unchanged {
		code = http.StatusCreated
	}
	return c.JSON(code, res)
}
